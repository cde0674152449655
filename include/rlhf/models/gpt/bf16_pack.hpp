#pragma once
// bf16 operands as the hardware products read them: pairs of adjacent k rounded to bfloat16 and packed into panels.
//
// A 32-bit pair holds x(r, 2p) in its low half and x(r, 2p + 1) in its high half (vdpbf16ps' and AMX's layout). b is
// packed into column panels of NR, block by block of kc pairs: [k block][panel][pair][NR]; both hardware kernels
// (bf16_matmul.hpp's vdpbf16ps tile and bf16_amx.hpp's AMX tiles) read that same packing, so a weight is packed once.
#include "rlhf/models/cpu/bf16_round.hpp"
#include "rlhf/models/cpu/sgemm.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define RLHF_BF16_X86 1
#include <immintrin.h>
#define RLHF_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#else
#define RLHF_BF16_X86 0
#endif

namespace rlhf::gpt::bf16 {

using cpu::bf16::bits_of;
using cpu::Operand;

namespace detail {


template <class U>
using buffer = std::vector<U, Eigen::aligned_allocator<U>>;

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

#endif

}  // namespace detail
}  // namespace rlhf::gpt::bf16
