#include <doctest/doctest.h>

#ifndef RLHF_HAVE_SENTENCEPIECE
// CMake found no SentencePiece, so rlhf::sentencepiece does not exist and this test was built without it.
TEST_CASE("Tokenizer: SentencePiece is installed") {
  FAIL("CMake found no SentencePiece (pkg-config 'sentencepiece'): run scripts/setup.sh, which installs "
       "libsentencepiece-dev, then configure again");
}
#else

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "rlhf/io/corpus.hpp"
#include "rlhf/io/tokenizer.hpp"
#include "support/temp_dir.hpp"
#include "support/text.hpp"
#include "support/bytes.hpp"
#include "support/npm_data.hpp"

using namespace rlhf;
using namespace rlhf::io;
namespace fs = std::filesystem;
using rlhf::test::TempDir;

using rlhf::test::has;
using rlhf::test::read_bytes;
using rlhf::test::review_fixtures;

namespace {


// A few hundred sentences from a small grammar, the same on every run.
std::vector<std::string> sentences() {
  const char* subjects[] = {"The cat",          "A programmer",  "My neighbour",
                            "The old computer", "Every student", "Zo\xc3\xab"};
  const char* verbs[] = {"likes", "fears", "repairs", "writes about", "dreams of", "never understood"};
  const char* objects[] = {"the moon.", "a quiet garden!", "forty-two bugs.", "the caf\xc3\xa9 downtown?",
                           "rainy Mondays.", "its own reflection.", "1984 and 2001."};
  std::vector<std::string> out;
  for (const char* s : subjects)
    for (const char* v : verbs)
      for (const char* o : objects) out.push_back(std::string(s) + " " + v + " " + o);
  return out;  // 6 * 6 * 7 = 252
}


const TokenizerConfig small{.vocab_size = 150};

}  // namespace

TEST_CASE("Tokenizer: train writes <prefix>.model, special ids, round trip") {
  TempDir dir;
  const auto corpus = sentences();
  const auto tok = Tokenizer::train(corpus, dir / "tok", small);
  CHECK(tok.path() == dir / "tok.model");
  CHECK(fs::exists(dir / "tok.model"));
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);  // no temporary left
  CHECK(tok.vocab_size() == 150);
  CHECK(tok.pad() == 0);
  CHECK(tok.unk() == 1);
  CHECK(tok.bos() == 2);
  CHECK(tok.eos() == 3);
  CHECK(tok.piece(tok.eos()) == "</s>");
  CHECK(tok.piece(tok.bos()) == "<s>");
  CHECK(tok.piece(tok.pad()) == "<pad>");

  for (const auto& s : corpus) {
    const auto ids = tok.encode(s);
    REQUIRE(!ids.empty());
    for (const auto id : ids) {
      CHECK(id > tok.eos());  // no special ids: encode adds no bos/eos, and every character has a piece
      CHECK(static_cast<std::size_t>(id) < tok.vocab_size());
    }
    CHECK(tok.decode(ids) == s);
  }
  // an unseen sentence over seen characters; subword pieces make it shorter than one id per character
  const std::string fresh = "The student repairs a caf\xc3\xa9 computer.";
  const auto ids = tok.encode(fresh);
  CHECK(tok.decode(ids) == fresh);
  CHECK(ids.size() < fresh.size() / 2);

  // special ids in decode: bos/eos/pad vanish; unk shows as " ⁇ "
  std::vector<token_id> framed = {tok.bos()};
  framed.insert(framed.end(), ids.begin(), ids.end());
  framed.push_back(tok.eos());
  framed.push_back(tok.pad());
  CHECK(tok.decode(framed) == fresh);
  CHECK(tok.decode(std::vector<token_id>{}) == "");
  CHECK(has(tok.decode(tok.encode("The cat \xe2\x98\x83")), "\xe2\x81\x87"));  // ☃ never seen: unk, shown as ⁇
}

