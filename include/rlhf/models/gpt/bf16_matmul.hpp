#pragma once
// Matrix products with both operands rounded to bfloat16 and the sums kept in float32: c (+)= a · b.
//
// Three paths:
//   hardware : AVX-512 BF16 (vdpbf16ps: 32 bf16 products per instruction, twice the fp32 FMA rate), packed
//              panels and an 8 × 48 register tile. Used when the CPU has it (cpu::active_isa() is avx512_bf16).
//   float32  : on a CPU without AVX-512 BF16, Path::automatic multiplies in float32 (Eigen's product, as the float32
//              model does): no bf16 product is faster there, so bf16 is never slower than float32. The results are
//              float32's, within the bf16 bound of the hardware path's; rlhf-train and the sentiment example say so.
//   portable : asked for by Path::portable (tests): each operand element rounded to bf16 as it is packed for the
//              float32 kernel of cpu/sgemm.hpp, the hardware path's values on any CPU.
// The hardware and portable paths round each operand element the same way (cpu/bf16_round.hpp): to nearest, ties
// to even, subnormals to zero (vdpbf16ps reads subnormal bf16 inputs as zero), NaN kept a NaN. A product of two bf16
// values is exact in float32, so those two differ only in the order of their float32 additions.
#include "rlhf/models/cpu/bf16_round.hpp"
#include "rlhf/models/cpu/isa.hpp"
#include "rlhf/models/cpu/sgemm.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define RLHF_BF16_X86 1
#include <immintrin.h>
#define RLHF_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#else
#define RLHF_BF16_X86 0
#endif

namespace rlhf::gpt {

// How the GPT's matrix products multiply: float32 throughout, or bf16 operands with float32 sums.
enum class MatmulPrecision { fp32, bf16 };

namespace bf16 {

using cpu::bf16::bits_of;
using cpu::bf16::round;
using cpu::bf16::value_of;

using cpu::Operand;
using cpu::row_major;
using cpu::transposed;

enum class Path { automatic, hardware, portable };

// True when the CPU has AVX-512 BF16 and RLHF_CPU_ISA does not rule it out.
inline bool hardware_available() { return RLHF_BF16_X86 && cpu::active_isa() >= cpu::Isa::avx512_bf16; }

namespace detail {

template <class U>
using buffer = std::vector<U, Eigen::aligned_allocator<U>>;

// c [M, N] (row stride ldc) (+)= round(a) [M, K] · round(b) [K, N] by the float32 products of cpu/sgemm.hpp.
inline void gemm_portable(float* c, std::size_t ldc, Operand a, Operand b, std::size_t M, std::size_t N,
                          std::size_t K, bool accumulate) {
  cpu::sgemm(c, ldc, a, b, M, N, K, accumulate, cpu::OperandRounding::bf16);
}

#if RLHF_BF16_X86
// The microkernel's tile: MR rows of a by NR columns of b, 24 accumulators of 16 floats.
inline constexpr std::size_t MR = 8, NR = 48;
// Pairs of k per block (up to 512 values of k): fewer passes over c; a b panel (kc · NR · 4 bytes, 48 KiB at most)
// streams from L2 as fast as from L1 here (measured 96, 128 and 256: 256 the fastest by a few percent).
inline constexpr std::size_t max_kc_pairs = 256;
inline constexpr std::size_t mc_rows = 256;  // rows of a packed at once (an L2-resident block)

// vcvtne2ps2bf16 rounds exactly as bits_of: to nearest even, subnormal inputs read as ±0, a NaN made quiet
// (its payload's low bits dropped). _mm512_cvtne2ps_pbh(hi, lo): lo's 16 values, then hi's, as 32 bf16.

// Lane by lane: the pair (lo, hi), lo in the low half.
RLHF_BF16_TARGET inline __m512i round_to_pairs(__m512 lo, __m512 hi) {
  const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                                              6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

// 32 consecutive floats (a: 0…15, b: 16…31) → their 16 adjacent pairs.
RLHF_BF16_TARGET inline __m512i adjacent_pairs(__m512 a, __m512 b) { return (__m512i)_mm512_cvtne2ps_pbh(b, a); }

// r[i] lane j ↔ r[j] lane i, for 16 vectors of 16 32-bit lanes.
RLHF_BF16_TARGET inline void transpose16(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // u[4i + c], in each 128-bit lane l: rows 4i … 4i + 3 of column 4l + c
  for (int i = 0; i < 4; ++i) {
    u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512i x0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88), x1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88);
    const __m512i y0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xdd), y1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xdd);
    r[c] = _mm512_shuffle_i32x4(x0, x1, 0x88);
    r[8 + c] = _mm512_shuffle_i32x4(x0, x1, 0xdd);
    r[4 + c] = _mm512_shuffle_i32x4(y0, y1, 0x88);
    r[12 + c] = _mm512_shuffle_i32x4(y0, y1, 0xdd);
  }
}

