// Uses one loss through the installed headers; exits non-zero if the result is wrong.
#include <cmath>
#include <cstdio>
#include <rlhf.hpp>
#include <rlhf/backends/eigen.hpp>

int main() {
  using vec = rlhf::eigen<float>::vector;
  const rlhf::PreferencePairs<vec> pairs{vec::Constant(1, -8), vec::Constant(1, -13), vec::Constant(1, -10),
                                         vec::Constant(1, -10)};
  const auto result = rlhf::dpo_loss(pairs, {.beta = 0.1f});
  const double want = std::log1p(std::exp(-0.5));
  std::printf("dpo loss %.6f (want %.6f)\n", result.loss, want);
  return std::abs(result.loss - want) < 1e-5 ? 0 : 1;
}
