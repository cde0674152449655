#pragma once
// The added tokens of a tokenizer.json and how they are found in a text before the pipeline runs (Hugging Face's
// AddedVocabulary): leftmost first and, at one position, longest first, never overlapping; `single_word` tokens
// only where no word character touches them; `lstrip`/`rstrip` take the white space on their left/right with
// them. Tokens with `normalized` are looked for in the normalized text, the others in the text as given.
#include <utf8proc.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "rlhf/core/batch.hpp"  // token_id
#include "rlhf/io/tokenizer/utf8.hpp"

namespace rlhf::io::detail {

struct AddedToken {
  std::string content;
  token_id id = -1;
  bool special = false, single_word = false, lstrip = false, rstrip = false, normalized = false;
};

// Rust regex's \w: alphabetic, marks, decimal digits, connector punctuation, ZWNJ/ZWJ (Alphabetic approximated
// by the letter categories and Nl).
inline bool is_word_char(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  if (c == 0x200C || c == 0x200D) return true;
  switch (utf8proc_category(utf8proc_int32_t(c))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_PC: return true;
    default: return false;
  }
}

// Finds a set of strings in a text, leftmost-longest and non-overlapping, with a byte trie.
class LiteralSet {
 public:
  void add(std::string_view s, std::int32_t value) {
    if (s.empty()) return;
    std::int32_t node = 0;
    for (const char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      std::int32_t child = find(node, c);
      if (child < 0) {
        child = std::int32_t(nodes_.size());
        nodes_[std::size_t(node)].children.push_back({c, child});
        nodes_.push_back({});
      }
      node = child;
    }
    nodes_[std::size_t(node)].value = value;
    first_[static_cast<unsigned char>(s[0])] = 1;
  }
  bool empty() const { return nodes_.size() == 1; }

  // Calls f(start, end, value) for each match, left to right.
  template <class F>
  void for_each_match(std::string_view text, F&& f) const {
    if (empty()) return;
    for (std::size_t i = 0; i < text.size();) {
      if (!first_[static_cast<unsigned char>(text[i])]) {
        ++i;
        continue;
      }
      std::int32_t node = 0, best = -1;
      std::size_t best_end = 0;
      for (std::size_t j = i; j < text.size(); ++j) {
        node = find(node, static_cast<unsigned char>(text[j]));
        if (node < 0) break;
        if (nodes_[std::size_t(node)].value >= 0) best = nodes_[std::size_t(node)].value, best_end = j + 1;
      }
      if (best < 0) {
        ++i;
        continue;
      }
      f(i, best_end, best);
      i = best_end;
    }
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, std::int32_t>> children;
    std::int32_t value = -1;
  };
  std::int32_t find(std::int32_t node, unsigned char c) const {
    for (const auto& [k, child] : nodes_[std::size_t(node)].children)
      if (k == c) return child;
    return -1;
  }
  std::vector<Node> nodes_{Node{}};
  std::array<std::uint8_t, 256> first_{};
};

// A text cut at its added tokens: [start, end) and the index of the added token there (-1: ordinary text).
struct AddedSplit {
  std::size_t start, end;
  std::int32_t token;
};

// Hugging Face's AddedVocabulary::find_matches over `text` with the tokens of `set` (values index `tokens`);
// `skip_special`: special tokens are not matched (their text stays ordinary text).
inline std::vector<AddedSplit> split_on_added(std::string_view text, const LiteralSet& set,
                                              const std::vector<AddedToken>& tokens, bool skip_special) {
  std::vector<AddedSplit> out;
  std::size_t done = 0;
  set.for_each_match(text, [&](std::size_t start, std::size_t stop, std::int32_t which) {
    const AddedToken& t = tokens[std::size_t(which)];
    if (skip_special && t.special) return;
    if (start < done) return;  // inside the white space an rstrip took
    if (t.single_word) {
      std::size_t before = start;  // the first byte of the character before the token
      if (before > 0) --before;
      while (before > 0 && (static_cast<unsigned char>(text[before]) & 0xC0) == 0x80) --before;
      const bool left_ok = start == 0 || !is_word_char(code_point_at(text, before).c);
      const bool right_ok = stop == text.size() || !is_word_char(code_point_at(text, stop).c);
      if (!left_ok || !right_ok) return;
    }
    if (t.lstrip) {
      std::size_t s = start;
      while (s > done) {
        std::size_t b = s - 1;
        while (b > done && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
        if (!is_white_space(code_point_at(text, b).c)) break;
        s = b;
      }
      start = s;
    }
    if (t.rstrip)
      while (stop < text.size()) {
        const CodePoint cp = code_point_at(text, stop);
        if (!is_white_space(cp.c)) break;
        stop += cp.len;
      }
    if (done < start) out.push_back({done, start, -1});
    out.push_back({start, stop, which});
    done = stop;
  });
  if (done < text.size()) out.push_back({done, text.size(), -1});
  return out;
}

}  // namespace rlhf::io::detail
