#pragma once
// The bf16 products on AMX-BF16 (Sapphire Rapids and later): tdpbf16ps multiplies a 16 × 32 bf16 tile of a by a
// 32 × 16 bf16 tile of b into a 16 × 16 float32 tile, 16 times the work of one vdpbf16ps.
//
// b comes in bf16_pack.hpp's column panels (the packing the vdpbf16ps kernel reads): a panel's 16 pairs of k by 16
// columns are one b tile as they lie, its rows NR pairs apart. a is packed here by rows, each row's pairs of k
// adjacent, as a tile reads it. Each step of 16 pairs updates 32 rows × 48 columns of c in six accumulator tiles;
// a and b take the other two (eight tiles in all).
//
// AMX rounds nothing that vdpbf16ps does not: bf16 inputs whose exponent is zero read as zero, the sums are float32
// (round to nearest even); a sum that falls below float32's normal range is flushed to zero. The two hardware paths
// differ only in the order of their float32 additions.
#include "rlhf/models/gpt/bf16_pack.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if RLHF_BF16_X86
#define RLHF_AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))
#endif

namespace rlhf::gpt::bf16::detail {

#if RLHF_BF16_X86
inline constexpr std::size_t amx_rows = 16;   // rows of an a tile and of an accumulator tile
inline constexpr std::size_t amx_pairs = 16;  // pairs of k in one step: 64 bytes of each tile row

// ldtilecfg's 64 bytes: palette 1, then for each of the eight tiles its bytes per row and its rows.
struct alignas(64) AmxTileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t bytes_per_row[16] = {};
  std::uint8_t rows[16] = {};
};

// Every tile 16 rows of 64 bytes: accumulators 0-5 (16 rows × 16 floats), a in 6 (16 rows × 16 pairs), b in 7
// (16 pairs × 16 columns).
RLHF_AMX_TARGET inline void amx_configure() {
  AmxTileConfig config;
  for (int t = 0; t < 8; ++t) config.bytes_per_row[t] = 64, config.rows[t] = 16;
  _tile_loadconfig(&config);
}

// Rows [r0, r0 + rows) × pairs [p0, p0 + pairs) of x (x(r, k), K columns) as out [row][pair] with a row stride of
// row_pairs ≥ pairs: zero past K, past `pairs` and in the rows up to the next multiple of 16.
RLHF_AMX_TARGET inline void pack_rows_amx(std::uint32_t* out, std::size_t row_pairs, Operand x, std::size_t r0,
                                          std::size_t rows, std::size_t p0, std::size_t pairs, std::size_t K) {
  const std::size_t padded_rows = (rows + amx_rows - 1) / amx_rows * amx_rows;
  if (x.col_stride == 1) {  // a row's k are adjacent: 32 floats make 16 pairs
    const std::size_t floats = std::min(2 * pairs, K - 2 * p0);
    for (std::size_t r = 0; r < padded_rows; ++r) {
      std::uint32_t* dst = out + r * row_pairs;
      if (r >= rows) {
        std::fill_n(dst, row_pairs, 0u);
        continue;
      }
      const float* src = x.data + (r0 + r) * x.row_stride + 2 * p0;
      for (std::size_t q = 0; q < row_pairs; q += 16) {
        const std::size_t left = floats > 2 * q ? floats - 2 * q : 0;
        const __mmask16 m0 = __mmask16((1u << std::min<std::size_t>(16, left)) - 1u);
        const __mmask16 m1 = __mmask16((1u << (left > 16 ? std::min<std::size_t>(16, left - 16) : 0)) - 1u);
        _mm512_storeu_si512(dst + q, adjacent_pairs(_mm512_maskz_loadu_ps(m0, src + 2 * q),
                                                    _mm512_maskz_loadu_ps(m1, src + 2 * q + 16)));
      }
    }
    return;
  }
  // Any other layout: 16 rows at a time packed as a panel [pair][16] (pack_panels), then each 16 × 16 block of
  // pairs transposed into rows.
  thread_local buffer<std::uint32_t> panel;
  if (panel.size() < pairs * amx_rows) panel.resize(pairs * amx_rows);
  for (std::size_t g = 0; g < padded_rows; g += amx_rows) {
    pack_panels<amx_rows>(panel.data(), x, r0 + g, std::min(amx_rows, rows > g ? rows - g : 0), p0, pairs, K);
    for (std::size_t q = 0; q < row_pairs; q += 16) {
      __m512i r[16];
      for (std::size_t t = 0; t < 16; ++t)
        r[t] = q + t < pairs ? _mm512_loadu_si512(panel.data() + (q + t) * amx_rows) : _mm512_setzero_si512();
      transpose16(r);  // r[j]: pairs q … q + 15 of row g + j
      for (std::size_t j = 0; j < 16; ++j) _mm512_storeu_si512(out + (g + j) * row_pairs + q, r[j]);
    }
  }
}