TEST_CASE("Tokenizer: normalisation of white space") {
  TempDir dir;
  const auto tok = Tokenizer::train(sentences(), dir / "tok", small);
  CHECK(tok.encode("The cat\nlikes\t the moon.  ") == tok.encode("The cat likes the moon."));
  CHECK(tok.decode(tok.encode("  The   cat ")) == "The cat");
}

TEST_CASE("Tokenizer: training is deterministic; load gives the same tokenizer") {
  TempDir dir;
  fs::create_directories(dir / "a");
  fs::create_directories(dir / "b");
  const auto corpus = sentences();
  const auto t1 = Tokenizer::train(corpus, dir / "a" / "first", small);
  const auto t2 = Tokenizer::train(corpus, dir / "b" / "second", small);
  CHECK(read_bytes(t1.path()) == read_bytes(t2.path()));  // byte for byte, whatever the file is called

  const auto loaded = Tokenizer::load(dir / "a" / "first.model");
  CHECK(loaded.path() == dir / "a" / "first.model");
  CHECK(loaded.vocab_size() == t1.vocab_size());
  CHECK(loaded.eos() == t1.eos());
  for (const auto& s : corpus) {
    CHECK(t1.encode(s) == t2.encode(s));
    CHECK(loaded.encode(s) == t1.encode(s));
  }
  for (std::size_t id = 0; id < loaded.vocab_size(); ++id)
    CHECK(loaded.piece(static_cast<token_id>(id)) == t1.piece(static_cast<token_id>(id)));

  // retraining over an existing file replaces it; a different config gives a different model
  const auto t3 = Tokenizer::train(corpus, dir / "a" / "first", {.vocab_size = 120});
  CHECK(Tokenizer::load(dir / "a" / "first.model").vocab_size() == 120);
  CHECK(read_bytes(t3.path()) != read_bytes(t2.path()));
}

TEST_CASE("Tokenizer: unigram and byte fallback") {
  TempDir dir;
  const auto uni = Tokenizer::train(sentences(), dir / "uni", {.vocab_size = 60, .model_type = "unigram"});
  CHECK(uni.vocab_size() == 60);
  CHECK(uni.decode(uni.encode("Every student fears rainy Mondays.")) == "Every student fears rainy Mondays.");

  const auto bytes = Tokenizer::train(sentences(), dir / "bytes", {.vocab_size = 400, .byte_fallback = true});
  const std::string snowman = "The cat likes \xe2\x98\x83.";  // ☃ never seen: three byte pieces, not unk
  const auto ids = bytes.encode(snowman);
  CHECK(std::find(ids.begin(), ids.end(), bytes.unk()) == ids.end());
  CHECK(bytes.decode(ids) == snowman);
}

