// libFuzzer target: rlhf::io::HfTokenizer on arbitrary bytes. The input is read as a tokenizer.json; an accepted
// tokenizer encodes the input as text (special tokens allowed, as text and forbidden; with and without the
// template) and decodes the ids back. Two fixed tokenizers encode the input too: a byte-level one, for which
// decode(encode(s)) == s must hold on valid UTF-8 (a difference aborts), and one with most stages at once (NFKC,
// Lowercase, a Split regex, Digits, Punctuation, Metaspace, byte fallback, unk, added tokens with lstrip, rstrip and
// single_word, a template, the SentencePiece decoders), which must only accept or refuse by rlhf::error.
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "rlhf/io/tokenizer/hf_tokenizer.hpp"

namespace {

using json = nlohmann::json;
using rlhf::io::HfTokenizer;
using rlhf::io::SpecialTokens;

HfTokenizer load_doc(const json& doc) {
  static fuzz::InputFile file;
  const std::string text = doc.dump();
  return HfTokenizer::load(file.write(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()),
                           {.cache_words = 4});  // full, and emptied, within one input
}

const HfTokenizer& byte_level() {
  static const HfTokenizer tok = [] {
    using rlhf::io::detail::gpt2_byte_piece;
    json vocab = json::object(), merges = json::array();
    for (int b = 0; b < 256; ++b) vocab[gpt2_byte_piece(std::string(1, char(b)))] = b;
    for (const char* m : {" t", "he", "in", "er", " a", "on", "  "}) {
      const std::string s = m;
      vocab[gpt2_byte_piece(s)] = vocab.size();
      merges.push_back(gpt2_byte_piece(s.substr(0, 1)) + " " + gpt2_byte_piece(s.substr(1)));
    }
    return load_doc({{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"ignore_merges", true}}},
                     {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", {
                         {{"type", "Split"}, {"pattern", {{"Regex", R"(\p{N}{1,3}| ?\p{L}+|\s+(?!\S)|\s+|[^\s\p{L}\p{N}]+)"}}}, {"behavior", "Isolated"}},
                         {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
                     {"decoder", {{"type", "ByteLevel"}}},
                     {"added_tokens", {{{"id", 263}, {"content", "<|end|>"}, {"special", true}}}}});
  }();
  return tok;
}

const HfTokenizer& many_stages() {
  static const HfTokenizer tok = [] {
    const std::string m = "\xE2\x96\x81";
    json vocab = json::object();
    for (const char* t : {"<unk>", "<s>", "</s>", "a", "b", "e", "1", "2", "!", "<0xC3>", "<0xA9>"}) vocab[t] = vocab.size();
    for (const std::string& t : {m, m + "a", m + "b", std::string("ab")}) vocab[t] = vocab.size();
    return load_doc({{"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "NFKC"}}, {{"type", "Lowercase"}},
                                                                           {{"type", "Strip"}, {"strip_left", false}, {"strip_right", true}}}}}},
                     {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", {
                         {{"type", "Split"}, {"pattern", {{"Regex", R"((?i:'s|'t)|[^\r\n\p{L}\p{N}]?\p{L}+|\s*[\r\n]+)"}}}, {"behavior", "MergedWithNext"}, {"invert", true}},
                         {{"type", "Digits"}, {"individual_digits", true}}, {{"type", "Punctuation"}, {"behavior", "Contiguous"}},
                         {{"type", "Metaspace"}, {"replacement", m}, {"prepend_scheme", "first"}}}}}},
                     {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {m + " a", m + " b", "a b"}}, {"unk_token", "<unk>"},
                                {"fuse_unk", true}, {"byte_fallback", true}}},
                     {"post_processor", {{"type", "TemplateProcessing"}, {"single", {{{"SpecialToken", {{"id", "<s>"}}}}, {{"Sequence", {{"id", "A"}}}}}},
                                         {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}}}}}}},
                     {"decoder", {{"type", "Sequence"}, {"decoders", {{{"type", "Replace"}, {"pattern", {{"String", m}}}, {"content", " "}},
                                                                      {{"type", "ByteFallback"}}, {{"type", "Fuse"}},
                                                                      {{"type", "Strip"}, {"content", " "}, {"start", 1}}}}}},
                     {"added_tokens", {{{"id", 1}, {"content", "<s>"}, {"special", true}, {"lstrip", true}},
                                       {{"id", 2}, {"content", "</s>"}, {"special", true}, {"rstrip", true}},
                                       {{"id", 14}, {"content", "ab"}, {"special", false}, {"single_word", true}}}}});
  }();
  return tok;
}

void exercise(const HfTokenizer& tok, std::string_view text) {
  for (const auto mode : {SpecialTokens::allow, SpecialTokens::as_text, SpecialTokens::forbid})
    for (const bool add : {false, true})
      fuzz::refuse_or_accept([&] {
        const auto ids = tok.encode(text, {.add_special_tokens = add, .special = mode});
        (void)tok.decode(ids);
        (void)tok.decode(ids, true);
      });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string& path = fuzz::input_file().write(data, size);
  fuzz::refuse_or_accept([&] { exercise(HfTokenizer::load(path, {.cache_words = 4}), input); });

  if (rlhf::io::detail::first_invalid_utf8(input) == std::string_view::npos) {
    const auto ids = byte_level().encode(input);
    if (byte_level().decode(ids) != input) {
      std::fprintf(stderr, "decode(encode(s)) != s for the byte-level tokenizer (%zu ids)\n", ids.size());
      std::abort();
    }
  }
  exercise(byte_level(), input);
  exercise(many_stages(), input);
  return 0;
}