// c [rows ≤ 16 · RB, 48] (+)= a [16 · RB rows][steps · 16 pairs] (row stride a_stride pairs) · a b panel's steps
// · 16 pairs × 48 columns (row stride NR). tail: the last step's b, zero-padded to 16 pairs, or null when the
// steps fill the panel. c is read and written by tile when whole, through a 16 · RB × 48 buffer otherwise.
template <int RB>
RLHF_AMX_TARGET inline void amx_tile_block(std::size_t steps, const std::uint32_t* a, std::size_t a_stride,
                                           const std::uint32_t* b, const std::uint32_t* tail, float* c,
                                           std::size_t ldc, std::size_t rows, std::size_t cols, bool add_to_c) {
  static_assert(RB == 1 || RB == 2);
  static_assert(NR == 48);
  const bool whole = rows == 16 * RB && cols == NR;
  alignas(64) float edge[2 * amx_rows * NR];  // [16 · RB][NR], for an edge block only
  float* out = c;
  std::size_t out_stride = ldc;
  if (!whole) {
    out = edge, out_stride = NR;
    std::fill_n(edge, 16 * RB * NR, 0.0f);
    if (add_to_c)
      for (std::size_t i = 0; i < rows; ++i) std::copy_n(c + i * ldc, cols, edge + i * NR);
  }
  // GCC's tileloadd is an asm statement that does not tell the compiler it reads memory: the stores to the packs,
  // the tail and the edge buffer must not move past it
  __asm__ volatile("" ::: "memory");
  const std::size_t c_bytes = out_stride * sizeof(float), a_bytes = a_stride * 4, b_bytes = NR * 4;
  if (add_to_c || !whole) {
    _tile_loadd(0, out, c_bytes);
    _tile_loadd(1, out + 16, c_bytes);
    _tile_loadd(2, out + 32, c_bytes);
    if constexpr (RB == 2) {
      _tile_loadd(3, out + 16 * out_stride, c_bytes);
      _tile_loadd(4, out + 16 * out_stride + 16, c_bytes);
      _tile_loadd(5, out + 16 * out_stride + 32, c_bytes);
    }
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    if constexpr (RB == 2) {
      _tile_zero(3);
      _tile_zero(4);
      _tile_zero(5);
    }
  }
  for (std::size_t s = 0; s < steps; ++s) {
    const std::uint32_t* bs = tail && s + 1 == steps ? tail : b + s * amx_pairs * NR;
    const std::uint32_t* a0 = a + s * amx_pairs;
    const std::uint32_t* a1 = a0 + amx_rows * a_stride;
    // a's tile alternates between its two row blocks so that each b tile is loaded once per step
    _tile_loadd(7, bs, b_bytes);
    _tile_loadd(6, a0, a_bytes);
    _tile_dpbf16ps(0, 6, 7);
    if constexpr (RB == 2) {
      _tile_loadd(6, a1, a_bytes);
      _tile_dpbf16ps(3, 6, 7);
      _tile_loadd(7, bs + 16, b_bytes);
      _tile_dpbf16ps(4, 6, 7);
      _tile_loadd(6, a0, a_bytes);
      _tile_dpbf16ps(1, 6, 7);
      _tile_loadd(7, bs + 32, b_bytes);
      _tile_dpbf16ps(2, 6, 7);
      _tile_loadd(6, a1, a_bytes);
      _tile_dpbf16ps(5, 6, 7);
    } else {
      _tile_loadd(7, bs + 16, b_bytes);
      _tile_dpbf16ps(1, 6, 7);
      _tile_loadd(7, bs + 32, b_bytes);
      _tile_dpbf16ps(2, 6, 7);
    }
  }
  _tile_stored(0, out, c_bytes);
  _tile_stored(1, out + 16, c_bytes);
  _tile_stored(2, out + 32, c_bytes);
  if constexpr (RB == 2) {
    _tile_stored(3, out + 16 * out_stride, c_bytes);
    _tile_stored(4, out + 16 * out_stride + 16, c_bytes);
    _tile_stored(5, out + 16 * out_stride + 32, c_bytes);
  }
  if (!whole)
    for (std::size_t i = 0; i < rows; ++i) std::copy_n(edge + i * NR, cols, c + i * ldc);
}

