#pragma once
// Strict command lines for the example programs, on CLI11: every program has --help; an unknown flag, a
// malformed number ("2.5" for a count, "3x") or a value out of its range stops the program before any work
// with one line naming the flag, and exit code 2.
#include <cmath>
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

namespace examples {

inline constexpr int bad_usage = 2;  // the exit code of every refused command line

// Parses argv into the options bound to `app`. Returns -1 to go on, or the code to exit with now: 0 after
// --help (printed), bad_usage after a one-line message on stderr.
inline int parse_command_line(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
    return -1;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s (run with --help for the accepted values)\n", app.get_name().c_str(), e.what());
    return bad_usage;
  }
}

inline std::string shortest(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
}

// A real number in (0, hi]: refuses 0, negatives, NaN and infinities (CLI::PositiveNumber lets NaN through).
inline CLI::Validator positive_at_most(double hi) {
  return CLI::Validator(
      [hi](std::string& text) -> std::string {
        double v = 0;
        try {
          std::size_t used = 0;
          v = std::stod(text, &used);
          if (used != text.size()) return "'" + text + "' is not a number";
        } catch (const std::exception&) {
          return "'" + text + "' is not a number";
        }
        if (!std::isfinite(v) || !(v > 0) || v > hi) return text + " is not in (0, " + shortest(hi) + "]";
        return {};
      },
      "in (0, " + shortest(hi) + "]");
}

// For a value that is refused only in combination with another (heads must divide channels).
inline int refuse(const CLI::App& app, const std::string& flag, const std::string& why) {
  std::fprintf(stderr, "%s: %s: %s\n", app.get_name().c_str(), flag.c_str(), why.c_str());
  return bad_usage;
}

}  // namespace examples
