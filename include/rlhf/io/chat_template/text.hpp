#pragma once
// Text as Python's str sees it, for the chat-template engine: strings are UTF-8 bytes here and code points in
// Python, so lengths, indices and slices count code points (a byte that is not valid UTF-8 counts as one), and
// strip() removes what str.isspace() calls white space. Also Python's repr() of a float.
#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rlhf::io::jinja {

// The length in bytes of the code point starting at s[i] (1 for a byte that does not start a valid sequence).
inline std::size_t code_point_size(std::string_view s, std::size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  std::size_t n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xe ? 3 : (b >> 3) == 0x1e ? 4 : 1;
  if (i + n > s.size()) return 1;
  for (std::size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 1;
  return n;
}

inline char32_t decode_at(std::string_view s, std::size_t i, std::size_t n) {
  const auto b = static_cast<unsigned char>(s[i]);
  if (n == 1) return b;
  char32_t c = b & (0xff >> (n + 1));
  for (std::size_t k = 1; k < n; ++k) c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
  return c;
}

// The byte offset where each code point starts, plus s.size() at the end.
inline std::vector<std::size_t> code_point_offsets(std::string_view s) {
  std::vector<std::size_t> at;
  at.reserve(s.size() + 1);
  for (std::size_t i = 0; i < s.size(); i += code_point_size(s, i)) at.push_back(i);
  at.push_back(s.size());
  return at;
}

inline std::size_t code_point_count(std::string_view s) { return code_point_offsets(s).size() - 1; }

// str.isspace()
inline bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

// str.strip / lstrip / rstrip: with `chars` null, white space; else every code point in `chars`.
inline std::string_view strip(std::string_view s, bool left, bool right, const std::string_view* chars = nullptr) {
  const auto in_set = [&](std::size_t i, std::size_t n) {
    if (!chars) return is_python_space(decode_at(s, i, n));
    const std::string_view unit = s.substr(i, n);
    for (std::size_t j = 0; j < chars->size(); j += code_point_size(*chars, j))
      if (chars->substr(j, code_point_size(*chars, j)) == unit) return true;
    return false;
  };
  std::size_t begin = 0, end = s.size();
  if (left)
    while (begin < end && in_set(begin, code_point_size(s, begin))) begin += code_point_size(s, begin);
  if (right) {
    while (end > begin) {
      std::size_t start = end - 1;  // back to the start of the last code point
      while (start > begin && (static_cast<unsigned char>(s[start]) & 0xc0) == 0x80 && end - start < 4) --start;
      if (code_point_size(s, start) != end - start) start = end - 1;
      if (!in_set(start, end - start)) break;
      end = start;
    }
  }
  return s.substr(begin, end - begin);
}

inline bool is_ascii(std::string_view s) {
  for (const char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

// Python's repr() of a float: the shortest digits that read back the same, in positional notation from 1e-4 to
// 1e16 (always with a fractional part), else in exponent notation ("1e-05", "1.5e+16").
inline std::string python_float(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x < 0 ? "-inf" : "inf";
  std::array<char, 64> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), x, std::chars_format::scientific);
  const std::string sci(buf.data(), r.ptr);  // e.g. "-1.2345e+02"
  const bool negative = sci[0] == '-';
  const std::size_t e = sci.find('e');
  std::string digits;
  for (std::size_t i = negative ? 1 : 0; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];
  const int exponent = std::stoi(sci.substr(e + 1));
  std::string out = negative ? "-" : "";
  if (exponent < -4 || exponent >= 16) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += exponent < 0 ? "e-" : "e+";
    const std::string mag = std::to_string(std::abs(exponent));
    out += (mag.size() < 2 ? "0" : "") + mag;
    return out;
  }
  if (exponent < 0) return out + "0." + std::string(static_cast<std::size_t>(-exponent - 1), '0') + digits;
  const auto point = static_cast<std::size_t>(exponent) + 1;
  if (digits.size() <= point) return out + digits + std::string(point - digits.size(), '0') + ".0";
  return out + digits.substr(0, point) + "." + digits.substr(point);
}

// The escapes of one letter that JSON writes and a Python string literal reads: \n stands for a line feed, ...
struct ShortEscape {
  char letter;     // after the backslash
  char character;  // what it stands for
};
inline constexpr std::array<ShortEscape, 7> short_escapes = {
    {{'"', '"'}, {'\\', '\\'}, {'n', '\n'}, {'r', '\r'}, {'t', '\t'}, {'b', '\b'}, {'f', '\f'}}};

inline const ShortEscape* short_escape_of_letter(char letter) {
  for (const auto& e : short_escapes)
    if (e.letter == letter) return &e;
  return nullptr;
}
inline const ShortEscape* short_escape_of_character(char character) {
  for (const auto& e : short_escapes)
    if (e.character == character) return &e;
  return nullptr;
}

// A JSON string literal as Python's json.dumps(ensure_ascii=False) writes it: ", \ and control characters
// escaped, everything else as it is.
inline std::string json_quote(std::string_view s, bool ensure_ascii = false) {
  static const char* hex = "0123456789abcdef";
  std::string out = "\"";
  const auto u_escape = [&](unsigned v) {
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4) out += hex[(v >> shift) & 0xf];
  };
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = code_point_size(s, i);
    const char c = s[i];
    if (n == 1) {
      if (const ShortEscape* e = short_escape_of_character(c)) {
        out += '\\';
        out += e->letter;
      } else if (static_cast<unsigned char>(c) < 0x20 || (ensure_ascii && static_cast<unsigned char>(c) >= 0x7f)) {
        u_escape(static_cast<unsigned char>(c));
      } else {
        out += c;
      }
    } else if (ensure_ascii) {
      const char32_t cp = decode_at(s, i, n);
      if (cp >= 0x10000) {
        u_escape(0xd800 + ((cp - 0x10000) >> 10));
        u_escape(0xdc00 + ((cp - 0x10000) & 0x3ff));
      } else {
        u_escape(cp);
      }
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
  return out + "\"";
}

}  // namespace rlhf::io::jinja
