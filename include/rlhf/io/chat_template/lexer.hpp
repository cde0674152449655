#pragma once
// A chat template's source as tokens: text between tags, then the tokens inside {% ... %} and {{ ... }}.
// Comments {# ... #} are dropped. White space is controlled as transformers configures Jinja2:
//   - trim_blocks: the first newline after a {% ... %} or {# ... #} tag is removed;
//   - lstrip_blocks: spaces and tabs from the start of a line up to a {% or {# tag are removed ({%+ keeps them);
//   - {%- {{- {#- strip all white space before the tag, -%} -}} -#} all white space after it;
//   - one newline at the very end of the template is dropped (keep_trailing_newline=False).
// Every token carries the line and column (from 1, in bytes) where it starts in the source, for errors.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "rlhf/core/utf8.hpp"
#include "rlhf/io/chat_template/text.hpp"
#include "rlhf/io/chat_template/value.hpp"  // syntax_error

namespace rlhf::io::jinja {

enum class TokenKind { text, block_begin, block_end, expr_begin, expr_end, name, string, integer, floating, op, end };

struct Token {
  TokenKind kind;
  std::string value;  // the text, the name, the unescaped string, the number's digits or the operator
  int line = 1;
  int column = 1;
};

class Lexer {
 public:
  explicit Lexer(std::string_view source) : src_(source) {
    if (src_.ends_with("\r\n")) src_.remove_suffix(2);
    else if (src_.ends_with('\n')) src_.remove_suffix(1);
  }

  std::vector<Token> tokens() {
    while (pos_ < src_.size()) {
      if (!in_tag_) lex_text();
      else lex_in_tag();
    }
    if (in_tag_) error_at(tag_start_, "the tag opened here is not closed");
    push(TokenKind::end, "", pos_);
    return std::move(out_);
  }

 private:
  std::string_view src_;
  std::size_t pos_ = 0;
  bool in_tag_ = false;
  bool in_block_ = false;         // {% %} rather than {{ }}
  std::size_t tag_start_ = 0;
  bool strip_next_text_ = false;  // after -%} -}} -#}
  int brace_depth_ = 0;           // dict literals inside {{ }}: their "}}" does not close the tag
  std::vector<Token> out_;

  // Positions are asked for mostly in increasing order: count on from the last one.
  mutable std::size_t counted_ = 0;
  mutable int counted_line_ = 1, counted_col_ = 1;
  void line_col(std::size_t at, int& line, int& col) const {
    if (at < counted_) counted_ = 0, counted_line_ = 1, counted_col_ = 1;
    for (; counted_ < at && counted_ < src_.size(); ++counted_) {
      if (src_[counted_] == '\n') {
        ++counted_line_;
        counted_col_ = 1;
      } else {
        ++counted_col_;
      }
    }
    line = counted_line_;
    col = counted_col_;
  }
  [[noreturn]] void error_at(std::size_t at, std::string_view what) const {
    int line, col;
    line_col(at, line, col);
    fail<syntax_error>("chat template: line ", line, ", column ", col, ": ", what);
  }
  void push(TokenKind kind, std::string value, std::size_t at) {
    Token t{kind, std::move(value)};
    line_col(at, t.line, t.column);
    out_.push_back(std::move(t));
  }

  // From pos_ to the next {{, {% or {#.
  void lex_text() {
    std::size_t end = pos_;
    while (true) {
      end = src_.find('{', end);
      if (end == std::string_view::npos || end + 1 >= src_.size()) {
        end = src_.size();
        break;
      }
      const char next = src_[end + 1];
      if (next == '{' || next == '%' || next == '#') break;
      ++end;
    }
    std::string_view text = src_.substr(pos_, end - pos_);
    if (end < src_.size()) {  // the end first: lstrip_blocks reads positions in the source
      const char kind = src_[end + 1];
      const char modifier = end + 2 < src_.size() ? src_[end + 2] : '\0';
      if (modifier == '-') {
        text = strip(text, false, true);
      } else if (kind != '{' && modifier != '+') {  // lstrip_blocks: only blanks back to the start of the line
        std::size_t k = text.size();
        while (k > 0 && (text[k - 1] == ' ' || text[k - 1] == '\t')) --k;
        const std::size_t line_start = pos_ + k;  // where the blanks begin in the source
        if (line_start == 0 || src_[line_start - 1] == '\n') text = text.substr(0, k);
      }
    }
    if (strip_next_text_) text = strip(text, true, false);
    strip_next_text_ = false;
    if (!text.empty()) push(TokenKind::text, std::string(text), pos_);
    pos_ = end;
    if (pos_ < src_.size()) open_tag();
  }

  void open_tag() {
    tag_start_ = pos_;
    const char kind = src_[pos_ + 1];
    std::size_t after = pos_ + 2;
    if (after < src_.size() && (src_[after] == '-' || (src_[after] == '+' && kind != '{'))) ++after;
    if (kind == '#') {
      const std::size_t close = src_.find("#}", after);
      if (close == std::string_view::npos) error_at(pos_, "the comment opened here is not closed");
      pos_ = close + 2;
      after_close(close > after && src_[close - 1] == '-', true);
      return;
    }
    in_tag_ = true;
    in_block_ = kind == '%';
    brace_depth_ = 0;
    push(in_block_ ? TokenKind::block_begin : TokenKind::expr_begin, in_block_ ? "{%" : "{{", pos_);
    pos_ = after;
  }

