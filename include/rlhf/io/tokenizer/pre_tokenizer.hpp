#pragma once
// The pre-tokenizer of a tokenizer.json: Split (any regex or string, every behavior, invert), ByteLevel
// (add_prefix_space, use_regex), Digits, Metaspace (prepend_scheme, split), Whitespace, WhitespaceSplit,
// Punctuation and Sequence. Each cuts every piece of text into smaller pieces, as Hugging Face's do; pieces that
// come out empty are dropped. Other types (BertPreTokenizer, UnicodeScripts, ...) are refused by name.
#include <utf8proc.h>

#include <functional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "rlhf/io/gpt2_bpe.hpp"  // detail::gpt2_pre_tokenize, gpt2_byte_piece, Gpt2Whitespace
#include "rlhf/io/tokenizer/json_fields.hpp"
#include "rlhf/io/tokenizer/regex.hpp"
#include "rlhf/io/tokenizer/utf8.hpp"

namespace rlhf::io::detail {

// A piece of the text being encoded, as the pre-tokenizer cuts it. Most steps only cut, so a piece borrows its
// bytes from the text being encoded (which outlives the pipeline); a step that changes the bytes gives the piece
// a string of its own.
struct Piece {
  std::string_view borrowed;
  std::string owned;
  bool own = false;
  // The text holds raw bytes that stand for ByteLevel's characters (Ġ for a space): the mapping is applied
  // only when a later step needs the characters, since the BPE model starts from the bytes directly.
  bool byte_level = false;
  bool at_start = false;  // the piece begins the input text (Metaspace's prepend_scheme "first")

