// rlhf::io::Gpt2Tokenizer on a small hand-made vocabulary: the pre-tokenizer's splits (each written out from
// Python's `regex` module, which GPT-2's own encoder uses), merges by rank, special tokens, decode(encode(s)) == s
// on arbitrary bytes, and every malformed file an io_error naming the file. Parity with GPT-2's real files and
// the JS encoders: tests/io/gpt2_bpe_parity.cpp.
#include "rlhf/io/gpt2_bpe.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <random>
#include <thread>

#include "support/temp_dir.hpp"
#include "support/text.hpp"

using namespace rlhf;
using namespace rlhf::io;
namespace fs = std::filesystem;
using json = nlohmann::json;
using rlhf::test::TempDir;
using rlhf::test::has;
using rlhf::test::error_message;
using words = std::vector<std::string_view>;
using ids = std::vector<token_id>;

namespace {

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
}

std::string piece(const std::string& bytes) { return io::detail::gpt2_byte_piece(bytes); }

// Ids 0..255: the bytes in byte order; then the merges below, in rank order; then <|endoftext|>.
constexpr token_id t_Gt = 256, t_ll = 257, t_ell = 258, t_he = 259, t_hell = 260, t_hello = 261, t_Gthe = 262,
                   t_eot = 263;
const std::vector<std::pair<std::string, std::string>> merge_list = {
    {" ", "t"}, {"l", "l"}, {"e", "ll"}, {"h", "e"}, {"h", "ell"}, {"hell", "o"}, {" t", "he"}};

json small_vocab() {
  json v = json::object();
  for (int b = 0; b < 256; ++b) v[piece(std::string(1, char(b)))] = b;
  token_id id = 256;
  for (const auto& [a, b] : merge_list) v[piece(a + b)] = id++;
  v["<|endoftext|>"] = id;
  return v;
}

std::string small_merges() {
  std::string m = "#version: 0.2\n";
  for (const auto& [a, b] : merge_list) m += piece(a) + " " + piece(b) + "\n";
  return m;
}

json small_tokenizer_json() {
  json merges = json::array();
  for (const auto& [a, b] : merge_list) merges.push_back(piece(a) + " " + piece(b));
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens",
           json::array({{{"id", t_eot}, {"content", "<|endoftext|>"}, {"single_word", false}, {"lstrip", false},
                         {"rstrip", false}, {"normalized", true}, {"special", true}}})},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}}},
          {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}}},
          {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}}},
          {"model",
           {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", ""},
            {"end_of_word_suffix", ""}, {"fuse_unk", false}, {"vocab", small_vocab()}, {"merges", merges}}}};
}

struct Small {
  TempDir dir;
  Small() {
    write_text(dir / "vocab.json", small_vocab().dump());
    write_text(dir / "merges.txt", small_merges());
  }
  Gpt2Tokenizer load(const Gpt2Options& o = {}) const { return Gpt2Tokenizer::load(dir.path, o); }
};

const Gpt2Tokenizer& small() {
  static const Small files;
  static const Gpt2Tokenizer tok = files.load();
  return tok;
}

}  // namespace

TEST_CASE("Gpt2Tokenizer: the byte map is GPT-2's") {
  CHECK(piece(" ") == "\xc4\xa0");          // Ġ U+0120
  CHECK(piece("\n") == "\xc4\x8a");         // Ċ U+010A
  CHECK(piece(std::string(1, '\0')) == "\xc4\x80");  // Ā U+0100
  CHECK(piece("!~") == "!~");               // printable ASCII stands for itself
  CHECK(piece("\xad") == "\xc5\x83");       // soft hyphen: the 68th and last remapped byte, U+0143
  CHECK(piece("\xe9") == "\xc3\xa9");       // é (U+00E9) stands for itself
  for (int b = 0; b < 256; ++b) {
    const std::string byte(1, char(b));
    CHECK(io::detail::gpt2_piece_bytes(piece(byte)) == byte);
  }
}

