#pragma once
// Python's operators on template values: ==, <, in, + - * / // % **, attribute and item lookup, slicing,
// iteration and json.dumps. A combination Python refuses (str + int, None < 1) is a render_error, as Jinja2
// raises a TypeError; Undefined used as a value is an error naming what was undefined.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "rlhf/io/chat_template/text.hpp"
#include "rlhf/io/chat_template/value.hpp"

namespace rlhf::io::jinja {

// Caps on what one render may build, so that a hostile template ends with an error, not an exhausted machine.
inline constexpr std::size_t max_text_bytes = std::size_t(64) << 20;
inline constexpr std::size_t max_list_items = std::size_t(1) << 22;

[[noreturn]] inline void undefined_error(const Value& v) {
  if (v.undefined_name().empty()) fail<render_error>("chat template: an undefined value was used");
  fail<render_error>("chat template: '", v.undefined_name(), "' is undefined");
}
inline void require_defined(const Value& v) {
  if (v.is_undefined()) undefined_error(v);
}

[[noreturn]] inline void type_error(std::string_view op, const Value& a, const Value& b) {
  require_defined(a);
  require_defined(b);
  fail<render_error>("chat template: unsupported operand types for ", op, ": '", a.type_name(), "' and '",
                     b.type_name(), "'");
}

inline bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.as_string() == b.as_string();
  if (a.is_none() || b.is_none()) return a.is_none() && b.is_none();
  if (a.is_undefined() || b.is_undefined()) return a.is_undefined() && b.is_undefined();
  if (a.is_array() && b.is_array()) {
    const Array &x = a.as_array(), &y = b.as_array();
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (!equals(x[i], y[i])) return false;
    return true;
  }
  if (a.is_object() && b.is_object()) {
    const Object &x = a.as_object(), &y = b.as_object();
    if (x.is_namespace || y.is_namespace) return &x == &y;
    if (x.items.size() != y.items.size()) return false;
    for (const auto& [k, v] : x.items) {
      const Value* w = y.find(k);
      if (!w || !equals(v, *w)) return false;
    }
    return true;
  }
  if (a.is_function() && b.is_function()) return &a.as_function() == &b.as_function();
  return false;
}

