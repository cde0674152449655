#pragma once
// c [M, N] (row stride ldc) = a [M, K] · bᵀ, b [N, K] row-major: each element is the dot product of a row of a and
// a row of b, both read where they lie. Nothing is packed, so b streams from memory once per call.
//
// For products with few rows of a and a large b that changes between calls or is too large to keep packed: a
// sampler's LM head on one token per sequence (16 rows against a 49152 × 576 head). A packed product (cpu/sgemm.hpp,
// Eigen) copies all of b at every call there, which measured as a third of a decode step.
//
// Each element sums its K products lane by lane, then the lanes, in an order fixed by the level alone: results do
// not depend on the number of threads (threads split the rows of b).
#include "rlhf/models/cpu/isa.hpp"
#include "rlhf/models/cpu/sgemm.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <cstring>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace rlhf::cpu {
namespace dot_rows_detail {
#if RLHF_CPU_X86  // GNU vectors and target attributes: the host compiler only

// A float and GNU vectors of 2, 4, 8 and 16 floats, by size in bytes (an attribute on a dependent type is not
// applied).
template <std::size_t Bytes>
struct FloatVector;
template <>
struct FloatVector<4> {
  using type = float;
};
template <>
struct FloatVector<8> {
  using type = float __attribute__((vector_size(8)));
};
template <>
struct FloatVector<16> {
  using type = float __attribute__((vector_size(16)));
};
template <>
struct FloatVector<32> {
  using type = float __attribute__((vector_size(32)));
};
template <>
struct FloatVector<64> {
  using type = float __attribute__((vector_size(64)));
};

// The sum of v's lanes, halves added first, then their halves, …: a fixed order, in vector registers.
template <class V>
[[gnu::always_inline]] inline float lane_sum(const V& v) {
  if constexpr (sizeof(V) == sizeof(float)) {
    float x;
    std::memcpy(&x, &v, sizeof x);
    return x;
  } else {
    using Half = typename FloatVector<sizeof(V) / 2>::type;
    Half low, high;
    std::memcpy(&low, &v, sizeof(Half));
    std::memcpy(&high, reinterpret_cast<const char*>(&v) + sizeof(Half), sizeof(Half));
    return lane_sum(low + high);
  }
}

// c [MR, NB] (row stride ldc) = a [MR rows, stride lda] · b [NB rows, stride ldb]ᵀ over K, V a GNU vector of W
// floats: MR · NB accumulators, the K − K mod W tail in scalars.
template <class V, std::size_t MR, std::size_t NB>
[[gnu::always_inline]] inline void tile(const float* a, std::size_t lda, const float* b, std::size_t ldb, float* c,
                                        std::size_t ldc, std::size_t K) {
  constexpr std::size_t W = sizeof(V) / sizeof(float);
  V acc[MR][NB];
RLHF_GCC_UNROLL(8)
  for (std::size_t i = 0; i < MR; ++i)
RLHF_GCC_UNROLL(4)
    for (std::size_t j = 0; j < NB; ++j) acc[i][j] = V{};
  const std::size_t vector_end = K - K % W;
  for (std::size_t k = 0; k < vector_end; k += W) {
    // the next NB rows of b, which the next block reads: a row of a few KiB is too short a stream for the
    // hardware prefetcher to reach memory's rate on its own
RLHF_GCC_UNROLL(4)
    for (std::size_t j = 0; j < NB; ++j) __builtin_prefetch(b + (NB + j) * ldb + k);
    V bv[NB];
RLHF_GCC_UNROLL(4)
    for (std::size_t j = 0; j < NB; ++j) std::memcpy(&bv[j], b + j * ldb + k, sizeof(V));
RLHF_GCC_UNROLL(8)
    for (std::size_t i = 0; i < MR; ++i) {
      V ai;
      std::memcpy(&ai, a + i * lda + k, sizeof(V));
RLHF_GCC_UNROLL(4)
      for (std::size_t j = 0; j < NB; ++j) acc[i][j] += ai * bv[j];
    }
  }
RLHF_GCC_UNROLL(8)
  for (std::size_t i = 0; i < MR; ++i)
RLHF_GCC_UNROLL(4)
    for (std::size_t j = 0; j < NB; ++j) {
      float sum = lane_sum(acc[i][j]);
      for (std::size_t k = vector_end; k < K; ++k) sum += a[i * lda + k] * b[j * ldb + k];
      c[i * ldc + j] = sum;
    }
}

// c [rows, NB] for rows < MR: the tile of that many rows (a tile's size is a compile-time constant).
template <class V, std::size_t NB, std::size_t R>
[[gnu::always_inline]] inline void tile_of_rows(std::size_t rows, const float* a, const float* b, float* c,
                                                std::size_t ldc, std::size_t K) {
  if constexpr (R > 0) {
    if (rows == R) return tile<V, R, NB>(a, K, b, K, c, ldc, K);
    tile_of_rows<V, NB, R - 1>(rows, a, b, c, ldc, K);
  }
}

// c [M, NB] = a [M, K] · NB rows of b: every MR-row block of a passes over the NB rows (they stay in L1).
template <class V, std::size_t MR, std::size_t NB>
[[gnu::always_inline]] inline void block(float* c, std::size_t ldc, const float* a, const float* b, std::size_t M,
                                         std::size_t K) {
  std::size_t m = 0;
  for (; m + MR <= M; m += MR) tile<V, MR, NB>(a + m * K, K, b, K, c + m * ldc, ldc, K);
  if (m < M) tile_of_rows<V, NB, MR - 1>(M - m, a + m * K, b, c + m * ldc, ldc, K);
}

// Rows [n0, n1) of b against all M rows of a, NB rows of b at a time and the last n1 − n0 mod NB one by one.
template <class V, std::size_t MR, std::size_t NB>
[[gnu::always_inline]] inline void columns(float* c, std::size_t ldc, const float* a, const float* b, std::size_t M,
                                           std::size_t n0, std::size_t n1, std::size_t K) {
  std::size_t n = n0;
  for (; n + NB <= n1; n += NB) block<V, MR, NB>(c + n, ldc, a, b + n * K, M, K);
  for (; n < n1; ++n) block<V, MR, 1>(c + n, ldc, a, b + n * K, M, K);
}

// Accumulators: AVX2 4 × 3 (12 of 16 ymm), AVX-512 4 × 4 (16 of 32 zmm). Measured on a Zen 4 at the LM head's shape
// (16 × 49152 × 576) against other tiles (zmm 8 × 3, 8 × 2, 4 × 5; ymm 3 × 3, 4 × 4): the fastest, 100 GFLOP/s a
// thread with b in L2; with more accumulators GCC keeps some in memory.
RLHF_AVX2_TARGET inline void columns_avx2(float* c, std::size_t ldc, const float* a, const float* b, std::size_t M,
                                          std::size_t n0, std::size_t n1, std::size_t K) {
  columns<sgemm_detail::Ymm, 4, 3>(c, ldc, a, b, M, n0, n1, K);
}
RLHF_AVX512_TARGET inline void columns_avx512(float* c, std::size_t ldc, const float* a, const float* b,
                                              std::size_t M, std::size_t n0, std::size_t n1, std::size_t K) {
  columns<sgemm_detail::Zmm, 4, 4>(c, ldc, a, b, M, n0, n1, K);
}
#endif

}  // namespace dot_rows_detail

