#pragma once
// Checking error messages and other text in tests.
#include <string>

namespace rlhf::test {

inline bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace rlhf::test
