#pragma once
// Reading untrusted files: the nesting limit of their JSON, and how a piece of their contents is quoted in an
// error message (bounded, since the input is unbounded). Shared by every reader in io/ and by the GPT checkpoint.
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace rlhf::io::detail {

inline constexpr int max_json_depth = 64;  // the formats read here need at most 3

// A JSON value for an error message: scalars and small containers as (at most 80 bytes of) JSON text, larger
// containers by their type and size.
inline std::string json_brief(const nlohmann::json& j) {
  if (j.is_structured() && j.size() > 8)
    return std::string("a JSON ") + j.type_name() + " of " + std::to_string(j.size()) + " elements";
  std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

// At most `max` bytes of an untrusted string (a key, a name, a parser's message quoting the input) for an
// error message; a NUL byte is written \x00, since it would end the message where it is printed as a C string.
inline std::string clip(std::string_view s, std::size_t max = 80) {
  std::string out(s.substr(0, s.size() <= max ? s.size() : max - 3));
  for (std::size_t at = out.find('\0'); at != std::string::npos; at = out.find('\0', at + 4)) out.replace(at, 1, "\\x00");
  if (s.size() > max) out += "... (" + std::to_string(s.size()) + " bytes)";
  return out;
}

}  // namespace rlhf::io::detail
