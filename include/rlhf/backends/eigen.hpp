#pragma once
// The Eigen backend: owning Eigen vectors and row-major matrices; kernels run on the host,
// in parallel with OpenMP when the work is large enough to pay for the threads.
#include <Eigen/Core>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "rlhf/backends/host_loops.hpp"
#include "rlhf/core/concepts.hpp"

namespace rlhf {

namespace detail {
// One row of n scalars as an Eigen array, for the row primitives below.
template <class T>
Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> eigen_row(const T* x, std::size_t n) {
  return Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(x, static_cast<Eigen::Index>(n));
}
template <class T>
Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> eigen_row(T* x, std::size_t n) {
  return Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(x, static_cast<Eigen::Index>(n));
}
}  // namespace detail

template <class T>
using eigen_vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <class T>
using eigen_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class T = float>
struct eigen : detail::host_buffers<T, eigen_vector<T>, eigen_matrix<T>, eigen_vector<std::int32_t>> {
  using scalar = T;
  using vector = eigen_vector<T>;                   // [n]
  using matrix = eigen_matrix<T>;                   // [rows, cols]
  using index_vector = eigen_vector<std::int32_t>;  // [n]
  static constexpr const char* name = "eigen";

  static vector vector_of(std::size_t n) { return vector::Zero(static_cast<Eigen::Index>(n)); }
  static matrix matrix_of(std::size_t r, std::size_t c) {
    return matrix::Zero(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c));
  }
  static std::size_t size(const vector& v) { return static_cast<std::size_t>(v.size()); }
  static std::size_t size(const index_vector& v) { return static_cast<std::size_t>(v.size()); }
  static std::size_t rows(const matrix& m) { return static_cast<std::size_t>(m.rows()); }
  static std::size_t cols(const matrix& m) { return static_cast<std::size_t>(m.cols()); }
  // data(vector | matrix | index_vector): detail::host_buffers (host_loops.hpp).
  static std::vector<T> to_host(const vector& v) { return {v.data(), v.data() + v.size()}; }
  static vector from_host(const std::vector<T>& h) {
    return Eigen::Map<const vector>(h.data(), static_cast<Eigen::Index>(h.size()));
  }
  static index_vector indices_from_host(const std::vector<std::int32_t>& h) {
    return Eigen::Map<const index_vector>(h.data(), static_cast<Eigen::Index>(h.size()));
  }
  // Matrices to and from the host, row-major: h holds rows * cols values.
  static std::vector<T> to_host(const matrix& m) { return {m.data(), m.data() + m.size()}; }
  static matrix matrix_from_host(std::size_t r, std::size_t c, const std::vector<T>& h) {
    return Eigen::Map<const matrix>(h.data(), static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c));
  }

  // for_each and sum: detail::host_loops (host_loops.hpp).

  // ---- Row primitives -------------------------------------------------------------------------------
  // Loops over one contiguous row x[0, n) of a row-major matrix, called from inside a kernel (one row per
  // kernel call, so they run on one thread) and vectorised over n. Row-wise kernels (the fused log-softmax
  // of models/logprob.hpp) are written with them, so that their inner loops run at SIMD speed; every
  // backend offers the same six, with the same meaning. `out` may be `x` itself (in place); otherwise the
  // two must not overlap. exp is Eigen's vectorised one (within a few ulp; it returns about 1e-38 rather
  // than 0 below e^-88, which is harmless next to the row's max term e^0 = 1).

  // max_v x[v], for n >= 1. A NaN may or may not propagate; row_sum_exp's result always does.
  static T row_max(const T* x, std::size_t n) { return detail::eigen_row(x, n).maxCoeff(); }

  // Σ_v exp(x[v] − shift), accumulated in T (one partial sum per SIMD lane). NaN in x gives NaN.
  static T row_sum_exp(const T* x, std::size_t n, T shift) { return (detail::eigen_row(x, n) - shift).exp().sum(); }

  // out[v] = exp(x[v] − shift); returns Σ_v out[v].
  static T row_exp(T* out, const T* x, std::size_t n, T shift) {
    auto o = detail::eigen_row(out, n);
    o = (detail::eigen_row(x, n) - shift).exp();
    return o.sum();
  }

  // out[v] = scale · exp(x[v] − shift), or out[v] += … when accumulate.
  static void row_scaled_exp(T* out, const T* x, std::size_t n, T shift, T scale, bool accumulate) {
    if (accumulate)
      detail::eigen_row(out, n) += scale * (detail::eigen_row(x, n) - shift).exp();
    else
      detail::eigen_row(out, n) = scale * (detail::eigen_row(x, n) - shift).exp();
  }

  // out[v] *= a.
  static void row_scale(T* out, std::size_t n, T a) { detail::eigen_row(out, n) *= a; }

  // A hint that x[0, n) is about to be read: starts bringing it into cache while the caller computes on
  // the current row. No effect on results.
  static void row_prefetch(const T* x, std::size_t n) {
#if defined(__GNUC__) || defined(__clang__)
    constexpr std::size_t per_line = 64 / sizeof(T);
    for (std::size_t i = 0; i < n; i += per_line) __builtin_prefetch(x + i, 0, 2);
#else
    (void)x, (void)n;
#endif
  }
};

template <class T>
struct backend_of<Eigen::Matrix<T, Eigen::Dynamic, 1>> {
  using type = eigen<T>;
};
template <class T>
struct backend_of<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> {
  using type = eigen<T>;
};

static_assert(Backend<eigen<float>>);
static_assert(Backend<eigen<double>>);

}  // namespace rlhf
