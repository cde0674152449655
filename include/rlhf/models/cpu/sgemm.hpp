#pragma once
// Float32 matrix products on the CPU, c (+)= a · b, through the kernel of the level cpu::active_isa() picks:
//
//   avx2, avx512(_bf16) : operands packed into panels (a: MR rows, b: NR columns, k-blocks of kc), an MR × NR
//                         register tile of float32 FMAs, compiled with its own target attribute: AVX2 + FMA 6 × 16
//                         (12 of the 16 ymm registers accumulate), AVX-512 12 × 32 (24 of the 32 zmm registers).
//   portable            : Eigen's product, compiled for the build's baseline.
//
// Every element of c sums its k products in the same order whatever the number of threads (threads split the
// columns; the k-blocks run in order), so results do not depend on OMP_NUM_THREADS. The two tiles sum in different
// orders, so avx2 and avx512 agree to float32 rounding, not bit for bit.
//
// Optionally each operand element is rounded to bf16 as it is packed (OperandRounding::bf16): the bf16 values on
// any CPU, for bf16::gemm's Path::portable (models/gpt/bf16_matmul.hpp), the one use in the library. The models'
// float32 products stay Eigen's, and their bf16 mode without AVX-512 BF16 multiplies in float32: both measured as
// fast or faster (docs/benchmarks.md).
#include "rlhf/models/cpu/bf16_round.hpp"
#include "rlhf/models/cpu/isa.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#if RLHF_CPU_X86
#include <immintrin.h>
#define RLHF_AVX2_TARGET __attribute__((target("avx2,fma")))
#define RLHF_AVX512_TARGET __attribute__((target("avx512f")))
#endif

// `#pragma GCC unroll n` for the host compiler; nothing where nvcc's front end reads the header (it does not know
// the pragma, and a .cu file uses these products only as CPU references).
#define RLHF_PRAGMA(text) _Pragma(#text)
#if defined(__CUDACC__)
#define RLHF_GCC_UNROLL(n)
#else
#define RLHF_GCC_UNROLL(n) RLHF_PRAGMA(GCC unroll n)
#endif

