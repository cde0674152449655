#pragma once
// The Thrust backend, parameterised on the Thrust system the numbers live in:
//   thrust_systems::omp   host memory, kernels on OpenMP threads      (g++ -fopenmp, or nvcc)
//   thrust_systems::cpp   host memory, kernels on the calling thread  (any compiler)
//   thrust_systems::cuda  GPU memory, kernels on the GPU              (nvcc only)
// Each system names its own vector type (a thrust::host_vector with a per-system allocator on the host,
// thrust::cuda::vector on the GPU), so several systems can share one program without THRUST_DEVICE_SYSTEM.
// data() of a CUDA tensor is a device pointer: the losses hand it to kernels only, and the host reads
// results through to_host.
//
// Without nvcc there is no CUDA system: the default device system becomes OpenMP (or the calling thread), so
// that Thrust does not reach for the CUDA runtime headers. The rlhf::thrust CMake target sets it too.
#if !defined(__CUDACC__) && !defined(THRUST_DEVICE_SYSTEM)
#if defined(_OPENMP)
#define THRUST_DEVICE_SYSTEM THRUST_DEVICE_SYSTEM_OMP
#else
#define THRUST_DEVICE_SYSTEM THRUST_DEVICE_SYSTEM_CPP
#endif
#endif
#include <thrust/copy.h>
#include <thrust/fill.h>
#include <thrust/for_each.h>
#include <thrust/functional.h>
#include <thrust/host_vector.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/system/cpp/execution_policy.h>
#include <thrust/transform_reduce.h>

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>
#if defined(_OPENMP)
#include <omp.h>
#include <thrust/system/omp/execution_policy.h>
#endif
#if defined(__CUDACC__)
#include <thrust/system/cuda/execution_policy.h>
#include <thrust/system/cuda/vector.h>
#endif

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/math.hpp"

