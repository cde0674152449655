#pragma once
// The decoder of a tokenizer.json: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace and Sequence, each
// turning the list of token strings into another (Hugging Face's decode_chain); the result is their
// concatenation. Others (WordPiece, BPEDecoder, CTC) are refused by name.
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "rlhf/io/gpt2_bpe.hpp"  // detail::gpt2_char_byte
#include "rlhf/io/tokenizer/json_fields.hpp"
#include "rlhf/io/tokenizer/regex.hpp"
#include "rlhf/io/tokenizer/utf8.hpp"

namespace rlhf::io::detail {

class Decoder {
 public:
  Decoder() = default;
  Decoder(const nlohmann::json& config, const JsonFields& f, std::string_view path) { read(config, f, path); }
  bool empty() const { return steps_.empty(); }

  void apply(std::vector<std::string>& tokens) const {
    for (const auto& step : steps_) std::visit([&](const auto& s) { s.apply(tokens); }, step);
  }

 private:
  // Each token's characters as the bytes they stand for (a token with a character outside the byte map stays as
  // it is); all of them joined, invalid UTF-8 replaced by U+FFFD.
  struct ByteLevel {
    void apply(std::vector<std::string>& tokens) const {
      std::string bytes;
      for (const auto& t : tokens) {
        const std::size_t mark = bytes.size();
        bool mapped = true;
        for (std::size_t i = 0; i < t.size() && mapped;) {
          const CodePoint cp = code_point_at(t, i);
          const int b = gpt2_char_byte(cp.c);
          if (b < 0) mapped = false;
          else bytes += char(b);
          i += cp.len;
        }
        if (!mapped) bytes.resize(mark), bytes += t;
      }
      tokens.assign(1, utf8_lossy(bytes));
    }
  };
  struct Metaspace {  // the replacement character back to a space; dropped in the first token when prepended
    std::string replacement;
    bool prepended;
    void apply(std::vector<std::string>& tokens) const {
      for (std::size_t i = 0; i < tokens.size(); ++i) {
        std::string out;
        const std::string& t = tokens[i];
        for (std::size_t k = 0; k < t.size();) {
          if (t.compare(k, replacement.size(), replacement) == 0) {
            if (!(i == 0 && prepended)) out += ' ';
            k += replacement.size();
          } else {
            out += t[k++];
          }
        }
        tokens[i] = std::move(out);
      }
    }
  };
  // Runs of <0xNN> tokens become the text of their bytes; bytes that are not valid UTF-8 become one U+FFFD each.
  struct ByteFallback {
    static int byte_of(const std::string& t) {
      if (t.size() != 6 || !t.starts_with("<0x") || t[5] != '>') return -1;
      const auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
      const int h = hex(t[3]), l = hex(t[4]);
      return h < 0 || l < 0 ? -1 : h * 16 + l;
    }
    void apply(std::vector<std::string>& tokens) const {
      std::vector<std::string> out;
      std::string bytes;
      std::size_t count = 0;
      const auto flush = [&] {
        if (count == 0) return;
        if (first_invalid_utf8(bytes) == std::string::npos) {
          out.push_back(bytes);
        } else {
          for (std::size_t k = 0; k < count; ++k) out.emplace_back(replacement_character);
        }
        bytes.clear();
        count = 0;
      };
      for (auto& t : tokens) {
        if (const int b = byte_of(t); b >= 0) {
          bytes += char(b);
          ++count;
        } else {
          flush();
          out.push_back(std::move(t));
        }
      }
      flush();
      tokens = std::move(out);
    }
  };
  struct Fuse {
    void apply(std::vector<std::string>& tokens) const {
      std::string all;
      for (const auto& t : tokens) all += t;
      tokens.assign(1, std::move(all));
    }
  };
  struct Strip {  // up to `start` leading and `stop` trailing `content` characters of each token
    std::string content;
    std::size_t start, stop;
    void apply(std::vector<std::string>& tokens) const {
      for (auto& t : tokens) {
        std::size_t b = 0, e = t.size();
        for (std::size_t k = 0; k < start && t.compare(b, content.size(), content) == 0 && b < e; ++k) b += content.size();
        for (std::size_t k = 0; k < stop && e >= b + content.size() && t.compare(e - content.size(), content.size(), content) == 0; ++k)
          e -= content.size();
        t = t.substr(b, e - b);
      }
    }
  };
  struct Replace {
    Pattern pattern;
    std::string content;
    void apply(std::vector<std::string>& tokens) const {
      for (auto& t : tokens) t = pattern.replace(t, content);
    }
  };
  using Step = std::variant<ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace>;

  void read(const nlohmann::json& c, const JsonFields& f, std::string_view path) {
    if (c.is_null()) return;
    using J = JsonFields;
    const std::string& type = f.type(c, path);
    if (type == "Sequence") {
      const auto& list = J::get(c, "decoders");
      const std::string where = J::at(path, "decoders");
      if (!list.is_array()) f.bad(where, " is ", json_brief(list), ", not an array");
      for (std::size_t k = 0; k < list.size(); ++k) read(list[k], f, J::at(where, k));
    } else if (type == "ByteLevel") {
      steps_.push_back(ByteLevel{});
    } else if (type == "Metaspace") {
      const std::string replacement = f.text(c, "replacement", path, "\xE2\x96\x81");
      if (replacement.empty()) f.bad(J::at(path, "replacement"), " is empty");
      bool prepended;
      if (J::get(c, "prepend_scheme").is_null()) prepended = f.flag(c, "add_prefix_space", path, true);
      else prepended = f.choice(c, "prepend_scheme", path, "always", {"always", "first", "never"}) != "never";
      steps_.push_back(Metaspace{replacement, prepended});
    } else if (type == "ByteFallback") {
      steps_.push_back(ByteFallback{});
    } else if (type == "Fuse") {
      steps_.push_back(Fuse{});
    } else if (type == "Strip") {
      const std::string content = f.text(c, "content", path, " ");
      if (content.empty() || code_point_at(content, 0).len != content.size())
        f.bad(J::at(path, "content"), " is \"", clip(content), "\", not one character");
      steps_.push_back(Strip{content, std::size_t(f.integer(c, "start", path, 0, 0, 1 << 20)),
                             std::size_t(f.integer(c, "stop", path, 0, 0, 1 << 20))});
    } else if (type == "Replace") {
      steps_.push_back(Replace{Pattern(J::get(c, "pattern"), f, J::at(path, "pattern")), f.text(c, "content", path, "")});
    } else {
      f.unsupported(path, type, "ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence");
    }
  }

  std::vector<Step> steps_;
};

}  // namespace rlhf::io::detail