inline std::uint32_t pair_of(float lo, float hi) { return std::uint32_t(bits_of(lo)) | std::uint32_t(bits_of(hi)) << 16; }

// Packs rows [r0, r0 + rows) × k pairs [p0, p0 + pairs) of x (x(r, k), K columns) into panels of W rows:
// out [panel][pair][W] of 32-bit (x(r, 2p), x(r, 2p + 1)) pairs, zero past the last row and past K.
template <std::size_t W>
RLHF_BF16_TARGET void pack_panels(std::uint32_t* out, Operand x, std::size_t r0, std::size_t rows, std::size_t p0,
                                  std::size_t pairs, std::size_t K) {
  static_assert(W == 8 || W % 16 == 0);
  const std::size_t panels = (rows + W - 1) / W, padded = panels * W;
  if (x.row_stride == 1) {
    // A pair is two source rows (k, k + 1) at the same position: read both rows in order, 16 positions at a time.
    for (std::size_t p = 0; p < pairs; ++p) {
      const std::size_t k = 2 * (p0 + p);
      const float* lo = x.data + r0 + k * x.col_stride;
      const float* hi = lo + x.col_stride;
      for (std::size_t c = 0; c < padded; c += 16) {
        const __mmask16 m = __mmask16((1u << (c < rows ? std::min<std::size_t>(16, rows - c) : 0)) - 1u);
        const __m512i v = round_to_pairs(_mm512_maskz_loadu_ps(m, lo + c),
                                         k + 1 < K ? _mm512_maskz_loadu_ps(m, hi + c) : _mm512_setzero_ps());
        std::uint32_t* dst = out + (c / W) * pairs * W + p * W + c % W;
        if constexpr (W % 16 == 0) {
          _mm512_storeu_si512(dst, v);
        } else {  // 16 positions span two panels of 8
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm512_castsi512_si256(v));
          if (c + 8 < padded)
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + pairs * W), _mm512_extracti64x4_epi64(v, 1));
        }
      }
    }
    return;
  }
  if (x.col_stride != 1) {  // any other strides: one pair at a time
    for (std::size_t q = 0; q < panels; ++q) {
      const std::size_t first = r0 + q * W, live = std::min(W, r0 + rows - first);
      std::uint32_t* panel = out + q * pairs * W;
      for (std::size_t p = 0; p < pairs; ++p) {
        const std::size_t k = 2 * (p0 + p);
        std::uint32_t* dst = panel + p * W;
        for (std::size_t j = 0; j < live; ++j)
          dst[j] = pair_of(x.at(first + j, k), k + 1 < K ? x.at(first + j, k + 1) : 0.0f);
        for (std::size_t j = live; j < W; ++j) dst[j] = 0;
      }
    }
    return;
  }
  // A pair is two adjacent floats of one source row: blocks of 16 rows × 16 pairs, transposed in registers
  // (a block of 16 rows is a third of a panel of 48, or two panels of 8).
  for (std::size_t c = 0; c < padded; c += 16) {
    for (std::size_t p = 0; p < pairs; p += 16) {
      const std::size_t n = std::min<std::size_t>(16, pairs - p);
      const std::size_t floats = std::min<std::size_t>(2 * n, K - 2 * (p0 + p));
      const __mmask16 m0 = __mmask16((1u << std::min<std::size_t>(16, floats)) - 1u);
      const __mmask16 m1 = __mmask16((1u << (floats > 16 ? floats - 16 : 0)) - 1u);
      __m512i r[16];
      for (std::size_t j = 0; j < 16; ++j) {
        if (c + j < rows) {
          const float* row = x.data + (r0 + c + j) * x.row_stride + 2 * (p0 + p);
          r[j] = adjacent_pairs(_mm512_maskz_loadu_ps(m0, row), _mm512_maskz_loadu_ps(m1, row + 16));
        } else {
          r[j] = _mm512_setzero_si512();
        }
      }
      transpose16(r);  // r[q]: pair p + q of the 16 rows
      std::uint32_t* dst = out + (c / W) * pairs * W + p * W + c % W;
      for (std::size_t q = 0; q < n; ++q) {
        if constexpr (W % 16 == 0) {
          _mm512_storeu_si512(dst + q * W, r[q]);
        } else {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + q * W), _mm512_castsi512_si256(r[q]));
          if (c + 8 < padded)
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + pairs * W + q * W), _mm512_extracti64x4_epi64(r[q], 1));
        }
      }
    }
  }
}

