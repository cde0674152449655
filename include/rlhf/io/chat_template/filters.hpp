#pragma once
// Jinja2's filters (value | name(args)) and tests (value is name(args)) that chat templates use, with Jinja2's
// semantics, and transformers' tojson (json.dumps with ensure_ascii=False). Their names are listed so that the
// template is refused when parsed, not half-rendered, if it uses another.
#include <algorithm>
#include <array>
#include <charconv>
#include <string>
#include <string_view>

#include "rlhf/io/chat_template/methods.hpp"
#include "rlhf/io/chat_template/operators.hpp"

namespace rlhf::io::jinja {

inline constexpr std::array filter_names{
    "abs",    "capitalize", "count", "d",    "default",   "first",  "float",      "indent", "int",     "items",
    "join",   "last",       "length", "list", "lower",    "map",    "rejectattr", "reject", "replace", "reverse",
    "safe",   "select",     "selectattr", "string", "title", "tojson", "trim",      "upper",  "sum"};

inline constexpr std::array test_names{
    "boolean",  "callable", "defined", "divisibleby", "eq",     "equalto", "even",   "false",    "float",
    "ge",       "gt",       "greaterthan", "in",      "integer", "iterable", "le",   "lessthan", "lower",
    "lt",       "mapping",  "ne",      "none",        "number", "odd",     "sameas", "sequence", "string",
    "true",     "undefined", "upper",  "==",          "!=",     "<",       ">",      "<=",       ">="};

template <std::size_t N>
bool listed(const std::array<const char*, N>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

inline bool run_test(std::string_view name, const Value& v, const Arguments& a) {
  const auto arg = [&]() { return a.required(0, "value"); };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_object() && !v.as_object().is_namespace;
  if (name == "iterable") return v.is_array() || v.is_string() || v.is_object() || v.is_undefined();
  if (name == "sequence") return v.is_array() || v.is_string() || (v.is_object() && !v.as_object().is_namespace);
  if (name == "callable") return v.is_function();
  if (name == "lower" || name == "upper") {
    if (!v.is_string()) return false;
    bool cased = false;
    for (const char c : v.as_string()) {
      if (std::isalpha(static_cast<unsigned char>(c))) cased = true;
      if (name == "lower" ? std::isupper(static_cast<unsigned char>(c)) : std::islower(static_cast<unsigned char>(c)))
        return false;
    }
    if (!is_ascii(v.as_string())) fail<render_error>("chat template: the test ", name, " of non-ASCII text is not supported");
    return cased;
  }
  if (name == "odd" || name == "even") {
    if (!v.is_int() && !v.is_bool()) type_error("%", v, Value(2));
    const bool odd = (v.as_int() % 2) != 0;
    return name == "odd" ? odd : !odd;
  }
  if (name == "divisibleby") {
    const Value d = arg();
    return equals(arithmetic("%", v, d), Value(0));
  }
  if (name == "eq" || name == "equalto" || name == "==") return equals(v, arg());
  if (name == "ne" || name == "!=") return !equals(v, arg());
  if (name == "lt" || name == "lessthan" || name == "<") return compare(v, "<", arg());
  if (name == "le" || name == "<=") return compare(v, "<=", arg());
  if (name == "gt" || name == "greaterthan" || name == ">") return compare(v, ">", arg());
  if (name == "ge" || name == ">=") return compare(v, ">=", arg());
  if (name == "in") return contains(arg(), v);
  if (name == "sameas") {
    const Value other = arg();
    if (v.is_object() && other.is_object()) return &v.as_object() == &other.as_object();
    if (v.is_array() || v.is_object() || other.is_array() || other.is_object()) return false;
    return v.type_name() == other.type_name() && equals(v, other);
  }
  fail<render_error>("chat template: no test named '", name, "'");
}

// Jinja2's attribute paths ("function.name", "0"): each part a key, or an index where it is a number.
inline Value get_path(const Value& v, std::string_view path) {
  Value cur = v;
  while (!path.empty()) {
    const std::size_t dot = path.find('.');
    const std::string_view part = path.substr(0, dot);
    std::int64_t index = 0;
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), index);
    if (cur.is_undefined()) return cur;
    cur = (ec == std::errc() && end == part.data() + part.size()) ? get_item(cur, Value(index)) : get_item(cur, Value(part));
    path = dot == std::string_view::npos ? std::string_view() : path.substr(dot + 1);
  }
  return cur;
}

inline Value run_filter(std::string_view name, const Value& v, Arguments& a);