TEST_CASE("Gpt2Tokenizer: the pre-tokenizer splits as GPT-2's regex does") {
  const auto& t = small();
  CHECK(t.pre_tokenize("Hello world") == words{"Hello", " world"});
  CHECK(t.pre_tokenize("I'm here, they'll see") == words{"I", "'m", " here", ",", " they", "'ll", " see"});
  CHECK(t.pre_tokenize("don't 'sup ''s ' s") == words{"don", "'t", " '", "sup", " ''", "s", " '", " s"});
  CHECK(t.pre_tokenize("'S 'LL 're") == words{"'", "S", " '", "LL", " '", "re"});  // contractions: lower case only
  CHECK(t.pre_tokenize("a'") == words{"a", "'"});
  CHECK(t.pre_tokenize("a  b") == words{"a", " ", " b"});
  CHECK(t.pre_tokenize("a   b\n\nc") == words{"a", "  ", " b", "\n", "\n", "c"});
  CHECK(t.pre_tokenize("x \n y") == words{"x", " \n", " y"});
  CHECK(t.pre_tokenize("end  ") == words{"end", "  "});
  CHECK(t.pre_tokenize("  lead") == words{" ", " lead"});
  CHECK(t.pre_tokenize("\tTab\t\tx") == words{"\t", "Tab", "\t", "\t", "x"});
  CHECK(t.pre_tokenize("12,345.67 abc123") == words{"12", ",", "345", ".", "67", " abc", "123"});
  CHECK(t.pre_tokenize("?!... ?! x") == words{"?!...", " ?!", " x"});
  CHECK(t.pre_tokenize("na\xc3\xafve caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e") ==
        words{"na\xc3\xafve", " caf\xc3\xa9", " \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"});  // naïve café 日本語
  CHECK(t.pre_tokenize("e\xcc\x81") == words{"e", "\xcc\x81"});  // a combining accent (Mn) is not \p{L}
  CHECK(t.pre_tokenize("a\xc2\xa0" "b c") == words{"a", "\xc2\xa0", "b", " c"});  // no-break space is \s
  CHECK(t.pre_tokenize("x\xe2\x80\xa8\xe2\x80\xa9y") == words{"x", "\xe2\x80\xa8", "\xe2\x80\xa9", "y"});
  CHECK(t.pre_tokenize("\xc2\xb2\xe2\x85\xa0 \xd9\xa3") == words{"\xc2\xb2\xe2\x85\xa0", " \xd9\xa3"});  // \p{N}
  CHECK(t.pre_tokenize("\n").size() == 1);
  CHECK(t.pre_tokenize("").empty());
}

TEST_CASE("Gpt2Tokenizer: U+0085 and U+FEFF follow the chosen white space") {
  Small files;
  Gpt2Options js;
  js.whitespace = Gpt2Whitespace::ecmascript;
  const auto uni = files.load(), ecma = files.load(js);
  const std::string nel = "\xc2\x85", bom = "\xef\xbb\xbf";
  CHECK(uni.pre_tokenize("x" + nel + "!") == words{"x", nel, "!"});         // Python's regex: \x85 is \s
  CHECK(ecma.pre_tokenize("x" + nel + "!") == words{"x", nel + "!"});       // JavaScript: it is not
  CHECK(uni.pre_tokenize(" " + bom + "x") == words{" " + bom, "x"});        // U+FEFF: not \s for Python
  CHECK(ecma.pre_tokenize(" " + bom + "x") == words{" ", bom, "x"});        // but \s for JavaScript
}

TEST_CASE("Gpt2Tokenizer: merges apply lowest rank first, leftmost first among equals") {
  const auto& t = small();
  CHECK(t.vocab_size() == 264);
  CHECK(t.merges() == merge_list.size());
  CHECK(t.encode("hello") == ids{t_hello});  // ll, then e+ll, then h+ell, then hell+o
  CHECK(t.encode(" the") == ids{t_Gthe});    // Ġt before he, then Ġt+he
  CHECK(t.encode("heel") == ids{t_he, 'e', 'l'});
  CHECK(t.encode("lll") == ids{t_ll, 'l'});
  CHECK(t.encode("llll") == ids{t_ll, t_ll});
  CHECK(t.encode("hello the hell") == ids{t_hello, t_Gthe, ' ', t_hell});  // no merge joins Ġ and hell
}

