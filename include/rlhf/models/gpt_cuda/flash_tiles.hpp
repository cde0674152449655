#pragma once
// Flash attention's tiling and per-thread arithmetic, host and device (RLHF_HOST_DEVICE, no CUDA header): the CUDA
// kernels of flash_attention.cuh call these functions on shared-memory tiles, and the g++ test
// tests/gpu/flash_reference.cpp (the ctest gpu_flash_reference) calls the very same functions on host arrays, block by
// block and thread by thread in the kernels' order, and compares the result with a naive attention in double. So the
// online softmax, the causal tile ranges, the padding masks and the grouped-query sums are checked on any machine;
// what only a GPU checks is the thread mapping, the cooperative loads and the barriers.
//
// The algorithm is FlashAttention-2's (Dao, 2023), written here from the paper's equations:
//   forward   per query row i and key tile, s_ij = scale·q_i·k_j; the running max m_i and sum l_i are rescaled by
//             exp(m_old − m_new) as each tile arrives, and so is the unnormalised output o_i = Σ_j exp(s_ij − m_i) v_j.
//             At the end out_i = o_i / l_i, and only lse_i = m_i + log l_i is kept for the backward: O(T) per head,
//             never the T×T probabilities.
//   backward  p_ij = exp(s_ij − lse_i) recomputed; with D_i = dout_i·out_i,
//             dv_j = Σ_i p_ij dout_i,   ds_ij = p_ij (dout_i·v_j − D_i),   dq_i = scale Σ_j ds_ij k_j,
//             dk_j = scale Σ_i ds_ij q_i.
//             Two kernels instead of FlashAttention-2's one with atomic dq updates: dk, dv per key row (summing a kv
//             head's whole group of query heads, grouped-query attention), dq per query row. Every gradient is summed
//             by one thread in a fixed order, so results are bit-identical run to run (the project's rule: no
//             floating-point atomics), at the price of computing s and p twice.
//
// Masking, as in attention.cuh and the CPU models: query t of row b attends key t' when t' ≤ t and both are real
// (real[b, ·] = 1). A padding query gets a zero output, lse = −∞ and zero gradients; a padding key gets zero dk, dv.
// Nothing at a position that is not attended is ever read into a sum (NaN there stays out).
//
// Layouts (row-major, strides in elements between consecutive tokens, so that the GPT's fused qkv [B, T, 3C] and the
// Llama's separate q [B, T, NH·hd], k, v [B, T, KVH·hd] are read in place, with no permute):
//   q  at q[(b·T + t)·q_stride + h·hd + d]      h < NH        (dq: the same layout, q_stride)
//   k  at k[(b·T + t)·kv_stride + g·hd + d]     g < KVH       (v, dk, dv: the same layout, kv_stride)
//   out at out[(b·T + t)·out_stride + h·hd + d]               (dout: the same layout)
//   lse, D [B, NH, T]
// Query head h reads kv head g = h / G, G = NH / KVH (HF's repeat_kv order; G = 1: multi-head attention).
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "rlhf/core/math.hpp"  // RLHF_HOST_DEVICE

// Loops over the compile-time head slots and tile rows: unrolled by nvcc (registers, not local memory), plain loops
// for the host compiler.
#if defined(__CUDACC__)
#define RLHF_FLASH_UNROLL _Pragma("unroll")
#else
#define RLHF_FLASH_UNROLL
#endif

