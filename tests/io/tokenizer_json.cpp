// rlhf::io::HfTokenizer on small hand-made tokenizer.json files: each pipeline stage's behaviour on cases whose
// ids follow from Hugging Face tokenizers' rules (Split's five behaviors and invert, Digits, Metaspace,
// normalizers, added tokens' lstrip/rstrip/single_word/normalized, byte_fallback, unk and fuse_unk,
// continuing_subword_prefix, ignore_merges, templates, decoders), and the refusals: every component that is not
// implemented, named; hostile files; text that is not UTF-8. The real files are in tokenizer_json_parity.cpp.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/bytes.hpp"
#include "support/python.hpp"  // skip_exit_code
#include "support/temp_dir.hpp"

#ifndef RLHF_HAVE_TOKENIZERS
TEST_CASE("skipped without PCRE2 and utf8proc") {
  std::printf("skipped: built without rlhf::tokenizers (libpcre2-dev, libutf8proc-dev)\n");
  std::fflush(stdout);
  std::_Exit(rlhf::test::skip_exit_code);
}
#else
#include "rlhf/io/tokenizer/hf_tokenizer.hpp"

using json = nlohmann::json;
using rlhf::io::HfTokenizer;
using ids = std::vector<rlhf::token_id>;

namespace {

// A BPE tokenizer.json over `tokens` (ids in order) and `merges`; no other stage.
json doc(const std::vector<std::string>& tokens, const std::vector<std::string>& merges = {}) {
  json vocab = json::object();
  for (std::size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  return {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", json::array()},
          {"normalizer", nullptr}, {"pre_tokenizer", nullptr}, {"post_processor", nullptr}, {"decoder", nullptr},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
}

HfTokenizer load(const json& d) {
  static const rlhf::test::TempDir dir("tokenizer-json");
  static int n = 0;
  const auto file = dir / ("t" + std::to_string(n++) + ".json");
  rlhf::test::write_bytes(file, d.dump());
  return HfTokenizer::load(file);
}

std::string load_error_text(const std::string& text) {
  static const rlhf::test::TempDir dir("tokenizer-json-bad");
  const auto file = dir / "tokenizer.json";
  rlhf::test::write_bytes(file, text);
  try {
    HfTokenizer::load(file);
  } catch (const rlhf::io_error& e) {
    return e.what();
  }
  return "(loaded)";
}
std::string load_error(const json& d) { return load_error_text(d.dump()); }

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

json split(const std::string& behavior, bool invert = false) {
  return {{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior}, {"invert", invert}};
}

}  // namespace

TEST_CASE("BPE merges lowest rank first, leftmost among equal ranks") {
  // a b c; merges: "b c" (0), "a b" (1): "abc" -> a + bc
  const auto tok = load(doc({"a", "b", "c", "bc", "ab", "abc"}, {"b c", "a b"}));
  CHECK(tok.encode("abc") == ids{0, 3});
  CHECK(tok.encode("abab") == ids{4, 4});
  CHECK(tok.decode(ids{0, 3}) == "a bc");  // no decoder: tokens joined by a space, as Hugging Face does
  CHECK(tok.vocab_size() == 6);
}

TEST_CASE("Split: each behavior and invert") {
  // a - b and the merges "a -" (0), "- b" (1), "- -" (2)
  auto d = doc({"a", "-", "b", "a-", "-b", "--"}, {"a -", "- b", "- -"});
  CHECK(load(d).encode("a-b") == ids{3, 2});  // no split: "a -" merges first
  d["pre_tokenizer"] = split("Isolated");
  CHECK(load(d).encode("a-b") == ids{0, 1, 2});
  d["pre_tokenizer"] = split("Removed");
  CHECK(load(d).encode("a-b") == ids{0, 2});
  d["pre_tokenizer"] = split("MergedWithPrevious");
  CHECK(load(d).encode("a-b") == ids{3, 2});
  d["pre_tokenizer"] = split("MergedWithNext");
  CHECK(load(d).encode("a-b") == ids{0, 4});
  d["pre_tokenizer"] = split("Contiguous");
  CHECK(load(d).encode("a--b") == ids{0, 5, 2});
  d["pre_tokenizer"] = split("Isolated");
  CHECK(load(d).encode("a--b") == ids{0, 1, 1, 2});
  d["pre_tokenizer"] = split("Removed", true);  // the matches are kept, the rest removed
  CHECK(load(d).encode("a-b--") == ids{1, 1, 1});
  d["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\p{L}+"}}}, {"behavior", "Removed"}, {"invert", false}};
  CHECK(load(d).encode("a-b") == ids{1});
}