// select / reject / selectattr / rejectattr: the items for which the test (or truth) holds, or does not.
inline Value select_items(const Value& seq, Arguments& a, bool by_attribute, bool keep) {
  std::size_t next = 0;
  std::string attribute;
  if (by_attribute) attribute = string_argument(a.required(next++, "attribute"), a.callee);
  std::string test;
  if (next < a.positional.size()) test = string_argument(a.positional[next++], a.callee);
  if (!test.empty() && !listed(test_names, test)) fail<render_error>("chat template: no test named '", test, "'");
  Arguments test_args;
  test_args.callee = test;
  test_args.positional.assign(a.positional.begin() + static_cast<std::ptrdiff_t>(std::min(next, a.positional.size())),
                              a.positional.end());
  Array out;
  for (const auto& item : iterate(seq)) {
    const Value subject = by_attribute ? get_path(item, attribute) : item;
    const bool pass = test.empty() ? subject.truthy() : run_test(test, subject, test_args);
    if (pass == keep) out.push_back(item);
  }
  return out;
}

inline Value map_items(const Value& seq, Arguments& a) {
  Array out;
  const Value attribute = a.get(SIZE_MAX, "attribute");
  if (!attribute.is_undefined()) {
    const std::string path = to_str(attribute);
    const Value fallback = a.get(SIZE_MAX, "default");
    for (const auto& item : iterate(seq)) {
      Value x = get_path(item, path);
      out.push_back(x.is_undefined() && !fallback.is_undefined() ? fallback : x);
    }
    return out;
  }
  const std::string filter = string_argument(a.required(0, "filter"), "map");
  if (!listed(filter_names, filter) || filter == "map") fail<render_error>("chat template: no filter named '", filter, "'");
  Arguments rest;
  rest.callee = filter;
  rest.positional.assign(a.positional.begin() + 1, a.positional.end());
  rest.keyword = a.keyword;
  for (const auto& item : iterate(seq)) out.push_back(run_filter(filter, item, rest));
  return out;
}

inline JsonStyle json_style(const Arguments& a) {
  JsonStyle style;
  const Value indent = a.get(SIZE_MAX, "indent", nullptr);
  if (indent.is_string()) {
    style.indented = true;
    style.indent = indent.as_string();
  } else if (indent.is_int()) {
    style.indented = true;
    style.indent = std::string(static_cast<std::size_t>(std::clamp<std::int64_t>(indent.as_int(), 0, 64)), ' ');
  } else if (!indent.is_none()) {
    fail<render_error>("chat template: tojson's indent must be an integer or a string");
  }
  if (style.indented) style.item_separator = ",";
  const Value separators = a.get(SIZE_MAX, "separators", nullptr);
  if (separators.is_array() && separators.as_array().size() == 2) {
    style.item_separator = string_argument(separators.as_array()[0], "tojson");
    style.key_separator = string_argument(separators.as_array()[1], "tojson");
  } else if (!separators.is_none()) {
    fail<render_error>("chat template: tojson's separators must be a pair of strings");
  }
  style.sort_keys = a.get(SIZE_MAX, "sort_keys", false).truthy();
  style.ensure_ascii = a.get(SIZE_MAX, "ensure_ascii", false).truthy();
  return style;
}

// Jinja2's indent(width=4, first=False, blank=False)
inline std::string indent_text(const std::string& s, const Arguments& a) {
  const Value width = a.get(0, "width", std::int64_t{4});
  const std::string pad = width.is_string() ? width.as_string()
                                            : std::string(static_cast<std::size_t>(std::clamp<std::int64_t>(
                                                              int_argument(width, "indent", 4), 0, 1024)), ' ');
  const bool first = a.get(1, "first", false).truthy(), blank = a.get(2, "blank", false).truthy();
  const Array lines = split_lines(s + "\n");
  std::string out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i].as_string();
    if (i) out += "\n";
    if (i == 0 ? first : (blank || !line.empty())) out += pad;
    out += line;
    if (out.size() > max_text_bytes) fail<render_error>("chat template: indent() output is too long");
  }
  return out;
}

inline Value to_int(const Value& v, const Value& fallback) {
  if (v.is_int() || v.is_bool()) return v.as_int();
  if (v.is_float()) {
    const double x = v.as_float();
    if (std::isnan(x)) return fallback;  // Python's int() raises ValueError, which Jinja2's int filter catches
    if (std::fabs(x) >= 9.2e18) fail<render_error>("chat template: int() of ", python_float(x), " exceeds 64 bits");
    return static_cast<std::int64_t>(x);
  }
  if (v.is_string()) {
    const std::string_view s = strip(v.as_string(), true, true);
    if (s.find('_') != std::string_view::npos || s.starts_with("+-"))
      fail<render_error>("chat template: int() of \"", s, "\" is not supported");
    std::int64_t i = 0;
    const char* begin = s.data() + (s.starts_with('+') ? 1 : 0);
    const auto [end, ec] = std::from_chars(begin, s.data() + s.size(), i);
    if (!s.empty() && ec == std::errc() && end == s.data() + s.size()) return i;
    double d = 0;
    const auto [fend, fec] = std::from_chars(begin, s.data() + s.size(), d);
    if (!s.empty() && fec == std::errc() && fend == s.data() + s.size()) return to_int(Value(d), fallback);
  }
  return fallback;
}