TEST_CASE("Gpt2Tokenizer: special tokens are matched whole, or read as text, or refused") {
  const auto& t = small();
  CHECK(t.eos() == t_eot);
  CHECK(t.is_special(t_eot));
  CHECK_FALSE(t.is_special(t_hello));
  const std::string text = "hello<|endoftext|> the<|endoftext|><|endoftext|>";
  CHECK(t.encode(text) == ids{t_hello, t_eot, t_Gthe, t_eot, t_eot});
  const auto as_text = t.encode(text, SpecialTokens::as_text);
  CHECK(std::count(as_text.begin(), as_text.end(), t_eot) == 0);
  CHECK(t.decode(as_text) == text);
  CHECK_THROWS_WITH_AS(t.encode(text, SpecialTokens::forbid),
                       doctest::Contains("special token '<|endoftext|>' at byte 5"), value_error);
  CHECK(t.encode("no special here", SpecialTokens::forbid) == t.encode("no special here"));
  CHECK(t.decode(t.encode(text)) == text);
  CHECK(t.decode(t.encode(text), true) == "hello the");
  CHECK(t.encode("<|endoftext|") == t.encode("<|endoftext|", SpecialTokens::as_text));  // a prefix is text
}

TEST_CASE("Gpt2Tokenizer: decode(encode(s)) == s for any bytes, invalid UTF-8 included") {
  const auto& t = small();
  std::mt19937 rng(7);
  const std::vector<std::string> parts = {"h", "e", "l", "o", " ", "  ", "\n", "\t", "'s", "'", "1", "\xc3\xa9",
                                          "\xe6\x97\xa5", "\xf0\x9f\x98\x80", "\xc2\x85", "\xef\xbb\xbf", "\xff",
                                          "\x80", "\xe2\x82", "\xc0\xaf", "<|endoftext|>", std::string(1, '\0'), "!"};
  for (int i = 0; i < 2000; ++i) {
    std::string s;
    const int n = int(rng() % 24);
    for (int k = 0; k < n; ++k) {
      if (rng() % 4 == 0) s += char(rng() % 256);
      else s += parts[rng() % parts.size()];
    }
    std::string joined;
    for (const auto w : t.pre_tokenize(s)) {
      CHECK(!w.empty());
      joined += w;
    }
    CHECK(joined == s);
    CHECK(t.decode(t.encode(s)) == s);
    CHECK(t.decode(t.encode(s, SpecialTokens::as_text)) == s);
  }
  // an invalid byte is a character of [^\s\p{L}\p{N}], joining the punctuation around it
  CHECK(t.pre_tokenize("a \xff!b") == words{"a", " \xff!", "b"});
  CHECK(t.encode("\xff") == ids{0xff});
}

TEST_CASE("Gpt2Tokenizer: a long word is fast (merges through a heap), cached or not") {
  Small files;
  Gpt2Options no_cache;
  no_cache.cache_words = 0;
  const auto cached = files.load(), uncached = files.load(no_cache);
  const std::string word(1 << 20, 'l');
  const auto t0 = std::chrono::steady_clock::now();
  const auto got = uncached.encode(word);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(got == ids((1 << 19), t_ll));
  CHECK(seconds < 5);
  const std::string text = "hello the hell heel lll, hello! the";
  CHECK(cached.encode(text) == uncached.encode(text));
  CHECK(cached.encode(text) == uncached.encode(text));  // second time from the cache
}

