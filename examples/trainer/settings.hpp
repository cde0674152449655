#pragma once
// The keys of rlhf-train's settings: each key is a name, a member of a settings struct (bound by a member
// pointer), a help line, and what it accepts. A struct lists its keys once, as a table of KeySpec<Struct>;
// binding the table to an object gives Keys, which read a value from JSON or the command line, write it back,
// and describe themselves for --help. Every method's settings, and the shared TrainingArguments, are such tables.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace trainer {

using json = nlohmann::json;

// A refused setting: its one-line message names the key. The command line exits with status 2 on it.
struct Refusal : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline constexpr double unbounded = std::numeric_limits<double>::max();

// text: any string; choice: one of a list; count: an integer ≥ 0 in a range; signed_count: an integer in a
// range; seed: any 64-bit unsigned integer; real: a finite number in a range; real32: the same, where the value is
// used as a float32 (the optimizer's settings), so that it must be in its range after rounding; boolean; names: a
// list of names (a JSON list of strings, or one string with commas between them), kept as one comma-joined string.
enum class Kind { text, choice, count, signed_count, seed, real, real32, boolean, names };

// Where a bound key's value lives: a typed pointer into its settings object.
using FieldRef = std::variant<std::string*, bool*, std::size_t*, long long*, double*>;

struct Key {
  const char* name;
  Kind kind;
  FieldRef field;
  const char* help;
  double lo = 0, hi = unbounded;       // count, signed_count, real: the closed range accepted
  std::vector<std::string> choices{};  // choice
};

template <class Owner>
struct KeySpec {
  using Member = std::variant<std::string Owner::*, bool Owner::*, std::size_t Owner::*, long long Owner::*,
                              double Owner::*>;
  const char* name;
  Kind kind;
  Member member;
  const char* help;
  double lo = 0, hi = unbounded;
  std::vector<std::string> choices{};

  Key bind(Owner& owner) const {
    const FieldRef field = std::visit([&](auto m) -> FieldRef { return &(owner.*m); }, member);
    return {name, kind, field, help, lo, hi, choices};
  }
};

// The table's keys bound to `owner`, appended to `out`.
template <class Owner>
void bind_keys(std::vector<Key>& out, const std::vector<KeySpec<Owner>>& table, Owner& owner) {
  for (const auto& spec : table) out.push_back(spec.bind(owner));
}

// ---- the table's entries, one helper per kind ----
template <class O>
KeySpec<O> text_key(const char* name, std::string O::*m, const char* help) {
  return {name, Kind::text, m, help};
}
template <class O>
KeySpec<O> choice_key(const char* name, std::string O::*m, const char* help, std::vector<std::string> choices) {
  return {name, Kind::choice, m, help, 0, 0, std::move(choices)};
}
template <class O>
KeySpec<O> count_key(const char* name, std::size_t O::*m, const char* help, double lo, double hi) {
  return {name, Kind::count, m, help, lo, hi};
}
template <class O>
KeySpec<O> signed_key(const char* name, long long O::*m, const char* help, double lo, double hi) {
  return {name, Kind::signed_count, m, help, lo, hi};
}
template <class O>
KeySpec<O> seed_key(const char* name, std::size_t O::*m, const char* help) {
  return {name, Kind::seed, m, help};
}
template <class O>
KeySpec<O> real_key(const char* name, double O::*m, const char* help, double lo, double hi) {
  return {name, Kind::real, m, help, lo, hi};
}
template <class O>
KeySpec<O> float_key(const char* name, double O::*m, const char* help, double lo, double hi) {
  return {name, Kind::real32, m, help, lo, hi};
}
template <class O>
KeySpec<O> names_key(const char* name, std::string O::*m, const char* help) {
  return {name, Kind::names, m, help};
}
template <class O>
KeySpec<O> flag_key(const char* name, bool O::*m, const char* help) {
  return {name, Kind::boolean, m, help};
}

// ---- reading and writing a bound key ----