// c [rows ≤ MR, cols ≤ 16 · NV] (+)= a panel [pairs][MR] · the first 16 · NV columns of a b panel [pairs][NR].
// NV < 3 for a panel's last columns (N = 256 = 5 · 48 + 16): no products of its zero padding.
template <std::size_t NV>
RLHF_BF16_TARGET inline void kernel(std::size_t pairs, const std::uint32_t* a, const std::uint32_t* b, float* c,
                                    std::size_t ldc, std::size_t rows, std::size_t cols, bool add_to_c) {
  static_assert(NV >= 1 && 16 * NV <= NR);
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 3
    for (std::size_t v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (std::size_t p = 0; p < pairs; ++p, a += MR, b += NR) {
    __m512bh bv[NV];
#pragma GCC unroll 3
    for (std::size_t v = 0; v < NV; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(b + 16 * v);
#pragma GCC unroll 8
    for (std::size_t i = 0; i < MR; ++i) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(int(a[i]));
#pragma GCC unroll 3
      for (std::size_t v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ai, bv[v]);
    }
  }
#pragma GCC unroll 8
  for (std::size_t i = 0; i < MR; ++i) {
    if (i >= rows) break;
#pragma GCC unroll 3
    for (std::size_t v = 0; v < NV; ++v) {
      const std::size_t j = 16 * v;
      if (j >= cols) break;
      const __mmask16 m = cols - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (cols - j)) - 1u);
      float* dst = c + i * ldc + j;
      __m512 r = acc[i][v];
      if (add_to_c) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, dst));
      _mm512_mask_storeu_ps(dst, m, r);
    }
  }
}

// The kernel for a tile of cols ≤ NR columns: as many 16-column vectors as the tile has.
RLHF_BF16_TARGET inline void kernel_for(std::size_t pairs, const std::uint32_t* a, const std::uint32_t* b, float* c,
                                        std::size_t ldc, std::size_t rows, std::size_t cols, bool add_to_c) {
  if (cols > 32) return kernel<3>(pairs, a, b, c, ldc, rows, cols, add_to_c);
  if (cols > 16) return kernel<2>(pairs, a, b, c, ldc, rows, cols, add_to_c);
  kernel<1>(pairs, a, b, c, ldc, rows, cols, add_to_c);
}

