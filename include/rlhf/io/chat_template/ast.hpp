#pragma once
// The parsed template: expressions and statements, each with the line and column it starts at.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "rlhf/io/chat_template/value.hpp"

namespace rlhf::io::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind {
  literal,   // value
  name,      // name
  list,      // args: the items
  tuple,     // args: the items
  dict,      // args: key, value, key, value, ...
  attribute, // target.name
  item,      // target[args[0]]
  slice,     // target[args[0]:args[1]:args[2]], null where left out
  call,      // target(args..., kwargs...)
  filter,    // target | name(args..., kwargs...)
  test,      // target is [not] name(args...)
  unary,     // name in {not, -, +}; args[0]
  binary,    // args[0] name args[1]; name in {+, -, *, /, //, %, **, ~, and, or}
  compare,   // args[0] ops[0] args[1] ops[1] args[2] ... (a chain, as in Python)
  ternary,   // args[1] if args[0] else args[2] (args[2] null: Undefined)
};

struct Expr {
  ExprKind kind;
  int line = 0, column = 0;
  Value value;                                          // literal
  std::string name;                                     // name, attribute, filter, test, operator
  ExprPtr target;                                       // attribute, item, slice, call, filter, test
  std::vector<ExprPtr> args;                            // may hold null (a slice's missing bounds)
  std::vector<std::pair<std::string, ExprPtr>> kwargs;  // call, filter, test
  std::vector<std::string> ops;                         // compare: ==, !=, <, >, <=, >=, in, not in
  bool negated = false;                                 // test: `is not`
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

enum class NodeKind {
  text,        // text
  output,      // {{ expr }}
  if_,         // branches: (condition, body); else_body
  for_,        // for targets in expr [if condition]: body; else_body
  set,         // set targets[0][.attribute] = expr
  set_block,   // set targets[0] %} body {% endset
  macro,       // macro name(params) body
  break_,
  continue_,
  generation,  // transformers' {% generation %} body {% endgeneration %}: the assistant's part
};

struct Node {
  NodeKind kind;
  int line = 0, column = 0;
  std::string text;                                     // text; macro name; set's attribute
  ExprPtr expr;                                         // output, for's iterable, set's value
  ExprPtr condition;                                    // for's filter
  std::vector<std::string> targets;                     // for's loop variables; set's name
  std::vector<std::pair<ExprPtr, Body>> branches;       // if / elif
  Body body, else_body;
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro: name and default (null: required)
};

}  // namespace rlhf::io::jinja
