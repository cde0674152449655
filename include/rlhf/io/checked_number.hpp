#pragma once
// A number read for one setting, checked in the type it will be stored in:
//
//   float b2 = checked_number<float>(doc["adam_beta2"], where, "adam_beta2", {0, 1, .hi_open = true});
//   double lr = parse_number<double>("1e999", "command line", "learning_rate", {0, 10});   // refused by name
//
// 1e308 is a finite double but Inf as a float; 0.999999999 is inside [0, 1) but becomes 1 as a float; 1e-50
// becomes 0. Each is refused with the key, the value as written and the value it would have become. Integers
// must be integral and fit their type. Every refusal is rlhf::config_error:
//   "<where>: <key> = <value> ..."
#include <cerrno>
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "rlhf/core/error.hpp"
#include "rlhf/io/untrusted.hpp"

namespace rlhf::io {

// [lo, hi], either end open when its flag is set; the default admits every value of the type.
struct NumberRange {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false, hi_open = false;
};

namespace detail {

template <class T>
constexpr const char* number_type_name() {
  if constexpr (std::is_same_v<T, float>) return "float32";
  else if constexpr (std::is_same_v<T, double>) return "float64";
  else if constexpr (std::is_same_v<T, bool>) return "bool";
  else if constexpr (std::is_signed_v<T>) return sizeof(T) == 8 ? "int64" : sizeof(T) == 4 ? "int32" : "a signed integer";
  else return sizeof(T) == 8 ? "uint64" : sizeof(T) == 4 ? "uint32" : "an unsigned integer";
}

// The shortest text that reads back as `v`.
inline std::string number_text(double v) {
  char buf[40];
  if (std::trunc(v) == v && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

inline std::string range_text(const NumberRange& r) {
  return std::string(r.lo_open ? "(" : "[") + number_text(r.lo) + ", " + number_text(r.hi) + (r.hi_open ? ")" : "]");
}

inline bool in_range(double v, const NumberRange& r) {
  const bool above_lo = r.lo_open ? v > r.lo : v >= r.lo;
  const bool below_hi = r.hi_open ? v < r.hi : v <= r.hi;
  return above_lo && below_hi;
}

}  // namespace detail

// `value` (as read, in double) stored as T, refused unless finite and in `range` both before and after the
// conversion. For an integral T, `value` must be integral.
template <class T>
  requires std::is_arithmetic_v<T> && (!std::is_same_v<T, bool>)
T checked_number(double value, std::string_view where, std::string_view key, const NumberRange& range = {}) {
  const auto refuse = [&](const auto&... why) {
    fail<config_error>(where, ": ", key, " = ", detail::number_text(value), " ", why...);
  };
  if (!std::isfinite(value)) refuse("is not a finite number");
  T stored{};
  if constexpr (std::is_floating_point_v<T>) {
    stored = static_cast<T>(value);
    if (!std::isfinite(stored)) refuse("is beyond ", detail::number_type_name<T>(), "'s range (it would be stored as Inf)");
    if (!detail::in_range(value, range)) refuse("is outside ", detail::range_text(range));
    if (!detail::in_range(double(stored), range))
      refuse("becomes ", detail::number_text(double(stored)), " as a ", detail::number_type_name<T>(),
             ", which is outside ", detail::range_text(range));
    if (stored == 0 && value != 0)
      refuse("is too small for a ", detail::number_type_name<T>(), " (it would be stored as 0)");
  } else {
    if (std::trunc(value) != value) refuse("is not an integer");
    // 2^63 and 2^64 are exact doubles; a value at or above them does not fit
    constexpr double top = std::is_signed_v<T> ? -2.0 * double(std::numeric_limits<T>::min())
                                               : 2.0 * (double(std::numeric_limits<T>::max() / 2) + 1.0);
    if (value >= top || value < double(std::numeric_limits<T>::min()))
      refuse("does not fit ", detail::number_type_name<T>());
    stored = static_cast<T>(value);
    if (!detail::in_range(value, range)) refuse("is outside ", detail::range_text(range));
  }
  return stored;
}

// A JSON value as T (see checked_number); an integral T takes JSON integers exactly (beyond 2^53 too).
template <class T, class Json>
  requires std::is_arithmetic_v<T> && (!std::is_same_v<T, bool>)
T checked_number(const Json& v, std::string_view where, std::string_view key, const NumberRange& range = {}) {
  if (!v.is_number())
    fail<config_error>(where, ": ", key, " must be a number, got ", v.is_string() ? "the string " : "",
                       detail::json_brief(nlohmann::json(v)));
  if constexpr (std::is_integral_v<T>) {
    if (v.is_number_unsigned() && v.template get<std::uint64_t>() > std::uint64_t(std::numeric_limits<T>::max()))
      fail<config_error>(where, ": ", key, " = ", v.template get<std::uint64_t>(), " does not fit ",
                         detail::number_type_name<T>());
    if (v.is_number_unsigned()) {
      const T stored = static_cast<T>(v.template get<std::uint64_t>());
      if (!detail::in_range(double(stored), range))
        fail<config_error>(where, ": ", key, " = ", stored, " is outside ", detail::range_text(range));
      return stored;
    }
    if (v.is_number_integer()) return checked_number<T>(double(v.template get<std::int64_t>()), where, key, range);
  }
  return checked_number<T>(v.template get<double>(), where, key, range);
}

// `text` (a command-line value) as T: the whole text one number, then checked_number. "1e999" is refused as
// beyond float64's range, "nan" and "inf" as not finite.
template <class T>
  requires std::is_arithmetic_v<T> && (!std::is_same_v<T, bool>)
T parse_number(std::string_view text, std::string_view where, std::string_view key, const NumberRange& range = {}) {
  const auto refuse = [&](const char* why) {
    fail<config_error>(where, ": ", key, " = '", detail::clip(text, 40), "' ", why);
  };
  if (text.empty()) refuse("is empty, not a number");
  if constexpr (std::is_integral_v<T>) {
    T stored{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), stored);
    if (ec == std::errc::result_out_of_range) fail<config_error>(where, ": ", key, " = '", detail::clip(text, 40),
                                                                  "' does not fit ", detail::number_type_name<T>());
    if (ec != std::errc() || end != text.data() + text.size()) refuse("is not an integer");
    if (!detail::in_range(double(stored), range))
      fail<config_error>(where, ": ", key, " = ", stored, " is outside ", detail::range_text(range));
    return stored;
  } else {
    const std::string copy(text);  // strtod needs the terminating NUL
    if (copy.find('\0') != std::string::npos || std::isspace(static_cast<unsigned char>(copy.front())))
      refuse("is not a number");
    char* end = nullptr;
    errno = 0;
    const double value = std::strtod(copy.c_str(), &end);
    if (end != copy.c_str() + copy.size()) refuse("is not a number");
    if (errno == ERANGE && std::isinf(value)) refuse("is beyond float64's range");
    return checked_number<T>(value, where, key, range);
  }
}

}  // namespace rlhf::io
