#pragma once
// The two loops of a host backend (eigen.hpp, xtensor.hpp): f(i) over [0, n) and Σ f(i), spread over OpenMP
// threads once the work is large enough. Both backends derive from it (through host_buffers), so they split and
// sum alike.
#include <cstddef>
#include <cstdint>

namespace rlhf::detail {

struct host_loops {
  // f(i) for every i in [0, n). work_per_item estimates the scalar operations inside one call,
  // so that small batches stay on one thread.
  template <class F>
  static void for_each(std::size_t n, F f, std::size_t work_per_item = 1) {
    const auto count = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for schedule(static) if (n * work_per_item >= parallel_threshold)
    for (std::ptrdiff_t i = 0; i < count; ++i) f(static_cast<std::size_t>(i));
  }

  // Σ f(i) over [0, n), accumulated in double.
  template <class F>
  static double sum(std::size_t n, F f, std::size_t work_per_item = 1) {
    const auto count = static_cast<std::ptrdiff_t>(n);
    double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (n * work_per_item >= parallel_threshold)
    for (std::ptrdiff_t i = 0; i < count; ++i) total += static_cast<double>(f(static_cast<std::size_t>(i)));
    return total;
  }

  static constexpr std::size_t parallel_threshold = 1 << 16;
};

// The loops above, and the raw pointers of a host backend's owning containers (each has .data()).
template <class T, class Vector, class Matrix, class IndexVector>
struct host_buffers : host_loops {
  static T* data(Vector& v) { return v.data(); }
  static const T* data(const Vector& v) { return v.data(); }
  static T* data(Matrix& m) { return m.data(); }
  static const T* data(const Matrix& m) { return m.data(); }
  static const std::int32_t* data(const IndexVector& v) { return v.data(); }
};

}  // namespace rlhf::detail
