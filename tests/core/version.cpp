// The version macros (rlhf/core/version.hpp, also through <rlhf.hpp>) against the top CMakeLists.txt's
// project(VERSION), which tests/CMakeLists.txt passes in as RLHF_EXPECTED_VERSION_*: bump both together.
#include <doctest/doctest.h>

#include <string>

#include "rlhf.hpp"

#ifndef RLHF_EXPECTED_VERSION_MAJOR
#error "tests/CMakeLists.txt passes RLHF_EXPECTED_VERSION_* to this test"
#endif

static_assert(RLHF_VERSION_MAJOR == RLHF_EXPECTED_VERSION_MAJOR,
              "RLHF_VERSION_MAJOR in include/rlhf/core/version.hpp differs from project(VERSION) in CMakeLists.txt");
static_assert(RLHF_VERSION_MINOR == RLHF_EXPECTED_VERSION_MINOR,
              "RLHF_VERSION_MINOR in include/rlhf/core/version.hpp differs from project(VERSION) in CMakeLists.txt");
static_assert(RLHF_VERSION_PATCH == RLHF_EXPECTED_VERSION_PATCH,
              "RLHF_VERSION_PATCH in include/rlhf/core/version.hpp differs from project(VERSION) in CMakeLists.txt");

TEST_CASE("version: the macros agree with project(VERSION) and with each other") {
  CHECK(RLHF_VERSION_MAJOR == RLHF_EXPECTED_VERSION_MAJOR);
  CHECK(RLHF_VERSION_MINOR == RLHF_EXPECTED_VERSION_MINOR);
  CHECK(RLHF_VERSION_PATCH == RLHF_EXPECTED_VERSION_PATCH);
  CHECK(std::string(RLHF_VERSION_STRING) == RLHF_EXPECTED_VERSION_STRING);
  CHECK(RLHF_VERSION == RLHF_VERSION_MAJOR * 10000 + RLHF_VERSION_MINOR * 100 + RLHF_VERSION_PATCH);
  CHECK(std::string(RLHF_VERSION_STRING) == std::to_string(RLHF_VERSION_MAJOR) + "." +
                                                std::to_string(RLHF_VERSION_MINOR) + "." +
                                                std::to_string(RLHF_VERSION_PATCH));
  // Each part fits its two decimal digits of RLHF_VERSION (the major may grow).
  CHECK(RLHF_VERSION_MINOR < 100);
  CHECK(RLHF_VERSION_PATCH < 100);
#if !(RLHF_VERSION >= 0)  // usable in #if, as users will write it
  FAIL("RLHF_VERSION is not a number the preprocessor can compare");
#endif
}
