#pragma once
// UTF-8 helpers of the tokenizer.json pipeline: walking code points, checking a text, and the lossy conversion
// Hugging Face's decoders apply (each maximal invalid subsequence becomes U+FFFD, as Rust's
// String::from_utf8_lossy and the WHATWG decoder do).
#include <cstddef>
#include <string>
#include <string_view>

#include "rlhf/io/corpus.hpp"     // utf8_sequence_length
#include "rlhf/io/gpt2_bpe.hpp"   // detail::append_utf8, detail::utf8_decode

namespace rlhf::io::detail {

inline constexpr std::string_view replacement_character = "\xEF\xBF\xBD";  // U+FFFD

// The byte offset of the first byte that does not start a valid UTF-8 sequence; npos when the text is valid.
inline std::size_t first_invalid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const std::size_t n = utf8_sequence_length(s, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

// The code point at byte i of valid UTF-8 and its length in bytes.
struct CodePoint {
  char32_t c;
  std::size_t len;
};
inline CodePoint code_point_at(std::string_view s, std::size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  const std::size_t n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
  return {utf8_decode(s, i, n), n};
}

// The length of the maximal prefix of s[i..] that could start a valid sequence (at least 1): the unit one
// U+FFFD replaces.
inline std::size_t invalid_run(std::string_view s, std::size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  std::size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
  if (b >= 0xC2 && b <= 0xDF) need = 2;
  else if (b >= 0xE0 && b <= 0xEF) need = 3, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
  else if (b >= 0xF0 && b <= 0xF4) need = 4, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
  else return 1;
  std::size_t k = 1;
  for (; k < need && i + k < s.size(); ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
  }
  return k;
}

inline std::string utf8_lossy(std::string_view s) {
  if (first_invalid_utf8(s) == std::string_view::npos) return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence_length(s, i);
    if (n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += replacement_character;
      i += invalid_run(s, i);
    }
  }
  return out;
}

// Unicode's White_Space property: Rust's char::is_whitespace, which Hugging Face's Strip steps use.
inline bool is_white_space(char32_t c) { return is_unicode_space(c); }

}  // namespace rlhf::io::detail
