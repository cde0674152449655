#pragma once
// Attribute and item lookup as Jinja2 does it (obj.name tries Python's attribute, then the key; obj[key] the
// key, then the attribute), and the Python methods chat templates call: str.startswith, endswith, split,
// rsplit, strip, lstrip, rstrip, upper, lower, title, capitalize, replace, find, count, join, splitlines;
// dict.get, items, keys, values. A method Python has but this engine does not is an error when called.
#include <string>
#include <string_view>

#include "rlhf/io/chat_template/operators.hpp"
#include "rlhf/io/chat_template/value.hpp"

namespace rlhf::io::jinja {

inline const std::string& string_argument(const Value& v, std::string_view method) {
  if (!v.is_string()) {
    require_defined(v);
    fail<render_error>("chat template: ", method, "() needs a string argument, not '", v.type_name(), "'");
  }
  return v.as_string();
}

// Python's str.lower/upper for ASCII text; other text is refused rather than changed wrongly.
inline std::string change_case(std::string_view s, bool upper, std::string_view method) {
  if (!is_ascii(s)) fail<render_error>("chat template: ", method, "() of non-ASCII text is not supported");
  std::string out(s);
  for (char& c : out) c = upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c)))
                                : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

inline std::string title_case(std::string_view s) {
  if (!is_ascii(s)) fail<render_error>("chat template: title() of non-ASCII text is not supported");
  std::string out(s);
  bool previous_letter = false;
  for (char& c : out) {
    const bool letter = std::isalpha(static_cast<unsigned char>(c)) != 0;
    if (letter) c = static_cast<char>(previous_letter ? std::tolower(c) : std::toupper(c));
    previous_letter = letter;
  }
  return out;
}

inline std::string capitalize(std::string_view s) {
  if (s.empty()) return {};
  std::string out = change_case(s.substr(0, 1), true, "capitalize");
  return out + change_case(s.substr(1), false, "capitalize");
}

// str.replace(old, new, count=-1), including an empty `old` (inserted between every character).
inline std::string replace_text(std::string_view s, std::string_view old, std::string_view with, std::int64_t count) {
  std::string out;
  if (old.empty()) {
    std::int64_t done = 0;
    for (std::size_t i = 0; i <= s.size();) {
      if (count < 0 || done < count) {
        out += with;
        ++done;
      }
      if (i == s.size()) break;
      const std::size_t n = code_point_size(s, i);
      out.append(s.substr(i, n));
      i += n;
      if (out.size() > max_text_bytes) fail<render_error>("chat template: replace() output is too long");
    }
    return out;
  }
  std::size_t at = 0;
  for (std::int64_t done = 0; count < 0 || done < count; ++done) {
    const std::size_t hit = s.find(old, at);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(at, hit - at));
    out += with;
    at = hit + old.size();
    if (out.size() > max_text_bytes) fail<render_error>("chat template: replace() output is too long");
  }
  out.append(s.substr(at));
  return out;
}