TEST_CASE("Gpt2Tokenizer: encode from several threads at once") {
  Small files;
  Gpt2Options tiny_cache;
  tiny_cache.cache_words = 3;  // emptied again and again
  const auto t = files.load(tiny_cache);
  const std::string text = "hello the hell heel lll, hello! the l ll lll llll lllll";
  const auto want = t.encode(text);
  std::vector<std::thread> threads;
  std::vector<int> bad(4, 0);
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      for (int i = 0; i < 500; ++i) bad[k] += t.encode(text) != want;
    });
  for (auto& th : threads) th.join();
  CHECK(bad == std::vector<int>(4, 0));
}

TEST_CASE("Gpt2Tokenizer: tokenizer.json gives the same tokenizer; both merge forms are read") {
  TempDir dir;
  auto j = small_tokenizer_json();
  write_text(dir / "tokenizer.json", j.dump());
  const auto a = Gpt2Tokenizer::load(dir.path);  // a folder with tokenizer.json
  json pairs = json::array();
  for (const auto& [x, y] : merge_list) pairs.push_back({piece(x), piece(y)});
  j["model"]["merges"] = pairs;
  write_text(dir / "pairs.json", j.dump());
  const auto b = Gpt2Tokenizer::load_json(dir / "pairs.json");
  const std::string text = "hello<|endoftext|> the hell, heel lll";
  CHECK(a.encode(text) == small().encode(text));
  CHECK(b.encode(text) == small().encode(text));
  CHECK(a.vocab_size() == 264);
  CHECK(a.eos() == t_eot);
  CHECK(a.id_of(piece(" the")) == t_Gthe);
  CHECK(a.id_of("nope") == -1);
  CHECK(a.bytes(t_Gthe) == " the");

  // added tokens beyond the vocabulary, one of them not special
  j["added_tokens"].push_back({{"id", 264}, {"content", "<pad>"}, {"special", true}});
  j["added_tokens"].push_back({{"id", 265}, {"content", "[[x]]"}, {"special", false}});
  write_text(dir / "added.json", j.dump());
  const auto c = Gpt2Tokenizer::load_json(dir / "added.json");
  CHECK(c.vocab_size() == 266);
  CHECK(c.encode("a<pad>[[x]]b") == ids{'a', 264, 265, 'b'});
  CHECK(c.encode("<pad>[[x]]", SpecialTokens::as_text).back() == 265);  // non-special ones are always matched
  CHECK(c.decode(ids{264, 265}) == "<pad>[[x]]");
  CHECK(c.decode(ids{264, 265}, true) == "[[x]]");
}

TEST_CASE("Gpt2Tokenizer: decode refuses ids outside the vocabulary") {
  const auto& t = small();
  CHECK_THROWS_WITH_AS(t.decode(ids{1, 264}), doctest::Contains("'ids'[1] = 264 is outside the vocabulary [0, 264)"),
                       value_error);
  CHECK_THROWS_AS(t.decode(ids{-1}), value_error);
  CHECK_THROWS_AS(t.bytes(264), value_error);
}

