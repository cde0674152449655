#pragma once
// The values a chat template computes with, and how Python prints them. docs/io/chat_templates.md.
//
// transformers renders chat templates with Python's Jinja2, so a value behaves as the Python object it stands
// for: None, bool, int, float, str, list, dict (insertion-ordered), a function, and Jinja's Undefined (what a
// missing variable, key or index gives: it prints as "", is false, iterates as nothing, and is an error to
// add to, index or call). A namespace() is a dict whose attributes `set` may change; arrays and dicts are shared,
// not copied, as in Python.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/core/error.hpp"
#include "rlhf/io/chat_template/text.hpp"

namespace rlhf::io::jinja {

// A template that cannot be parsed: the message names the line and column.
struct syntax_error : io_error {
  using io_error::io_error;
};
// A template that fails while rendering (raise_exception, a type error, an undefined value used).
struct render_error : error {
  using error::error;
};

class Value;
using Array = std::vector<Value>;
struct Object;
struct Arguments;
using Function = std::function<Value(Arguments&)>;

struct Undefined {
  std::string name;  // what was looked up, for the error when it is used
};

class Value {
 public:
  using Storage = std::variant<Undefined, std::nullptr_t, bool, std::int64_t, double, std::string,
                               std::shared_ptr<Array>, std::shared_ptr<Object>, std::shared_ptr<const Function>>;

  Value() : v_(Undefined{}) {}
  Value(Undefined u) : v_(std::move(u)) {}
  Value(std::nullptr_t) : v_(nullptr) {}
  Value(bool b) : v_(b) {}
  Value(std::int64_t i) : v_(i) {}
  Value(int i) : v_(std::int64_t{i}) {}
  Value(double d) : v_(d) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(Array a) : v_(std::make_shared<Array>(std::move(a))) {}
  Value(std::shared_ptr<Object> o) : v_(std::move(o)) {}
  Value(Function f) : v_(std::make_shared<const Function>(std::move(f))) {}

  bool is_undefined() const { return std::holds_alternative<Undefined>(v_); }
  bool is_none() const { return std::holds_alternative<std::nullptr_t>(v_); }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }
  bool is_int() const { return std::holds_alternative<std::int64_t>(v_); }
  bool is_float() const { return std::holds_alternative<double>(v_); }
  bool is_number() const { return is_int() || is_float() || is_bool(); }  // Python: bool is an int
  bool is_string() const { return std::holds_alternative<std::string>(v_); }
  bool is_array() const { return std::holds_alternative<std::shared_ptr<Array>>(v_); }
  bool is_object() const { return std::holds_alternative<std::shared_ptr<Object>>(v_); }
  bool is_function() const { return std::holds_alternative<std::shared_ptr<const Function>>(v_); }

  bool as_bool() const { return std::get<bool>(v_); }
  std::int64_t as_int() const { return is_bool() ? std::int64_t{as_bool()} : std::get<std::int64_t>(v_); }
  double as_float() const { return is_float() ? std::get<double>(v_) : static_cast<double>(as_int()); }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  const Array& as_array() const { return *std::get<std::shared_ptr<Array>>(v_); }
  Object& as_object() const { return *std::get<std::shared_ptr<Object>>(v_); }
  const Function& as_function() const { return *std::get<std::shared_ptr<const Function>>(v_); }
  const std::string& undefined_name() const { return std::get<Undefined>(v_).name; }

  bool truthy() const;
  std::string type_name() const;  // Python's name of the type, for error messages

 private:
  Storage v_;
};

struct Object {
  std::vector<std::pair<std::string, Value>> items;  // in insertion order, like a Python dict
  bool is_namespace = false;

  const Value* find(std::string_view key) const {
    for (const auto& [k, v] : items)
      if (k == key) return &v;
    return nullptr;
  }
  void set(std::string_view key, Value v) {
    for (auto& [k, old] : items)
      if (k == key) {
        old = std::move(v);
        return;
      }
    items.emplace_back(std::string(key), std::move(v));
  }
};

inline std::shared_ptr<Object> make_object() { return std::make_shared<Object>(); }

// A call's arguments: positional, then keyword (name=value).
struct Arguments {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
  std::string_view callee;  // for error messages

