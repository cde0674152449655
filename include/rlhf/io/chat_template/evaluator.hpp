#pragma once
// Runs a parsed template: statements write text, expressions compute values (operators.hpp, methods.hpp,
// filters.hpp). Scopes follow Jinja2: a for loop's body and a macro's body have their own, so a `set` inside
// them is gone after them (namespace() is how a template carries a value out of a loop); if blocks share
// their enclosing scope. Globals: range, namespace, dict, raise_exception and strftime_now (transformers adds
// the last two). Text between {% generation %} and {% endgeneration %} is recorded as a span.
#include <algorithm>
#include <cstddef>
#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include "rlhf/io/chat_template/ast.hpp"
#include "rlhf/io/chat_template/filters.hpp"

namespace rlhf::io::jinja {

struct Span {
  std::size_t begin = 0, end = 0;  // byte offsets into the rendered text, [begin, end)
};

class Scope {
 public:
  explicit Scope(Scope* parent = nullptr) : parent_(parent) {}
  const Value* find(std::string_view name) const {
    for (const Scope* s = this; s; s = s->parent_)
      if (const Value* v = s->vars_.find(name)) return v;
    return nullptr;
  }
  void set(std::string_view name, Value v) { vars_.set(name, std::move(v)); }

 private:
  Scope* parent_;
  Object vars_;  // this scope's own names, as a dict holds its keys
};

class Evaluator {
 public:
  explicit Evaluator(Scope& globals) : globals_(globals) {}

  std::string out;
  std::vector<Span> generation_spans;

  void run(const Body& body, Scope& scope) {
    if (exec(body, scope) != Flow::normal) fail<render_error>("chat template: {% break %} or {% continue %} outside a loop");
  }

 private:
  enum class Flow { normal, break_, continue_ };
  Scope& globals_;
  int call_depth_ = 0;
  std::size_t steps_ = 0;
  static constexpr int max_call_depth = 64;
  static constexpr std::size_t max_steps = std::size_t(1) << 24;

  [[noreturn]] static void error_at(const Node& n, const std::exception& e) {
    fail<render_error>(e.what(), " (line ", n.line, ", column ", n.column, ")");
  }
  void count_step() {
    if (++steps_ > max_steps) fail<render_error>("chat template: the render takes more than ", max_steps, " steps");
    if (out.size() > max_text_bytes) fail<render_error>("chat template: the output exceeds ", max_text_bytes, " bytes");
  }

  Flow exec(const Body& body, Scope& scope) {
    for (const auto& n : body) {
      const Flow f = exec(*n, scope);
      if (f != Flow::normal) return f;
    }
    return Flow::normal;
  }

  Flow exec(const Node& n, Scope& scope) {
    count_step();
    switch (n.kind) {
      case NodeKind::text: out += n.text; return Flow::normal;
      case NodeKind::output: out += to_str(eval(*n.expr, scope)); return Flow::normal;
      case NodeKind::if_:
        for (const auto& [condition, body] : n.branches)
          if (eval(*condition, scope).truthy()) return exec(body, scope);
        return exec(n.else_body, scope);
      case NodeKind::for_: return exec_for(n, scope);
      case NodeKind::set: {
        Value v = eval(*n.expr, scope);
        if (n.text.empty()) {
          scope.set(n.targets[0], std::move(v));
          return Flow::normal;
        }
        const Value* ns = scope.find(n.targets[0]);
        if (!ns || !ns->is_object() || !ns->as_object().is_namespace)
          fail<render_error>("chat template: line ", n.line, ": cannot set an attribute of '", n.targets[0],
                             "', which is not a namespace()");
        ns->as_object().set(n.text, std::move(v));
        return Flow::normal;
      }
      case NodeKind::set_block: {
        std::string saved = std::move(out);
        out.clear();
        run(n.body, scope);
        scope.set(n.targets[0], std::move(out));
        out = std::move(saved);
        return Flow::normal;
      }
      case NodeKind::macro: scope.set(n.text, make_macro(n)); return Flow::normal;
      case NodeKind::break_: return Flow::break_;
      case NodeKind::continue_: return Flow::continue_;
      case NodeKind::generation: {
        const std::size_t begin = out.size();
        const Flow f = exec(n.body, scope);
        generation_spans.push_back({begin, out.size()});
        return f;
      }
    }
    return Flow::normal;
  }