TEST_CASE("Gpt2Tokenizer: every malformed vocab.json or merges.txt is an io_error naming the file") {
  TempDir dir;
  const auto vocab = dir / "vocab.json", merges = dir / "merges.txt";
  write_text(merges, small_merges());
  const auto check_vocab = [&](const std::string& contents, const std::string& part) {
    write_text(vocab, contents);
    const auto msg = error_message<io_error>([&] { Gpt2Tokenizer::load(vocab, merges); });
    CHECK_MESSAGE(has(msg, vocab.string()), msg);
    CHECK_MESSAGE(has(msg, part), msg);
  };
  check_vocab("{\"a\": 0,", "not valid JSON");
  check_vocab("[1, 2]", "not an object");
  check_vocab("{}", "is empty");
  check_vocab(std::string(100, '[') + std::string(100, ']'), "nests more than 64");
  check_vocab("{\"a\": 1e999}", "JSON");
  auto v = small_vocab();
  v["<|endoftext|>"] = "263";
  check_vocab(v.dump(), "is \"263\", not an integer");
  v["<|endoftext|>"] = 263.5;
  check_vocab(v.dump(), "not an integer");
  v["<|endoftext|>"] = -1;
  check_vocab(v.dump(), "outside [0, 264)");
  v["<|endoftext|>"] = 4000000000LL;
  check_vocab(v.dump(), "outside [0, 264)");
  v["<|endoftext|>"] = 262;
  check_vocab(v.dump(), "the same id 262");
  v = small_vocab();
  v.erase(piece(" "));
  v["extra"] = 32;
  check_vocab(v.dump(), "no token for byte 32");

  write_text(vocab, small_vocab().dump());
  const auto check_merges = [&](const std::string& contents, const std::string& part) {
    write_text(merges, contents);
    const auto msg = error_message<io_error>([&] { Gpt2Tokenizer::load(vocab, merges); });
    CHECK_MESSAGE(has(msg, merges.string()), msg);
    CHECK_MESSAGE(has(msg, part), msg);
  };
  check_merges("#version: 0.2\nl l\nq\xc3\xa9 x\n", "line 3: 'q\xc3\xa9' is not in the vocabulary");
  check_merges("l l\nl o\n", "line 2: the merge of 'l' and 'o', 'lo', is not in the vocabulary");
  check_merges("l l\nll\n", "line 2 is 'll', not two tokens separated by one space");
  check_merges("l  l\n", "line 1 is");
  check_merges("l l l\n", "line 1 is");
  check_merges("#version: 0.2\n#version: 0.2\n", "line 2");  // only the first line may be the header
  write_text(merges, "\r\n#x\r\n");
  CHECK(has(error_message<io_error>([&] { Gpt2Tokenizer::load(vocab, merges); }), "line 2"));
  write_text(merges, "l l\r\n\r\n");  // CRLF and blank lines are fine
  CHECK(Gpt2Tokenizer::load(vocab, merges).merges() == 1);
}

TEST_CASE("Gpt2Tokenizer: missing, oversized and special files are io_errors naming them") {
  TempDir dir;
  const auto vocab = dir / "vocab.json", merges = dir / "merges.txt";
  CHECK(has(error_message<io_error>([&] { Gpt2Tokenizer::load(vocab, merges); }), "cannot open '" + vocab.string() + "'"));
  write_text(vocab, small_vocab().dump());
  CHECK(has(error_message<io_error>([&] { Gpt2Tokenizer::load(vocab, merges); }), "cannot open '" + merges.string() + "'"));
  CHECK(has(error_message<io_error>([&] { Gpt2Tokenizer::load(dir / "nowhere"); }), "nowhere' is not a folder"));
  CHECK(has(error_message<io_error>([&] { Gpt2Tokenizer::load(dir.path); }), merges.string()));  // a folder without merges.txt
  CHECK(has(error_message<io_error>([&] { Gpt2Tokenizer::load_json(dir / "tokenizer.json"); }), "tokenizer.json"));

  write_text(merges, small_merges());
  fs::resize_file(merges, (std::uintmax_t(1) << 28) + 1);  // sparse: no disk used
  CHECK(has(error_message<io_error>([&] { Gpt2Tokenizer::load(vocab, merges); }), "more than the limit"));
  fs::remove(merges);
  REQUIRE(::mkfifo(merges.c_str(), 0600) == 0);  // refused without waiting for a writer
  CHECK(has(error_message<io_error>([&] { Gpt2Tokenizer::load(vocab, merges); }), "merges.txt' is not a regular file"));
}