// str.split(sep=None, maxsplit=-1) and str.rsplit.
inline Array split_text(std::string_view s, const Value& sep, std::int64_t maxsplit, bool from_right) {
  std::vector<std::string> parts;
  if (sep.is_none() || sep.is_undefined()) {  // runs of white space; no empty parts
    std::vector<std::pair<std::size_t, std::size_t>> words;
    for (std::size_t i = 0; i < s.size();) {
      while (i < s.size() && is_python_space(decode_at(s, i, code_point_size(s, i)))) i += code_point_size(s, i);
      if (i >= s.size()) break;
      const std::size_t start = i;
      while (i < s.size() && !is_python_space(decode_at(s, i, code_point_size(s, i)))) i += code_point_size(s, i);
      words.emplace_back(start, i);
    }
    const std::size_t limit = maxsplit < 0 ? words.size() : static_cast<std::size_t>(maxsplit) + 1;
    if (words.size() <= limit) {
      for (const auto& [b, e] : words) parts.emplace_back(s.substr(b, e - b));
    } else if (!from_right) {
      for (std::size_t k = 0; k + 1 < limit; ++k) parts.emplace_back(s.substr(words[k].first, words[k].second - words[k].first));
      parts.emplace_back(strip(s.substr(words[limit - 1].first), false, true));
    } else {
      const std::size_t first = words.size() - (limit - 1);
      parts.emplace_back(strip(s.substr(0, words[first - 1].second), true, false));
      for (std::size_t k = first; k < words.size(); ++k) parts.emplace_back(s.substr(words[k].first, words[k].second - words[k].first));
    }
  } else {
    const std::string& d = string_argument(sep, "split");
    if (d.empty()) fail<render_error>("chat template: split() with an empty separator");
    std::vector<std::string_view> all;
    for (std::size_t at = 0;;) {
      const std::size_t hit = s.find(d, at);
      if (hit == std::string_view::npos) {
        all.push_back(s.substr(at));
        break;
      }
      all.push_back(s.substr(at, hit - at));
      at = hit + d.size();
    }
    const std::size_t limit = maxsplit < 0 ? all.size() : std::min(all.size(), static_cast<std::size_t>(maxsplit) + 1);
    if (!from_right) {
      for (std::size_t k = 0; k + 1 < limit; ++k) parts.emplace_back(all[k]);
      std::size_t offset = 0;
      for (std::size_t k = 0; k + 1 < limit; ++k) offset += all[k].size() + d.size();
      parts.emplace_back(s.substr(offset));
    } else {
      std::size_t length = s.size();
      for (std::size_t k = 0; k + 1 < limit; ++k) length -= all[all.size() - 1 - k].size() + d.size();
      parts.emplace_back(s.substr(0, length));
      for (std::size_t k = all.size() - (limit - 1); k < all.size(); ++k) parts.emplace_back(all[k]);
    }
  }
  Array out;
  for (auto& p : parts) out.emplace_back(std::move(p));
  return out;
}

// str.splitlines() (without keepends).
inline Array split_lines(std::string_view s) {
  Array out;
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = code_point_size(s, i);
    const char32_t c = decode_at(s, i, n);
    const bool brk = c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || (c >= 0x1c && c <= 0x1e) || c == 0x85 ||
                     c == 0x2028 || c == 0x2029;
    if (!brk) {
      i += n;
      continue;
    }
    out.emplace_back(s.substr(start, i - start));
    i += n;
    if (c == '\r' && i < s.size() && s[i] == '\n') ++i;
    start = i;
  }
  if (start < s.size()) out.emplace_back(s.substr(start));
  return out;
}

inline std::int64_t int_argument(const Value& v, std::string_view method, std::int64_t fallback) {
  if (v.is_undefined() || v.is_none()) return fallback;
  if (!v.is_int() && !v.is_bool()) fail<render_error>("chat template: ", method, "() needs an integer argument");
  return v.as_int();
}

inline bool starts_or_ends(const std::string& s, const Value& affix, bool start, std::string_view method) {
  const auto test = [&](const Value& a) {
    const std::string& x = string_argument(a, method);
    return start ? s.starts_with(x) : s.ends_with(x);
  };
  if (affix.is_array()) {
    for (const auto& a : affix.as_array())
      if (test(a)) return true;
    return false;
  }
  return test(affix);
}

