// The CUDA GPT tests' error measures (tests/gpu/compare.hpp) on the CPU with g++: a NaN or a lone infinity in the
// tensor under test fails every comparison, wherever it is and whatever the rest holds. (Built by
// tests/CMakeLists.txt's glob as the plain ctest gpu_compare: nothing here needs CUDA.)
#include "compare.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace {

using rlhf::gpu_testing::close_scalar;
using rlhf::gpu_testing::rel_err;
using rlhf::gpu_testing::update_error;
constexpr float qnan = std::numeric_limits<float>::quiet_NaN();
constexpr float pinf = std::numeric_limits<float>::infinity();

}  // namespace

TEST_CASE("gpu compare: rel_err measures against the reference's scale") {
  const std::vector<float> want = {1.0f, -2.0f, 4.0f};
  CHECK(rel_err(want, want) == 0.0);
  CHECK(rel_err(std::vector<float>{1.0f, -2.0f, 4.4f}, want) == doctest::Approx(0.1));
  CHECK(rel_err(std::vector<float>{0.0f, 0.0f}, std::vector<float>{0.0f, 0.0f}) == 0.0);
  CHECK(rel_err(std::vector<float>{1e-3f}, std::vector<float>{0.0f}) == doctest::Approx(1e-3));  // absolute at 0
  CHECK(rel_err(std::vector<float>{1.0f, -2.0f, 4.0f, 9.0f}, want) == 0.0);  // a longer `a`: its head is compared
  CHECK_FALSE(rel_err(std::vector<float>{1.0f, -2.0f}, want) <= 1.0);       // a shorter one fails
}

TEST_CASE("gpu compare: rel_err fails on NaN and on an infinity the reference does not have") {
  const std::vector<float> want = {1.0f, -2.0f, 4.0f};
  CHECK_FALSE(rel_err(std::vector<float>(3, qnan), want) <= 1e9);  // all NaN: the case that used to score 0
  for (std::size_t at = 0; at < 3; ++at) {
    CAPTURE(at);
    for (const float bad : {qnan, pinf, -pinf}) {
      auto got = want;
      got[at] = bad;
      CHECK_FALSE(rel_err(got, want) <= 1e9);
      CHECK_FALSE(rel_err(want, got) <= 1e9);  // a non-finite reference fails too, unless matched
    }
  }
  const std::vector<float> with_inf = {-pinf, 1.0f, 2.0f};  // e.g. the log-prob of an impossible token
  CHECK(rel_err(with_inf, with_inf) == 0.0);
  CHECK(rel_err(std::vector<float>{-pinf, 1.0f, 2.2f}, with_inf) == doctest::Approx(0.1));
  CHECK_FALSE(rel_err(std::vector<float>{pinf, 1.0f, 2.0f}, with_inf) <= 1e9);
  CHECK_FALSE(rel_err(std::vector<float>{qnan, 1.0f}, std::vector<float>{qnan, 1.0f}) <= 1e9);  // NaN never matches
  CHECK_FALSE(rel_err(std::vector<double>{double(qnan)}, std::vector<double>{0.0}) <= 1e9);
}

TEST_CASE("gpu compare: close_scalar and update_error fail on non-finite values") {
  CHECK(close_scalar(1.0 + 1e-6, 1.0, 1e-5));
  CHECK_FALSE(close_scalar(1.0 + 1e-4, 1.0, 1e-5));
  CHECK(close_scalar(-300.0 * (1 + 1e-6), -300.0, 1e-5));  // relative past |want| = 1
  CHECK_FALSE(close_scalar(qnan, 1.0, 1e9));
  CHECK_FALSE(close_scalar(1.0, qnan, 1e9));
  CHECK_FALSE(close_scalar(pinf, pinf, 1e9));

  const std::vector<float> before = {1.0f, 2.0f, 3.0f}, cpu = {1.1f, 1.9f, 3.0f};
  CHECK(update_error(before, cpu, cpu) == 0.0);
  CHECK(update_error(before, std::vector<float>{1.1f, 1.9f, 3.01f}, cpu) ==
        doctest::Approx(0.01 / std::sqrt(0.02)).epsilon(1e-4));
  CHECK_FALSE(update_error(before, std::vector<float>{1.1f, qnan, 3.0f}, cpu) <= 1e9);
  CHECK_FALSE(update_error(before, std::vector<float>(3, qnan), cpu) <= 1e9);
  CHECK_FALSE(update_error(before, std::vector<float>{1.1f, 1.9f, pinf}, cpu) <= 1e9);
  CHECK_FALSE(update_error(before, std::vector<float>{1.1f, 1.9f}, cpu) <= 1e9);
  CHECK(update_error(before, before, before) == 0.0);                             // no step on either
  CHECK_FALSE(update_error(before, cpu, before) <= 1e9);                          // a step where the CPU took none
}