// The k-pair blocks of a product over K: kc pairs each (the last may be shorter).
inline std::size_t kc_pairs(std::size_t K) {
  const std::size_t total_pairs = (K + 1) / 2;
  const std::size_t blocks = std::max<std::size_t>(1, (total_pairs + max_kc_pairs - 1) / max_kc_pairs);
  return (total_pairs + blocks - 1) / blocks;
}

// All of b [K, N] as the products read it: block by block of kc pairs, each [panel][pair][NR].
RLHF_BF16_TARGET inline void pack_whole_b(std::uint32_t* out, Operand b, std::size_t K, std::size_t N) {
  const std::size_t total_pairs = (K + 1) / 2, kc = kc_pairs(K), n_panels = (N + NR - 1) / NR;
  const Operand bt{b.data, b.col_stride, b.row_stride};
  for (std::size_t p0 = 0; p0 < total_pairs; p0 += kc)
    pack_panels<NR>(out + p0 * n_panels * NR, bt, 0, N, p0, std::min(kc, total_pairs - p0), K);
}

// One thread's product: the columns [n0, n1) of c. packed_b: all of b packed by pack_whole_b, or null to pack
// the columns here.
RLHF_BF16_TARGET inline void gemm_hardware_columns(float* c, std::size_t ldc, Operand a, Operand b,
                                                   const std::uint32_t* packed_b, std::size_t M, std::size_t N,
                                                   std::size_t n0, std::size_t n1, std::size_t K, bool accumulate) {
  thread_local buffer<std::uint32_t> a_pack, b_pack;
  const std::size_t total_pairs = (K + 1) / 2, kc = kc_pairs(K);
  const std::size_t width = n1 - n0, n_panels = (width + NR - 1) / NR, all_panels = (N + NR - 1) / NR;
  if (!packed_b && b_pack.size() < n_panels * NR * kc) b_pack.resize(n_panels * NR * kc);
  if (a_pack.size() < mc_rows * kc) a_pack.resize(mc_rows * kc);
  // b seen as bᵀ: its "rows" are b's columns, so a pack of bᵀ's row panels is a pack of b's column panels
  const Operand bt{b.data + n0 * b.col_stride, b.col_stride, b.row_stride};
  for (std::size_t p0 = 0; p0 < total_pairs; p0 += kc) {
    const std::size_t pairs = std::min(kc, total_pairs - p0);
    const bool add = accumulate || p0 > 0;
    const std::uint32_t* panels = packed_b ? packed_b + p0 * all_panels * NR + (n0 / NR) * pairs * NR : b_pack.data();
    if (!packed_b) pack_panels<NR>(b_pack.data(), bt, 0, width, p0, pairs, K);
    for (std::size_t m0 = 0; m0 < M; m0 += mc_rows) {
      const std::size_t rows = std::min(mc_rows, M - m0);
      pack_panels<MR>(a_pack.data(), a, m0, rows, p0, pairs, K);
      for (std::size_t jp = 0; jp < n_panels; ++jp) {
        const std::size_t cols = std::min(NR, width - jp * NR);
        for (std::size_t ip = 0; ip * MR < rows; ++ip)
          kernel_for(pairs, a_pack.data() + ip * pairs * MR, panels + jp * pairs * NR,
                     c + (m0 + ip * MR) * ldc + n0 + jp * NR, ldc, std::min(MR, rows - ip * MR), cols, add);
      }
    }
  }
}