TEST_CASE("Tokenizer: errors") {
  TempDir dir;
  const auto corpus = sentences();
  const auto missing = dir / "no-such.model";
  try {
    Tokenizer::load(missing);
    FAIL("no error");
  } catch (const io_error& e) {
    CHECK(has(e.what(), missing.string()));
  }
  std::ofstream(dir / "junk.model") << "this is not a model";
  try {
    Tokenizer::load(dir / "junk.model");
    FAIL("no error");
  } catch (const io_error& e) {
    CHECK(has(e.what(), (dir / "junk.model").string()));
    CHECK(has(e.what(), "not a SentencePiece model"));
  }
  try {
    Tokenizer::train(corpus, dir / "missing-dir" / "tok", small);
    FAIL("no error");
  } catch (const io_error& e) {
    CHECK(has(e.what(), (dir / "missing-dir" / "tok.model").string()));
  }

  CHECK_THROWS_AS(Tokenizer::train(corpus, dir / "t", {.vocab_size = 4}), config_error);
  CHECK_THROWS_AS(Tokenizer::train(corpus, dir / "t", {.model_type = "wordpiece"}), config_error);
  CHECK_THROWS_AS(Tokenizer::train(corpus, dir / "t", {.character_coverage = 0.5}), config_error);
  CHECK_THROWS_AS(Tokenizer::train(corpus, dir / "t", {.num_threads = 0}), config_error);
  CHECK_THROWS_AS(Tokenizer::train({}, dir / "t", small), value_error);
  CHECK_THROWS_AS(Tokenizer::train(corpus, "", small), config_error);
  try {
    Tokenizer::train(corpus, dir / "t", {.vocab_size = 100000});  // more pieces than the corpus has
    FAIL("no error");
  } catch (const config_error& e) {
    CHECK(has(e.what(), "SentencePiece"));
    CHECK(has(e.what(), (dir / "t").string()));
  }
  CHECK(!fs::exists(dir / "t.model"));

  const auto tok = Tokenizer::train(corpus, dir / "tok", small);
  const std::vector<token_id> bad = {5, 6, 150};
  try {
    tok.decode(bad);
    FAIL("no error");
  } catch (const value_error& e) {
    CHECK(has(e.what(), "'ids'[2] = 150"));
  }
  CHECK_THROWS_AS(tok.decode(std::vector<token_id>{-1}), value_error);
  CHECK_THROWS_AS(tok.piece(150), value_error);
}

// A model that SentencePiece's own parser accepts but whose trie build throws Darts::Details::Exception (a
// piece starting with a NUL byte is a zero-length key): the loader turns it into an io_error naming the file.
TEST_CASE("Tokenizer: a model that makes SentencePiece throw is an io_error naming the file") {
  TempDir dir;
  // A length-delimited protobuf field: tag, one length byte, bytes. Built by append (GCC 12 misreads
  // "literal" + std::string&& under -Wrestrict).
  const auto field = [](char tag, const std::string& bytes) {
    std::string out(1, tag);
    out.push_back(static_cast<char>(bytes.size()));
    return out.append(bytes);
  };
  const auto piece = [&](const std::string& text, char type) {  // ModelProto.SentencePiece {piece, score, type}
    const float score = -1;
    std::string m = field('\x0a', text);
    m.push_back('\x15');
    m.append(reinterpret_cast<const char*>(&score), 4);
    m.push_back('\x18');
    m.push_back(type);
    return field('\x0a', m);
  };
  std::string model = piece("<unk>", 2) + piece(std::string("\0x", 2), 1) + piece("c", 1);
  model += field('\x12', std::string("\x18\x01", 2));  // trainer_spec {model_type: UNIGRAM}
  const auto path = dir / "darts.model";
  std::ofstream(path, std::ios::binary) << model;
  try {
    Tokenizer::load(path);
    FAIL("no error");
  } catch (const io_error& e) {
    CHECK_MESSAGE(has(e.what(), path.string()), e.what());
    CHECK_MESSAGE(has(e.what(), "not a usable SentencePiece model"), e.what());
  }
  const auto huge = dir / "huge.model";  // 4 GiB, sparse: refused by its size, never read
  std::ofstream(huge, std::ios::binary) << model;
  fs::resize_file(huge, std::uintmax_t(4) << 30);
  try {
    Tokenizer::load(huge);
    FAIL("no error");
  } catch (const io_error& e) {
    CHECK_MESSAGE(has(e.what(), huge.string()), e.what());
    CHECK_MESSAGE(has(e.what(), "limit"), e.what());
  }
  const auto fifo = dir / "fifo.model";  // refused without waiting for a writer
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH_AS(Tokenizer::load(fifo), doctest::Contains("fifo.model' is not a regular file"), io_error);
}

