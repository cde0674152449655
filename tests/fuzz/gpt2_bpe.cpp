// libFuzzer target: rlhf::io::Gpt2Tokenizer on arbitrary bytes. The input, cut at its first NUL byte into A and B
// (B empty without one), is read as a tokenizer.json (A) and as vocab.json (A) + merges.txt (B); an accepted
// tokenizer encodes the whole input (special tokens allowed, as text and forbidden) and decodes the ids back.
// A fixed tokenizer (the 256 byte tokens, a few merges and <|endoftext|>) also encodes the input, which must
// decode to the same bytes (decode(encode(s)) == s for every s, docs/io/gpt2_bpe.md); a difference aborts.
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "rlhf/io/gpt2_bpe.hpp"

namespace {

using rlhf::io::Gpt2Tokenizer;
using rlhf::io::SpecialTokens;

const Gpt2Tokenizer& fixed_tokenizer() {
  static const Gpt2Tokenizer tok = [] {
    using rlhf::io::detail::gpt2_byte_piece;
    nlohmann::json vocab = nlohmann::json::object(), merges = nlohmann::json::array();
    for (int b = 0; b < 256; ++b) vocab[gpt2_byte_piece(std::string(1, char(b)))] = b;
    for (const char* m : {" t", "he", " the", "in", "er", " a", "on", "  ", "    "}) {
      // each merge joins the first byte (or the two-byte " t") with the rest
      const std::string s = m;
      const std::size_t cut = s == " the" ? 2 : s == "    " ? 2 : 1;
      const std::string a = gpt2_byte_piece(s.substr(0, cut)), b = gpt2_byte_piece(s.substr(cut));
      const std::size_t id = vocab.size();
      vocab[gpt2_byte_piece(s)] = id;
      merges.push_back(a + " " + b);
    }
    const nlohmann::json doc = {
        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}},
        {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
        {"decoder", {{"type", "ByteLevel"}}},
        {"added_tokens", {{{"id", vocab.size()}, {"content", "<|endoftext|>"}, {"special", true}}}}};
    static fuzz::InputFile file;
    const std::string text = doc.dump();
    return Gpt2Tokenizer::load_json(file.write(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
  }();
  return tok;
}

void exercise(const Gpt2Tokenizer& tok, std::string_view text) {
  for (const auto mode : {SpecialTokens::allow, SpecialTokens::as_text, SpecialTokens::forbid})
    fuzz::refuse_or_accept([&] {
      const auto ids = tok.encode(text, mode);
      (void)tok.decode(ids);
      (void)tok.decode(ids, true);
    });
  (void)tok.pre_tokenize(text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static fuzz::InputFile second;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t nul = input.find('\0');
  const std::size_t a = nul == std::string_view::npos ? size : nul;
  const std::size_t b_start = nul == std::string_view::npos ? size : nul + 1;
  const std::string& first_path = fuzz::input_file().write(data, a);
  const std::string& second_path = second.write(data + b_start, size - b_start);

  rlhf::io::Gpt2Options small_cache;
  small_cache.cache_words = 4;  // full, and emptied, within one input
  fuzz::refuse_or_accept([&] { exercise(Gpt2Tokenizer::load_json(first_path, small_cache), input); });
  fuzz::refuse_or_accept([&] { exercise(Gpt2Tokenizer::load(first_path, second_path, small_cache), input); });

  const Gpt2Tokenizer& tok = fixed_tokenizer();
  for (const auto mode : {SpecialTokens::allow, SpecialTokens::as_text}) {
    const auto ids = tok.encode(input, mode);
    if (tok.decode(ids) != input) {
      std::fprintf(stderr, "decode(encode(s)) != s for the fixed tokenizer (%zu ids)\n", ids.size());
      std::abort();
    }
  }
  exercise(tok, input);
  return 0;
}