namespace rlhf {

namespace detail {
// The allocator of a host system's vectors: std::allocator, tagged with the system so that each system has
// its own vector type (backend_of tells them apart). Being a plain host allocator, it allocates and
// zero-fills on the calling thread, as Eigen does; only the loss kernels and sums run on the system.
template <class T, class System>
struct host_allocator : std::allocator<T> {
  using value_type = T;
  host_allocator() = default;
  template <class U>
  host_allocator(const host_allocator<U, System>&) noexcept {}
  template <class U>
  struct rebind {
    using other = host_allocator<U, System>;
  };
};
template <class T, class U, class System>
bool operator==(const host_allocator<T, System>&, const host_allocator<U, System>&) {
  return true;
}
}  // namespace detail

// Thrust systems: the vector type of each and the execution policy its algorithms run under.
// on_host: kernels may also run as a plain loop on the calling thread when the work is small.
namespace thrust_systems {
struct cpp {
  template <class U>
  using vector = ::thrust::host_vector<U, detail::host_allocator<U, cpp>>;
  static auto policy() { return ::thrust::cpp::par; }
  static std::size_t threads() { return 1; }
  static constexpr bool on_host = true;
  static constexpr const char* name = "thrust-cpp";
};
#if defined(_OPENMP)
struct omp {
  template <class U>
  using vector = ::thrust::host_vector<U, detail::host_allocator<U, omp>>;
  static auto policy() { return ::thrust::omp::par; }
  static std::size_t threads() { return static_cast<std::size_t>(omp_get_max_threads()); }
  static constexpr bool on_host = true;
  static constexpr const char* name = "thrust-omp";
};
#endif
#if defined(__CUDACC__)
struct cuda {
  template <class U>
  using vector = ::thrust::cuda::vector<U>;
  static auto policy() { return ::thrust::cuda::par; }
  static constexpr bool on_host = false;
  static constexpr const char* name = "thrust-cuda";
};
#endif
}  // namespace thrust_systems

namespace detail {
#if defined(_OPENMP) && !defined(__CUDA_ARCH__)
#define RLHF_OMP_SIMD(clause) _Pragma(RLHF_STRINGIFY(omp simd clause))
#define RLHF_STRINGIFY(x) #x
#else
#define RLHF_OMP_SIMD(clause)
#endif

// e^x in float, branch-free so that a loop over it vectorises (glibc's expf does not): Cody–Waite range
// reduction x = n·ln2 + r, a degree-7 polynomial for e^r (the Cephes coefficients, ~1e-7 relative error),
// and 2^n built in the exponent bits. 0 below −86.5, +Inf above ln(FLT_MAX), NaN stays NaN.
inline float simd_exp(float x) {
  constexpr float lo = -86.5f, hi = 88.72283f, round_magic = 12582912.0f;  // 1.5·2^23
  float c = x < lo ? lo : x;
  c = c > hi ? hi : c;
  const float t = c * 1.44269504088896341f + round_magic;  // n = round(c / ln2) sits in the low mantissa bits
  const float n = t - round_magic;
  float r = c - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e_r = p * r * r + r + 1.0f;
  const std::int32_t n_bits = std::bit_cast<std::int32_t>(t) - 0x4B400000;  // n as an integer
  const float half_two_n = std::bit_cast<float>((n_bits + 126) << 23);      // 2^(n−1): n may be 128
  float e = (e_r * half_two_n) * 2.0f;
  e = x < lo ? 0.0f : e;
  e = x > hi ? std::numeric_limits<float>::infinity() : e;
  return x != x ? x : e;
}
inline double simd_exp(double x) { return std::exp(x); }  // double: the accurate scalar exp

template <class F>
struct store_as_double {  // out[i] = f(i)
  F f;
  double* out;
  RLHF_HOST_DEVICE void operator()(std::size_t i) const { out[i] = static_cast<double>(f(i)); }
};

template <class F>
struct chunk_sum {  // partial[c] = Σ f(i) over chunk c of `parts` equal chunks of [0, n)
  F f;
  std::size_t n, parts;
  double* partial;
  double range(std::size_t begin, std::size_t end) const {
    double total = 0.0;
    for (std::size_t i = begin; i < end; ++i) total += static_cast<double>(f(i));
    return total;
  }
  void operator()(std::size_t c) const { partial[c] = range(n * c / parts, n * (c + 1) / parts); }
};
}  // namespace detail

// A row-major [rows, cols] matrix: one flat vector of the system plus its shape.
template <class T, class System>
struct thrust_matrix {
  typename System::template vector<T> values;  // [rows * cols]
  std::size_t rows = 0, cols = 0;

  thrust_matrix() = default;
  thrust_matrix(std::size_t r, std::size_t c) : values(r * c, T(0)), rows(r), cols(c) {}  // zero-filled
};

template <class T, class System>
struct thrust_backend {
  using scalar = T;
  using system = System;
  using vector = typename System::template vector<T>;                   // [n]
  using matrix = thrust_matrix<T, System>;                              // [rows, cols]
  using index_vector = typename System::template vector<std::int32_t>;  // [n]
  static constexpr const char* name = System::name;

