#pragma once
// Reading JSON Lines (one JSON value per line) from an untrusted file, with the line number of every value and
// limits on the file's size, a line's length and the JSON's nesting. docs/io/datasets.md#json-lines.
//
//   rlhf::io::for_each_jsonl("train.jsonl", {}, [](rlhf::io::JsonlRecord&& r) { use(r.line, r.value); });
//
// Lines are separated by "\n"; a "\r" before it is dropped, a UTF-8 byte order mark at the start of the file is
// skipped, and lines holding only spaces or tabs are skipped (their numbers still count). Every problem is an
// rlhf::io_error that names the file and the line: a line that is not valid JSON (or not valid UTF-8), that is
// longer than max_line_bytes, that nests deeper than max_depth or holds a number JSON cannot represent (1e999);
// a file that is not a regular file (a FIFO is refused, not waited on) or is larger than max_file_bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "rlhf/core/error.hpp"     // rlhf::io_error
#include "rlhf/io/untrusted.hpp"  // detail::clip, max_json_depth

namespace rlhf::io {

struct JsonlLimits {
  std::uintmax_t max_file_bytes = std::uintmax_t(1) << 30;  // 1 GiB
  std::size_t max_line_bytes = std::size_t(1) << 24;        // 16 MiB, "\r\n" not counted
  int max_depth = detail::max_json_depth;                   // arrays and objects inside each other
};

struct JsonlRecord {
  std::size_t line = 0;  // 1-based line number in the file
  nlohmann::json value;
};

namespace detail {

// "line N, byte B: <the parser's own words>" from a nlohmann parse_error, whose what() numbers lines within the
// one line it was given ("parse error at line 1, column 7: syntax error ...").
inline std::string jsonl_parse_problem(const nlohmann::json::parse_error& e) {
  std::string_view what = e.what();
  if (const auto col = what.find("column "); col != std::string_view::npos)
    if (const auto colon = what.find(": ", col); colon != std::string_view::npos) what.remove_prefix(colon + 2);
  return "byte " + std::to_string(e.byte) + ": not valid JSON: " + clip(what, 200);
}

inline nlohmann::json parse_jsonl_line(std::string_view text, std::string_view name, std::size_t line,
                                       const JsonlLimits& limits) {
  using json = nlohmann::json;
  const auto bad = [&](const auto&... parts) { fail<io_error>("JSON Lines file '", name, "' line ", line, ": ", parts...); };
  std::vector<std::vector<std::string>> keys_seen;  // per open object, innermost last
  const auto bounded_depth = [&](int depth, json::parse_event_t event, json& parsed) {
    using E = json::parse_event_t;
    if ((event == E::object_start || event == E::array_start) && depth >= limits.max_depth)
      bad("JSON nests more than ", limits.max_depth, " levels deep");
    if (event == E::object_start) keys_seen.emplace_back();
    if (event == E::object_end) keys_seen.pop_back();
    if (event == E::key) {  // the last one would win silently
      auto& seen = keys_seen.back();
      const auto& key = parsed.get_ref<const std::string&>();
      if (std::find(seen.begin(), seen.end(), key) != seen.end()) bad("the key \"", clip(key, 40), "\" appears twice in one object");
      seen.push_back(key);
    }
    return true;
  };
  try {
    return json::parse(text, bounded_depth);
  } catch (const json::parse_error& e) {
    bad(jsonl_parse_problem(e));
  } catch (const json::exception& e) {  // out_of_range for a number such as 1e999
    bad("cannot be read as JSON: ", clip(e.what(), 200));
  }
  return {};  // not reached: bad() throws
}

// Cuts a stream of chunks into lines and hands each non-blank one, with its number, to `emit`. `next(chunk)`
// sets `chunk` to the next piece of the file and returns false at its end.
template <class Next, class Emit>
void split_jsonl_lines(Next&& next, std::string_view name, const JsonlLimits& limits, Emit&& emit) {
  std::string pending;  // the current line so far, when it spans chunks
  std::size_t line = 1;
  bool first = true;
  const auto finish = [&](std::string_view text) {
    if (first && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // a byte order mark
    first = false;
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (text.size() > limits.max_line_bytes)
      fail<io_error>("JSON Lines file '", name, "' line ", line, ": longer than the limit of ", limits.max_line_bytes,
                     " bytes");
    if (text.find_first_not_of(" \t") != std::string_view::npos) emit(line, text);
    ++line;
  };
  std::string_view chunk;
  while (next(chunk)) {
    while (!chunk.empty()) {
      const auto nl = chunk.find('\n');
      const std::string_view piece = chunk.substr(0, nl);
      // +1: a "\r" that ends the line is not counted against the limit
      if (pending.size() + piece.size() > limits.max_line_bytes + 1)
        fail<io_error>("JSON Lines file '", name, "' line ", line, ": longer than the limit of ",
                       limits.max_line_bytes, " bytes");
      if (nl == std::string_view::npos) {
        pending.append(piece);
        break;
      }
      if (pending.empty()) {
        finish(piece);
      } else {
        pending.append(piece);
        finish(pending);
        pending.clear();
      }
      chunk.remove_prefix(nl + 1);
    }
  }
  if (!pending.empty()) finish(pending);  // a last line without "\n"
}

}  // namespace detail

// Calls fn(JsonlRecord&&) for each non-blank line of `contents`, in order; `name` names it in messages.
template <class Fn>
void for_each_jsonl(std::string_view contents, std::string_view name, const JsonlLimits& limits, Fn&& fn) {
  if (contents.size() > limits.max_file_bytes)
    fail<io_error>("JSON Lines file '", name, "' is ", contents.size(), " bytes, more than the limit of ",
                   limits.max_file_bytes);
  bool given = false;
  const auto next = [&](std::string_view& chunk) {
    if (given) return false;
    chunk = contents;
    given = true;
    return true;
  };
  detail::split_jsonl_lines(next, name, limits, [&](std::size_t line, std::string_view text) {
    fn(JsonlRecord{line, detail::parse_jsonl_line(text, name, line, limits)});
  });
}

// Calls fn(JsonlRecord&&) for each non-blank line of the file at `path`, in order, reading it piece by piece.
template <class Fn>
void for_each_jsonl(const std::filesystem::path& path, const JsonlLimits& limits, Fn&& fn) {
  const std::string name = path.string();
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) fail<io_error>("JSON Lines file '", name, "' does not exist");
  if (!std::filesystem::is_regular_file(st)) fail<io_error>("JSON Lines file '", name, "' is not a regular file");
  if (const auto size = std::filesystem::file_size(path, ec); !ec && size > limits.max_file_bytes)
    fail<io_error>("JSON Lines file '", name, "' is ", size, " bytes, more than the limit of ", limits.max_file_bytes);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail<io_error>("JSON Lines file '", name, "': cannot open it");
  std::string buffer(std::size_t(1) << 16, '\0');
  std::uintmax_t total = 0;
  const auto next = [&](std::string_view& chunk) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto n = static_cast<std::size_t>(in.gcount());
    if (in.bad()) fail<io_error>("JSON Lines file '", name, "': read error");
    total += n;
    if (total > limits.max_file_bytes)  // the file grew after its size was checked
      fail<io_error>("JSON Lines file '", name, "' is more than the limit of ", limits.max_file_bytes, " bytes");
    chunk = std::string_view(buffer.data(), n);
    return n > 0;
  };
  detail::split_jsonl_lines(next, name, limits, [&](std::size_t line, std::string_view text) {
    fn(JsonlRecord{line, detail::parse_jsonl_line(text, name, line, limits)});
  });
}

// Every non-blank line of the file, parsed, in order.
inline std::vector<JsonlRecord> read_jsonl(const std::filesystem::path& path, const JsonlLimits& limits = {}) {
  std::vector<JsonlRecord> out;
  for_each_jsonl(path, limits, [&](JsonlRecord&& r) { out.push_back(std::move(r)); });
  return out;
}

}  // namespace rlhf::io
