#pragma once
// Flash attention on the GPU, forward and backward: causal, with the models' padding masks and grouped-query heads,
// float32 throughout. Never stores the T×T probabilities: the forward keeps lse [B, NH, T] (O(T) per head) and the
// backward recomputes the probabilities tile by tile. The algorithm, the masks, the layouts and the tile ranges are
// flash_tiles.hpp's, whose per-thread functions these kernels call on shared-memory tiles; this file adds only the
// thread mapping, the cooperative loads and the barriers.
//
// Kernels (one thread per row, rows_per_block rows per block, tiles of tile_rows rows through shared memory):
//   flash_forward_kernel  block (query block, head h, row b): online softmax over the key tiles up to the diagonal
//   flash_dsum_kernel     one warp per (b, h, t): D = dout·out
//   flash_dq_kernel       block (query block, head h, row b): dq over the key tiles up to the diagonal
//   flash_dkv_kernel      block (key block, kv head g, row b): dk, dv over every query head of g's group and the
//                         query tiles from the diagonal on (the grouped-query sum, in one thread, in a fixed order)
// The dot products run on the CUDA cores in float32 (no tensor cores yet): this kernel is the correct, O(T)-memory
// baseline; a tensor-core version (wmma / mma with TF32 or BF16 operands) is the next step for speed.
//
// CPU references: flash_attention_*_reference (tests/gpu/flash_reference.hpp, naive attention in double, itself
// checked against the CPU Llama's attention), and flash_*_emulated there: these kernels' blocks and threads run
// one after another on the CPU through the same flash_tiles.hpp functions (the g++ ctest gpu_flash_reference).
//
// Status: compiled with nvcc for sm_90; not yet run on a GPU (docs/models/gpt_cuda.md, "Flash attention").
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "rlhf/core/error.hpp"
#include "rlhf/models/gpt_cuda/common.cuh"
#include "rlhf/models/gpt_cuda/flash_tiles.hpp"

namespace rlhf {

// Which attention a CUDA model runs (GptCudaOptions::attention, LlamaCudaOptions::attention):
//   materialized  attention.cuh: cuBLAS products around a fused softmax; keeps [B, NH, T, T] probabilities per layer
//   flash         flash_attention.cuh: tiled online softmax; keeps [B, NH, T] per layer
enum class AttentionKernel { materialized, flash };

}  // namespace rlhf

