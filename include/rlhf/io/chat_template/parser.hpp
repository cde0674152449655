#pragma once
// Tokens to statements and expressions, with Jinja2's grammar and precedence (lowest first):
//   x if c else y;  or;  and;  not;  comparisons (==, !=, <, >, <=, >=, in, not in; chained);  + -;  ~;
//   * / // %;  **;  unary - +;  then primary[.attr][[index or slice]][(call)] | filter(...) is [not] test.
// Statements: if/elif/else, for (with `if` filter and else), set (name, namespace attribute, block),
// macro, break, continue, and transformers' generation. Anything else is a syntax_error naming its line and
// column: the engine never guesses.
#include <algorithm>
#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rlhf/io/chat_template/ast.hpp"
#include "rlhf/io/chat_template/lexer.hpp"

namespace rlhf::io::jinja {

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Body parse() {
    Body body = parse_body({});
    return body;
  }

 private:
  std::vector<Token> t_;
  std::size_t i_ = 0;
  int depth_ = 0;  // nesting of expressions and blocks, bounded so that no input overflows the stack
  static constexpr int max_depth = 200;

  struct Nest {  // counts one level of nesting for as long as it lives
    Parser& p;
    explicit Nest(Parser& parser, const Token& at) : p(parser) {
      if (++p.depth_ > max_depth) p.error(at, "the template nests deeper than 200 levels");
    }
    ~Nest() { --p.depth_; }
  };