TEST_CASE("Digits, Punctuation, Whitespace, WhitespaceSplit, Sequence") {
  auto d = doc({"a", "1", "2", "3", "12", " ", "!", "a1"}, {"a 1", "1 2"});
  CHECK(load(d).encode("a123") == ids{7, 2, 3});
  d["pre_tokenizer"] = {{"type", "Digits"}, {"individual_digits", false}};
  CHECK(load(d).encode("a123") == ids{0, 4, 3});
  d["pre_tokenizer"] = {{"type", "Digits"}, {"individual_digits", true}};
  CHECK(load(d).encode("a123") == ids{0, 1, 2, 3});
  d["pre_tokenizer"] = {{"type", "WhitespaceSplit"}};
  CHECK(load(d).encode(" a1  12 ") == ids{7, 4});
  d["pre_tokenizer"] = {{"type", "Whitespace"}};  // \w+|[^\w\s]+
  CHECK(load(d).encode("a1 !!a1") == ids{7, 6, 6, 7});
  d["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Punctuation"}}, {{"type", "Digits"}, {"individual_digits", true}}}}};
  CHECK(load(d).encode("a1!12") == ids{0, 1, 6, 1, 2});
}

TEST_CASE("Metaspace pre-tokenizer and decoder") {
  const std::string m = "\xE2\x96\x81";  // ▁
  auto d = doc({m, "a", "b", m + "a", m + "b"}, {m + " a", m + " b"});
  d["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", m}, {"prepend_scheme", "always"}, {"split", true}};
  d["decoder"] = {{"type", "Metaspace"}, {"replacement", m}, {"prepend_scheme", "always"}, {"split", true}};
  const auto tok = load(d);
  CHECK(tok.encode("a b") == ids{3, 4});
  CHECK(tok.encode("a  b") == ids{3, 0, 4});
  CHECK(tok.decode(tok.encode("a b")) == "a b");
  d["pre_tokenizer"]["prepend_scheme"] = "never";
  CHECK(load(d).encode("a b") == ids{1, 4});
  d["added_tokens"] = {{{"id", 5}, {"content", "<x>"}, {"special", true}}};
  d["pre_tokenizer"]["prepend_scheme"] = "first";  // only the piece that begins the text
  CHECK(load(d).encode("a<x>a") == ids{3, 5, 1});
}

TEST_CASE("normalizers: NFKC, NFD, Lowercase, Strip, Prepend, Replace, Sequence") {
  auto d = doc({"a", "b", "e", "\xCC\x81", "\xC3\xA9", "_"});  // ..., U+0301, é
  d["normalizer"] = {{"type", "NFD"}};
  CHECK(load(d).encode("\xC3\xA9") == ids{2, 3});
  d["normalizer"] = {{"type", "NFC"}};
  CHECK(load(d).encode("e\xCC\x81") == ids{4});
  d["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFKC"}}, {{"type", "Lowercase"}}}}};
  CHECK(load(d).encode("\xEF\xBC\xA1" "B") == ids{0, 1});  // fullwidth A, B
  d["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}},
                                                            {{"type", "Prepend"}, {"prepend", "_"}},
                                                            {{"type", "Replace"}, {"pattern", {{"Regex", "b+"}}}, {"content", "a"}}}}};
  CHECK(load(d).encode(" \t abbb b\n") == ids{5, 0, 0, 0});  // spaces inside stay, and no token has them
}

TEST_CASE("added tokens: before the pipeline, longest first, lstrip, rstrip, single_word, normalized") {
  auto d = doc({"a", "b", " "});
  d["added_tokens"] = {{{"id", 3}, {"content", "<m>"}, {"special", true}, {"lstrip", true}, {"rstrip", true}},
                       {{"id", 4}, {"content", "<m>>"}, {"special", false}, {"normalized", false}},
                       {{"id", 5}, {"content", "ab"}, {"special", false}, {"single_word", true}},
                       {{"id", 6}, {"content", "BA"}, {"special", false}, {"normalized", true}}};
  d["normalizer"] = {{"type", "Lowercase"}};
  const auto tok = load(d);
  CHECK(tok.encode("a <m> b") == ids{0, 3, 1});   // the spaces go with the token
  CHECK(tok.encode("a<m>>b") == ids{0, 4, 1});    // the longest at one position
  CHECK(tok.encode("ab a ab") == ids{5, 2, 0, 2, 5});
  CHECK(tok.encode("aab") == ids{0, 0, 1});        // single_word: not inside a word
  CHECK(tok.encode("BA") == ids{6});               // normalized: its lowercased content matched in the
  CHECK(tok.encode("bBa") == ids{1, 6});           // lowercased text
  CHECK(tok.encode("<M>") == ids{});               // the others as given: "<M>" is not "<m>"
  CHECK(tok.encode("<m>", {.special = rlhf::io::SpecialTokens::as_text}).size() == 0);  // <, m, > are not tokens
  CHECK_THROWS_AS(tok.encode("a<m>", {.special = rlhf::io::SpecialTokens::forbid}), rlhf::value_error);
  CHECK(tok.is_special(3));
  CHECK(!tok.is_special(4));
  CHECK(tok.id_of("<m>>") == 4);
  CHECK(tok.decode(ids{0, 3, 1}, true) == "a b");
}