  // The argument at `index`, or the keyword `name`, or `fallback` (Undefined{} when required and missing).
  Value get(std::size_t index, std::string_view name, Value fallback = Value()) const {
    for (const auto& [k, v] : keyword)
      if (k == name) return v;
    return index < positional.size() ? positional[index] : fallback;
  }
  Value required(std::size_t index, std::string_view name) const {
    Value v = get(index, name);
    if (v.is_undefined() && index >= positional.size())
      fail<render_error>(callee, "() is missing its argument '", name, "'");
    return v;
  }
};

inline bool Value::truthy() const {
  return std::visit(
      [](const auto& x) -> bool {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, Undefined> || std::is_same_v<T, std::nullptr_t>) return false;
        else if constexpr (std::is_same_v<T, bool>) return x;
        else if constexpr (std::is_same_v<T, std::int64_t> || std::is_same_v<T, double>) return x != 0;
        else if constexpr (std::is_same_v<T, std::string>) return !x.empty();
        else if constexpr (std::is_same_v<T, std::shared_ptr<Array>>) return !x->empty();
        else if constexpr (std::is_same_v<T, std::shared_ptr<Object>>) return x->is_namespace || !x->items.empty();
        else return true;
      },
      v_);
}

inline std::string Value::type_name() const {
  if (is_undefined()) return "Undefined";
  if (is_none()) return "NoneType";
  if (is_bool()) return "bool";
  if (is_int()) return "int";
  if (is_float()) return "float";
  if (is_string()) return "str";
  if (is_array()) return "list";
  if (is_object()) return as_object().is_namespace ? "Namespace" : "dict";
  return "function";
}

// From the JSON of a conversation: objects keep their key order.
inline Value from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return nullptr;
    case nlohmann::ordered_json::value_t::boolean: return j.get<bool>();
    case nlohmann::ordered_json::value_t::number_integer: return j.get<std::int64_t>();
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const auto u = j.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(INT64_MAX)) return static_cast<double>(u);
      return static_cast<std::int64_t>(u);
    }
    case nlohmann::ordered_json::value_t::number_float: return j.get<double>();
    case nlohmann::ordered_json::value_t::string: return j.get<std::string>();
    case nlohmann::ordered_json::value_t::array: {
      Array a;
      a.reserve(j.size());
      for (const auto& x : j) a.push_back(from_json(x));
      return a;
    }
    case nlohmann::ordered_json::value_t::object: {
      auto o = make_object();
      for (auto it = j.begin(); it != j.end(); ++it) o->items.emplace_back(it.key(), from_json(it.value()));
      return o;
    }
    default: fail<render_error>("chat template: a JSON value of type ", j.type_name(), " cannot be a template value");
  }
}

// Python's repr() of a str: single quotes unless the text holds ' and no ".
inline std::string python_repr(std::string_view s) {
  const bool double_quotes = s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos;
  const char quote = double_quotes ? '"' : '\'';
  std::string out(1, quote);
  for (const char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c == quote) {
          out += '\\';
          out += c;
        } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          static const char* hex = "0123456789abcdef";
          out += "\\x";
          out += hex[(c >> 4) & 0xf];
          out += hex[c & 0xf];
        } else {
          out += c;
        }
    }
  }
  out += quote;
  return out;
}

std::string to_str(const Value& v);

inline std::string to_repr(const Value& v) {
  if (v.is_string()) return python_repr(v.as_string());
  return to_str(v);
}

// Python's str(): what {{ value }} prints.
inline std::string to_str(const Value& v) {
  if (v.is_undefined()) return "";
  if (v.is_none()) return "None";
  if (v.is_bool()) return v.as_bool() ? "True" : "False";
  if (v.is_int()) return std::to_string(v.as_int());
  if (v.is_float()) return python_float(v.as_float());
  if (v.is_string()) return v.as_string();
  if (v.is_array()) {
    std::string out = "[";
    const Array& a = v.as_array();
    for (std::size_t i = 0; i < a.size(); ++i) out += (i ? ", " : "") + to_repr(a[i]);
    return out + "]";
  }
  if (v.is_object()) {
    const Object& o = v.as_object();
    std::string out = o.is_namespace ? "<Namespace {" : "{";
    for (std::size_t i = 0; i < o.items.size(); ++i)
      out += (i ? ", " : "") + python_repr(o.items[i].first) + ": " + to_repr(o.items[i].second);
    return out + (o.is_namespace ? "}>" : "}");
  }
  return "<function>";
}

}  // namespace rlhf::io::jinja