namespace rlhf::cpu {

// An operand of the product: element (r, c) is data[r · row_stride + c · col_stride], so a transposed
// row-major matrix is the same buffer with the strides swapped.
struct Operand {
  const float* data;
  std::size_t row_stride, col_stride;
  float at(std::size_t r, std::size_t c) const { return data[r * row_stride + c * col_stride]; }
};
inline Operand row_major(const float* data, std::size_t cols) { return {data, cols, 1}; }
inline Operand transposed(const float* data, std::size_t cols) { return {data, 1, cols}; }  // of [rows, cols]

// What happens to each operand element before it is multiplied.
enum class OperandRounding { none, bf16 };

namespace sgemm_detail {

template <class U>
using buffer = std::vector<U, Eigen::aligned_allocator<U>>;

// Block sizes: a k-block of kc values, mc rows of a (an L2-resident block), nc columns of b per packed block.
// mc is a multiple of both tiles' MR, nc of both NR.
inline constexpr std::size_t kc_max = 512, mc_max = 96, nc_max = 512;

// Rows [r0, r0 + rows) × k [k0, k0 + kc) of x packed into panels of W rows: out [panel][k][W], zero past the
// last row. b is packed as bᵀ, so that its panels are of NR columns.
template <std::size_t W>
void pack_panels(float* out, Operand x, std::size_t r0, std::size_t rows, std::size_t k0, std::size_t kc,
                 OperandRounding rounding) {
  for (std::size_t first = r0, q = 0; first < r0 + rows; first += W, ++q) {
    const std::size_t live = std::min(W, r0 + rows - first);
    float* panel = out + q * kc * W;
    if (x.row_stride == 1) {  // the panel's rows are adjacent in memory: one contiguous run per k
      for (std::size_t p = 0; p < kc; ++p) {
        const float* src = x.data + (k0 + p) * x.col_stride + first;
        float* dst = panel + p * W;
        for (std::size_t j = 0; j < live; ++j) dst[j] = src[j];
        for (std::size_t j = live; j < W; ++j) dst[j] = 0.0f;
      }
    } else {
      for (std::size_t j = 0; j < live; ++j) {
        const float* src = x.data + (first + j) * x.row_stride + k0 * x.col_stride;
        for (std::size_t p = 0; p < kc; ++p) panel[p * W + j] = src[p * x.col_stride];
      }
      for (std::size_t p = 0; p < kc; ++p)
        for (std::size_t j = live; j < W; ++j) panel[p * W + j] = 0.0f;
    }
    if (rounding == OperandRounding::bf16)
      for (std::size_t i = 0; i < kc * W; ++i) panel[i] = bf16::round(panel[i]);
  }
}

// c [rows, cols] (+)= the first rows × cols of a tile [.][NR] (plain code: the compiler vectorizes it for the
// baseline).
template <std::size_t NR>
inline void store_tile(const float* tile, float* c, std::size_t ldc, std::size_t rows, std::size_t cols,
                       bool add_to_c) {
  for (std::size_t i = 0; i < rows; ++i) {
    float* dst = c + i * ldc;
    const float* src = tile + i * NR;
    if (add_to_c)
      for (std::size_t j = 0; j < cols; ++j) dst[j] += src[j];
    else
      for (std::size_t j = 0; j < cols; ++j) dst[j] = src[j];
  }
}

// The register tile, written once for any vector width: tile [MR][NV · W] = a panel [kc][MR] · b panel [kc][NV · W],
// V a GNU vector of W floats. Plain vector arithmetic, no intrinsics: inlined into a function compiled for AVX2
// or AVX-512 it becomes that instruction set's FMAs (GCC in its default GNU modes, and Clang, contract a · b + c;
// under -std=c++20, ISO mode, GCC keeps a multiply and an add: the same sums to float32 rounding, slower). The tile
// leaves the registers through a buffer indexed by constants only: an accumulator indexed by a run-time row would
// make the compiler keep the whole array in memory, stored on every k.
template <class V, std::size_t MR, std::size_t NV>
[[gnu::always_inline]] inline void tile_product(std::size_t kc, const float* a, const float* b, float* tile) {
  constexpr std::size_t W = sizeof(V) / sizeof(float), NR = NV * W;
  V acc[MR][NV];
RLHF_GCC_UNROLL(16)
  for (std::size_t i = 0; i < MR; ++i)
RLHF_GCC_UNROLL(4)
    for (std::size_t v = 0; v < NV; ++v) acc[i][v] = V{};
  for (std::size_t p = 0; p < kc; ++p, a += MR, b += NR) {
    V bv[NV];
RLHF_GCC_UNROLL(4)
    for (std::size_t v = 0; v < NV; ++v) std::memcpy(&bv[v], b + v * W, sizeof(V));
RLHF_GCC_UNROLL(16)
    for (std::size_t i = 0; i < MR; ++i) {
      const V ai = a[i] - V{};  // a[i] in every lane (x − 0 is x, so nothing is computed)
RLHF_GCC_UNROLL(4)
      for (std::size_t v = 0; v < NV; ++v) acc[i][v] += ai * bv[v];
    }
  }
RLHF_GCC_UNROLL(16)
  for (std::size_t i = 0; i < MR; ++i)
RLHF_GCC_UNROLL(4)
    for (std::size_t v = 0; v < NV; ++v) std::memcpy(tile + i * NR + v * W, &acc[i][v], sizeof(V));
}

// One register tile's product: c [rows ≤ MR, cols ≤ NR] (+)= a panel [kc][MR] · b panel [kc][NR].
struct TileJob {
  std::size_t kc;
  const float* a;
  const float* b;
  float* c;
  std::size_t ldc, rows, cols;
  bool add_to_c;
};

template <class V, std::size_t MR, std::size_t NR>
[[gnu::always_inline]] inline void multiply_tile(const TileJob& job) {
  alignas(64) float tile[MR * NR];
  tile_product<V, MR, NR / (sizeof(V) / sizeof(float))>(job.kc, job.a, job.b, tile);
  store_tile<NR>(tile, job.c, job.ldc, job.rows, job.cols, job.add_to_c);
}

// The tiles of each level: the register file's size sets them (accumulators, two b vectors, one broadcast).
template <std::size_t MR_, std::size_t NR_, void (*Multiply)(const TileJob&)>
struct Tile {
  static constexpr std::size_t MR = MR_, NR = NR_;
  static void multiply(const TileJob& job) { Multiply(job); }
};
#if RLHF_CPU_X86
using Ymm = float __attribute__((vector_size(32)));
using Zmm = float __attribute__((vector_size(64)));
RLHF_AVX2_TARGET inline void multiply_avx2(const TileJob& job) { multiply_tile<Ymm, 6, 16>(job); }  // 12 of 16 ymm
RLHF_AVX512_TARGET inline void multiply_avx512(const TileJob& job) { multiply_tile<Zmm, 12, 32>(job); }  // 24 of 32 zmm
using Avx2Tile = Tile<6, 16, multiply_avx2>;
using Avx512Tile = Tile<12, 32, multiply_avx512>;
#endif

// One thread's share: the columns [n0, n1) of c, block by block (Goto's loop order: a b block stays in L2/L3, an
// a block in L2, one b panel in L1 across the a panels).
template <class Tile>
void gemm_columns(float* c, std::size_t ldc, Operand a, Operand b, std::size_t M, std::size_t n0, std::size_t n1,
                  std::size_t K, bool accumulate, OperandRounding rounding) {
  static_assert(mc_max % Tile::MR == 0 && nc_max % Tile::NR == 0);
  constexpr std::size_t MR = Tile::MR, NR = Tile::NR;
  thread_local buffer<float> a_pack, b_pack;
  if (a_pack.size() < mc_max * kc_max) a_pack.resize(mc_max * kc_max);
  if (b_pack.size() < nc_max * kc_max) b_pack.resize(nc_max * kc_max);
  const Operand bt{b.data, b.col_stride, b.row_stride};  // bᵀ: its rows are b's columns
  for (std::size_t jc = n0; jc < n1; jc += nc_max) {
    const std::size_t nc = std::min(nc_max, n1 - jc);
    for (std::size_t pc = 0; pc < K; pc += kc_max) {
      const std::size_t kc = std::min(kc_max, K - pc);
      const bool add = accumulate || pc > 0;
      pack_panels<NR>(b_pack.data(), bt, jc, nc, pc, kc, rounding);
      for (std::size_t ic = 0; ic < M; ic += mc_max) {
        const std::size_t mc = std::min(mc_max, M - ic);
        pack_panels<MR>(a_pack.data(), a, ic, mc, pc, kc, rounding);
        for (std::size_t jr = 0; jr < nc; jr += NR)
          for (std::size_t ir = 0; ir < mc; ir += MR)
            Tile::multiply({kc, a_pack.data() + ir * kc, b_pack.data() + jr * kc, c + (ic + ir) * ldc + jc + jr, ldc,
                            std::min(MR, mc - ir), std::min(NR, nc - jr), add});
      }
    }
  }
}

// Outside a parallel region a large product's columns are split between the threads, in whole tiles.
template <class Tile>
void gemm_tiled(float* c, std::size_t ldc, Operand a, Operand b, std::size_t M, std::size_t N, std::size_t K,
                bool accumulate, OperandRounding rounding) {
  std::size_t threads = 1;
  const std::size_t tiles = (N + Tile::NR - 1) / Tile::NR;
#ifdef _OPENMP
  if (!omp_in_parallel() && M * N * K >= (std::size_t(1) << 22))
    threads = std::min<std::size_t>(std::size_t(omp_get_max_threads()), tiles);
#endif
  if (threads <= 1) return gemm_columns<Tile>(c, ldc, a, b, M, 0, N, K, accumulate, rounding);
#pragma omp parallel for schedule(static) num_threads(int(threads))
  for (std::ptrdiff_t t = 0; t < std::ptrdiff_t(threads); ++t) {
    const std::size_t n0 = std::min(N, tiles * std::size_t(t) / threads * Tile::NR);
    const std::size_t n1 = std::min(N, tiles * std::size_t(t + 1) / threads * Tile::NR);
    if (n1 > n0) gemm_columns<Tile>(c, ldc, a, b, M, n0, n1, K, accumulate, rounding);
  }
}

// c [M, N] (+)= a · b by Eigen: straight from the operands where each has a unit stride (row- or column-major), else
// from copies (always, when the operands are to be rounded).
inline void gemm_portable(float* c, std::size_t ldc, Operand a, Operand b, std::size_t M, std::size_t N,
                          std::size_t K, bool accumulate, OperandRounding rounding) {
  using Rows = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Cols = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  using Stride = Eigen::OuterStride<>;
  const auto i = [](std::size_t n) { return Eigen::Index(n); };
  Eigen::Map<Rows, 0, Stride> out(c, i(M), i(N), Stride(i(ldc)));
  const auto product = [&](const auto& ma, const auto& mb) {
    if (accumulate)
      out.noalias() += ma * mb;
    else
      out.noalias() = ma * mb;
  };
  const auto rows_view = [&](Operand x, std::size_t r, std::size_t k) {
    return Eigen::Map<const Rows, 0, Stride>(x.data, i(r), i(k), Stride(i(x.row_stride)));
  };
  const auto cols_view = [&](Operand x, std::size_t r, std::size_t k) {
    return Eigen::Map<const Cols, 0, Stride>(x.data, i(r), i(k), Stride(i(x.col_stride)));
  };
  if (rounding == OperandRounding::none) {
    if (a.col_stride == 1 && b.col_stride == 1) return product(rows_view(a, M, K), rows_view(b, K, N));
    if (a.col_stride == 1 && b.row_stride == 1) return product(rows_view(a, M, K), cols_view(b, K, N));
    if (a.row_stride == 1 && b.col_stride == 1) return product(cols_view(a, M, K), rows_view(b, K, N));
    if (a.row_stride == 1 && b.row_stride == 1) return product(cols_view(a, M, K), cols_view(b, K, N));
  }
  const auto value = [rounding](float x) { return rounding == OperandRounding::bf16 ? bf16::round(x) : x; };
  Rows ra{i(M), i(K)}, rb{i(K), i(N)};
  for (std::size_t r = 0; r < M; ++r)
    for (std::size_t k = 0; k < K; ++k) ra(i(r), i(k)) = value(a.at(r, k));
  for (std::size_t k = 0; k < K; ++k)
    for (std::size_t j = 0; j < N; ++j) rb(i(k), i(j)) = value(b.at(k, j));
  product(ra, rb);
}

}  // namespace sgemm_detail

// c [M, N] (row stride ldc) = (accumulate ? c : 0) + a [M, K] · b [K, N], float32 sums; with OperandRounding::bf16
// each operand element rounded to bf16 first. isa: the path (clamped to what this CPU has); by default the active
// one.
inline void sgemm(float* c, std::size_t ldc, Operand a, Operand b, std::size_t M, std::size_t N, std::size_t K,
                  bool accumulate, OperandRounding rounding = OperandRounding::none, Isa isa = active_isa()) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate)
      for (std::size_t i = 0; i < M; ++i) std::fill_n(c + i * ldc, N, 0.0f);
    return;
  }
  isa = std::min(isa, detected_isa());
#if RLHF_CPU_X86
  if (isa >= Isa::avx512) return sgemm_detail::gemm_tiled<sgemm_detail::Avx512Tile>(c, ldc, a, b, M, N, K, accumulate, rounding);
  if (isa == Isa::avx2) return sgemm_detail::gemm_tiled<sgemm_detail::Avx2Tile>(c, ldc, a, b, M, N, K, accumulate, rounding);
#endif
  sgemm_detail::gemm_portable(c, ldc, a, b, M, N, K, accumulate, rounding);
}

}  // namespace rlhf::cpu