  static Piece of(std::string_view text, bool at_start) { return {text, {}, false, false, at_start}; }
  std::string_view text() const { return own ? std::string_view(owned) : borrowed; }
  void set(std::string s) {
    owned = std::move(s);
    own = true;
  }
  // Bytes [b, e) of the text, borrowed when this piece borrows.
  Piece part(std::size_t b, std::size_t e) const {
    Piece p;
    if (own) p.set(owned.substr(b, e - b));
    else p.borrowed = borrowed.substr(b, e - b);
    p.byte_level = byte_level;
    p.at_start = at_start && b == 0;
    return p;
  }
};

inline void materialize_byte_level(Piece& p) {
  if (!p.byte_level) return;
  p.set(gpt2_byte_piece(p.text()));
  p.byte_level = false;
}

enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

// The parts of a text that a split keeps, from its matched and unmatched segments (Hugging Face's
// NormalizedString::split).
inline std::vector<std::pair<std::size_t, std::size_t>> split_parts(std::vector<Segment> segs, SplitBehavior b,
                                                                     bool invert) {
  if (invert)
    for (auto& s : segs) s.match = !s.match;
  std::vector<std::pair<std::size_t, std::size_t>> out;
  switch (b) {
    case SplitBehavior::removed:
      for (const auto& s : segs)
        if (!s.match) out.emplace_back(s.start, s.end);
      break;
    case SplitBehavior::isolated:
      for (const auto& s : segs) out.emplace_back(s.start, s.end);
      break;
    case SplitBehavior::contiguous: {
      bool previous = false;
      for (const auto& s : segs) {
        if (s.match == previous && !out.empty()) out.back().second = s.end;
        else out.emplace_back(s.start, s.end);
        previous = s.match;
      }
      break;
    }
    case SplitBehavior::merged_with_previous: {
      bool previous = false;
      for (const auto& s : segs) {
        if (s.match && !previous && !out.empty()) out.back().second = s.end;
        else out.emplace_back(s.start, s.end);
        previous = s.match;
      }
      break;
    }
    case SplitBehavior::merged_with_next: {
      bool previous = false;
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->match && !previous && !out.empty()) out.back().first = it->start;
        else out.emplace_back(it->start, it->end);
        previous = it->match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
  return out;
}

// Segments where each character for which pred holds is a match of its own (Hugging Face's split on a
// character predicate).
template <class Pred>
std::vector<Segment> char_segments(std::string_view text, Pred&& pred) {
  if (text.empty()) return {{0, 0, false}};
  std::vector<Segment> out;
  std::size_t prev = 0;
  for (std::size_t i = 0; i < text.size();) {
    const CodePoint cp = code_point_at(text, i);
    if (pred(cp.c)) {
      if (i > prev) out.push_back({prev, i, false});
      out.push_back({i, i + cp.len, true});
      prev = i + cp.len;
    }
    i += cp.len;
  }
  if (prev < text.size()) out.push_back({prev, text.size(), false});
  return out;
}

inline bool is_punctuation(char32_t c) {  // Rust: char::is_ascii_punctuation || general category P*
  if (c < 0x80) return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
                       (c >= 0x7B && c <= 0x7E);
  const auto cat = utf8proc_category(utf8proc_int32_t(c));
  return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}
inline bool is_numeric(char32_t c) {  // Rust: char::is_numeric, general categories Nd, Nl, No
  if (c < 0x80) return c >= '0' && c <= '9';
  const auto cat = utf8proc_category(utf8proc_int32_t(c));
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

class PreTokenizer {
 public:
  PreTokenizer() = default;  // none: each piece stays whole
  PreTokenizer(const nlohmann::json& config, const JsonFields& f, std::string_view path, Gpt2Whitespace ws) {
    read(config, f, path, ws);
  }

  void apply(std::vector<Piece>& pieces) const {
    thread_local std::vector<Piece> next;  // kept between calls: its storage is reused
    for (const auto& step : steps_) {
      next.clear();
      for (auto& p : pieces) std::visit([&](const auto& s) { s.apply(p, next); }, step);
      pieces.swap(next);
    }
  }

 private:
  // Adds the parts of `p` to `out`, dropping empty ones.
  static void emit(const Piece& p, const std::vector<std::pair<std::size_t, std::size_t>>& parts,
                   std::vector<Piece>& out) {
    for (const auto& [b, e] : parts)
      if (e > b) out.push_back(p.part(b, e));
  }

  struct Split {
    Pattern pattern;
    SplitBehavior behavior;
    bool invert;
    void apply(Piece& p, std::vector<Piece>& out) const {
      materialize_byte_level(p);
      emit(p, split_parts(pattern.segments(p.text()), behavior, invert), out);
    }
  };
  struct CharSplit {  // Digits, Punctuation, WhitespaceSplit: a split on a character predicate
    bool (*pred)(char32_t);
    SplitBehavior behavior;
    void apply(Piece& p, std::vector<Piece>& out) const {
      materialize_byte_level(p);
      emit(p, split_parts(char_segments(p.text(), pred), behavior, false), out);
    }
  };
  struct ByteLevel {
    bool add_prefix_space, use_regex;
    Gpt2Whitespace whitespace;
    void apply(Piece& p, std::vector<Piece>& out) const {
      materialize_byte_level(p);
      if (add_prefix_space && !p.text().starts_with(' ')) p.set(" " + std::string(p.text()));
      if (!use_regex) {
        p.byte_level = true;
        out.push_back(std::move(p));
        return;
      }
      const std::string_view text = p.text();
      gpt2_pre_tokenize(text, whitespace, [&](std::string_view w) {
        const auto b = std::size_t(w.data() - text.data());
        out.push_back(p.part(b, b + w.size()));
        out.back().byte_level = true;
      });
    }
  };
  struct Metaspace {
    std::string replacement;
    enum class Prepend { always, first, never } prepend;
    bool split;
    Pattern on_replacement;  // the replacement as a literal
    void apply(Piece& p, std::vector<Piece>& out) const {
      materialize_byte_level(p);
      std::string t;
      for (const char c : p.text()) {
        if (c == ' ') t += replacement;
        else t += c;
      }
      if (!t.starts_with(replacement) &&
          (prepend == Prepend::always || (prepend == Prepend::first && p.at_start)))
        t.insert(0, replacement);
      p.set(std::move(t));
      if (!split) {
        if (!p.text().empty()) out.push_back(std::move(p));
        return;
      }
      emit(p, split_parts(on_replacement.segments(p.text()), SplitBehavior::merged_with_next, false), out);
    }
  };
  using Step = std::variant<Split, CharSplit, ByteLevel, Metaspace>;

  static SplitBehavior behavior(const nlohmann::json& c, const JsonFields& f, std::string_view path,
                                std::string_view fallback) {
    const std::string b = f.choice(c, "behavior", path, fallback,
                                   {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"});
    return b == "Removed"              ? SplitBehavior::removed
           : b == "Isolated"           ? SplitBehavior::isolated
           : b == "MergedWithPrevious" ? SplitBehavior::merged_with_previous
           : b == "MergedWithNext"     ? SplitBehavior::merged_with_next
                                       : SplitBehavior::contiguous;
  }

  void read(const nlohmann::json& c, const JsonFields& f, std::string_view path, Gpt2Whitespace ws) {
    if (c.is_null()) return;
    const std::string& type = f.type(c, path);
    using J = JsonFields;
    if (type == "Sequence") {
      const auto& list = J::get(c, "pretokenizers");
      const std::string where = J::at(path, "pretokenizers");
      if (!list.is_array()) f.bad(where, " is ", json_brief(list), ", not an array");
      for (std::size_t k = 0; k < list.size(); ++k) read(list[k], f, J::at(where, k), ws);
    } else if (type == "Split") {
      if (J::get(c, "behavior").is_null()) f.bad(J::at(path, "behavior"), " is missing");
      steps_.push_back(Split{Pattern(J::get(c, "pattern"), f, J::at(path, "pattern")), behavior(c, f, path, ""),
                             f.flag(c, "invert", path, false)});
    } else if (type == "ByteLevel") {
      steps_.push_back(ByteLevel{f.flag(c, "add_prefix_space", path, true), f.flag(c, "use_regex", path, true), ws});
    } else if (type == "Digits") {
      const bool individual = f.flag(c, "individual_digits", path, false);
      steps_.push_back(CharSplit{is_numeric, individual ? SplitBehavior::isolated : SplitBehavior::contiguous});
    } else if (type == "Punctuation") {
      steps_.push_back(CharSplit{is_punctuation, behavior(c, f, path, "Isolated")});
    } else if (type == "WhitespaceSplit") {
      steps_.push_back(CharSplit{is_white_space, SplitBehavior::removed});
    } else if (type == "Whitespace") {  // \w+|[^\w\s]+ kept, the rest removed (\w: Rust regex's Unicode word)
      static const std::string word = R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}])";
      static const std::string not_word_space = R"([^\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}\s])";
      nlohmann::json regex = {{"Regex", word + "+|" + not_word_space + "+"}};
      steps_.push_back(Split{Pattern(regex, f, path), SplitBehavior::removed, true});
    } else if (type == "Metaspace") {
      Metaspace m;
      m.replacement = f.text(c, "replacement", path, "\xE2\x96\x81");
      if (m.replacement.empty() || first_invalid_utf8(m.replacement) != std::string::npos ||
          code_point_at(m.replacement, 0).len != m.replacement.size())
        f.bad(J::at(path, "replacement"), " is \"", clip(m.replacement), "\", not one character");
      const auto& scheme = J::get(c, "prepend_scheme");
      if (scheme.is_null()) {  // files written before prepend_scheme: add_prefix_space
        m.prepend = f.flag(c, "add_prefix_space", path, true) ? Metaspace::Prepend::always : Metaspace::Prepend::never;
      } else {
        const std::string s = f.choice(c, "prepend_scheme", path, "always", {"always", "first", "never"});
        m.prepend = s == "always" ? Metaspace::Prepend::always
                    : s == "first" ? Metaspace::Prepend::first
                                   : Metaspace::Prepend::never;
      }
      m.split = f.flag(c, "split", path, true);
      m.on_replacement = Pattern(nlohmann::json{{"String", m.replacement}}, f, path);
      steps_.push_back(std::move(m));
    } else {
      f.unsupported(path, type,
                    "Split, ByteLevel, Digits, Metaspace, Whitespace, WhitespaceSplit, Punctuation, Sequence");
    }
  }

  std::vector<Step> steps_;
};

}  // namespace rlhf::io::detail
