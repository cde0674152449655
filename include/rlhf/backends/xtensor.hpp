#pragma once
// The xtensor backend: owning, row-major xt::xtensor containers (SIMD-aligned storage and xsimd-vectorised
// expressions when XTENSOR_USE_XSIMD is defined, as the rlhf::xtensor CMake target does). Kernels run on the
// host, in parallel with OpenMP when the work is large enough to pay for the threads, exactly as in eigen.hpp.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>
#include <xtensor/xtensor.hpp>
#if defined(XTENSOR_USE_XSIMD)
#include <xsimd/xsimd.hpp>
#endif

#include "rlhf/backends/host_loops.hpp"
#include "rlhf/core/concepts.hpp"

#if defined(XTENSOR_USE_XSIMD) && !defined(XSIMD_NO_SUPPORTED_ARCHITECTURE)
#define RLHF_XTENSOR_SIMD 1
#endif

namespace rlhf {

template <class T, std::size_t D>
using xtensor_row_major = xt::xtensor<T, D, xt::layout_type::row_major>;

template <class T = float>
struct xtensor : detail::host_buffers<T, xtensor_row_major<T, 1>, xtensor_row_major<T, 2>,
                                      xtensor_row_major<std::int32_t, 1>> {
  using scalar = T;
  using vector = xtensor_row_major<T, 1>;                   // [n]
  using matrix = xtensor_row_major<T, 2>;                   // [rows, cols]
  using index_vector = xtensor_row_major<std::int32_t, 1>;  // [n]
  static constexpr const char* name = "xtensor";

  static vector vector_of(std::size_t n) { return vector(typename vector::shape_type{n}, T(0)); }
  static matrix matrix_of(std::size_t r, std::size_t c) { return matrix(typename matrix::shape_type{r, c}, T(0)); }
  static std::size_t size(const vector& v) { return v.size(); }
  static std::size_t size(const index_vector& v) { return v.size(); }
  static std::size_t rows(const matrix& m) { return m.shape(0); }
  static std::size_t cols(const matrix& m) { return m.shape(1); }
  // data(vector | matrix | index_vector): detail::host_buffers (host_loops.hpp).
  static std::vector<T> to_host(const vector& v) { return {v.data(), v.data() + v.size()}; }
  static std::vector<T> to_host(const matrix& m) { return {m.data(), m.data() + m.size()}; }  // row-major
  static vector from_host(const std::vector<T>& h) {
    vector v(typename vector::shape_type{h.size()});
    std::copy(h.begin(), h.end(), v.data());
    return v;
  }
  // h holds rows * cols values, row-major.
  static matrix matrix_from_host(std::size_t r, std::size_t c, const std::vector<T>& h) {
    matrix m(typename matrix::shape_type{r, c});
    std::copy(h.begin(), h.begin() + static_cast<std::ptrdiff_t>(r * c), m.data());
    return m;
  }
  static index_vector indices_from_host(const std::vector<std::int32_t>& h) {
    index_vector v(typename index_vector::shape_type{h.size()});
    std::copy(h.begin(), h.end(), v.data());
    return v;
  }

  // for_each and sum: detail::host_loops (host_loops.hpp).

  // ---- Row primitives (the six of eigen.hpp, same contract) -----------------------------------------------
  // Loops over one contiguous row x[0, n), called from inside a kernel, vectorised with xsimd batches (the
  // SIMD layer under xtensor) when XTENSOR_USE_XSIMD is defined; the tail runs scalar. `out` may be `x`
  // itself (in place); otherwise the two must not overlap.

  // max_v x[v], for n >= 1. A NaN may or may not propagate; row_sum_exp's result always does.
  static T row_max(const T* x, std::size_t n) {
    T m = x[0];
    std::size_t v = 0;
#if defined(RLHF_XTENSOR_SIMD)
    if (n >= lanes) {
      simd mv = simd::load_unaligned(x);
      for (v = lanes; v + lanes <= n; v += lanes) mv = xsimd::max(mv, simd::load_unaligned(x + v));
      alignas(simd::arch_type::alignment()) T lane[lanes];
      mv.store_aligned(lane);
      for (const T l : lane) m = l > m ? l : m;
    }
#endif
    for (; v < n; ++v) m = x[v] > m ? x[v] : m;
    return m;
  }

  // Σ_v exp(x[v] − shift), accumulated in T (one partial sum per SIMD lane). NaN in x gives NaN.
  static T row_sum_exp(const T* x, std::size_t n, T shift) {
    using std::exp;
    T total = 0;
    std::size_t v = 0;
#if defined(RLHF_XTENSOR_SIMD)
    simd acc(T(0));
    for (; v + lanes <= n; v += lanes) acc += xsimd::exp(simd::load_unaligned(x + v) - simd(shift));
    total = xsimd::hadd(acc);
#endif
    for (; v < n; ++v) total += exp(x[v] - shift);
    return total;
  }

  // out[v] = exp(x[v] − shift); returns Σ_v out[v]. out may be x itself.
  static T row_exp(T* out, const T* x, std::size_t n, T shift) {
    using std::exp;
    T total = 0;
    std::size_t v = 0;
#if defined(RLHF_XTENSOR_SIMD)
    const simd s(shift);
    simd acc(T(0));
    for (; v + lanes <= n; v += lanes) {
      const simd e = xsimd::exp(simd::load_unaligned(x + v) - s);
      e.store_unaligned(out + v);
      acc += e;
    }
    total = xsimd::hadd(acc);
#endif
    for (; v < n; ++v) total += out[v] = exp(x[v] - shift);
    return total;
  }

  // out[v] *= a.
  static void row_scale(T* out, std::size_t n, T a) {
    std::size_t v = 0;
#if defined(RLHF_XTENSOR_SIMD)
    const simd k(a);
    for (; v + lanes <= n; v += lanes) (simd::load_unaligned(out + v) * k).store_unaligned(out + v);
#endif
    for (; v < n; ++v) out[v] *= a;
  }

  // A hint that x[0, n) is about to be read (the next row); no effect on results.
  static void row_prefetch([[maybe_unused]] const T* x, [[maybe_unused]] std::size_t n) {
#if defined(__GNUC__) || defined(__clang__)
    for (std::size_t i = 0; i < n; i += 64 / sizeof(T)) __builtin_prefetch(x + i, 0, 2);
#endif
  }

  // out[v] = scale · exp(x[v] − shift) for v in [0, n), or out[v] += … when accumulate.
  // out may be x itself (in place); otherwise the two must not overlap.
  static void row_scaled_exp(T* out, const T* x, std::size_t n, T shift, T scale, bool accumulate) {
    using std::exp;
    std::size_t v = 0;
#if defined(RLHF_XTENSOR_SIMD)
    // Two loops rather than a branch inside one: GCC 12 at -O3 with AVX-512 dropped the accumulation of
    // the branchy form for double (tests/backends/logprob.cpp caught it).
    const simd s(shift), k(scale);
    if (accumulate) {
      for (; v + lanes <= n; v += lanes)
        xsimd::fma(k, xsimd::exp(simd::load_unaligned(x + v) - s), simd::load_unaligned(out + v))
            .store_unaligned(out + v);
    } else {
      for (; v + lanes <= n; v += lanes) (k * xsimd::exp(simd::load_unaligned(x + v) - s)).store_unaligned(out + v);
    }
#endif
    for (; v < n; ++v) out[v] = (accumulate ? out[v] : T(0)) + scale * exp(x[v] - shift);
  }

 private:
#if defined(RLHF_XTENSOR_SIMD)
  using simd = xsimd::batch<T>;
  static constexpr std::size_t lanes = simd::size;
#endif
};

template <class T>
struct backend_of<xt::xtensor<T, 1, xt::layout_type::row_major>> {
  using type = xtensor<T>;
};
template <class T>
struct backend_of<xt::xtensor<T, 2, xt::layout_type::row_major>> {
  using type = xtensor<T>;
};

static_assert(Backend<xtensor<float>>);
static_assert(Backend<xtensor<double>>);

}  // namespace rlhf