inline Value to_float(const Value& v, const Value& fallback) {
  if (v.is_number()) return v.as_float();
  if (v.is_string()) {
    const std::string_view s = strip(v.as_string(), true, true);
    if (s.find('_') != std::string_view::npos || s.starts_with("+-"))
      fail<render_error>("chat template: float() of \"", s, "\" is not supported");
    double d = 0;
    const char* begin = s.data() + (s.starts_with('+') ? 1 : 0);
    const auto [end, ec] = std::from_chars(begin, s.data() + s.size(), d);
    if (!s.empty() && ec == std::errc() && end == s.data() + s.size()) return d;
  }
  return fallback;
}

inline Value run_filter(std::string_view name, const Value& v, Arguments& a) {
  a.callee = name;
  if (name == "trim") {
    const Value chars = a.get(0, "chars", nullptr);
    const std::string s = to_str(v);
    if (chars.is_none()) return std::string(strip(s, true, true));
    const std::string_view set = string_argument(chars, "trim");
    return std::string(strip(s, true, true, &set));
  }
  if (name == "tojson") {
    std::string out;
    to_json(v, json_style(a), 0, out);
    return out;
  }
  if (name == "length" || name == "count") {
    if (v.is_string()) return static_cast<std::int64_t>(code_point_count(v.as_string()));
    if (v.is_array()) return static_cast<std::int64_t>(v.as_array().size());
    if (v.is_object()) return static_cast<std::int64_t>(v.as_object().items.size());
    if (v.is_undefined()) return std::int64_t{0};
    fail<render_error>("chat template: object of type '", v.type_name(), "' has no len()");
  }
  if (name == "lower" || name == "upper") return change_case(to_str(v), name == "upper", name);
  if (name == "title") return title_case(to_str(v));
  if (name == "capitalize") return capitalize(to_str(v));
  if (name == "string" || name == "safe") return to_str(v);
  if (name == "replace") {
    return replace_text(to_str(v), to_str(a.required(0, "old")), to_str(a.required(1, "new")),
                        int_argument(a.get(2, "count"), "replace", -1));
  }
  if (name == "join") {
    const std::string separator = to_str(a.get(0, "d", ""));
    const Value attribute = a.get(1, "attribute", nullptr);
    std::string out;
    const Array items = iterate(v);
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (i) out += separator;
      out += to_str(attribute.is_none() ? items[i] : get_path(items[i], to_str(attribute)));
      if (out.size() > max_text_bytes) fail<render_error>("chat template: join() output is too long");
    }
    return out;
  }
  if (name == "default" || name == "d") {
    const bool boolean = a.get(1, "boolean", false).truthy();
    if (v.is_undefined() || (boolean && !v.truthy())) return a.get(0, "default_value", "");
    return v;
  }
  if (name == "items") {
    if (v.is_undefined()) return Array{};
    if (!v.is_object()) fail<render_error>("chat template: items() needs a mapping, not '", v.type_name(), "'");
    Array out;
    for (const auto& [k, x] : v.as_object().items) out.emplace_back(Array{Value(k), x});
    return out;
  }
  if (name == "first") {
    const Array items = iterate(v);
    return items.empty() ? Value(Undefined{"first item"}) : items.front();
  }
  if (name == "last") {
    if (v.is_object()) fail<render_error>("chat template: last() of a mapping is not supported");
    const Array items = iterate(v);
    return items.empty() ? Value(Undefined{"last item"}) : items.back();
  }
  if (name == "list") return iterate(v);
  if (name == "reverse") {
    if (v.is_string()) {
      Array chars = characters(v.as_string());
      std::string out;
      for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += it->as_string();
      return out;
    }
    Array items = iterate(v);
    std::reverse(items.begin(), items.end());
    return items;
  }
  if (name == "int") return to_int(v, a.get(0, "default", std::int64_t{0}));
  if (name == "float") return to_float(v, a.get(0, "default", 0.0));
  if (name == "abs") {
    if (v.is_float()) return std::fabs(v.as_float());
    if (v.is_int() || v.is_bool()) return arithmetic("*", Value(v.as_int() < 0 ? -1 : 1), Value(v.as_int()));
    type_error("abs", v, v);
  }
  if (name == "select" || name == "reject") return select_items(v, a, false, name == "select");
  if (name == "selectattr" || name == "rejectattr") return select_items(v, a, true, name == "selectattr");
  if (name == "map") return map_items(v, a);
  if (name == "indent") return indent_text(to_str(v), a);
  if (name == "sum") {
    Value total = a.get(1, "start", std::int64_t{0});
    const Value attribute = a.get(0, "attribute", nullptr);
    for (const auto& x : iterate(v)) total = arithmetic("+", total, attribute.is_none() ? x : get_path(x, to_str(attribute)));
    return total;
  }
  fail<render_error>("chat template: no filter named '", name, "'");
}

}  // namespace rlhf::io::jinja
