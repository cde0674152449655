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
// error message.
inline std::string clip(std::string_view s, std::size_t max = 80) {
  if (s.size() <= max) return std::string(s);
  return std::string(s.substr(0, max - 3)) + "... (" + std::to_string(s.size()) + " bytes)";
}

}  // namespace rlhf::io::detail
