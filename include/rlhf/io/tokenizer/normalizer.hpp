#pragma once
// The normalizer of a tokenizer.json: NFC, NFD, NFKC, NFKD (utf8proc, Debian libutf8proc-dev), Lowercase,
// Prepend, Replace, Strip and Sequence, applied to each piece of text between added tokens. Other types
// (BertNormalizer, Precompiled, StripAccents, ...) are refused by name.
#include <utf8proc.h>

#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "rlhf/io/tokenizer/json_fields.hpp"
#include "rlhf/io/tokenizer/regex.hpp"
#include "rlhf/io/tokenizer/utf8.hpp"

namespace rlhf::io::detail {

class Normalizer {
 public:
  Normalizer() = default;  // none: the text as it is
  Normalizer(const nlohmann::json& config, const JsonFields& f, std::string_view path) { read(config, f, path); }

  bool empty() const { return steps_.empty(); }

  // `text` is valid UTF-8 and stays so.
  void apply(std::string& text) const {
    for (const auto& step : steps_) std::visit([&](const auto& s) { s.apply(text); }, step);
  }

 private:
  struct Unicode {  // NFC, NFD, NFKC, NFKD
    utf8proc_option_t options;
    void apply(std::string& text) const {
      bool ascii = true;  // every form leaves ASCII as it is
      for (const char c : text) ascii &= static_cast<unsigned char>(c) < 0x80;
      if (ascii) return;
      utf8proc_uint8_t* out = nullptr;
      const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                  utf8proc_ssize_t(text.size()), &out, utf8proc_option_t(options | UTF8PROC_STABLE));
      if (n < 0) fail<value_error>("tokenizer normalizer: utf8proc: ", utf8proc_errmsg(n));
      text.assign(reinterpret_cast<const char*>(out), std::size_t(n));
      std::free(out);
    }
  };
  // Unicode's lower case of each character (utf8proc's simple mapping), and U+0130 to "i̇" as Rust's
  // str::to_lowercase does. Rust's final-sigma rule (Σ to ς at the end of a word) is not applied.
  struct Lowercase {
    void apply(std::string& text) const {
      std::string out;
      out.reserve(text.size());
      for (std::size_t i = 0; i < text.size();) {
        const auto b = static_cast<unsigned char>(text[i]);
        if (b < 0x80) {
          out += char(b >= 'A' && b <= 'Z' ? b + 32 : b);
          ++i;
          continue;
        }
        const CodePoint cp = code_point_at(text, i);
        i += cp.len;
        if (cp.c == 0x130) {
          out += "i\xCC\x87";
          continue;
        }
        append_utf8(out, char32_t(utf8proc_tolower(utf8proc_int32_t(cp.c))));
      }
      text = std::move(out);
    }
  };
  struct Prepend {
    std::string prefix;
    void apply(std::string& text) const {
      if (!text.empty()) text.insert(0, prefix);
    }
  };
  struct Replace {
    Pattern pattern;
    std::string content;
    void apply(std::string& text) const { text = pattern.replace(text, content); }
  };
  struct Strip {  // Unicode white space at either end
    bool left, right;
    void apply(std::string& text) const {
      std::size_t b = 0, e = text.size();
      if (left)
        while (b < e) {
          const CodePoint cp = code_point_at(text, b);
          if (!is_white_space(cp.c)) break;
          b += cp.len;
        }
      if (right)
        while (e > b) {
          std::size_t s = e - 1;
          while (s > b && (static_cast<unsigned char>(text[s]) & 0xC0) == 0x80) --s;
          if (!is_white_space(code_point_at(text, s).c)) break;
          e = s;
        }
      text = text.substr(b, e - b);
    }
  };
  using Step = std::variant<Unicode, Lowercase, Prepend, Replace, Strip>;

  void read(const nlohmann::json& c, const JsonFields& f, std::string_view path) {
    if (c.is_null()) return;
    const std::string& type = f.type(c, path);
    if (type == "Sequence") {
      const auto& list = JsonFields::get(c, "normalizers");
      if (!list.is_array()) f.bad(JsonFields::at(path, "normalizers"), " is ", json_brief(list), ", not an array");
      for (std::size_t k = 0; k < list.size(); ++k) read(list[k], f, JsonFields::at(JsonFields::at(path, "normalizers"), k));
    } else if (type == "NFC") {
      steps_.push_back(Unicode{utf8proc_option_t(UTF8PROC_COMPOSE)});
    } else if (type == "NFD") {
      steps_.push_back(Unicode{utf8proc_option_t(UTF8PROC_DECOMPOSE)});
    } else if (type == "NFKC") {
      steps_.push_back(Unicode{utf8proc_option_t(UTF8PROC_COMPOSE | UTF8PROC_COMPAT)});
    } else if (type == "NFKD") {
      steps_.push_back(Unicode{utf8proc_option_t(UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT)});
    } else if (type == "Lowercase") {
      steps_.push_back(Lowercase{});
    } else if (type == "Prepend") {
      steps_.push_back(Prepend{f.text(c, "prepend", path, "")});
    } else if (type == "Replace") {
      steps_.push_back(Replace{Pattern(JsonFields::get(c, "pattern"), f, JsonFields::at(path, "pattern")),
                               f.text(c, "content", path, "")});
    } else if (type == "Strip") {
      steps_.push_back(Strip{f.flag(c, "strip_left", path, true), f.flag(c, "strip_right", path, true)});
    } else {
      f.unsupported(path, type, "NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence");
    }
  }

  std::vector<Step> steps_;
};

}  // namespace rlhf::io::detail
