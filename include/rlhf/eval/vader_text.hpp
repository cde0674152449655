#pragma once
// The string operations of the JS VADER port (npm vader-sentiment 1.1.3), done on UTF-8 so that they agree
// with what JavaScript does on the same text held as UTF-16:
//   - bytes that are not valid UTF-8 become U+FFFD, as when Node decodes a Buffer (WHATWG decoder);
//   - split(/\s/) splits on JS's whitespace, which is Unicode's (U+0085 is not in it; NBSP is);
//   - word.length counts UTF-16 code units (a character outside the BMP counts 2);
//   - toLowerCase() is reproduced for every character whose lower case lies in U+0000–U+00FF, which makes
//     "lower(word) == key" exact for any key written in that range (the whole VADER lexicon is). Capitals of
//     other scripts (Greek, Cyrillic, ...) are left as they are.
// docs/eval/vader.md.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "rlhf/core/utf8.hpp"

namespace rlhf::eval::vader_text {

struct Decoded {
  char32_t code_point;  // U+FFFD when malformed
  std::size_t bytes;    // consumed; a malformed sequence consumes its maximal valid prefix (at least 1 byte)
  bool valid;
};

inline constexpr char32_t replacement_character = 0xFFFD;

// One code point from s[i..] (i < s.size()), by the WHATWG UTF-8 decoder's rules.
constexpr Decoded decode(std::string_view s, std::size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  if (lead < 0x80) return {lead, 1, true};
  std::size_t need = 0;
  char32_t cp = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the next continuation byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    need = 1, cp = lead & 0x1F;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    need = 2, cp = lead & 0x0F;
    if (lead == 0xE0) lo = 0xA0;  // no overlong forms
    if (lead == 0xED) hi = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    need = 3, cp = lead & 0x07;
    if (lead == 0xF0) lo = 0x90;
    if (lead == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return {replacement_character, 1, false};
  }
  for (std::size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) return {replacement_character, k, false};
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (b < lo || b > hi) return {replacement_character, k, false};
    lo = 0x80, hi = 0xBF;
    cp = (cp << 6) | (b & 0x3F);
  }
  return {cp, need + 1, true};
}

using rlhf::detail::append_utf8;

// The text as JS would hold it: every malformed sequence replaced by U+FFFD.
inline std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto d = decode(s, i);
    if (d.valid)
      out.append(s.substr(i, d.bytes));
    else
      append_utf8(out, replacement_character);
    i += d.bytes;
  }
  return out;
}

// JS's /\s/: WhiteSpace (incl. Unicode category Zs and U+FEFF) and LineTerminator.
constexpr bool is_js_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

// text.split(/\s/) on valid UTF-8, empty pieces included; the pieces view `text`.
inline std::vector<std::string_view> split_js_space(std::string_view text) {
  std::vector<std::string_view> pieces;
  std::size_t start = 0;
  for (std::size_t i = 0; i < text.size();) {
    const auto d = decode(text, i);
    if (is_js_space(d.code_point)) {
      pieces.push_back(text.substr(start, i - start));
      start = i + d.bytes;
    }
    i += d.bytes;
  }
  pieces.push_back(text.substr(start));
  return pieces;
}

// JS's string.length of valid UTF-8: one unit per code point, two for those outside the BMP.
constexpr std::size_t utf16_length(std::string_view s) {
  std::size_t n = 0;
  for (const char ch : s) {
    const auto b = static_cast<unsigned char>(ch);
    n += (b & 0xC0) != 0x80;  // a lead byte starts a code point
    n += b >= 0xF0;           // a 4-byte sequence is a surrogate pair
  }
  return n;
}

// toLowerCase() where the result lies in U+0000–U+00FF; other characters unchanged.
constexpr char32_t to_lower_latin1(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 0x20;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 0x20;
  switch (c) {
    case 0x0178: return 0xFF;  // Ÿ
    case 0x1E9E: return 0xDF;  // ẞ
    case 0x212A: return 'k';   // Kelvin sign
    case 0x212B: return 0xE5;  // Ångström sign
    default: return c;
  }
}

inline std::string to_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto d = decode(s, i);
    if (d.code_point < 0x80) {
      out += static_cast<char>(to_lower_latin1(d.code_point));
    } else {
      const char32_t lower = to_lower_latin1(d.code_point);
      if (lower == d.code_point)
        out.append(s.substr(i, d.bytes));
      else
        append_utf8(out, lower);
    }
    i += d.bytes;
  }
  return out;
}

// The port's is_upper_python: /^[^a-z]*[A-Z]+[^a-z]*$/, i.e. no ASCII lower-case letter and at least one
// ASCII capital (so "É" alone is not upper, and ":)WORD" is).
constexpr bool is_upper_python(std::string_view w) {
  bool capital = false;
  for (const char c : w) {
    if (c >= 'a' && c <= 'z') return false;
    capital = capital || (c >= 'A' && c <= 'Z');
  }
  return capital;
}

// The characters of REGEX_REMOVE_PUNCTUATION, /[!"#$%&'()*+,-./:;<=>?@[\\\]^_`{|}~]/: all ASCII punctuation.
constexpr bool is_ascii_punctuation(char c) {
  return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
}

}  // namespace rlhf::eval::vader_text
