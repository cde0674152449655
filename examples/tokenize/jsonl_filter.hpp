#pragma once
// A filter over JSON Lines: each line of `in` is one JSON object, given to `each`, whose result is written as one
// line of `out`. A line that is not an object, or that `each` refuses (rlhf::error), stops the run with a message
// naming the line; the exit code is then 1.
#include <cstdio>
#include <functional>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "rlhf/core/error.hpp"
#include "rlhf/io/json_file.hpp"  // parse_json_text

namespace tokenize {

inline int filter_jsonl(std::istream& in, std::ostream& out, const char* program,
                        const std::function<nlohmann::json(const nlohmann::json&)>& each) {
  std::string line;
  std::size_t line_no = 0;
  try {
    while (std::getline(in, line)) {
      ++line_no;
      const std::string where = "line " + std::to_string(line_no);
      const nlohmann::json row = rlhf::io::parse_json_text(line, where);
      if (!row.is_object()) rlhf::fail<rlhf::io_error>(where, ": not a JSON object");
      try {
        out << each(row).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
      } catch (const rlhf::error& e) {
        rlhf::fail<rlhf::value_error>(where, ": ", e.what());
      }
    }
    out.flush();
  } catch (const rlhf::error& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
  return 0;
}

}  // namespace tokenize