// One thread's product on AMX: the columns [n0, n1) of c, as gemm_hardware_columns (bf16_matmul.hpp) with the
// same blocks of k, the same b panels (packed_b: all of b by pack_whole_b, or null to pack them here).
RLHF_AMX_TARGET inline void gemm_amx_columns(float* c, std::size_t ldc, Operand a, Operand b,
                                             const std::uint32_t* packed_b, std::size_t M, std::size_t N,
                                             std::size_t n0, std::size_t n1, std::size_t K, bool accumulate) {
  thread_local buffer<std::uint32_t> a_pack, b_pack;
  alignas(64) std::uint32_t tail[amx_pairs * NR];  // [16 pairs][NR]: a panel's last, partial step
  const std::size_t total_pairs = (K + 1) / 2, kc = kc_pairs(K);
  const std::size_t row_pairs = (kc + amx_pairs - 1) / amx_pairs * amx_pairs;
  const std::size_t width = n1 - n0, n_panels = (width + NR - 1) / NR, all_panels = (N + NR - 1) / NR;
  if (!packed_b && b_pack.size() < n_panels * NR * kc) b_pack.resize(n_panels * NR * kc);
  if (a_pack.size() < mc_rows * row_pairs) a_pack.resize(mc_rows * row_pairs);
  const Operand bt{b.data + n0 * b.col_stride, b.col_stride, b.row_stride};
  amx_configure();
  for (std::size_t p0 = 0; p0 < total_pairs; p0 += kc) {
    const std::size_t pairs = std::min(kc, total_pairs - p0);
    const std::size_t steps = (pairs + amx_pairs - 1) / amx_pairs, left = pairs % amx_pairs;
    const std::size_t a_stride = steps * amx_pairs;
    const bool add = accumulate || p0 > 0;
    const std::uint32_t* panels = packed_b ? packed_b + p0 * all_panels * NR + (n0 / NR) * pairs * NR : b_pack.data();
    if (!packed_b) pack_panels<NR>(b_pack.data(), bt, 0, width, p0, pairs, K);
    for (std::size_t m0 = 0; m0 < M; m0 += mc_rows) {
      const std::size_t rows = std::min(mc_rows, M - m0);
      pack_rows_amx(a_pack.data(), a_stride, a, m0, rows, p0, pairs, K);
      for (std::size_t jp = 0; jp < n_panels; ++jp) {
        const std::uint32_t* panel = panels + jp * pairs * NR;
        if (left) {
          std::copy_n(panel + (steps - 1) * amx_pairs * NR, left * NR, tail);
          std::fill_n(tail + left * NR, (amx_pairs - left) * NR, 0u);
        }
        const std::size_t cols = std::min(NR, width - jp * NR);
        for (std::size_t i = 0; i < rows; i += 2 * amx_rows) {
          const std::size_t block_rows = std::min(2 * amx_rows, rows - i);
          float* c_block = c + (m0 + i) * ldc + n0 + jp * NR;
          const std::uint32_t* a_block = a_pack.data() + i * a_stride;
          if (block_rows > amx_rows)
            amx_tile_block<2>(steps, a_block, a_stride, panel, left ? tail : nullptr, c_block, ldc, block_rows, cols,
                              add);
          else
            amx_tile_block<1>(steps, a_block, a_stride, panel, left ? tail : nullptr, c_block, ldc, block_rows, cols,
                              add);
        }
      }
    }
  }
  _tile_release();
}
#endif

}  // namespace rlhf::gpt::bf16::detail