// <0, 0, >0 as Python orders numbers, strings (by code point, which is UTF-8 byte order) and lists.
inline int order(const Value& a, const Value& b, std::string_view op) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      const double x = a.as_float(), y = b.as_float();
      return x < y ? -1 : x > y ? 1 : 0;
    }
    const std::int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.as_string().compare(b.as_string());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_array() && b.is_array()) {
    const Array &x = a.as_array(), &y = b.as_array();
    for (std::size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (equals(x[i], y[i])) continue;
      return order(x[i], y[i], op);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  type_error(op, a, b);
}

inline bool compare(const Value& a, std::string_view op, const Value& b);

inline bool contains(const Value& container, const Value& item) {
  if (container.is_string()) {
    if (!item.is_string()) type_error("in", item, container);
    return container.as_string().find(item.as_string()) != std::string::npos;
  }
  if (container.is_array()) {
    for (const auto& x : container.as_array())
      if (equals(x, item)) return true;
    return false;
  }
  if (container.is_object()) {
    if (!item.is_string()) return false;
    return container.as_object().find(item.as_string()) != nullptr;
  }
  if (container.is_undefined()) return false;  // Jinja2's Undefined iterates as nothing
  type_error("in", item, container);
}

inline bool compare(const Value& a, std::string_view op, const Value& b) {
  if (op == "==") return equals(a, b);
  if (op == "!=") return !equals(a, b);
  if (op == "in") return contains(b, a);
  if (op == "not in") return !contains(b, a);
  const int c = order(a, b, op);
  if (op == "<") return c < 0;
  if (op == ">") return c > 0;
  if (op == "<=") return c <= 0;
  return c >= 0;  // ">="
}

inline std::string repeat(std::string_view s, std::int64_t n) {
  if (n <= 0 || s.empty()) return {};
  if (static_cast<double>(s.size()) * static_cast<double>(n) > static_cast<double>(max_text_bytes))
    fail<render_error>("chat template: a repeated string would exceed ", max_text_bytes, " bytes");
  std::string out;
  out.reserve(s.size() * static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) out += s;
  return out;
}

inline Value checked_int(long double exact, std::string_view op) {
  if (exact > static_cast<long double>(std::numeric_limits<std::int64_t>::max()) ||
      exact < static_cast<long double>(std::numeric_limits<std::int64_t>::min()))
    fail<render_error>("chat template: the integer result of ", op, " exceeds 64 bits");
  return static_cast<std::int64_t>(exact);
}

inline Value arithmetic(std::string_view op, const Value& a, const Value& b) {
  const bool numbers = a.is_number() && b.is_number();
  const bool floats = numbers && (a.is_float() || b.is_float());
  if (op == "+") {
    if (numbers) {
      if (floats) return a.as_float() + b.as_float();
      std::int64_t r;
      if (__builtin_add_overflow(a.as_int(), b.as_int(), &r))
        fail<render_error>("chat template: the integer result of + exceeds 64 bits");
      return r;
    }
    if (a.is_string() && b.is_string()) {
      if (a.as_string().size() + b.as_string().size() > max_text_bytes)
        fail<render_error>("chat template: a string would exceed ", max_text_bytes, " bytes");
      return a.as_string() + b.as_string();
    }
    if (a.is_array() && b.is_array()) {
      if (a.as_array().size() + b.as_array().size() > max_list_items)
        fail<render_error>("chat template: a list would exceed ", max_list_items, " items");
      Array out = a.as_array();
      out.insert(out.end(), b.as_array().begin(), b.as_array().end());
      return out;
    }
    type_error(op, a, b);
  }
  if (op == "*") {
    if (numbers) {
      if (floats) return a.as_float() * b.as_float();
      std::int64_t r;
      if (__builtin_mul_overflow(a.as_int(), b.as_int(), &r))
        fail<render_error>("chat template: the integer result of * exceeds 64 bits");
      return r;
    }
    if (a.is_string() && (b.is_int() || b.is_bool())) return repeat(a.as_string(), b.as_int());
    if (b.is_string() && (a.is_int() || a.is_bool())) return repeat(b.as_string(), a.as_int());
    if (a.is_array() && (b.is_int() || b.is_bool())) {
      const std::int64_t n = std::max<std::int64_t>(b.as_int(), 0);
      if (!a.as_array().empty() && static_cast<double>(n) * static_cast<double>(a.as_array().size()) > max_list_items)
        fail<render_error>("chat template: a list would exceed ", max_list_items, " items");
      Array out;
      for (std::int64_t i = 0; i < n; ++i) out.insert(out.end(), a.as_array().begin(), a.as_array().end());
      return out;
    }
    type_error(op, a, b);
  }
  if (!numbers) {
    if (op == "%" && a.is_string()) fail<render_error>("chat template: printf-style '%' formatting is not supported");
    type_error(op, a, b);
  }
  if (op == "-") {
    if (floats) return a.as_float() - b.as_float();
    std::int64_t r;
    if (__builtin_sub_overflow(a.as_int(), b.as_int(), &r))
      fail<render_error>("chat template: the integer result of - exceeds 64 bits");
    return r;
  }
  if (op == "/") {
    if (b.as_float() == 0) fail<render_error>("chat template: division by zero");
    return a.as_float() / b.as_float();
  }
  if (op == "//" || op == "%") {
    if (b.as_float() == 0) fail<render_error>("chat template: integer division or modulo by zero");
    if (floats) {
      const double x = a.as_float(), y = b.as_float();
      const double q = std::floor(x / y);
      return op == "//" ? Value(q) : Value(x - q * y);
    }
    const std::int64_t x = a.as_int(), y = b.as_int();
    if (x == std::numeric_limits<std::int64_t>::min() && y == -1)
      fail<render_error>("chat template: the integer result of ", op, " exceeds 64 bits");
    std::int64_t q = x / y, r = x % y;
    if (r != 0 && ((r < 0) != (y < 0))) {
      --q;
      r += y;
    }
    return op == "//" ? Value(q) : Value(r);
  }
  if (op == "**") {
    if (floats || b.as_int() < 0) return std::pow(a.as_float(), b.as_float());
    long double r = 1;
    for (std::int64_t i = 0; i < b.as_int() && std::fabs(r) <= 1e19L; ++i) r *= a.as_int();
    return checked_int(r, op);
  }
  fail<render_error>("chat template: unknown operator ", op);
}

// Python's index rules: negative counts from the end; out of range is Undefined (Jinja2 gives Undefined).
inline Value index_list(const Array& a, std::int64_t i, std::string_view what) {
  const auto n = static_cast<std::int64_t>(a.size());
  if (i < 0) i += n;
  if (i < 0 || i >= n) return Undefined{std::string(what)};
  return a[static_cast<std::size_t>(i)];
}

// The code points of a string, each as a string (Python iterates a str so).
inline Array characters(std::string_view s) {
  Array out;
  for (std::size_t i = 0; i < s.size(); i += code_point_size(s, i)) out.emplace_back(s.substr(i, code_point_size(s, i)));
  return out;
}

// What a for loop, list(), join and the like walk over: a list's items, a dict's keys, a string's characters;
// Undefined is empty. Anything else is not iterable.
inline Array iterate(const Value& v) {
  if (v.is_array()) return v.as_array();
  if (v.is_string()) return characters(v.as_string());
  if (v.is_object()) {
    Array keys;
    for (const auto& kv : v.as_object().items) keys.emplace_back(kv.first);
    return keys;
  }
  if (v.is_undefined()) return {};
  fail<render_error>("chat template: '", v.type_name(), "' object is not iterable");
}

// Python slice bounds for a sequence of n items.
inline std::vector<std::size_t> slice_indices(std::int64_t n, const Value& start, const Value& stop, const Value& step) {
  const auto as_index = [](const Value& v, std::string_view what) -> std::int64_t {
    if (!v.is_int() && !v.is_bool()) fail<render_error>("chat template: slice ", what, " must be an integer or none");
    return v.as_int();
  };
  const std::int64_t s = step.is_none() || step.is_undefined() ? 1 : as_index(step, "step");
  if (s == 0) fail<render_error>("chat template: slice step cannot be zero");
  const auto clamp = [&](const Value& v, std::int64_t fallback) -> std::int64_t {
    if (v.is_none() || v.is_undefined()) return fallback;
    std::int64_t i = as_index(v, "bound");
    if (i < 0) i += n;
    if (s > 0) return std::clamp<std::int64_t>(i, 0, n);
    return std::clamp<std::int64_t>(i, -1, n - 1);
  };
  const std::int64_t lo = clamp(start, s > 0 ? 0 : n - 1), hi = clamp(stop, s > 0 ? n : -1);
  std::vector<std::size_t> out;
  for (std::int64_t i = lo; s > 0 ? i < hi : i > hi; i += s) out.push_back(static_cast<std::size_t>(i));
  return out;
}

inline Value slice(const Value& target, const Value& start, const Value& stop, const Value& step) {
  if (target.is_array()) {
    const Array& a = target.as_array();
    Array out;
    for (const auto i : slice_indices(static_cast<std::int64_t>(a.size()), start, stop, step)) out.push_back(a[i]);
    return out;
  }
  if (target.is_string()) {
    const std::string& s = target.as_string();
    const auto at = code_point_offsets(s);
    std::string out;
    for (const auto i : slice_indices(static_cast<std::int64_t>(at.size() - 1), start, stop, step))
      out.append(s, at[i], at[i + 1] - at[i]);
    return out;
  }
  require_defined(target);
  fail<render_error>("chat template: '", target.type_name(), "' object cannot be sliced");
}

struct JsonStyle {
  std::string indent;  // empty: one line
  bool indented = false;
  std::string item_separator = ", ", key_separator = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;
};

// Python's json.dumps (transformers' tojson): floats as repr, NaN and Infinity as Python writes them.
inline void to_json(const Value& v, const JsonStyle& style, int depth, std::string& out) {
  if (depth > 512) fail<render_error>("chat template: tojson nests deeper than 512 levels");
  const auto newline = [&](int d) {
    if (!style.indented) return;
    out += '\n';
    for (int i = 0; i < d; ++i) out += style.indent;
  };
  if (v.is_none()) out += "null";
  else if (v.is_bool()) out += v.as_bool() ? "true" : "false";
  else if (v.is_int()) out += std::to_string(v.as_int());
  else if (v.is_float()) {
    const double x = v.as_float();
    out += std::isnan(x) ? "NaN" : std::isinf(x) ? (x < 0 ? "-Infinity" : "Infinity") : python_float(x);
  } else if (v.is_string()) out += json_quote(v.as_string(), style.ensure_ascii);
  else if (v.is_array()) {
    const Array& a = v.as_array();
    out += '[';
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (i) out += style.item_separator;
      newline(depth + 1);
      to_json(a[i], style, depth + 1, out);
    }
    if (!a.empty()) newline(depth);
    out += ']';
  } else if (v.is_object()) {
    std::vector<const std::pair<std::string, Value>*> items;
    for (const auto& kv : v.as_object().items) items.push_back(&kv);
    if (style.sort_keys)
      std::stable_sort(items.begin(), items.end(), [](auto* x, auto* y) { return x->first < y->first; });
    out += '{';
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (i) out += style.item_separator;
      newline(depth + 1);
      out += json_quote(items[i]->first, style.ensure_ascii);
      out += style.key_separator;
      to_json(items[i]->second, style, depth + 1, out);
    }
    if (!items.empty()) newline(depth);
    out += '}';
  } else {
    require_defined(v);
    fail<render_error>("chat template: Object of type ", v.type_name(), " is not JSON serializable");
  }
  if (out.size() > max_text_bytes) fail<render_error>("chat template: tojson output exceeds ", max_text_bytes, " bytes");
}

}  // namespace rlhf::io::jinja
