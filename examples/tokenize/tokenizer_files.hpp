#pragma once
// The tokenizer in a folder, whichever files it holds: tokenizer.json (rlhf::io::HfTokenizer), else GPT-2's
// vocab.json + merges.txt (rlhf::io::Gpt2Tokenizer, which has no special tokens to add).
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "rlhf/io/gpt2_bpe.hpp"
#include "rlhf/io/tokenizer/hf_tokenizer.hpp"

namespace tokenize {

class FolderTokenizer {
 public:
  explicit FolderTokenizer(const std::filesystem::path& dir) : tok_(load(dir)) {}

  std::vector<rlhf::token_id> encode(std::string_view text, bool add_special_tokens) const {
    if (const auto* hf = std::get_if<rlhf::io::HfTokenizer>(&tok_))
      return hf->encode(text, {.add_special_tokens = add_special_tokens});
    return std::get<rlhf::io::Gpt2Tokenizer>(tok_).encode(text);
  }
  std::string decode(std::span<const rlhf::token_id> ids) const {
    return std::visit([&](const auto& t) { return t.decode(ids); }, tok_);
  }

 private:
  using Any = std::variant<rlhf::io::HfTokenizer, rlhf::io::Gpt2Tokenizer>;
  static Any load(const std::filesystem::path& dir) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(dir, ec) || std::filesystem::exists(dir / "tokenizer.json", ec))
      return rlhf::io::HfTokenizer::load(dir);
    return rlhf::io::Gpt2Tokenizer::load(dir);  // vocab.json + merges.txt, or an io_error naming what is missing
  }
  Any tok_;
};

}  // namespace tokenize
