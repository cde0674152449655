#pragma once
// A Jinja chat template, parsed once and rendered many times:
//
//   rlhf::io::jinja::Template t(source);           // syntax_error (line, column) if outside the subset
//   auto r = t.render({{"messages", ...}, ...});   // r.text; r.generation_spans from {% generation %} tags
//
// Filters and tests are checked by name when the template is parsed, so a template that uses one this engine
// does not have is refused whole rather than failing halfway through a render.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rlhf/io/chat_template/evaluator.hpp"
#include "rlhf/io/chat_template/parser.hpp"

namespace rlhf::io::jinja {

struct Rendered {
  std::string text;
  std::vector<Span> generation_spans;  // byte ranges of text between {% generation %} and {% endgeneration %}
};

class Template {
 public:
  explicit Template(std::string_view source) : body_(parse(source)) { check(body_); }

  Rendered render(const std::vector<std::pair<std::string, Value>>& variables) const {
    Scope globals;
    add_globals(globals);
    for (const auto& [name, value] : variables) globals.set(name, value);
    Evaluator evaluator(globals);
    evaluator.run(body_, globals);
    return {std::move(evaluator.out), std::move(evaluator.generation_spans)};
  }

  bool has_generation_tags() const { return has_generation(body_); }

 private:
  Body body_;

  [[noreturn]] static void unknown(const Expr& e, std::string_view what) {
    fail<syntax_error>("chat template: line ", e.line, ", column ", e.column, ": no ", what, " named '", e.name,
                       "' (docs/io/chat_templates.md lists the supported ones)");
  }
  static void check(const Expr* e) {
    if (!e) return;
    if (e->kind == ExprKind::filter && !listed(filter_names, e->name)) unknown(*e, "filter");
    if (e->kind == ExprKind::test && !listed(test_names, e->name)) unknown(*e, "test");
    check(e->target.get());
    for (const auto& a : e->args) check(a.get());
    for (const auto& kv : e->kwargs) check(kv.second.get());
  }
  static void check(const Body& body) {
    for (const auto& n : body) {
      check(n->expr.get());
      check(n->condition.get());
      for (const auto& [condition, branch] : n->branches) {
        check(condition.get());
        check(branch);
      }
      for (const auto& p : n->params) check(p.second.get());
      check(n->body);
      check(n->else_body);
    }
  }
  static bool has_generation(const Body& body) {
    for (const auto& n : body) {
      if (n->kind == NodeKind::generation) return true;
      for (const auto& branch : n->branches)
        if (has_generation(branch.second)) return true;
      if (has_generation(n->body) || has_generation(n->else_body)) return true;
    }
    return false;
  }
};

}  // namespace rlhf::io::jinja