TEST_CASE("Gpt2Tokenizer: a tokenizer.json of another kind, or malformed, is an io_error naming file and field") {
  TempDir dir;
  const auto file = dir / "tokenizer.json";
  const auto check = [&](const json& j, const std::string& part) {
    write_text(file, j.dump());
    const auto msg = error_message<io_error>([&] { Gpt2Tokenizer::load_json(file); });
    CHECK_MESSAGE(has(msg, file.string()), msg);
    CHECK_MESSAGE(has(msg, part), msg);
  };
  const auto base = small_tokenizer_json();
  auto j = base;
  j["model"]["type"] = "WordPiece";
  check(j, "model.type is \"WordPiece\", not \"BPE\"");
  j = base;
  j["model"].erase("type");
  check(j, "model.type is null, not \"BPE\"");
  j = base;
  j.erase("model");
  check(j, "no \"model\"");
  check(json::array(), "not an object");
  j = base;
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  check(j, "pre_tokenizer.type is \"Metaspace\", not \"ByteLevel\"");
  j = base;
  j["pre_tokenizer"]["add_prefix_space"] = true;
  check(j, "pre_tokenizer.add_prefix_space is true");
  j = base;
  j["pre_tokenizer"] = nullptr;
  check(j, "no pre_tokenizer");
  j = base;
  j["normalizer"] = {{"type", "NFC"}};
  check(j, "normalizer is {\"type\":\"NFC\"}");
  j = base;
  j["post_processor"] = {{"type", "TemplateProcessing"}};
  check(j, "post_processor.type is \"TemplateProcessing\"");
  j = base;
  j["decoder"] = {{"type", "Metaspace"}};
  check(j, "decoder.type");
  j = base;
  j["model"]["dropout"] = 0.1;
  check(j, "model.dropout is 0.1");
  j = base;
  j["model"]["byte_fallback"] = true;
  check(j, "model.byte_fallback is true");
  j = base;
  j["model"]["ignore_merges"] = true;
  check(j, "model.ignore_merges is true");
  j = base;
  j["model"]["continuing_subword_prefix"] = "##";
  check(j, "model.continuing_subword_prefix is \"##\"");
  j = base;
  j["model"]["vocab"] = json::array();
  check(j, "model.vocab is a JSON array");
  j = base;
  j["model"]["merges"] = "l l";
  check(j, "model.merges is \"l l\", not an array");
  j = base;
  j["model"]["merges"].push_back(7);
  check(j, "model.merges[7] is 7");
  j = base;
  j["model"]["merges"].push_back(json::array({"l", "z\xc3\xa9"}));
  check(j, "model.merges[7]: 'z\xc3\xa9' is not in the vocabulary");
  j = base;
  j["added_tokens"] = {{{"id", 5}, {"content", "<x>"}, {"special", true}}};
  check(j, "added_tokens[0] '<x>' has id 5, which model.vocab gives to another token");
  j = base;
  j["added_tokens"] = {{{"id", 300}, {"content", "<x>"}, {"special", true}}};
  check(j, "added_tokens[0].id is 300, outside [0, 265)");
  j = base;
  j["added_tokens"].push_back({{"id", 264}, {"content", "<|endoftext|>"}, {"special", true}});
  check(j, "listed twice");
  // A merge into an added token's text: Hugging Face refuses it, and it would break decode(encode(s)) == s.
  j = base;
  j["added_tokens"].push_back({{"id", t_eot + 1}, {"content", "qq"}, {"special", false}});
  j["model"]["merges"].push_back("q q");
  check(j, "the merge of 'q' and 'q', 'qq', is not in the vocabulary");
  j = base;
  j["added_tokens"].push_back({{"id", 264}, {"content", "<a>"}});
  j["added_tokens"].push_back({{"id", 264}, {"content", "<b>"}});
  check(j, "added_tokens[2] '<b>' has id 264, which another added token has");
  j = base;
  j["added_tokens"].push_back({{"id", 264}, {"content", ""}});
  check(j, "empty content");
  j = base;
  j["added_tokens"].push_back({{"id", 265}, {"content", "<gap>"}});
  j["added_tokens"].push_back({{"id", 266}, {"content", "<gap2>"}});
  check(j, "no token has id 264");
  j = base;
  j["added_tokens"][0]["lstrip"] = true;
  check(j, "added_tokens[0].lstrip is true");
  j = base;
  j["added_tokens"] = {{{"id", 263}}};
  check(j, "added_tokens[0].content is null");
  j = base;
  j["added_tokens"] = json::object();
  check(j, "added_tokens is {}, not an array");
}