// Outside a parallel region the columns are split between the threads, in whole panels.
inline void gemm_hardware(float* c, std::size_t ldc, Operand a, Operand b, const std::uint32_t* packed_b,
                          std::size_t M, std::size_t N, std::size_t K, bool accumulate) {
  std::size_t threads = 1;
#ifdef _OPENMP
  if (!omp_in_parallel() && M * N * K >= (std::size_t(1) << 20))
    threads = std::min<std::size_t>(std::size_t(omp_get_max_threads()), (N + NR - 1) / NR);
#endif
  if (threads <= 1) return gemm_hardware_columns(c, ldc, a, b, packed_b, M, N, 0, N, K, accumulate);
  const std::size_t panels = (N + NR - 1) / NR;
#pragma omp parallel for schedule(static) num_threads(int(threads))
  for (std::ptrdiff_t t = 0; t < std::ptrdiff_t(threads); ++t) {
    const std::size_t n0 = std::min(N, panels * std::size_t(t) / threads * NR);
    const std::size_t n1 = std::min(N, panels * std::size_t(t + 1) / threads * NR);
    if (n1 > n0) gemm_hardware_columns(c, ldc, a, b, packed_b, M, N, n0, n1, K, accumulate);
  }
}
#endif

}  // namespace detail

inline bool use_hardware(Path path) { return path != Path::portable && hardware_available(); }

// b [K, N] packed once for many products with it (a weight, read by every tile of a batch). The portable path
// keeps only the operand, which must outlive the products.
class PackedB {
 public:
  void pack(Operand b, std::size_t K, std::size_t N, Path path = Path::automatic) {
    source_ = b, K_ = K, N_ = N, packed_ = false;
#if RLHF_BF16_X86
    if (use_hardware(path) && K > 0 && N > 0) {
      const std::size_t size = (K + 1) / 2 * (N + detail::NR - 1) / detail::NR * detail::NR;
      if (data_.size() < size) data_.resize(size);
      detail::pack_whole_b(data_.data(), b, K, N);
      packed_ = true;
    }
#else
    (void)path;
#endif
  }
  Operand source() const { return source_; }
  std::size_t rows() const { return K_; }
  std::size_t cols() const { return N_; }
  const std::uint32_t* packed() const { return packed_ ? data_.data() : nullptr; }

 private:
  Operand source_{nullptr, 0, 0};
  std::size_t K_ = 0, N_ = 0;
  bool packed_ = false;
  detail::buffer<std::uint32_t> data_;  // [k blocks][panels][pairs of the block][NR]
};

namespace detail {
inline void gemm_any(float* c, std::size_t ldc, Operand a, Operand b, const std::uint32_t* packed_b, std::size_t M,
                     std::size_t N, std::size_t K, bool accumulate, Path path) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate)
      for (std::size_t i = 0; i < M; ++i) std::fill_n(c + i * ldc, N, 0.0f);
    return;
  }
#if RLHF_BF16_X86
  if (use_hardware(path)) return gemm_hardware(c, ldc, a, b, packed_b, M, N, K, accumulate);
#else
  (void)packed_b;
#endif
  // No bf16 product here is faster than float32's (measured: rounding the operands made the steps up to a third
  // slower), so by default the products are float32's; the rounded ones only when asked for by path.
  if (path == Path::automatic)
    return cpu::sgemm(c, ldc, a, b, M, N, K, accumulate, cpu::OperandRounding::none, cpu::Isa::portable);
  gemm_portable(c, ldc, a, b, M, N, K, accumulate);
}
}  // namespace detail

// c [M, N] (row stride ldc) = (accumulate ? c : 0) + round(a) [M, K] · round(b) [K, N], float32 sums (without
// AVX-512 BF16 and with Path::automatic: a · b in float32).
inline void gemm(float* c, std::size_t ldc, Operand a, Operand b, std::size_t M, std::size_t N, std::size_t K,
                 bool accumulate, Path path = Path::automatic) {
  detail::gemm_any(c, ldc, a, b, nullptr, M, N, K, accumulate, path);
}

// The same with b packed beforehand (b.rows() = K, b.cols() = N).
inline void gemm(float* c, std::size_t ldc, Operand a, const PackedB& b, std::size_t M, bool accumulate,
                 Path path = Path::automatic) {
  detail::gemm_any(c, ldc, a, b.source(), use_hardware(path) ? b.packed() : nullptr, M, b.cols(), b.rows(),
                   accumulate, path);
}

}  // namespace bf16
}  // namespace rlhf::gpt