  static vector vector_of(std::size_t n) { return vector(n, T(0)); }
  static matrix matrix_of(std::size_t r, std::size_t c) { return matrix(r, c); }
  static std::size_t size(const vector& v) { return v.size(); }
  static std::size_t size(const index_vector& v) { return v.size(); }
  static std::size_t rows(const matrix& m) { return m.rows; }
  static std::size_t cols(const matrix& m) { return m.cols; }
  // An empty vector's data() would bind a reference to its null storage (undefined behaviour): nullptr instead.
  static T* data(vector& v) { return v.empty() ? nullptr : ::thrust::raw_pointer_cast(v.data()); }
  static const T* data(const vector& v) { return v.empty() ? nullptr : ::thrust::raw_pointer_cast(v.data()); }
  static T* data(matrix& m) { return data(m.values); }
  static const T* data(const matrix& m) { return data(m.values); }
  static const std::int32_t* data(const index_vector& v) {
    return v.empty() ? nullptr : ::thrust::raw_pointer_cast(v.data());
  }
  static std::vector<T> to_host(const vector& v) {
    std::vector<T> h(v.size());
    if (!v.empty()) ::thrust::copy(v.begin(), v.end(), h.begin());
    return h;
  }
  static std::vector<T> to_host(const matrix& m) { return to_host(m.values); }  // row-major
  static vector from_host(const std::vector<T>& h) { return vector(h.begin(), h.end()); }
  // h holds rows * cols values, row-major.
  static matrix matrix_from_host(std::size_t r, std::size_t c, const std::vector<T>& h) {
    matrix m;
    m.values = vector(h.begin(), h.begin() + static_cast<std::ptrdiff_t>(r * c));
    m.rows = r;
    m.cols = c;
    return m;
  }
  static index_vector indices_from_host(const std::vector<std::int32_t>& h) { return index_vector(h.begin(), h.end()); }

  // f(i) for every i in [0, n). On a host system, work below parallel_threshold scalar operations runs
  // as a plain loop on the calling thread (as in eigen.hpp): waking the threads would cost more.
  template <class F>
  static void for_each(std::size_t n, F f, std::size_t work_per_item = 1) {
    if (n == 0) return;
    if constexpr (System::on_host) {
      if (n * work_per_item < parallel_threshold) {
        for (std::size_t i = 0; i < n; ++i) f(i);
        return;
      }
    }
    ::thrust::for_each(System::policy(), counting(0), counting(n), f);
  }

  // Σ f(i) over [0, n), accumulated in double.
  template <class F>
  static double sum(std::size_t n, F f, std::size_t work_per_item = 1) {
    if (n == 0) return 0.0;
    if constexpr (System::on_host) {
      if (n * work_per_item < parallel_threshold) return detail::chunk_sum<F>{f, n, 1, nullptr}.range(0, n);
      // One chunk per thread, summed by a for_each: a single parallel region, where thrust::reduce on the
      // OpenMP system opens two (and a temporary array). Same result up to the order of the additions.
      const std::size_t parts = System::threads();
      std::vector<double> partial(parts);
      ::thrust::for_each(System::policy(), counting(0), counting(parts),
                         detail::chunk_sum<F>{f, n, parts, partial.data()});
      double total = 0.0;
      for (const double p : partial) total += p;
      return total;
    } else {
      // f into a buffer by one for_each, then one reduce of plain doubles shared by every f. A transform_reduce
      // would inline f (for a loss, a row's loop over its tokens) into each variant of the reduce kernels, with
      // their unrolling: that made the PTX of a few losses tens of MB and ptxas take minutes per file.
      typename System::template vector<double> values(n);  // [n]
      ::thrust::for_each(System::policy(), counting(0), counting(n),
                         detail::store_as_double<F>{f, ::thrust::raw_pointer_cast(values.data())});
      return ::thrust::reduce(System::policy(), values.begin(), values.end(), 0.0, ::thrust::plus<double>());
    }
  }

  static constexpr std::size_t parallel_threshold = 1 << 16;

  // ---- Row primitives (the six of eigen.hpp, same contract) -----------------------------------------------
  // Loops over one contiguous row x[0, n), called from inside a kernel. On the host they are SIMD loops
  // (OpenMP simd with a vectorisable exp); on a CUDA device, plain loops run by the row's thread. `out`
  // may be `x` itself (in place); otherwise the two must not overlap.

  // max_v x[v], for n >= 1. A NaN may or may not propagate; row_sum_exp's result always does.
  RLHF_HOST_DEVICE static T row_max(const T* x, std::size_t n) {
    T m = x[0];
    RLHF_OMP_SIMD(reduction(max : m))
    for (std::size_t v = 0; v < n; ++v) m = x[v] > m ? x[v] : m;
    return m;
  }

