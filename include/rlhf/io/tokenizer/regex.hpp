#pragma once
// The patterns of a tokenizer.json ({"String": s} or {"Regex": r}) and where they match. Regexes run on PCRE2
// (Debian libpcre2-dev) with UTF, Unicode properties (\p{L}, and \s, \w, \d as Unicode classes) and JIT, the
// closest well-kept engine to the Oniguruma that Hugging Face's Rust tokenizers use. The text handed to them is
// valid UTF-8 (the tokenizer checks its input once).
#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "rlhf/core/error.hpp"
#include "rlhf/io/tokenizer/json_fields.hpp"

namespace rlhf::io::detail {

// A part of a text: [start, end) and whether the pattern matched it.
struct Segment {
  std::size_t start, end;
  bool match;
};

class Regex {
 public:
  // Throws io_error through `fields` naming `path` and PCRE2's message when the pattern does not compile.
  Regex(const std::string& pattern, const JsonFields& fields, std::string_view path) : source_(pattern) {
    int code = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &code, &offset, nullptr);
    if (!re) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(code, message, sizeof message);
      fields.bad(path, " is the regex '", clip(pattern), "', which PCRE2 refuses at offset ", offset, ": ",
                 reinterpret_cast<const char*>(message));
    }
    code_.reset(re, pcre2_code_free);
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // when JIT is unavailable, pcre2_match interprets: same results
  }

  // Calls f(start, end) for each match, left to right, as a global search does: after an empty match the next
  // search starts one character later.
  template <class F>
  void for_each_match(std::string_view text, F&& f) const {
    struct Data {
      pcre2_match_data* d;
      ~Data() { pcre2_match_data_free(d); }
    } data{pcre2_match_data_create(1, nullptr)};
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    std::size_t pos = 0;
    while (pos <= text.size()) {
      const int rc = pcre2_match(code_.get(), subject, text.size(), pos, PCRE2_NO_UTF_CHECK, data.d, context());
      if (rc == PCRE2_ERROR_NOMATCH) return;
      if (rc < 0) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(rc, message, sizeof message);
        fail<value_error>("tokenizer regex '", clip(source_), "': matching failed: ",
                          reinterpret_cast<const char*>(message));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.d);
      f(std::size_t(ov[0]), std::size_t(ov[1]));
      if (ov[1] > ov[0]) {
        pos = ov[1];
      } else {  // an empty match: step over one character
        if (ov[1] >= text.size()) return;
        pos = ov[1] + 1;
        while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
      }
    }
  }

 private:
  // A JIT stack larger than PCRE2's default 32 KiB, one per thread: long runs of white space under \s+(?!\S)
  // need more.
  static pcre2_match_context* context() {
    struct Context {
      pcre2_match_context* m = pcre2_match_context_create(nullptr);
      pcre2_jit_stack* stack = pcre2_jit_stack_create(32 << 10, 8 << 20, nullptr);
      Context() { pcre2_jit_stack_assign(m, nullptr, stack); }
      ~Context() {
        pcre2_match_context_free(m);
        pcre2_jit_stack_free(stack);
      }
    };
    thread_local Context c;
    return c.m;
  }

  std::string source_;
  std::shared_ptr<pcre2_code> code_;
};

// A tokenizer.json pattern: a literal string, or a regex.
class Pattern {
 public:
  Pattern() = default;
  // `obj` is {"String": s} or {"Regex": r}.
  Pattern(const nlohmann::json& obj, const JsonFields& f, std::string_view path) {
    const auto& s = JsonFields::get(obj, "String");
    const auto& r = JsonFields::get(obj, "Regex");
    if (s.is_string() && r.is_null()) {
      literal_ = s.get<std::string>();
    } else if (r.is_string() && s.is_null()) {
      regex_ = std::make_shared<Regex>(r.get<std::string>(), f, path);
    } else {
      f.bad(path, " is ", json_brief(obj), ", not {\"String\": ...} or {\"Regex\": ...}");
    }
  }

  template <class F>
  void for_each_match(std::string_view text, F&& f) const {
    if (regex_) return regex_->for_each_match(text, f);
    if (literal_.empty()) return;  // an empty string matches nothing useful; Hugging Face splits nothing on it
    for (std::size_t pos = text.find(literal_); pos != std::string_view::npos;
         pos = text.find(literal_, pos + literal_.size()))
      f(pos, pos + literal_.size());
  }

  // The text cut into matched and unmatched parts that cover it (Hugging Face's find_matches): an empty text is
  // one unmatched part.
  std::vector<Segment> segments(std::string_view text) const {
    std::vector<Segment> out;
    if (text.empty()) return {{0, 0, false}};
    std::size_t prev = 0;
    for_each_match(text, [&](std::size_t b, std::size_t e) {
      if (b > prev) out.push_back({prev, b, false});
      out.push_back({b, e, true});
      prev = e;
    });
    if (prev < text.size()) out.push_back({prev, text.size(), false});
    return out;
  }

  // Every match replaced by `content`.
  std::string replace(std::string_view text, std::string_view content) const {
    std::string out;
    std::size_t prev = 0;
    for_each_match(text, [&](std::size_t b, std::size_t e) {
      out.append(text.substr(prev, b - prev));
      out.append(content);
      prev = e;
    });
    out.append(text.substr(prev));
    return out;
  }

 private:
  std::string literal_;
  std::shared_ptr<const Regex> regex_;
};

}  // namespace rlhf::io::detail