inline std::string number_text(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

inline std::string range_text(const Key& k) {
  switch (k.kind) {
    case Kind::choice: {
      std::string s = "one of";
      for (const auto& c : k.choices) s += " " + c;
      return s;
    }
    case Kind::boolean: return "true or false";
    case Kind::text: return "a string";
    case Kind::names: return "a list of names (or one string, names separated by commas)";
    case Kind::seed: return "an integer in [0, 2^64)";
    default: return "in [" + number_text(k.lo) + ", " + (k.hi == unbounded ? std::string("inf") : number_text(k.hi)) + "]";
  }
}

// A JSON value quoted in a refusal: short, whatever the input.
inline std::string brief(const json& v) {
  if (v.is_structured()) return std::string("a JSON ") + v.type_name();
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

// Sets the key's field from a JSON value (from the file, or made from the command line's text by its kind).
inline void assign(const Key& k, const json& v) {
  const auto refuse = [&](const std::string& why) { throw Refusal(std::string(k.name) + ": " + why); };
  switch (k.kind) {
    case Kind::text:
    case Kind::choice: {
      if (!v.is_string()) refuse("must be a string, got " + brief(v));
      const auto s = v.get<std::string>();
      if (s.find('\0') != std::string::npos) refuse("must not hold a NUL character");
      if (k.kind == Kind::choice && std::find(k.choices.begin(), k.choices.end(), s) == k.choices.end())
        refuse("'" + s.substr(0, 60) + "' is not " + range_text(k));
      *std::get<std::string*>(k.field) = s;
      return;
    }
    case Kind::names: {
      std::vector<std::string> names;
      if (v.is_string()) {
        const auto s = v.get<std::string>();
        for (std::size_t at = 0; at <= s.size();) {
          const std::size_t comma = std::min(s.find(',', at), s.size());
          names.push_back(s.substr(at, comma - at));
          at = comma + 1;
        }
        if (s.empty()) names.clear();
      } else if (v.is_array()) {
        for (const auto& n : v) {
          if (!n.is_string()) refuse("must be a list of strings, got an element " + brief(n));
          names.push_back(n.get<std::string>());
        }
      } else {
        refuse("must be " + range_text(k) + ", got " + brief(v));
      }
      std::string joined;
      for (const auto& n : names) {
        if (n.empty() || n.find_first_of(std::string(",\0 ", 3)) != std::string::npos)
          refuse("'" + n.substr(0, 60) + "' is not a name (empty, or holding a comma, a space or a NUL)");
        joined += (joined.empty() ? "" : ",") + n;
      }
      *std::get<std::string*>(k.field) = joined;
      return;
    }
    case Kind::boolean:
      if (!v.is_boolean()) refuse("must be true or false, got " + brief(v));
      *std::get<bool*>(k.field) = v.get<bool>();
      return;
    case Kind::seed:
      if (!v.is_number_unsigned()) refuse("must be an integer in [0, 2^64), got " + brief(v));
      *std::get<std::size_t*>(k.field) = v.get<std::uint64_t>();
      return;
    case Kind::count:
    case Kind::signed_count: {
      if (!v.is_number_integer()) refuse("must be an integer, got " + brief(v));
      const double d = v.is_number_unsigned() ? double(v.get<std::uint64_t>()) : double(v.get<std::int64_t>());
      if (d < k.lo || d > k.hi) refuse(brief(v) + " is not " + range_text(k));
      if (k.kind == Kind::count)
        *std::get<std::size_t*>(k.field) = static_cast<std::size_t>(v.get<std::int64_t>());
      else
        *std::get<long long*>(k.field) = v.get<std::int64_t>();
      return;
    }
    case Kind::real:
    case Kind::real32: {
      if (!v.is_number()) refuse("must be a number, got " + brief(v));
      const double d = v.get<double>();
      if (!std::isfinite(d) || d < k.lo || d > k.hi) refuse(brief(v) + " is not " + range_text(k));
      if (const float f = float(d); k.kind == Kind::real32 && (!std::isfinite(f) || f < k.lo || f > k.hi || (d != 0 && f == 0)))
        refuse(brief(v) + " becomes " + number_text(f) + " as a float32 (the type it is used in), which is not " +
               range_text(k));
      *std::get<double*>(k.field) = d;
      return;
    }
  }
}

// The command line's text as the JSON value the key's kind expects ("2.5" stays a number and is refused by a
// count; "3x" is refused here).
inline json value_from_text(const Key& k, const std::string& text) {
  const auto refuse = [&](const std::string& why) { throw Refusal(std::string(k.name) + ": " + why); };
  switch (k.kind) {
    case Kind::text:
    case Kind::names:
    case Kind::choice: return text;
    case Kind::boolean:
      if (text == "true" || text == "1") return true;
      if (text == "false" || text == "0") return false;
      refuse("'" + text.substr(0, 60) + "' is not true or false");
    default: break;
  }
  const json v = json::parse(text, nullptr, false);
  if (v.is_discarded() || !v.is_number()) refuse("'" + text.substr(0, 60) + "' is not a number");
  return v;
}

// The key's current value, as JSON (trainer_config.json) and as text (--help's defaults).
inline json value_of(const Key& k) {
  return std::visit([](auto* p) { return json(*p); }, k.field);
}

inline std::string value_text(const Key& k) {
  return std::visit(
      [](auto* p) -> std::string {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, std::string>) return *p;
        else if constexpr (std::is_same_v<T, bool>) return *p ? "true" : "false";
        else if constexpr (std::is_same_v<T, double>) return number_text(*p);
        else return std::to_string(*p);
      },
      k.field);
}

inline const Key* find_key(const std::vector<Key>& keys, std::string_view name) {
  for (const auto& k : keys)
    if (name == k.name) return &k;
  return nullptr;
}

}  // namespace trainer
