#pragma once
// The largest elementwise |a − b| of two ranges of numbers (parameters, gradients, log-probs), in double.
// Honest in a CHECK: two ranges of different sizes throw (never a comparison of a prefix), and a NaN on either
// side gives NaN, so that `<= tol`, `== 0` and `> 0` all fail.
#include <cmath>
#include <cstddef>
#include <limits>
#include <ranges>
#include <stdexcept>
#include <string>

namespace rlhf::test {

template <std::ranges::sized_range A, std::ranges::sized_range B>
double max_abs_difference(const A& a, const B& b) {
  const auto n = static_cast<std::size_t>(std::ranges::size(a)), m = static_cast<std::size_t>(std::ranges::size(b));
  if (n != m)
    throw std::invalid_argument("max_abs_difference: the ranges have " + std::to_string(n) + " and " +
                                std::to_string(m) + " elements");
  double worst = 0;
  auto j = std::ranges::begin(b);
  for (auto i = std::ranges::begin(a); i != std::ranges::end(a); ++i, ++j) {
    const double d = std::abs(static_cast<double>(*i) - static_cast<double>(*j));
    if (std::isnan(d)) return std::numeric_limits<double>::quiet_NaN();
    if (d > worst) worst = d;
  }
  return worst;
}

}  // namespace rlhf::test
