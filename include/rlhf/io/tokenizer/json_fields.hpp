#pragma once
// Reading the fields of a tokenizer.json: each value checked for its JSON type, each problem an rlhf::io_error
// naming the file and the field's path ("pre_tokenizer.pretokenizers[1].behavior"), each component that is not
// implemented refused by its name.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "rlhf/core/error.hpp"
#include "rlhf/io/untrusted.hpp"  // detail::json_brief

namespace rlhf::io::detail {

class JsonFields {
 public:
  using json = nlohmann::json;
  explicit JsonFields(std::string file) : file_(std::move(file)) {}

  template <class... Parts>
  [[noreturn]] void bad(const Parts&... parts) const {
    fail<io_error>(file_, ": ", parts...);
  }
  // A component this reader does not implement: named, with what is.
  [[noreturn]] void unsupported(std::string_view path, std::string_view type, std::string_view implemented) const {
    bad(path, ".type is \"", type, "\", which is not implemented (implemented: ", implemented, ")");
  }

  // obj[key], or null when obj is not an object or has no such key.
  static const json& get(const json& obj, std::string_view key) {
    static const json null_json;
    if (!obj.is_object()) return null_json;
    const auto it = obj.find(key);
    return it == obj.end() ? null_json : *it;
  }
  static std::string at(std::string_view path, std::string_view key) {
    return path.empty() ? std::string(key) : std::string(path) + "." + std::string(key);
  }
  static std::string at(std::string_view path, std::size_t index) {
    return std::string(path) + "[" + std::to_string(index) + "]";
  }

  void require_object(const json& v, std::string_view path) const {
    if (!v.is_object()) bad(path, " is ", json_brief(v), ", not an object");
  }
  // The "type" of a component object.
  const std::string& type(const json& obj, std::string_view path) const {
    require_object(obj, path);
    const json& t = get(obj, "type");
    if (!t.is_string()) bad(at(path, "type"), " is ", json_brief(t), ", not a string");
    return t.get_ref<const std::string&>();
  }
  std::string text(const json& obj, std::string_view key, std::string_view path, std::string_view fallback) const {
    const json& v = get(obj, key);
    if (v.is_null()) return std::string(fallback);
    if (!v.is_string()) bad(at(path, key), " is ", json_brief(v), ", not a string");
    return v.get<std::string>();
  }
  bool flag(const json& obj, std::string_view key, std::string_view path, bool fallback) const {
    const json& v = get(obj, key);
    if (v.is_null()) return fallback;
    if (!v.is_boolean()) bad(at(path, key), " is ", json_brief(v), ", not true or false");
    return v.get<bool>();
  }
  std::int64_t integer(const json& obj, std::string_view key, std::string_view path, std::int64_t fallback,
                       std::int64_t lo, std::int64_t hi) const {
    const json& v = get(obj, key);
    if (v.is_null()) return fallback;
    return integer(v, at(path, key), lo, hi);
  }
  std::int64_t integer(const json& v, std::string_view path, std::int64_t lo, std::int64_t hi) const {
    if (!v.is_number_integer()) bad(path, " is ", json_brief(v), ", not an integer");
    const std::int64_t i = v.is_number_unsigned() && v.get<std::uint64_t>() > std::uint64_t(INT64_MAX)
                               ? hi + (hi < INT64_MAX)  // out of range below
                               : v.get<std::int64_t>();
    if (i < lo || i > hi) bad(path, " is ", json_brief(v), ", outside [", lo, ", ", hi, "]");
    return i;
  }
  // One of `choices`, fallback when absent or null.
  std::string choice(const json& obj, std::string_view key, std::string_view path, std::string_view fallback,
                     std::initializer_list<std::string_view> choices) const {
    const std::string s = text(obj, key, path, fallback);
    for (const auto c : choices)
      if (s == c) return s;
    std::string list;
    for (const auto c : choices) list += (list.empty() ? "" : ", ") + std::string(c);
    bad(at(path, key), " is \"", clip(s), "\", not one of ", list);
  }

 private:
  std::string file_;
};

}  // namespace rlhf::io::detail