inline Value string_method(const std::string& s, std::string_view name) {
  const std::string self = s;
  const auto method = [&](auto body) -> Value {
    return Function([self, body, name = std::string(name)](Arguments& a) -> Value {
      a.callee = name;
      return body(self, a);
    });
  };
  const auto stripper = [&](bool left, bool right) {
    return method([left, right](const std::string& x, Arguments& a) -> Value {
      const Value chars = a.get(0, "chars");
      if (chars.is_none() || chars.is_undefined()) return std::string(strip(x, left, right));
      const std::string_view set = string_argument(chars, a.callee);
      return std::string(strip(x, left, right, &set));
    });
  };
  if (name == "strip") return stripper(true, true);
  if (name == "lstrip") return stripper(true, false);
  if (name == "rstrip") return stripper(false, true);
  if (name == "startswith" || name == "endswith") {
    const bool start = name == "startswith";
    return method([start](const std::string& x, Arguments& a) -> Value {
      return starts_or_ends(x, a.required(0, "prefix"), start, a.callee);
    });
  }
  if (name == "split" || name == "rsplit") {
    const bool right = name == "rsplit";
    return method([right](const std::string& x, Arguments& a) -> Value {
      return split_text(x, a.get(0, "sep", nullptr), int_argument(a.get(1, "maxsplit"), a.callee, -1), right);
    });
  }
  if (name == "splitlines") return method([](const std::string& x, Arguments&) -> Value { return split_lines(x); });
  if (name == "upper" || name == "lower") {
    const bool upper = name == "upper";
    return method([upper](const std::string& x, Arguments& a) -> Value { return change_case(x, upper, a.callee); });
  }
  if (name == "title") return method([](const std::string& x, Arguments&) -> Value { return title_case(x); });
  if (name == "capitalize") return method([](const std::string& x, Arguments&) -> Value { return capitalize(x); });
  if (name == "replace") {
    return method([](const std::string& x, Arguments& a) -> Value {
      return replace_text(x, string_argument(a.required(0, "old"), "replace"),
                          string_argument(a.required(1, "new"), "replace"),
                          int_argument(a.get(2, "count"), "replace", -1));
    });
  }
  if (name == "find" || name == "count") {
    const bool find = name == "find";
    return method([find](const std::string& x, Arguments& a) -> Value {
      const std::string sub = string_argument(a.required(0, "sub"), a.callee);  // a copy: required() returns a temporary
      if (find) {
        const std::size_t at = x.find(sub);
        return at == std::string::npos ? std::int64_t{-1} : static_cast<std::int64_t>(code_point_count(x.substr(0, at)));
      }
      if (sub.empty()) return static_cast<std::int64_t>(code_point_count(x) + 1);
      std::int64_t n = 0;
      for (std::size_t at = x.find(sub); at != std::string::npos; at = x.find(sub, at + sub.size())) ++n;
      return n;
    });
  }
  if (name == "join") {
    return method([](const std::string& x, Arguments& a) -> Value {
      std::string out;
      const Array items = iterate(a.required(0, "iterable"));
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) out += x;
        out += string_argument(items[i], "join");
      }
      return out;
    });
  }
  return Undefined{"str." + std::string(name)};
}

inline Value dict_method(const Value& dict, std::string_view name) {
  const auto method = [&](auto body) -> Value {
    return Function([dict, body, name = std::string(name)](Arguments& a) -> Value {
      a.callee = name;
      return body(dict.as_object(), a);
    });
  };
  if (name == "get") {
    return method([](const Object& o, Arguments& a) -> Value {
      const Value key = a.required(0, "key");
      const Value* v = key.is_string() ? o.find(key.as_string()) : nullptr;
      return v ? *v : a.get(1, "default", nullptr);
    });
  }
  if (name == "items" || name == "keys" || name == "values") {
    const int which = name == "items" ? 0 : name == "keys" ? 1 : 2;
    return method([which](const Object& o, Arguments&) -> Value {
      Array out;
      for (const auto& [k, v] : o.items) {
        if (which == 0) out.emplace_back(Array{Value(k), v});
        else if (which == 1) out.emplace_back(k);
        else out.push_back(v);
      }
      return out;
    });
  }
  return Undefined{};
}

// obj.name
inline Value get_attribute(const Value& target, std::string_view name) {
  if (target.is_undefined()) undefined_error(target);
  if (target.is_object()) {
    const Object& o = target.as_object();
    if (!o.is_namespace) {
      Value m = dict_method(target, name);
      if (!m.is_undefined()) return m;
    }
    if (const Value* v = o.find(name)) return *v;
    return Undefined{std::string(name)};
  }
  if (target.is_string()) return string_method(target.as_string(), name);
  return Undefined{std::string(name)};
}

// obj[key]
inline Value get_item(const Value& target, const Value& key) {
  if (target.is_undefined()) undefined_error(target);
  if (target.is_object()) {
    if (key.is_string())
      if (const Value* v = target.as_object().find(key.as_string())) return *v;
    if (key.is_string()) return get_attribute(target, key.as_string());
    return Undefined{};
  }
  if (target.is_array()) {
    if (key.is_int() || key.is_bool()) return index_list(target.as_array(), key.as_int(), "list index");
    if (key.is_string()) return Undefined{key.as_string()};
    fail<render_error>("chat template: list indices must be integers, not '", key.type_name(), "'");
  }
  if (target.is_string()) {
    if (key.is_int() || key.is_bool()) return index_list(characters(target.as_string()), key.as_int(), "string index");
    if (key.is_string()) return string_method(target.as_string(), key.as_string());
    fail<render_error>("chat template: string indices must be integers, not '", key.type_name(), "'");
  }
  return Undefined{key.is_string() ? key.as_string() : std::string()};
}

}  // namespace rlhf::io::jinja