namespace rlhf::gpt_cuda::flash {

// dst row r (D slots, dst_stride floats apart) = src row row0 + r of row b (hd values; src already offset to its
// head), for r < n; rows past T and slots past hd are 0. Every thread of the block takes part.
template <int D>
__device__ inline void load_rows(float* dst, std::size_t dst_stride, const float* src, std::size_t src_stride,
                                 std::size_t b, std::size_t row0, std::size_t n, std::size_t T, std::size_t hd) {
  for (std::size_t i = threadIdx.x; i < n * D; i += blockDim.x) {
    const std::size_t r = i / D, d = i % D, t = row0 + r;
    dst[r * dst_stride + d] = (t < T && d < hd) ? src[(b * T + t) * src_stride + d] : 0.0f;
  }
}

// out, lse from q, k, v (layouts: flash_tiles.hpp). Grid (row_blocks(T), NH, B), rows_per_block threads.
template <int D>
__global__ void __launch_bounds__(rows_per_block)
    flash_forward_kernel(float* out, float* lse, const float* q, const float* k, const float* v,
                         const std::uint8_t* real, FlashShape s, float scale) {
  constexpr std::size_t R = rows_per_block, K = tile_rows, S = own_stride(D);
  extern __shared__ float smem[];
  float* q_own = smem;               // [R, D + 1] this block's query rows
  float* k_tile = q_own + R * S;     // [K, D]
  float* v_tile = k_tile + K * D;    // [K, D]
  auto* key_real = reinterpret_cast<std::uint8_t*>(v_tile + K * D);  // [K]
  const std::size_t qb = gridDim.x - 1 - blockIdx.x;  // the last queries (the most keys) first
  const std::size_t h = blockIdx.y, b = blockIdx.z, g = h / s.group(), T = s.T, r = threadIdx.x;
  const std::size_t t = qb * R + r;
  const bool query_real = t < T && real[b * T + t];
  load_rows<D>(q_own, S, q + h * s.hd, s.q_stride, b, qb * R, R, T, s.hd);
  RowState<D> st;
  const std::size_t tiles = key_tiles_for_query_block(qb, T);
  for (std::size_t kt = 0; kt < tiles; ++kt) {
    const std::size_t key0 = kt * K;
    __syncthreads();  // the own rows are in; the previous tile's readers are done
    load_rows<D>(k_tile, D, k + g * s.hd, s.kv_stride, b, key0, K, T, s.hd);
    load_rows<D>(v_tile, D, v + g * s.hd, s.kv_stride, b, key0, K, T, s.hd);
    if (r < K) key_real[r] = key0 + r < T && real[b * T + key0 + r];
    __syncthreads();
    forward_tile<D>(st, q_own + r * S, query_real, t, k_tile, v_tile, key_real, key0, scale);
  }
  if (t < T) forward_finish<D>(out + (b * T + t) * s.out_stride + h * s.hd, lse + (b * s.NH + h) * T + t, st,
                               query_real, s.hd);
}

// dsum [B, NH, T] = dout·out per (b, h, t), 0 at a padding query. One warp per row.
static __global__ void flash_dsum_kernel(float* dsum, const float* out, const float* dout, const std::uint8_t* real,
                                         FlashShape s) {
  const std::size_t row = (std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / warp_size;  // over [B, NH, T]
  const unsigned lane = threadIdx.x % warp_size;
  if (row >= s.B * s.NH * s.T) return;
  const std::size_t t = row % s.T, h = (row / s.T) % s.NH, b = row / (s.T * s.NH);
  float acc = 0.0f;
  if (real[b * s.T + t]) {
    const std::size_t at = (b * s.T + t) * s.out_stride + h * s.hd;
    for (std::size_t d = lane; d < s.hd; d += warp_size) acc += out[at + d] * dout[at + d];
  }
  acc = warp_sum(acc);
  if (lane == 0) dsum[row] = acc;
}

// dq (overwritten, rows t < T) from the forward's q, k, v, lse, dout and dsum. Grid (row_blocks(T), NH, B).
template <int D>
__global__ void __launch_bounds__(rows_per_block)
    flash_dq_kernel(float* dq, const float* q, const float* k, const float* v, const float* dout, const float* lse,
                    const float* dsum, const std::uint8_t* real, FlashShape s, float scale) {
  constexpr std::size_t R = rows_per_block, K = tile_rows, S = own_stride(D);
  extern __shared__ float smem[];
  float* q_own = smem;               // [R, D + 1]
  float* dout_own = q_own + R * S;   // [R, D + 1]
  float* k_tile = dout_own + R * S;  // [K, D]
  float* v_tile = k_tile + K * D;    // [K, D]
  auto* key_real = reinterpret_cast<std::uint8_t*>(v_tile + K * D);  // [K]
  const std::size_t qb = gridDim.x - 1 - blockIdx.x;
  const std::size_t h = blockIdx.y, b = blockIdx.z, g = h / s.group(), T = s.T, r = threadIdx.x;
  const std::size_t t = qb * R + r;
  const bool query_real = t < T && real[b * T + t];
  const float row_lse = query_real ? lse[(b * s.NH + h) * T + t] : 0.0f;
  const float row_dsum = query_real ? dsum[(b * s.NH + h) * T + t] : 0.0f;
  load_rows<D>(q_own, S, q + h * s.hd, s.q_stride, b, qb * R, R, T, s.hd);
  load_rows<D>(dout_own, S, dout + h * s.hd, s.out_stride, b, qb * R, R, T, s.hd);
  float acc[D] = {};
  const std::size_t tiles = key_tiles_for_query_block(qb, T);
  for (std::size_t kt = 0; kt < tiles; ++kt) {
    const std::size_t key0 = kt * K;
    __syncthreads();
    load_rows<D>(k_tile, D, k + g * s.hd, s.kv_stride, b, key0, K, T, s.hd);
    load_rows<D>(v_tile, D, v + g * s.hd, s.kv_stride, b, key0, K, T, s.hd);
    if (r < K) key_real[r] = key0 + r < T && real[b * T + key0 + r];
    __syncthreads();
    dq_tile<D>(acc, q_own + r * S, dout_own + r * S, row_lse, row_dsum, query_real, t, k_tile, v_tile, key_real,
               key0, scale);
  }
  if (t < T) store_scaled<D>(dq + (b * T + t) * s.q_stride + h * s.hd, acc, scale, s.hd);
}

// dk, dv (overwritten, rows t < T; each kv head's the sum over its group). Grid (row_blocks(T), KVH, B).
template <int D>
__global__ void __launch_bounds__(rows_per_block)
    flash_dkv_kernel(float* dk, float* dv, const float* q, const float* k, const float* v, const float* dout,
                     const float* lse, const float* dsum, const std::uint8_t* real, FlashShape s, float scale) {
  constexpr std::size_t R = rows_per_block, K = tile_rows, S = own_stride(D);
  extern __shared__ float smem[];
  float* k_own = smem;                // [R, D + 1] this block's key rows
  float* v_own = k_own + R * S;       // [R, D + 1]
  float* q_tile = v_own + R * S;      // [K, D]
  float* dout_tile = q_tile + K * D;  // [K, D]
  float* lse_tile = dout_tile + K * D;  // [K]
  float* dsum_tile = lse_tile + K;      // [K]
  auto* query_real = reinterpret_cast<std::uint8_t*>(dsum_tile + K);  // [K]
  const std::size_t kb = blockIdx.x;  // the first keys (the most queries) first
  const std::size_t g = blockIdx.y, b = blockIdx.z, G = s.group(), T = s.T, r = threadIdx.x;
  const std::size_t j = kb * R + r;
  const bool key_real = j < T && real[b * T + j];
  load_rows<D>(k_own, S, k + g * s.hd, s.kv_stride, b, kb * R, R, T, s.hd);
  load_rows<D>(v_own, S, v + g * s.hd, s.kv_stride, b, kb * R, R, T, s.hd);
  float dk_acc[D] = {}, dv_acc[D] = {};
  for (std::size_t h = g * G; h < (g + 1) * G; ++h)
    for (std::size_t qt = first_query_tile_for_key_block(kb); qt < query_tiles(T); ++qt) {
      const std::size_t query0 = qt * K;
      __syncthreads();
      load_rows<D>(q_tile, D, q + h * s.hd, s.q_stride, b, query0, K, T, s.hd);
      load_rows<D>(dout_tile, D, dout + h * s.hd, s.out_stride, b, query0, K, T, s.hd);
      if (r < K) {
        const std::size_t i = query0 + r;
        const bool real_i = i < T && real[b * T + i];
        query_real[r] = real_i;
        lse_tile[r] = real_i ? lse[(b * s.NH + h) * T + i] : 0.0f;
        dsum_tile[r] = real_i ? dsum[(b * s.NH + h) * T + i] : 0.0f;
      }
      __syncthreads();
      dkv_tile<D>(dk_acc, dv_acc, k_own + r * S, v_own + r * S, key_real, j, q_tile, dout_tile, lse_tile, dsum_tile,
                  query_real, query0, scale);
    }
  if (j < T) {
    store_scaled<D>(dk + (b * T + j) * s.kv_stride + g * s.hd, dk_acc, scale, s.hd);
    store_scaled<D>(dv + (b * T + j) * s.kv_stride + g * s.hd, dv_acc, 1.0f, s.hd);
  }
}

// Checks what the kernels assume, naming the caller.
inline void require_flash_shape(const FlashShape& s, const char* fn) {
  if (s.KVH == 0 || s.NH % s.KVH != 0)
    fail<value_error>(fn, ": ", s.NH, " query heads are not a multiple of ", s.KVH, " kv heads");
  if (head_slots(s.hd) == 0)
    fail<value_error>(fn, ": head size ", s.hd, " is not in 1..128 (the flash kernels' head slots: 32, 64, 128)");
  if (s.NH > 65535 || s.B > 65535) fail<value_error>(fn, ": ", s.B, " rows of ", s.NH, " heads exceed the grid");
}

// Calls f(std::integral_constant<int, D>{}) for the head slots D of hd (checked by require_flash_shape).
template <class F>
void with_head_slots(std::size_t hd, F&& f) {
  switch (head_slots(hd)) {
    case 32: f(std::integral_constant<int, 32>{}); break;
    case 64: f(std::integral_constant<int, 64>{}); break;
    default: f(std::integral_constant<int, 128>{}); break;
  }
}

// Launches `kernel` with `bytes` of dynamic shared memory (opting in past the default 48 KiB where needed).
template <class Kernel, class... Args>
void launch(Kernel kernel, dim3 grid, std::size_t bytes, Args... args) {
  RLHF_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  kernel<<<grid, unsigned(rows_per_block), bytes>>>(args...);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

}  // namespace rlhf::gpt_cuda::flash

namespace rlhf::gpt_cuda {

// out (rows of every query head, s.out_stride apart), lse [B, NH, T] from q, k, v (flash_tiles.hpp's layouts);
// real [B, T]. Everything on the device.
inline void flash_attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                                    const std::uint8_t* real, const flash::FlashShape& s) {
  flash::require_flash_shape(s, "rlhf::gpt_cuda::flash_attention_forward");
  if (s.B * s.T == 0) return;
  const float scale = 1.0f / std::sqrt(float(s.hd));
  const dim3 grid(unsigned(flash::row_blocks(s.T)), unsigned(s.NH), unsigned(s.B));
  flash::with_head_slots(s.hd, [&](auto slots) {
    constexpr int D = decltype(slots)::value;
    flash::launch(flash::flash_forward_kernel<D>, grid, flash::forward_smem_bytes(D), out, lse, q, k, v, real, s,
                  scale);
  });
}

// dq, dk, dv (overwritten at every row t < T; q's and k's layouts) from dout (out's layout) and the forward's q, k,
// v, out, lse. Scratch: dsum [B, NH, T].
inline void flash_attention_backward(float* dq, float* dk, float* dv, float* dsum, const float* dout,
                                     const float* q, const float* k, const float* v, const float* out,
                                     const float* lse, const std::uint8_t* real, const flash::FlashShape& s) {
  flash::require_flash_shape(s, "rlhf::gpt_cuda::flash_attention_backward");
  if (s.B * s.T == 0) return;
  const float scale = 1.0f / std::sqrt(float(s.hd));
  const std::size_t rows = s.B * s.NH * s.T;
  flash::flash_dsum_kernel<<<ceil_div(rows * warp_size, 256), 256>>>(dsum, out, dout, real, s);
  RLHF_CUDA_CHECK(cudaGetLastError());
  const unsigned blocks = unsigned(flash::row_blocks(s.T));
  flash::with_head_slots(s.hd, [&](auto slots) {
    constexpr int D = decltype(slots)::value;
    flash::launch(flash::flash_dq_kernel<D>, dim3(blocks, unsigned(s.NH), unsigned(s.B)), flash::dq_smem_bytes(D),
                  dq, q, k, v, dout, lse, static_cast<const float*>(dsum), real, s, scale);
    flash::launch(flash::flash_dkv_kernel<D>, dim3(blocks, unsigned(s.KVH), unsigned(s.B)),
                  flash::dkv_smem_bytes(D), dk, dv, q, k, v, dout, lse, static_cast<const float*>(dsum), real, s,
                  scale);
  });
}

}  // namespace rlhf::gpt_cuda
