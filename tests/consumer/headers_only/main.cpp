// Uses a core header of the installed package; exits non-zero if the result is wrong.
#include <cmath>
#include <cstdio>
#include <rlhf/core/math.hpp>

int main() {
  const double got = rlhf::math::log_sigmoid(0.0), want = -std::log(2.0);
  std::printf("log_sigmoid(0) %.12f (want %.12f)\n", got, want);
  return std::abs(got - want) < 1e-12 ? 0 : 1;
}