  // Σ_v exp(x[v] − shift), accumulated in T (one partial sum per SIMD lane). NaN in x gives NaN.
  RLHF_HOST_DEVICE static T row_sum_exp(const T* x, std::size_t n, T shift) {
    T total = 0;
    RLHF_OMP_SIMD(reduction(+ : total))
    for (std::size_t v = 0; v < n; ++v) total += exp_(x[v] - shift);
    return total;
  }

  // out[v] = exp(x[v] − shift); returns Σ_v out[v]. out may be x itself.
  RLHF_HOST_DEVICE static T row_exp(T* out, const T* x, std::size_t n, T shift) {
    T total = 0;
    RLHF_OMP_SIMD(reduction(+ : total))
    for (std::size_t v = 0; v < n; ++v) {
      const T e = exp_(x[v] - shift);
      out[v] = e;
      total += e;
    }
    return total;
  }

  // out[v] *= a.
  RLHF_HOST_DEVICE static void row_scale(T* out, std::size_t n, T a) {
    RLHF_OMP_SIMD()
    for (std::size_t v = 0; v < n; ++v) out[v] *= a;
  }

  // A hint that x[0, n) is about to be read (the next row); no effect on results. Host only.
  RLHF_HOST_DEVICE static void row_prefetch([[maybe_unused]] const T* x, [[maybe_unused]] std::size_t n) {
#if !defined(__CUDA_ARCH__) && (defined(__GNUC__) || defined(__clang__))
    for (std::size_t i = 0; i < n; i += 64 / sizeof(T)) __builtin_prefetch(x + i, 0, 2);
#endif
  }

  // out[v] = scale · exp(x[v] − shift) for v in [0, n), or out[v] += … when accumulate.
  // out may be x itself (in place); otherwise the two must not overlap.
  RLHF_HOST_DEVICE static void row_scaled_exp(T* out, const T* x, std::size_t n, T shift, T scale, bool accumulate) {
    if (accumulate) {
      RLHF_OMP_SIMD()
      for (std::size_t v = 0; v < n; ++v) out[v] += scale * exp_(x[v] - shift);
    } else {
      RLHF_OMP_SIMD()
      for (std::size_t v = 0; v < n; ++v) out[v] = scale * exp_(x[v] - shift);
    }
  }

 private:
  static ::thrust::counting_iterator<std::size_t> counting(std::size_t i) {
    return ::thrust::counting_iterator<std::size_t>(i);
  }
  RLHF_HOST_DEVICE static T exp_(T x) {
#if defined(__CUDA_ARCH__)
    using std::exp;
    return exp(x);
#else
    return detail::simd_exp(x);
#endif
  }
};

// The backend a program names: thrust_host<T> runs here (OpenMP threads when compiled with OpenMP),
// thrust_cuda<T> on the GPU (nvcc only).
#if defined(_OPENMP)
template <class T = float>
using thrust_omp = thrust_backend<T, thrust_systems::omp>;
template <class T = float>
using thrust_host = thrust_omp<T>;
#else
template <class T = float>
using thrust_host = thrust_backend<T, thrust_systems::cpp>;
#endif
template <class T = float>
using thrust_cpp = thrust_backend<T, thrust_systems::cpp>;
#if defined(__CUDACC__)
template <class T = float>
using thrust_cuda = thrust_backend<T, thrust_systems::cuda>;
#endif

template <class T, class System>
struct backend_of<thrust_matrix<T, System>> {
  using type = thrust_backend<T, System>;
};
template <class T, class System>
struct backend_of<::thrust::host_vector<T, detail::host_allocator<T, System>>> {
  using type = thrust_backend<T, System>;
};
#if defined(__CUDACC__)
template <class T>
struct backend_of<::thrust::cuda::vector<T>> {
  using type = thrust_backend<T, thrust_systems::cuda>;
};
#endif

static_assert(Backend<thrust_host<float>>);
static_assert(Backend<thrust_host<double>>);

}  // namespace rlhf
