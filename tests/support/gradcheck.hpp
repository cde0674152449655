#pragma once
// Test helpers: random inputs and central finite differences, in double precision.
#include <Eigen/Core>
#include <cmath>
#include <functional>
#include <vector>

#include "rlhf/backends/eigen.hpp"
#include "rlhf/core/rng.hpp"

namespace rlhf::testing {

using vec = rlhf::eigen<double>::vector;
using mat = rlhf::eigen<double>::matrix;
using fvec = rlhf::eigen<float>::vector;

inline vec random_vector(std::size_t n, double lo, double hi, std::uint64_t seed) {
  Rng rng(seed);
  vec v(static_cast<Eigen::Index>(n));
  for (auto& x : v) x = lo + (hi - lo) * rng.uniform();
  return v;
}

inline mat random_matrix(std::size_t r, std::size_t c, double lo, double hi, std::uint64_t seed) {
  Rng rng(seed);
  mat m(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c));
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = lo + (hi - lo) * rng.uniform();
  return m;
}

// d f / d x[i] for every i, by central differences; f reads x (it is perturbed in place and restored).
template <class Tensor>
std::vector<double> numeric_gradient(const std::function<double()>& f, Tensor& x, double h = 1e-6) {
  std::vector<double> g(static_cast<std::size_t>(x.size()));
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    const double saved = x.data()[i];
    x.data()[i] = saved + h;
    const double up = f();
    x.data()[i] = saved - h;
    const double down = f();
    x.data()[i] = saved;
    g[static_cast<std::size_t>(i)] = (up - down) / (2 * h);
  }
  return g;
}

// Largest |a − b| / max(1, |b|).
template <class A>
double max_relative_error(const A& analytic, const std::vector<double>& numeric) {
  double worst = 0;
  for (std::size_t i = 0; i < numeric.size(); ++i) {
    const double a = analytic.data()[i], b = numeric[i];
    worst = std::max(worst, std::abs(a - b) / std::max(1.0, std::abs(b)));
  }
  return worst;
}

template <class Tensor>
bool all_finite(const Tensor& t) {
  for (Eigen::Index i = 0; i < t.size(); ++i)
    if (!std::isfinite(static_cast<double>(t.data()[i]))) return false;
  return true;
}

}  // namespace rlhf::testing