  Flow exec_for(const Node& n, Scope& outer) {
    Scope scope(&outer);
    Array items;
    for (auto& item : iterate(eval(*n.expr, outer))) {
      if (n.condition) {
        bind(n, item, scope);
        if (!eval(*n.condition, scope).truthy()) continue;
      }
      items.push_back(std::move(item));
    }
    const auto length = static_cast<std::int64_t>(items.size());
    for (std::int64_t i = 0; i < length; ++i) {
      count_step();
      auto loop = make_object();
      loop->items = {{"index", i + 1},
                     {"index0", i},
                     {"revindex", length - i},
                     {"revindex0", length - i - 1},
                     {"first", i == 0},
                     {"last", i == length - 1},
                     {"length", length},
                     {"depth", 1},
                     {"depth0", 0},
                     {"previtem", i > 0 ? items[i - 1] : Value(Undefined{"loop.previtem"})},
                     {"nextitem", i + 1 < length ? items[i + 1] : Value(Undefined{"loop.nextitem"})}};
      loop->items.emplace_back("cycle", Function([i](Arguments& a) -> Value {
                                 if (a.positional.empty()) fail<render_error>("chat template: loop.cycle() needs values");
                                 return a.positional[static_cast<std::size_t>(i) % a.positional.size()];
                               }));
      scope.set("loop", Value(loop));
      bind(n, items[i], scope);
      if (exec(n.body, scope) == Flow::break_) break;
    }
    if (items.empty()) return exec(n.else_body, outer);
    return Flow::normal;
  }

  static void bind(const Node& n, const Value& item, Scope& scope) {
    if (n.targets.size() == 1) {
      scope.set(n.targets[0], item);
      return;
    }
    const Array parts = iterate(item);
    if (parts.size() != n.targets.size())
      fail<render_error>("chat template: line ", n.line, ": cannot unpack ", parts.size(), " values into ",
                         n.targets.size(), " loop variables");
    for (std::size_t k = 0; k < parts.size(); ++k) scope.set(n.targets[k], parts[k]);
  }

  Value make_macro(const Node& n) {
    const Node* node = &n;
    return Function([this, node](Arguments& a) -> Value {
      if (++call_depth_ > max_call_depth) fail<render_error>("chat template: macros call each other too deeply");
      Scope scope(&globals_);
      if (a.positional.size() > node->params.size())
        fail<render_error>("chat template: macro ", node->text, " takes ", node->params.size(), " arguments");
      for (std::size_t k = 0; k < node->params.size(); ++k) {
        const auto& [name, fallback] = node->params[k];
        Value v = a.get(k, name);
        if (v.is_undefined() && k >= a.positional.size() && fallback) v = eval(*fallback, scope);
        scope.set(name, v.is_undefined() ? Value(Undefined{name}) : v);
      }
      for (const auto& kv : a.keyword) {  // (clang 14 cannot capture a structured binding)
        const bool known =
            std::any_of(node->params.begin(), node->params.end(), [&](const auto& p) { return p.first == kv.first; });
        if (!known) fail<render_error>("chat template: macro ", node->text, " has no parameter '", kv.first, "'");
      }
      std::string saved = std::move(out);
      out.clear();
      run(node->body, scope);
      std::string result = std::move(out);
      out = std::move(saved);
      --call_depth_;
      return result;
    });
  }

  Arguments arguments(const Expr& e, Scope& scope) {
    Arguments a;
    for (const auto& x : e.args) a.positional.push_back(eval(*x, scope));
    for (const auto& [k, x] : e.kwargs) a.keyword.emplace_back(k, eval(*x, scope));
    return a;
  }

  [[noreturn]] static void rethrow_at(const Expr& e, const std::exception& ex) {
    const std::string what = ex.what();
    if (what.find("(line ") != std::string::npos) throw;
    fail<render_error>(what, " (line ", e.line, ", column ", e.column, ")");
  }

 public:
  Value eval(const Expr& e, Scope& scope) {
    try {
      return eval_unlocated(e, scope);
    } catch (const render_error& ex) {
      rethrow_at(e, ex);
    }
  }