  const Token& peek(std::size_t ahead = 0) const { return t_[std::min(i_ + ahead, t_.size() - 1)]; }
  const Token& next() {
    const Token& t = t_[i_];
    if (i_ + 1 < t_.size()) ++i_;
    return t;
  }
  [[noreturn]] void error(const Token& at, std::string_view what) const {
    fail<syntax_error>("chat template: line ", at.line, ", column ", at.column, ": ", what);
  }
  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::end: return "the end of the template";
      case TokenKind::text: return "text";
      case TokenKind::block_end: return "'%}'";
      case TokenKind::expr_end: return "'}}'";
      case TokenKind::string: return "a string";
      default: return "'" + t.value + "'";
    }
  }
  bool is_op(std::string_view op, std::size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::op && peek(ahead).value == op;
  }
  bool is_name(std::string_view name, std::size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::name && peek(ahead).value == name;
  }
  bool accept_op(std::string_view op) {  // consumes the next token when it is `op`
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool accept_name(std::string_view name) {
    if (!is_name(name)) return false;
    next();
    return true;
  }
  void expect_op(std::string_view op) {
    if (!is_op(op)) error(peek(), "expected '" + std::string(op) + "', found " + describe(peek()));
    next();
  }
  std::string expect_name(std::string_view what) {
    if (peek().kind != TokenKind::name) error(peek(), "expected " + std::string(what) + ", found " + describe(peek()));
    return next().value;
  }
  void expect_block_end() {
    if (peek().kind != TokenKind::block_end) error(peek(), "expected '%}', found " + describe(peek()));
    next();
  }

  // Statements until one of `ends` ({% endif %}, {% else %}, ...), which is left as the next token's name.
  Body parse_body(std::initializer_list<std::string_view> ends) {
    Body body;
    while (true) {
      const Token& t = peek();
      if (t.kind == TokenKind::end) {
        if (ends.size() == 0) return body;
        error(t, "the template ends before {% " + std::string(*ends.begin()) + " %}");
      }
      if (t.kind == TokenKind::text) {
        auto n = node(NodeKind::text, t);
        n->text = next().value;
        body.push_back(std::move(n));
      } else if (t.kind == TokenKind::expr_begin) {
        auto n = node(NodeKind::output, next());
        n->expr = parse_expression();
        if (peek().kind != TokenKind::expr_end) error(peek(), "expected '}}', found " + describe(peek()));
        next();
        body.push_back(std::move(n));
      } else if (t.kind == TokenKind::block_begin) {
        const Token& keyword = peek(1);
        for (const auto end : ends)
          if (keyword.kind == TokenKind::name && keyword.value == end) {
            next();
            return body;
          }
        next();
        body.push_back(parse_statement());
      } else {
        error(t, "unexpected " + describe(t));
      }
    }
  }

  // A new statement (Node) or expression (Expr) of `kind`, placed at `at`'s line and column.
  template <class Tree, class Kind>
  std::unique_ptr<Tree> located(Kind kind, const Token& at) {
    auto tree = std::make_unique<Tree>();
    tree->kind = kind;
    tree->line = at.line;
    tree->column = at.column;
    return tree;
  }
  NodePtr node(NodeKind kind, const Token& at) { return located<Node>(kind, at); }

  NodePtr parse_statement() {
    const Token& at = peek();
    Nest nest(*this, at);
    const std::string keyword = expect_name("a statement");
    if (keyword == "if") return parse_if(at);
    if (keyword == "for") return parse_for(at);
    if (keyword == "set") return parse_set(at);
    if (keyword == "macro") return parse_macro(at);
    if (keyword == "break" || keyword == "continue") {
      expect_block_end();
      return node(keyword == "break" ? NodeKind::break_ : NodeKind::continue_, at);
    }
    if (keyword == "generation") {
      expect_block_end();
      auto n = node(NodeKind::generation, at);
      n->body = parse_body({"endgeneration"});
      expect_end_tag("endgeneration");
      return n;
    }
    for (const char* stray : {"elif", "else", "endif", "endfor", "endset", "endmacro", "endgeneration"})
      if (keyword == stray) error(at, "{% " + keyword + " %} without the block it closes");
    error(at, "the statement '" + keyword + "' is not supported (docs/io/chat_templates.md lists what is)");
  }

  void expect_end_tag(std::string_view name) {
    next();  // the name itself (parse_body stopped on it)
    (void)name;
    expect_block_end();
  }

  NodePtr parse_if(const Token& at) {
    auto n = node(NodeKind::if_, at);
    auto condition = parse_expression();
    expect_block_end();
    while (true) {
      Body body = parse_body({"elif", "else", "endif"});
      n->branches.emplace_back(std::move(condition), std::move(body));
      const std::string which = next().value;
      if (which == "elif") {
        condition = parse_expression();
        expect_block_end();
        continue;
      }
      expect_block_end();
      if (which == "else") {
        n->else_body = parse_body({"endif"});
        expect_end_tag("endif");
      }
      return n;
    }
  }

  NodePtr parse_for(const Token& at) {
    auto n = node(NodeKind::for_, at);
    n->targets.push_back(expect_name("a loop variable"));
    while (is_op(",")) {
      next();
      n->targets.push_back(expect_name("a loop variable"));
    }
    if (!is_name("in")) error(peek(), "expected 'in', found " + describe(peek()));
    next();
    n->expr = parse_or_ternary(false);
    if (accept_name("if")) {
      n->condition = parse_or_ternary(false);
    }
    if (is_name("recursive")) error(peek(), "recursive loops are not supported");
    expect_block_end();
    n->body = parse_body({"else", "endfor"});
    if (next().value == "else") {
      expect_block_end();
      n->else_body = parse_body({"endfor"});
      next();
    }
    expect_block_end();
    return n;
  }

  NodePtr parse_set(const Token& at) {
    const std::string name = expect_name("a variable name");
    if (is_op(",")) error(peek(), "assigning to several names at once is not supported");
    std::string attribute;
    if (accept_op(".")) {
      attribute = expect_name("an attribute name");
    }
    if (peek().kind == TokenKind::block_end && attribute.empty()) {
      next();
      auto n = node(NodeKind::set_block, at);
      n->targets.push_back(name);
      n->body = parse_body({"endset"});
      expect_end_tag("endset");
      return n;
    }
    expect_op("=");
    auto n = node(NodeKind::set, at);
    n->targets.push_back(name);
    n->text = attribute;
    n->expr = parse_expression();
    expect_block_end();
    return n;
  }

  NodePtr parse_macro(const Token& at) {
    auto n = node(NodeKind::macro, at);
    n->text = expect_name("a macro name");
    expect_op("(");
    while (!is_op(")")) {
      std::string param = expect_name("a parameter name");
      ExprPtr fallback;
      if (accept_op("=")) {
        fallback = parse_expression();
      }
      n->params.emplace_back(std::move(param), std::move(fallback));
      if (!is_op(",")) break;
      next();
    }
    expect_op(")");
    expect_block_end();
    n->body = parse_body({"endmacro"});
    expect_end_tag("endmacro");
    return n;
  }

  // ---- expressions ----

  ExprPtr expr(ExprKind kind, const Token& at) { return located<Expr>(kind, at); }

  ExprPtr parse_expression() { return parse_or_ternary(true); }

  // `x if c else y` binds loosest; a for loop's iterable takes no ternary (its `if` is the loop's filter).
  ExprPtr parse_or_ternary(bool allow_ternary) {
    const Token& at = peek();
    Nest nest(*this, at);
    ExprPtr value = parse_or();
    while (allow_ternary && is_name("if")) {
      next();
      auto t = expr(ExprKind::ternary, at);
      t->args.push_back(parse_or());
      t->args.push_back(std::move(value));
      if (accept_name("else")) {
        t->args.push_back(parse_or_ternary(true));
      } else {
        t->args.push_back(nullptr);
      }
      value = std::move(t);
    }
    return value;
  }

  ExprPtr binary(std::string op, ExprPtr left, ExprPtr right, const Token& at) {
    auto b = expr(ExprKind::binary, at);
    b->name = std::move(op);
    b->args.push_back(std::move(left));
    b->args.push_back(std::move(right));
    return b;
  }

  // One precedence level of left-associative binary operators: `operand (op operand)*`, the ops being names
  // (`or`) or operator symbols as `kind` says.
  template <class Operand>
  ExprPtr parse_binary_level(TokenKind kind, std::initializer_list<std::string_view> ops, Operand operand) {
    const auto at_op = [&] {
      return peek().kind == kind && std::find(ops.begin(), ops.end(), peek().value) != ops.end();
    };
    ExprPtr left = operand();
    while (at_op()) {
      const Token& at = next();
      left = binary(at.value, std::move(left), operand(), at);
    }
    return left;
  }

  ExprPtr parse_or() { return parse_binary_level(TokenKind::name, {"or"}, [&] { return parse_and(); }); }
  ExprPtr parse_and() { return parse_binary_level(TokenKind::name, {"and"}, [&] { return parse_not(); }); }
  ExprPtr parse_not() {
    if (is_name("not")) {
      const Token& at = next();
      Nest nest(*this, at);
      auto u = expr(ExprKind::unary, at);
      u->name = "not";
      u->args.push_back(parse_not());
      return u;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    const Token& at = peek();
    ExprPtr first = parse_math1();
    ExprPtr chain;
    while (true) {
      std::string op;
      if (peek().kind == TokenKind::op &&
          (is_op("==") || is_op("!=") || is_op("<") || is_op(">") || is_op("<=") || is_op(">="))) {
        op = next().value;
      } else if (accept_name("in")) {
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        next();
        next();
        op = "not in";
      } else {
        break;
      }
      if (!chain) {
        chain = expr(ExprKind::compare, at);
        chain->args.push_back(std::move(first));
      }
      chain->ops.push_back(op);
      chain->args.push_back(parse_math1());
    }
    return chain ? std::move(chain) : std::move(first);
  }
  ExprPtr parse_math1() { return parse_binary_level(TokenKind::op, {"+", "-"}, [&] { return parse_concat(); }); }
  ExprPtr parse_concat() { return parse_binary_level(TokenKind::op, {"~"}, [&] { return parse_math2(); }); }
  ExprPtr parse_math2() {
    return parse_binary_level(TokenKind::op, {"*", "/", "//", "%"}, [&] { return parse_pow(); });
  }
  ExprPtr parse_pow() { return parse_binary_level(TokenKind::op, {"**"}, [&] { return parse_unary(); }); }
  // As in Jinja2, a sign binds tighter than a filter: -3|abs is (-3)|abs.
  ExprPtr parse_unary(bool with_filters = true) {
    ExprPtr value;
    if (is_op("-") || is_op("+")) {
      const Token& at = next();
      Nest nest(*this, at);
      value = expr(ExprKind::unary, at);
      value->name = at.value;
      value->args.push_back(parse_unary(false));
    } else {
      value = parse_postfix(parse_primary());
    }
    return with_filters ? parse_filters(std::move(value)) : std::move(value);
  }

  ExprPtr parse_primary() {
    const Token& at = peek();
    Nest nest(*this, at);
    switch (at.kind) {
      case TokenKind::name: {
        next();
        if (at.value == "true" || at.value == "True") return literal(true, at);
        if (at.value == "false" || at.value == "False") return literal(false, at);
        if (at.value == "none" || at.value == "None") return literal(nullptr, at);
        auto e = expr(ExprKind::name, at);
        e->name = at.value;
        return e;
      }
      case TokenKind::string: {
        std::string s = next().value;
        while (peek().kind == TokenKind::string) s += next().value;  // 'a' 'b' is 'ab', as in Python
        return literal(Value(std::move(s)), at);
      }
      case TokenKind::integer: {
        next();
        std::int64_t v = 0;
        for (const char c : at.value) {
          if (v > (INT64_MAX - (c - '0')) / 10) error(at, "the integer " + at.value + " is too large");
          v = v * 10 + (c - '0');
        }
        return literal(v, at);
      }
      case TokenKind::floating: {
        next();
        double v = 0;
        const auto [end, ec] = std::from_chars(at.value.data(), at.value.data() + at.value.size(), v);
        if (ec != std::errc() || end != at.value.data() + at.value.size()) error(at, "the number " + at.value + " is out of range");
        return literal(v, at);
      }
      case TokenKind::op:
        if (at.value == "(") return parse_parenthesized();
        if (at.value == "[") return parse_sequence(ExprKind::list, "]");
        if (at.value == "{") return parse_dict();
        break;
      default: break;
    }
    error(at, "expected a value, found " + describe(at));
  }

  ExprPtr literal(Value v, const Token& at) {
    auto e = expr(ExprKind::literal, at);
    e->value = std::move(v);
    return e;
  }

  ExprPtr parse_parenthesized() {
    const Token& at = next();
    if (accept_op(")")) {
      return expr(ExprKind::tuple, at);
    }
    ExprPtr first = parse_expression();
    if (accept_op(")")) {
      return first;
    }
    auto tuple = expr(ExprKind::tuple, at);
    tuple->args.push_back(std::move(first));
    while (is_op(",")) {
      next();
      if (is_op(")")) break;
      tuple->args.push_back(parse_expression());
    }
    expect_op(")");
    return tuple;
  }

  ExprPtr parse_sequence(ExprKind kind, std::string_view close) {
    const Token& at = next();
    auto e = expr(kind, at);
    while (!is_op(close)) {
      e->args.push_back(parse_expression());
      if (!is_op(",")) break;
      next();
    }
    expect_op(close);
    return e;
  }

  ExprPtr parse_dict() {
    const Token& at = next();
    auto e = expr(ExprKind::dict, at);
    while (!is_op("}")) {
      e->args.push_back(parse_expression());
      expect_op(":");
      e->args.push_back(parse_expression());
      if (!is_op(",")) break;
      next();
    }
    expect_op("}");
    return e;
  }

  ExprPtr parse_postfix(ExprPtr target) {
    while (true) {
      const Token& at = peek();
      if (accept_op(".")) {
        auto e = expr(ExprKind::attribute, at);
        if (peek().kind == TokenKind::integer) {  // foo.0 is foo[0]
          e->kind = ExprKind::item;
          e->args.push_back(parse_primary());
        } else {
          e->name = expect_name("an attribute name");
        }
        e->target = std::move(target);
        target = std::move(e);
      } else if (accept_op("[")) {
        target = parse_subscript(std::move(target), at);
      } else if (is_op("(")) {
        auto call = expr(ExprKind::call, at);
        call->target = std::move(target);
        parse_call_arguments(*call);
        target = std::move(call);
      } else {
        return target;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr target, const Token& at) {
    Nest nest(*this, at);
    ExprPtr parts[3];
    int part = 0;
    bool is_slice = false;
    while (true) {
      if (accept_op(":")) {
        is_slice = true;
        if (++part > 2) error(peek(), "a slice has at most three parts");
        continue;
      }
      if (is_op("]")) break;
      if (parts[part]) error(peek(), "expected ':' or ']', found " + describe(peek()));
      parts[part] = parse_expression();
    }
    next();
    auto e = expr(is_slice ? ExprKind::slice : ExprKind::item, at);
    e->target = std::move(target);
    if (is_slice) {
      for (auto& p : parts) e->args.push_back(std::move(p));
    } else {
      if (!parts[0]) error(at, "an empty subscript []");
      e->args.push_back(std::move(parts[0]));
    }
    return e;
  }

  void parse_call_arguments(Expr& call) {
    expect_op("(");
    while (!is_op(")")) {
      if (peek().kind == TokenKind::name && is_op("=", 1)) {
        std::string key = next().value;
        next();
        call.kwargs.emplace_back(std::move(key), parse_expression());
      } else {
        if (!call.kwargs.empty()) error(peek(), "a positional argument after a keyword argument");
        call.args.push_back(parse_expression());
      }
      if (!is_op(",")) break;
      next();
    }
    expect_op(")");
  }

  ExprPtr parse_filters(ExprPtr target) {
    while (true) {
      const Token& at = peek();
      if (accept_op("|")) {
        auto f = expr(ExprKind::filter, at);
        f->name = expect_name("a filter name");
        f->target = std::move(target);
        if (is_op("(")) parse_call_arguments(*f);
        target = std::move(f);
      } else if (accept_name("is")) {
        auto t = expr(ExprKind::test, at);
        if (accept_name("not")) {
          t->negated = true;
        }
        t->name = expect_name("a test name");
        t->target = std::move(target);
        if (is_op("(")) {
          parse_call_arguments(*t);
        } else if (test_takes_bare_argument()) {  // `x is divisibleby 3`, `x is sameas none`
          t->args.push_back(parse_postfix(parse_primary()));
        }
        target = std::move(t);
      } else {
        return target;
      }
    }
  }
  bool test_takes_bare_argument() const {
    const Token& t = peek();
    if (t.kind == TokenKind::string || t.kind == TokenKind::integer || t.kind == TokenKind::floating) return true;
    if (t.kind == TokenKind::op) return t.value == "[" || t.value == "{";
    if (t.kind != TokenKind::name) return false;
    for (const char* stop : {"and", "or", "else", "if", "is", "in", "not"})
      if (t.value == stop) return false;
    return true;
  }
};

inline Body parse(std::string_view source) { return Parser(tokenize(source)).parse(); }

}  // namespace rlhf::io::jinja