  void after_close(bool strip_after, bool trim_newline) {
    if (strip_after) {
      strip_next_text_ = true;
    } else if (trim_newline) {  // trim_blocks
      if (pos_ < src_.size() && src_[pos_] == '\n') ++pos_;
      else if (src_.substr(pos_, 2) == "\r\n") pos_ += 2;
    }
  }

  void lex_in_tag() {
    while (pos_ < src_.size() && is_python_space(static_cast<unsigned char>(src_[pos_]))) ++pos_;
    if (pos_ >= src_.size()) error_at(tag_start_, "the tag opened here is not closed");
    const std::string_view rest = src_.substr(pos_);
    const std::string_view close = in_block_ ? "%}" : "}}";
    const bool dash = rest.starts_with('-') && rest.substr(1).starts_with(close);
    if (dash || (rest.starts_with(close) && (in_block_ || brace_depth_ == 0))) {
      push(in_block_ ? TokenKind::block_end : TokenKind::expr_end, std::string(close), pos_);
      pos_ += close.size() + (dash ? 1 : 0);
      in_tag_ = false;
      after_close(dash, in_block_);
      return;
    }
    const char c = rest[0];
    if (c == '\'' || c == '"') return lex_string(c);
    if (c >= '0' && c <= '9') return lex_number();
    if (c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      std::size_t n = 1;
      while (n < rest.size() && (rest[n] == '_' || std::isalnum(static_cast<unsigned char>(rest[n])))) ++n;
      push(TokenKind::name, std::string(rest.substr(0, n)), pos_);
      pos_ += n;
      return;
    }
    for (const std::string_view op : {"**", "//", "==", "!=", "<=", ">="}) {
      if (rest.starts_with(op)) {
        push(TokenKind::op, std::string(op), pos_);
        pos_ += 2;
        return;
      }
    }
    if (std::string_view("+-*/%~<>=()[]{}.,:|").find(c) != std::string_view::npos) {
      if (c == '{') ++brace_depth_;
      if (c == '}') --brace_depth_;
      push(TokenKind::op, std::string(1, c), pos_);
      ++pos_;
      return;
    }
    error_at(pos_, std::string("unexpected character '") + (static_cast<unsigned char>(c) < 0x20 ? '?' : c) + "'");
  }

  void lex_number() {
    const std::size_t start = pos_;
    while (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) ++pos_;
    bool is_float = false;
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' && std::isdigit(static_cast<unsigned char>(src_[pos_ + 1])) &&
        !(out_.size() && out_.back().kind == TokenKind::op && out_.back().value == ".")) {
      is_float = true;
      ++pos_;
      while (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) ++pos_;
    }
    if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E' || src_[pos_] == '_'))
      error_at(pos_, "numbers with exponents or underscores are not supported");
    push(is_float ? TokenKind::floating : TokenKind::integer, std::string(src_.substr(start, pos_ - start)), start);
  }

  void lex_string(char quote) {
    const std::size_t start = pos_++;
    std::string value;
    while (true) {
      if (pos_ >= src_.size()) error_at(start, "the string opened here is not closed");
      const char c = src_[pos_++];
      if (c == quote) break;
      if (c != '\\') {
        value += c;
        continue;
      }
      if (pos_ >= src_.size()) error_at(start, "the string opened here is not closed");
      const char e = src_[pos_++];
      if (const ShortEscape* escape = short_escape_of_letter(e)) {
        value += escape->character;
        continue;
      }
      switch (e) {
        case 'v': value += '\v'; break;
        case '0': value += '\0'; break;
        case '\'': value += '\''; break;
        case '\n': break;  // a backslash before a line break continues the line
        case 'x':
        case 'u':
        case 'U': value += hex_escape(e, start); break;
        default: error_at(pos_ - 2, std::string("unsupported escape sequence \\") + e);
      }
    }
    push(TokenKind::string, std::move(value), start);
  }

  std::string hex_escape(char e, std::size_t start) {
    const std::size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
    if (pos_ + n > src_.size()) error_at(start, "a \\x, \\u or \\U escape is cut short");
    std::uint32_t cp = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const char h = src_[pos_ + i];
      const int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                  : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
      if (d < 0) error_at(pos_ + i, "not a hexadecimal digit in an escape");
      cp = cp * 16 + static_cast<std::uint32_t>(d);
    }
    pos_ += n;
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) error_at(start, "an escape names no Unicode character");
    std::string out;
    rlhf::detail::append_utf8(out, char32_t(cp));
    return out;
  }
};

inline std::vector<Token> tokenize(std::string_view source) { return Lexer(source).tokens(); }

}  // namespace rlhf::io::jinja