// The example's real corpus: every fortune plus the review sentences, trained at the example's settings.
// Data installed by scripts/setup.sh and scripts/fetch_npm_data.sh (see tests/io/corpus.cpp); missing is a failure.
TEST_CASE("Tokenizer: 2,000 BPE pieces on the fortunes and reviews") {
  REQUIRE_MESSAGE(fs::is_directory(default_fortunes_dir), default_fortunes_dir, " is missing: run scripts/setup.sh");
  auto corpus = read_fortunes();
  const auto reviews = read_reviews(review_fixtures());
  for (const auto& r : reviews) corpus.push_back(r.text);

  TempDir dir;
  const auto t0 = std::chrono::steady_clock::now();
  const auto tok = Tokenizer::train(corpus, dir / "tok");  // defaults: 2,000 pieces, BPE, 2 threads
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("trained on ", corpus.size(), " texts in ", seconds, " s; model file ", fs::file_size(tok.path()), " bytes");
  CHECK(tok.vocab_size() == 2000);
  CHECK(seconds < 60);

  std::size_t tokens = 0, chars = 0, unk = 0, mismatched = 0;
  for (const auto& r : reviews) {
    const auto ids = tok.encode(r.text);
    tokens += ids.size();
    chars += r.text.size();
    unk += static_cast<std::size_t>(std::count(ids.begin(), ids.end(), tok.unk()));
    // NFKC leaves these ASCII/Latin-1 sentences alone, so only white space may change
    std::string want;
    for (const char c : r.text)
      if (c != ' ' || (!want.empty() && want.back() != ' ')) want.push_back(c);
    while (!want.empty() && want.back() == ' ') want.pop_back();
    if (tok.decode(ids) != want) ++mismatched;
  }
  MESSAGE("reviews: ", tokens, " tokens for ", chars, " bytes (", static_cast<double>(chars) / tokens,
          " bytes/token), ", unk, " unk, ", mismatched, " not round-tripped");
  CHECK(unk == 0);
  CHECK(mismatched == 0);
}

// The model tests/fuzz/tokenizer.cpp found: SentencePiece accepted it and its decode read outside the model's
// denormalisation table (a trie size past the table's end). The loader checks the tables first.
TEST_CASE("Tokenizer: a model whose normalisation table points outside itself is an io_error naming the file") {
  const auto path = fs::path(__FILE__).parent_path().parent_path() / "fuzz/regressions/tokenizer/decode_segv_normalizer.model";
  REQUIRE(fs::exists(path));
  try {
    Tokenizer::load(path);
    FAIL("no error");
  } catch (const io_error& e) {
    CHECK(has(e.what(), path.string()));
    CHECK(has(e.what(), "denormalizer_spec"));
  }
}

TEST_CASE("charsmap_problem: a trie walked for every byte stays inside its table, or the table is refused") {
  using rlhf::io::detail::charsmap_problem;
  // [trie bytes][512 trie units][replacements "A\0"]: the root's children at 0 ^ c; one child 'a' (label 97) with
  // a leaf, whose block is `offset` units away and whose value unit holds `value`, an index into the replacements.
  const auto table = [](std::uint32_t offset, std::uint32_t value) {
    std::vector<std::uint32_t> units(512, 0);
    units[97] = 97u | (1u << 8) | (offset << 10);
    if ((97u ^ offset) < units.size()) units[97u ^ offset] = value | (1u << 31);
    std::string blob;
    const auto put = [&](std::uint32_t u) {
      for (int i = 0; i < 4; ++i) blob.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
    };
    put(4 * static_cast<std::uint32_t>(units.size()));
    for (const auto u : units) put(u);
    return blob.append("A\0", 2);
  };
  CHECK(charsmap_problem("") == "");
  CHECK(charsmap_problem(table(256, 0)) == "");  // 'a' -> "A"
  CHECK(has(charsmap_problem(table(256, 5)), "replacement outside"));
  CHECK(has(charsmap_problem(table(1024, 0)), "outside the trie"));
  CHECK(has(charsmap_problem(std::string("\x08\0\0\0\0\0\0", 7)), "exceeds the table"));
}

#endif
