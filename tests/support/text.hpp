#pragma once
// Checking error messages and other text in tests.
#include <string>

#include "rlhf/core/error.hpp"

namespace rlhf::test {

inline bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The message of the Error that f() throws, or "<no error>"; any other exception propagates (and fails the test).
template <class Error = rlhf::error, class F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace rlhf::test