TEST_CASE("byte_fallback, unk_token, fuse_unk, continuing_subword_prefix, end_of_word_suffix, ignore_merges") {
  auto d = doc({"<unk>", "a", "<0xC3>", "<0xA9>"});
  d["model"]["byte_fallback"] = true;
  d["model"]["unk_token"] = "<unk>";
  CHECK(load(d).encode("a\xC3\xA9" "a") == ids{1, 2, 3, 1});
  CHECK(load(d).encode("a\xC3\xA8" "a") == ids{1, 0, 1});  // è lacks <0xA8>: the unknown token
  d["model"]["byte_fallback"] = false;
  CHECK(load(d).encode("\xC3\xA9\xC3\xA9" "a") == ids{0, 0, 1});
  d["model"]["fuse_unk"] = true;
  CHECK(load(d).encode("\xC3\xA9\xC3\xA9" "a") == ids{0, 1});
  d["decoder"] = {{"type", "Sequence"}, {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
  CHECK(load(d).decode(ids{1, 2, 3, 1}) == "a\xC3\xA9" "a");
  CHECK(load(d).decode(ids{2, 1}) == "\xEF\xBF\xBD" "a");  // a lone byte: U+FFFD

  auto p = doc({"a", "##b", "ab", "b"}, {"a ##b"});
  p["model"]["continuing_subword_prefix"] = "##";
  CHECK(load(p).encode("ab") == ids{2});
  CHECK(load(p).encode("abb") == ids{2, 1});

  auto s = doc({"a", "b</w>", "ab</w>", "b"}, {"a b</w>"});
  s["model"]["end_of_word_suffix"] = "</w>";
  CHECK(load(s).encode("ab") == ids{2});

  auto g = doc({"a", "b", "c", "ab", "bc", "abc"}, {"b c", "a b"});  // "abc" merges to a + bc, no further
  CHECK(load(g).encode("abc") == ids{0, 4});
  g["model"]["ignore_merges"] = true;  // a word that is a token is that token
  CHECK(load(g).encode("abc") == ids{5});
}

TEST_CASE("post-processor templates and decoders") {
  auto d = doc({"<s>", "</s>", "a", " "});
  d["post_processor"] = {{"type", "Sequence"}, {"processors", {{{"type", "ByteLevel"}}, {{"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                  {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {0}}, {"tokens", {"<s>"}}}}, {"</s>", {{"id", "</s>"}, {"ids", {1}}, {"tokens", {"</s>"}}}}}}}}}};
  d["decoder"] = {{"type", "Sequence"}, {"decoders", {{{"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", "A"}},
                                                      {{"type", "Fuse"}}, {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 1}}}}};
  const auto tok = load(d);
  CHECK(tok.encode("a") == ids{2});
  CHECK(tok.encode("a", {.add_special_tokens = true}) == ids{0, 2, 1});
  CHECK(tok.encode("", {.add_special_tokens = true}) == ids{0, 1});
  CHECK(tok.decode(ids{3, 2, 3, 3}) == "A ");
  CHECK_THROWS_AS(tok.decode(ids{4}), rlhf::value_error);
  CHECK_THROWS_AS(tok.decode(ids{-1}), rlhf::value_error);
}

TEST_CASE("encode from several threads at once gives the ids of one thread, with the word cache filling and emptying") {
  auto d = doc({"a", "b", " ", "ab", "ba", "aba"}, {"a b", "b a", "ab a"});
  d["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}}, {"behavior", "MergedWithNext"}};
  rlhf::test::TempDir dir("tokenizer-json-threads");
  rlhf::test::write_bytes(dir / "tokenizer.json", d.dump());
  const auto tok = HfTokenizer::load(dir.path, {.cache_words = 8});  // a folder; a cache far smaller than the words
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) {
    std::string t;
    for (int k = 0; k < 1 + i % 13; ++k) t += std::string(std::size_t(1 + (i * 7 + k) % 5), "ab"[(i + k) % 2]) + (k % 3 ? " " : "  ");
    texts.push_back(t);
  }
  std::vector<ids> want;
  for (const auto& t : texts) want.push_back(HfTokenizer::load(dir.path, {.cache_words = 0}).encode(t));
  std::vector<int> wrong(4, 0);
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w)
    threads.emplace_back([&, w] {
      for (int round = 0; round < 20; ++round)
        for (std::size_t i = 0; i < texts.size(); ++i) wrong[std::size_t(w)] += tok.encode(texts[i]) != want[i];
    });
  for (auto& t : threads) t.join();
  CHECK(wrong == std::vector<int>(4, 0));
  CHECK(tok.decode(tok.encode(texts[5])) != "");
}

TEST_CASE("text that is not UTF-8 is refused, naming the byte") {
  const auto tok = load(doc({"a"}));
  try {
    tok.encode(std::string("aa\xC3(", 4));
    FAIL("no error");
  } catch (const rlhf::value_error& e) {
    CHECK(has(e.what(), "not valid UTF-8 at byte 2"));
  }
}

TEST_CASE("each component that is not implemented is refused by name") {
  auto d = doc({"a"});
  const auto refused = [&](const char* field, json value, const std::string& part) {
    json c = d;
    c[field] = std::move(value);
    const std::string e = load_error(c);
    CHECK_MESSAGE(has(e, part), e);
  };
  refused("normalizer", {{"type", "BertNormalizer"}}, "normalizer.type is \"BertNormalizer\", which is not implemented");
  refused("normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "StripAccents"}}}}},
          "normalizer.normalizers[1].type is \"StripAccents\"");
  refused("pre_tokenizer", {{"type", "BertPreTokenizer"}}, "pre_tokenizer.type is \"BertPreTokenizer\"");
  refused("pre_tokenizer", {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}},
          "which PCRE2 refuses");
  refused("pre_tokenizer", {{"type", "Split"}, {"pattern", {{"String", "x"}}}, {"behavior", "Sideways"}}, "pre_tokenizer.behavior is \"Sideways\"");
  refused("post_processor", {{"type", "RobertaProcessing"}}, "post_processor.type is \"RobertaProcessing\"");
  refused("decoder", {{"type", "WordPiece"}}, "decoder.type is \"WordPiece\"");
  refused("truncation", {{"max_length", 5}}, "truncation is");
  refused("padding", {{"strategy", "BatchLongest"}}, "padding is");
  json m = d;
  m["model"]["type"] = "Unigram";
  CHECK(has(load_error(m), "model.type is \"Unigram\", which is not implemented (implemented: BPE)"));
  m = d;
  m["model"]["dropout"] = 0.1;
  CHECK(has(load_error(m), "BPE dropout is not implemented"));
}

TEST_CASE("hostile files are refused with a message naming the file and the place") {
  CHECK(has(load_error_text("{"), "not valid JSON"));
  CHECK(has(load_error_text("[]"), "the top level is"));
  CHECK(has(load_error_text(std::string(100, '[')), "nests more than"));
  CHECK(has(load_error_text(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "merges": []}})"), "appears twice"));
  CHECK(has(load_error_text(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}})"), "gives id 0 to two tokens"));
  CHECK(has(load_error_text(R"({"model": {"type": "BPE", "vocab": {"a": "0"}, "merges": []}})"), "not an integer"));
  CHECK(has(load_error_text(R"({"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}})"), "outside"));
  CHECK(has(load_error_text(R"({"model": {"type": "BPE", "vocab": {"a": 65538}, "merges": []}})"), "outside [0, 65537]"));
  CHECK(load_error_text(R"({"model": {"type": "BPE", "vocab": {"a": 65537}, "merges": []}})") == "(loaded)");
  CHECK(has(load_error_text(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a c"]}})"), "model.merges[0] names 'c'"));
  CHECK(has(load_error_text(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a a"]}})"), "makes 'aa'"));
  CHECK(has(load_error_text(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a"]]}})"), "not [\"a\", \"b\"]"));
  CHECK(has(load_error_text(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [5]}})"), "model.merges[0] is 5"));
  CHECK(has(load_error_text(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [{"id": 1}]})"),
            "added_tokens[0].content is missing"));
  CHECK(has(load_error_text(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "<unk>"}})"),
            "model.unk_token '<unk>' is not in model.vocab"));
  CHECK(has(load_error_text(R"({"model": {"type": "BPE", "vocab": [], "merges": []}})"), "model.vocab is"));
}
#endif
