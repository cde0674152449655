#pragma once
// Typed-test support: the backends under test in this build, how close each must come to Eigen, and
// moving host numbers onto a backend and back. Every tests/backends/*.cpp runs one loss on every backend
// under test and on rlhf::eigen (the reference) with the same inputs, and compares all outputs.
//
// Under g++ the backends under test are xtensor and Thrust on the host (OpenMP system), each in float and
// double, as far as their CMake targets were found (RLHF_TEST_XTENSOR, RLHF_TEST_THRUST). Under nvcc
// (tests/cuda) they are Thrust on the GPU, float and double.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "rlhf/backends/eigen.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/core/rng.hpp"
#if defined(__CUDACC__)
#include "rlhf/backends/thrust.hpp"
#else
#if RLHF_TEST_XTENSOR
#include "rlhf/backends/xtensor.hpp"
#endif
#if RLHF_TEST_THRUST
#include "rlhf/backends/thrust.hpp"
#endif
#endif

namespace rlhf::testing {

#if defined(__CUDACC__)
using backends_under_test = std::tuple<thrust_cuda<float>, thrust_cuda<double>>;
#else
#if RLHF_TEST_XTENSOR
using xtensor_backends = std::tuple<xtensor<float>, xtensor<double>>;
#else
using xtensor_backends = std::tuple<>;
#endif
#if RLHF_TEST_THRUST
using thrust_backends = std::tuple<thrust_host<float>, thrust_host<double>>;
#else
using thrust_backends = std::tuple<>;
#endif
using backends_under_test = decltype(std::tuple_cat(std::declval<xtensor_backends>(), std::declval<thrust_backends>()));
#endif
// The same list with Eigen in front: for tests of the backend contract itself.
using all_backends = decltype(std::tuple_cat(std::declval<std::tuple<eigen<float>, eigen<double>>>(),
                                             std::declval<backends_under_test>()));

// The Eigen backend a result is checked against: same scalar type.
template <class Be>
using reference_of = eigen<typename Be::scalar>;

// How far a backend's outputs may be from Eigen's on the same inputs, relative to the size of the output:
// max_i |got_i − want_i| <= value · max_i |want_i| (plus a denormal-sized floor). On the host the same
// formulas run with another loop order, SIMD exp and OpenMP reduction order: a few ulps. A GPU has its
// own exp/log and fused multiply-adds, so it gets more room.
template <class Be>
struct tolerance {
  static constexpr double value = std::is_same_v<typename Be::scalar, float> ? 2e-5 : 1e-11;
};
#if defined(__CUDACC__)
template <class T>
struct tolerance<thrust_cuda<T>> {
  static constexpr double value = std::is_same_v<T, float> ? 2e-4 : 1e-10;
};
#endif

// ---- Host numbers to a backend and back (in double on the host) ----------------------------------------
template <class Be>
typename Be::vector to_backend(const std::vector<double>& h) {
  return Be::from_host(std::vector<typename Be::scalar>(h.begin(), h.end()));
}
template <class Be>
typename Be::matrix to_backend(std::size_t rows, std::size_t cols, const std::vector<double>& h) {
  return Be::matrix_from_host(rows, cols, std::vector<typename Be::scalar>(h.begin(), h.end()));
}
template <class Be>
std::vector<double> to_host_double(const typename Be::vector& v) {
  const auto h = Be::to_host(v);
  return {h.begin(), h.end()};
}
template <class Be>
std::vector<double> to_host_double(const typename Be::matrix& m) {
  const auto h = Be::to_host(m);
  return {h.begin(), h.end()};
}

// n numbers uniform in [lo, hi), rounded to float so that float and double backends see the same inputs.
inline std::vector<double> uniform(std::size_t n, double lo, double hi, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<double> v(n);
  for (auto& x : v) x = static_cast<float>(lo + (hi - lo) * rng.uniform());
  return v;
}
inline std::vector<double> constant(std::size_t n, double value) { return std::vector<double>(n, value); }
// A 0/1 mask [rows, cols] with a contiguous response run in every row (start and length random).
inline std::vector<double> response_mask(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<double> m(rows * cols, 0.0);
  for (std::size_t r = 0; r < rows; ++r) {
    const std::size_t start = rng.below(cols / 2), length = 1 + rng.below(cols - start);
    for (std::size_t t = start; t < start + length; ++t) m[r * cols + t] = 1.0;
  }
  return m;
}

// ---- Comparison -----------------------------------------------------------------------------------------
inline double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (const double x : v) m = std::max(m, std::abs(x));
  return m;
}

// Normwise: the largest difference, relative to the largest reference value. NaN anywhere fails.
template <class Be>
void check_close(const std::string& what, const std::vector<double>& got, const std::vector<double>& want) {
  INFO(what, " on ", std::string(Be::name));
  REQUIRE(got.size() == want.size());
  double err = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double d = std::abs(got[i] - want[i]);
    err = d == d ? std::max(err, d) : INFINITY;
  }
  const double bound = tolerance<Be>::value * max_abs(want) + 1e-30;
  CHECK_MESSAGE(err <= bound, what, ": max |difference| ", err, " > ", bound);
}
template <class Be>
void check_close(const std::string& what, double got, double want) {
  INFO(what, " on ", std::string(Be::name), ": ", got, " vs ", want);
  CHECK(std::abs(got - want) <= tolerance<Be>::value * (std::abs(want) + 1.0));
}
template <class Be, class Tensor, class Reference>
void check_tensor(const std::string& what, const Tensor& got, const Reference& want) {
  check_close<Be>(what, to_host_double<Be>(got), to_host_double<reference_of<Be>>(want));
}
template <class Be>
void check_metrics(const Metrics& got, const Metrics& want) {
  CHECK(got.items().size() == want.items().size());
  for (const auto& [name, value] : want.items()) {
    REQUIRE_MESSAGE(got.has(name), "metric '", name, "' missing on ", std::string(Be::name));
    check_close<Be>("metric " + name, got[name], value);
  }
}

}  // namespace rlhf::testing

TYPE_TO_STRING(rlhf::eigen<float>);
TYPE_TO_STRING(rlhf::eigen<double>);
#if defined(__CUDACC__)
TYPE_TO_STRING(rlhf::thrust_cuda<float>);
TYPE_TO_STRING(rlhf::thrust_cuda<double>);
#else
#if RLHF_TEST_XTENSOR
TYPE_TO_STRING(rlhf::xtensor<float>);
TYPE_TO_STRING(rlhf::xtensor<double>);
#endif
#if RLHF_TEST_THRUST
TYPE_TO_STRING(rlhf::thrust_host<float>);
TYPE_TO_STRING(rlhf::thrust_host<double>);
#endif
#endif