 private:
  Value eval_unlocated(const Expr& e, Scope& scope) {
    count_step();
    switch (e.kind) {
      case ExprKind::literal: return e.value;
      case ExprKind::name: {
        if (const Value* v = scope.find(e.name)) return *v;
        return Undefined{e.name};
      }
      case ExprKind::list:
      case ExprKind::tuple: {
        Array a;
        for (const auto& x : e.args) a.push_back(eval(*x, scope));
        return a;
      }
      case ExprKind::dict: {
        auto o = make_object();
        for (std::size_t k = 0; k + 1 < e.args.size(); k += 2) {
          const Value key = eval(*e.args[k], scope);
          if (!key.is_string()) fail<render_error>("chat template: dict keys must be strings here");
          o->set(key.as_string(), eval(*e.args[k + 1], scope));
        }
        return o;
      }
      case ExprKind::attribute: return get_attribute(eval(*e.target, scope), e.name);
      case ExprKind::item: return get_item(eval(*e.target, scope), eval(*e.args[0], scope));
      case ExprKind::slice: {
        const Value target = eval(*e.target, scope);
        Value bounds[3] = {nullptr, nullptr, nullptr};
        for (int k = 0; k < 3; ++k)
          if (e.args[k]) bounds[k] = eval(*e.args[k], scope);
        return slice(target, bounds[0], bounds[1], bounds[2]);
      }
      case ExprKind::call: {
        const Value callee = eval(*e.target, scope);
        Arguments a = arguments(e, scope);
        if (callee.is_undefined()) {
          if (callee.undefined_name().starts_with("str."))
            fail<render_error>("chat template: the method ", callee.undefined_name(), "() is not supported");
          undefined_error(callee);
        }
        if (!callee.is_function()) fail<render_error>("chat template: '", callee.type_name(), "' object is not callable");
        if (++call_depth_ > max_call_depth) fail<render_error>("chat template: calls nest too deeply");
        Value result = callee.as_function()(a);
        --call_depth_;
        return result;
      }
      case ExprKind::filter: {
        const Value subject = eval(*e.target, scope);
        Arguments a = arguments(e, scope);
        return run_filter(e.name, subject, a);
      }
      case ExprKind::test: {
        const Value subject = eval(*e.target, scope);
        Arguments a = arguments(e, scope);
        a.callee = e.name;
        return run_test(e.name, subject, a) != e.negated;
      }
      case ExprKind::unary: {
        const Value v = eval(*e.args[0], scope);
        if (e.name == "not") return !v.truthy();
        if (!v.is_number()) type_error(e.name, v, v);
        if (e.name == "+") return v.is_float() ? v : Value(v.as_int());
        return arithmetic("-", Value(0), v);
      }
      case ExprKind::binary: {
        const Value left = eval(*e.args[0], scope);
        if (e.name == "and") return left.truthy() ? eval(*e.args[1], scope) : left;
        if (e.name == "or") return left.truthy() ? left : eval(*e.args[1], scope);
        const Value right = eval(*e.args[1], scope);
        if (e.name == "~") {
          std::string s = to_str(left) + to_str(right);
          if (s.size() > max_text_bytes) fail<render_error>("chat template: a string would exceed ", max_text_bytes, " bytes");
          return s;
        }
        return arithmetic(e.name, left, right);
      }
      case ExprKind::compare: {
        Value left = eval(*e.args[0], scope);
        for (std::size_t k = 0; k < e.ops.size(); ++k) {
          Value right = eval(*e.args[k + 1], scope);
          if (!compare(left, e.ops[k], right)) return false;
          left = std::move(right);
        }
        return true;
      }
      case ExprKind::ternary:
        if (eval(*e.args[0], scope).truthy()) return eval(*e.args[1], scope);
        return e.args[2] ? eval(*e.args[2], scope) : Value(Undefined{});
    }
    return Undefined{};
  }
};

// The functions every template sees (transformers adds raise_exception and strftime_now to Jinja2's own).
inline void add_globals(Scope& scope) {
  scope.set("raise_exception", Function([](Arguments& a) -> Value {
              fail<render_error>("chat template raised an exception: ", to_str(a.get(0, "message")));
            }));
  scope.set("strftime_now", Function([](Arguments& a) -> Value {
              const std::string format = string_argument(a.required(0, "format"), "strftime_now");
              const std::time_t now = std::time(nullptr);
              std::tm local{};
              localtime_r(&now, &local);
              char buf[256];
              const std::size_t n = std::strftime(buf, sizeof buf, format.c_str(), &local);
              if (n == 0 && !format.empty()) fail<render_error>("chat template: strftime_now's format gives too long a text");
              return std::string(buf, n);
            }));
  const auto keyword_object = [](Arguments& a, bool is_namespace) {
    auto o = make_object();
    o->is_namespace = is_namespace;
    for (const auto& p : a.positional) {
      if (!p.is_object()) fail<render_error>("chat template: ", is_namespace ? "namespace" : "dict", "() takes a mapping");
      for (const auto& [k, v] : p.as_object().items) o->set(k, v);
    }
    for (const auto& [k, v] : a.keyword) o->set(k, v);
    return Value(o);
  };
  scope.set("namespace", Function([keyword_object](Arguments& a) { return keyword_object(a, true); }));
  scope.set("dict", Function([keyword_object](Arguments& a) { return keyword_object(a, false); }));
  scope.set("range", Function([](Arguments& a) -> Value {
              std::int64_t start = 0, stop = 0, step = 1;
              if (a.positional.size() == 1) stop = int_argument(a.positional[0], "range", 0);
              else if (a.positional.size() >= 2) {
                start = int_argument(a.positional[0], "range", 0);
                stop = int_argument(a.positional[1], "range", 0);
                if (a.positional.size() == 3) step = int_argument(a.positional[2], "range", 1);
              } else {
                fail<render_error>("chat template: range() needs 1 to 3 integers");
              }
              if (step == 0) fail<render_error>("chat template: range() step must not be zero");
              Array out;
              for (std::int64_t i = start; step > 0 ? i < stop : i > stop;) {
                if (out.size() >= max_list_items) fail<render_error>("chat template: range() is too long");
                out.emplace_back(i);
                if (__builtin_add_overflow(i, step, &i)) break;
              }
              return out;
            }));
}

}  // namespace rlhf::io::jinja