// c [M, N] (row stride ldc) = a [M, K] · b [N, K]ᵀ, a and b row-major with K columns. isa: the path (clamped to what
// this CPU has); portable is Eigen's product.
inline void dot_rows(float* c, std::size_t ldc, const float* a, const float* b, std::size_t M, std::size_t N,
                     std::size_t K, Isa isa = active_isa()) {
  if (M == 0 || N == 0) return;
  isa = std::min(isa, detected_isa());
#if RLHF_CPU_X86
  if (isa >= Isa::avx2) {
    const auto run = isa >= Isa::avx512 ? dot_rows_detail::columns_avx512 : dot_rows_detail::columns_avx2;
    std::size_t threads = 1;
#ifdef _OPENMP
    if (!omp_in_parallel() && M * N * K >= (std::size_t(1) << 20))
      threads = std::min<std::size_t>(std::size_t(omp_get_max_threads()), N / 64 + 1);
#endif
    if (threads <= 1) return run(c, ldc, a, b, M, 0, N, K);
#pragma omp parallel for schedule(static) num_threads(int(threads))
    for (std::ptrdiff_t t = 0; t < std::ptrdiff_t(threads); ++t)
      run(c, ldc, a, b, M, N * std::size_t(t) / threads, N * std::size_t(t + 1) / threads, K);
    return;
  }
#endif
  using Rows = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const auto i = [](std::size_t n) { return Eigen::Index(n); };
  Eigen::Map<Rows, 0, Eigen::OuterStride<>>(c, i(M), i(N), Eigen::OuterStride<>(i(ldc))).noalias() =
      Eigen::Map<const Rows>(a, i(M), i(K)) * Eigen::Map<const Rows>(b, i(N), i(K)).transpose();
}

}  // namespace rlhf::cpu