namespace rlhf::gpt_cuda::flash {

// The shapes and strides of one attention call.
struct FlashShape {
  std::size_t B, T, NH, KVH, hd;
  std::size_t q_stride, kv_stride, out_stride;
  RLHF_HOST_DEVICE std::size_t group() const { return NH / KVH; }  // G
};

// ---- the tiling -------------------------------------------------------------------------------------------------
// Every kernel gives one thread one row (a query row, or a key row for dk/dv): rows_per_block rows per block. The
// rows it pairs with arrive in shared-memory tiles of tile_rows rows.
inline constexpr std::size_t rows_per_block = 64;
inline constexpr std::size_t tile_rows = 32;

// Head sizes are served by three instantiations: hd rounded up to 32, 64 or 128 (the slots a row occupies in
// shared memory and registers; the slots past hd hold 0). 0: hd is too large (more than 128) for these kernels.
inline constexpr std::size_t head_slots(std::size_t hd) {
  return hd == 0 ? 0 : hd <= 32 ? 32 : hd <= 64 ? 64 : hd <= 128 ? 128 : 0;
}

inline constexpr std::size_t ceil_div(std::size_t n, std::size_t d) { return (n + d - 1) / d; }

// Blocks along T of the three kernels: ceil(T / rows_per_block).
inline constexpr std::size_t row_blocks(std::size_t T) { return ceil_div(T, rows_per_block); }

// Query block qb (rows [qb·R, min(T, qb·R + R))) meets the key tiles [0, key_tiles_for_query_block): its last
// query attends keys up to itself, and no further tile holds a key it attends (causal).
inline constexpr std::size_t key_tiles_for_query_block(std::size_t qb, std::size_t T) {
  const std::size_t last = (qb + 1) * rows_per_block < T ? (qb + 1) * rows_per_block : T;  // one past the last query
  return ceil_div(last, tile_rows);
}

// Key block kb (rows [kb·R, ...)) meets the query tiles [first_query_tile_for_key_block, ceil(T / tile_rows)): no
// earlier query attends one of its keys.
inline constexpr std::size_t first_query_tile_for_key_block(std::size_t kb) {
  return kb * rows_per_block / tile_rows;
}
inline constexpr std::size_t query_tiles(std::size_t T) { return ceil_div(T, tile_rows); }

// Shared memory of each kernel, in bytes, for head slots D. A block's own rows are stored D + 1 floats apart, so
// that the 32 threads of a warp, each reading its own row at the same d, hit 32 different banks; a tile's rows are
// read by every thread at once (a broadcast) and are stored D apart.
inline constexpr std::size_t own_stride(std::size_t D) { return D + 1; }
inline constexpr std::size_t forward_smem_bytes(std::size_t D) {  // own q rows; k, v tiles; the tile's real flags
  return (rows_per_block * own_stride(D) + 2 * tile_rows * D) * sizeof(float) + tile_rows;
}
inline constexpr std::size_t dq_smem_bytes(std::size_t D) {  // own q, dout rows; k, v tiles; real flags
  return (2 * rows_per_block * own_stride(D) + 2 * tile_rows * D) * sizeof(float) + tile_rows;
}
inline constexpr std::size_t dkv_smem_bytes(std::size_t D) {  // own k, v rows; q, dout tiles; lse, D, positions
  return (2 * rows_per_block * own_stride(D) + 2 * tile_rows * D + 2 * tile_rows) * sizeof(float) + tile_rows;
}

// ---- the masks ---------------------------------------------------------------------------------------------------
// Does query t attend key j? `query_real`: t < T and real[b, t]; `key_real`: j < T and real[b, j].
RLHF_HOST_DEVICE inline bool attends(bool query_real, bool key_real, std::size_t t, std::size_t j) {
  return query_real && key_real && j <= t;
}

// ---- scalar functions, host or device ---------------------------------------------------------------------------
// The CUDA math function compiling for the device, the standard library's for the host.
#ifdef __CUDA_ARCH__
#define RLHF_FLASH_MATH(device, host) device
#else
#define RLHF_FLASH_MATH(device, host) host
#endif
RLHF_HOST_DEVICE inline float exp_f(float x) { return RLHF_FLASH_MATH(expf, std::exp)(x); }
// A NaN argument is ignored (fmax).
RLHF_HOST_DEVICE inline float max_f(float a, float b) { return RLHF_FLASH_MATH(fmaxf, std::fmax)(a, b); }
RLHF_HOST_DEVICE inline float log_f(float x) { return RLHF_FLASH_MATH(logf, std::log)(x); }
#undef RLHF_FLASH_MATH

template <int D>
RLHF_HOST_DEVICE inline float dot(const float* a, const float* b) {
  float acc = 0.0f;
RLHF_FLASH_UNROLL
  for (int d = 0; d < D; ++d) acc += a[d] * b[d];
  return acc;
}

// ---- forward: one query row, one key tile ------------------------------------------------------------------------
// The running state of one query row: max m and sum l of exp(s − m) over the keys seen, o = Σ exp(s − m) v.
template <int D>
struct RowState {
  float m = -INFINITY, l = 0.0f;
  float o[D] = {};
};

// Folds keys key0 … key0 + tile_rows − 1 (tile rows k_tile [tile_rows, D], v_tile likewise; key_real[jj]: that key
// is real and < T) into the state of query t (q: its row, D slots). A NaN score makes the row NaN (the max would
// otherwise skip it); a tile with no attended key changes nothing.
template <int D>
RLHF_HOST_DEVICE inline void forward_tile(RowState<D>& st, const float* q, bool query_real, std::size_t t,
                                          const float* k_tile, const float* v_tile, const std::uint8_t* key_real,
                                          std::size_t key0, float scale) {
  constexpr int K = int(tile_rows);
  float s[K];
  float tile_max = -INFINITY;
  bool any = false, nan = false;
RLHF_FLASH_UNROLL
  for (int jj = 0; jj < K; ++jj) {
    s[jj] = -INFINITY;
    if (!attends(query_real, key_real[jj] != 0, t, key0 + jj)) continue;
    s[jj] = scale * dot<D>(q, k_tile + jj * D);
    any = true;
    nan = nan || s[jj] != s[jj];
    tile_max = max_f(tile_max, s[jj]);
  }
  if (!any) return;
  const float m_new = nan ? NAN : max_f(st.m, tile_max);
  const float correction = exp_f(st.m - m_new);  // exp(−∞) = 0 on the first tile
  st.l *= correction;
RLHF_FLASH_UNROLL
  for (int d = 0; d < D; ++d) st.o[d] *= correction;
RLHF_FLASH_UNROLL
  for (int jj = 0; jj < K; ++jj) {
    if (!attends(query_real, key_real[jj] != 0, t, key0 + jj)) continue;  // a padding key's v is never read
    const float p = exp_f(s[jj] - m_new);
    st.l += p;
    const float* v = v_tile + jj * D;
RLHF_FLASH_UNROLL
    for (int d = 0; d < D; ++d) st.o[d] += p * v[d];
  }
  st.m = m_new;
}

// out row (hd of the D slots) and lse of a finished query row: o / l and m + log l; a padding query: 0 and −∞.
template <int D>
RLHF_HOST_DEVICE inline void forward_finish(float* out, float* lse, const RowState<D>& st, bool query_real,
                                            std::size_t hd) {
  const float inv = 1.0f / st.l;
  // over the compile-time slots (a loop to hd would index o at run time and move it from registers to local memory)
  RLHF_FLASH_UNROLL
  for (int d = 0; d < D; ++d)
    if (std::size_t(d) < hd) out[d] = query_real ? st.o[d] * inv : 0.0f;
  *lse = query_real ? st.m + log_f(st.l) : -INFINITY;
}

// row[d] = scale · acc[d] for the hd of the D slots (the backward's gradient rows), unrolled over D so that acc stays
// in registers.
template <int D>
RLHF_HOST_DEVICE inline void store_scaled(float* row, const float* acc, float scale, std::size_t hd) {
  RLHF_FLASH_UNROLL
  for (int d = 0; d < D; ++d)
    if (std::size_t(d) < hd) row[d] = scale * acc[d];
}

// ---- backward: dq of one query row, one key tile -----------------------------------------------------------------
// dq_acc += Σ_j ds_ij k_j over the tile's attended keys (scale applied once at the end, backward_finish). q, dout:
// the row's D slots; lse, dsum: its lse and D = dout·out.
template <int D>
RLHF_HOST_DEVICE inline void dq_tile(float* dq_acc, const float* q, const float* dout, float lse, float dsum,
                                     bool query_real, std::size_t t, const float* k_tile, const float* v_tile,
                                     const std::uint8_t* key_real, std::size_t key0, float scale) {
  constexpr int K = int(tile_rows);
  for (int jj = 0; jj < K; ++jj) {
    if (!attends(query_real, key_real[jj] != 0, t, key0 + jj)) continue;
    const float* k = k_tile + jj * D;
    const float p = exp_f(scale * dot<D>(q, k) - lse);
    const float ds = p * (dot<D>(dout, v_tile + jj * D) - dsum);
RLHF_FLASH_UNROLL
    for (int d = 0; d < D; ++d) dq_acc[d] += ds * k[d];
  }
}

// ---- backward: dk, dv of one key row, one query tile -------------------------------------------------------------
// dk_acc += Σ_i ds_ij q_i (scale at the end), dv_acc += Σ_i p_ij dout_i over the tile's queries that attend key j.
// q_tile, dout_tile [tile_rows, D]; lse_tile, dsum_tile, query_real [tile_rows] (query_real: real and < T);
// k, v: the key row's D slots.
template <int D>
RLHF_HOST_DEVICE inline void dkv_tile(float* dk_acc, float* dv_acc, const float* k, const float* v, bool key_real,
                                      std::size_t j, const float* q_tile, const float* dout_tile,
                                      const float* lse_tile, const float* dsum_tile, const std::uint8_t* query_real,
                                      std::size_t query0, float scale) {
  constexpr int K = int(tile_rows);
  for (int ii = 0; ii < K; ++ii) {
    if (!attends(query_real[ii] != 0, key_real, query0 + ii, j)) continue;
    const float* q = q_tile + ii * D;
    const float* dout = dout_tile + ii * D;
    const float p = exp_f(scale * dot<D>(q, k) - lse_tile[ii]);
    const float ds = p * (dot<D>(dout, v) - dsum_tile[ii]);
RLHF_FLASH_UNROLL
    for (int d = 0; d < D; ++d) {
      dv_acc[d] += p * dout[d];
      dk_acc[d] += ds * q[d];
    }
  }
}

}  // namespace rlhf::gpt_cuda::flash
