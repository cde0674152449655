#pragma once
// Causal multi-head self-attention with padding, as llm.c computes it: q, k, v permuted to [B, NH, T, hs],
// pre-attention scores by a batched GEMM, the fused scale + causal/padding mask + softmax kernel, then a
// second batched GEMM. CPU references: gpt::attention_forward / gpt::attention_backward (layers.hpp) for the
// whole layer, causal_softmax_*_reference (tests/gpu/reference.hpp) for the fused softmax.
//
// Masking: query t of row b attends the keys t' ≤ t with real[b, t'] = 1; a padding query (real[b, t] = 0)
// gets all-zero probabilities and a zero output, as in the CPU model. Scores are computed for every (t, t')
// pair, upper triangle included (as llm.c does); the softmax ignores what it masks.
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "rlhf/models/gpt_cuda/common.cuh"
#include "rlhf/models/gpt_cuda/matmul.cuh"

namespace rlhf::gpt_cuda {

// qkv [B, T, 3C] → q, k, v [B, NH, T, hs] each (q at qkvr, k at qkvr + B·T·C, v after it).
static __global__ void permute_qkv_kernel(float* qkvr, const float* qkv, std::size_t B, std::size_t T,
                                          std::size_t NH, std::size_t hs) {
  const std::size_t C = NH * hs, N = B * T;
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;  // over [B, NH, T, hs]
  if (i >= N * C) return;
  const std::size_t d = i % hs, t = (i / hs) % T, h = (i / (hs * T)) % NH, b = i / (hs * T * NH);
  const float* src = qkv + (b * T + t) * 3 * C + h * hs + d;
  qkvr[i] = src[0];
  qkvr[N * C + i] = src[C];
  qkvr[2 * N * C + i] = src[2 * C];
}

// The reverse: dqkv [B, T, 3C] from dq, dk, dv [B, NH, T, hs] (laid out as permute_qkv_kernel writes them).
static __global__ void unpermute_qkv_kernel(float* dqkv, const float* dqkvr, std::size_t B, std::size_t T,
                                            std::size_t NH, std::size_t hs) {
  const std::size_t C = NH * hs, N = B * T;
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N * C) return;
  const std::size_t d = i % hs, t = (i / hs) % T, h = (i / (hs * T)) % NH, b = i / (hs * T * NH);
  float* dst = dqkv + (b * T + t) * 3 * C + h * hs + d;
  dst[0] = dqkvr[i];
  dst[C] = dqkvr[N * C + i];
  dst[2 * C] = dqkvr[2 * N * C + i];
}

// out [B, T, C] from y [B, NH, T, hs] (the heads side by side again).
static __global__ void heads_to_rows_kernel(float* out, const float* y, std::size_t B, std::size_t T, std::size_t NH,
                                            std::size_t hs) {
  const std::size_t C = NH * hs;
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;  // over [B, NH, T, hs]
  if (i >= B * T * C) return;
  const std::size_t d = i % hs, t = (i / hs) % T, h = (i / (hs * T)) % NH, b = i / (hs * T * NH);
  out[(b * T + t) * C + h * hs + d] = y[i];
}

// The reverse: y [B, NH, T, hs] from out [B, T, C].
static __global__ void rows_to_heads_kernel(float* y, const float* out, std::size_t B, std::size_t T, std::size_t NH,
                                            std::size_t hs) {
  const std::size_t C = NH * hs;
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * T * C) return;
  const std::size_t d = i % hs, t = (i / hs) % T, h = (i / (hs * T)) % NH, b = i / (hs * T * NH);
  y[i] = out[(b * T + t) * C + h * hs + d];
}

// ---- the fused softmax -------------------------------------------------------------------------------------
// In place on att [B, NH, T, T], one warp per row (b, h, t): the scores s = scale · x[t'] over the keys
// t' ≤ t with real[b, t'] become softmax probabilities; every other entry of the row becomes 0.
static __global__ void causal_softmax_forward_kernel(float* att, const std::uint8_t* real, std::size_t B,
                                                     std::size_t NH, std::size_t T, float scale) {
  const std::size_t row = (std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / warp_size;
  const unsigned lane = threadIdx.x % warp_size;
  if (row >= B * NH * T) return;
  const std::size_t t = row % T, b = row / (NH * T);
  const std::uint8_t* r = real + b * T;
  float* x = att + row * T;
  if (!r[t]) {
    for (std::size_t j = lane; j < T; j += warp_size) x[j] = 0.0f;
    return;
  }
  // online max and sum over this lane's keys, then merged across the warp
  float m = -INFINITY, s = 0.0f;
  for (std::size_t j = lane; j <= t; j += warp_size) {
    if (!r[j]) continue;
    const float v = scale * x[j];
    if (v > m) {
      s = s * expf(m - v) + 1.0f;
      m = v;
    } else {
      s += expf(v - m);
    }
  }
  const float row_max = warp_max(m);
  s = m == -INFINITY ? 0.0f : s * expf(m - row_max);
  const float inv_sum = 1.0f / warp_sum(s);
  for (std::size_t j = lane; j < T; j += warp_size)
    x[j] = (j <= t && r[j]) ? expf(scale * x[j] - row_max) * inv_sum : 0.0f;
}

inline void causal_softmax_forward(float* att, const std::uint8_t* real, std::size_t B, std::size_t NH, std::size_t T,
                                   float scale) {
  if (B * NH * T == 0) return;
  causal_softmax_forward_kernel<<<ceil_div(B * NH * T * warp_size, 256), 256>>>(att, real, B, NH, T, scale);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

// In place on datt [B, NH, T, T]: d scores = scale · p ⊙ (dp − Σ_t' p dp) over the row's keys t' ≤ t, 0 above
// the diagonal. att holds the probabilities p of the forward (0 wherever it masked).
static __global__ void causal_softmax_backward_kernel(float* datt, const float* att, std::size_t rows, std::size_t T,
                                                      float scale) {
  const std::size_t row = (std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / warp_size;
  const unsigned lane = threadIdx.x % warp_size;
  if (row >= rows) return;
  const std::size_t t = row % T;
  const float* p = att + row * T;
  float* d = datt + row * T;
  float dot = 0.0f;
  for (std::size_t j = lane; j <= t; j += warp_size) dot += p[j] * d[j];
  dot = warp_sum(dot);
  for (std::size_t j = lane; j < T; j += warp_size) d[j] = j <= t ? scale * p[j] * (d[j] - dot) : 0.0f;
}

inline void causal_softmax_backward(float* datt, const float* att, std::size_t B, std::size_t NH, std::size_t T,
                                    float scale) {
  if (B * NH * T == 0) return;
  causal_softmax_backward_kernel<<<ceil_div(B * NH * T * warp_size, 256), 256>>>(datt, att, B * NH * T, T, scale);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

// ---- the layer ---------------------------------------------------------------------------------------------
// out [B, T, C]; qkvr [3, B, NH, T, hs] (kept for the backward); att [B, NH, T, T] (probabilities, kept);
// y [B, NH, T, hs] scratch; qkv [B, T, 3C]; real [B, T].
inline void attention_forward(Blas& blas, float* out, float* qkvr, float* att, float* y, const float* qkv,
                              const std::uint8_t* real, std::size_t B, std::size_t T, std::size_t C, std::size_t NH) {
  const std::size_t hs = C / NH, N = B * T, BH = B * NH;
  if (N == 0) return;
  permute_qkv_kernel<<<ceil_div(N * C, 256), 256>>>(qkvr, qkv, B, T, NH, hs);
  RLHF_CUDA_CHECK(cudaGetLastError());
  const float *q = qkvr, *k = qkvr + N * C, *v = qkvr + 2 * N * C;
  // scores [T, T] per (b, h): column-major att^T = k · q^T
  gemm_batched(blas, true, false, T, T, hs, k, hs, T * hs, q, hs, T * hs, att, T, T * T, BH, 0.0f);
  causal_softmax_forward(att, real, B, NH, T, 1.0f / std::sqrt(float(hs)));
  // y [T, hs] = att · v: column-major y^T = v^T · att^T
  gemm_batched(blas, false, false, hs, T, T, v, hs, T * hs, att, T, T * T, y, hs, T * hs, BH, 0.0f);
  heads_to_rows_kernel<<<ceil_div(N * C, 256), 256>>>(out, y, B, T, NH, hs);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

// dqkv [B, T, 3C] (overwritten) from dout [B, T, C]; qkvr, att from the forward. Scratch: dy [B, NH, T, hs],
// datt [B, NH, T, T], dqkvr [3, B, NH, T, hs].
inline void attention_backward(Blas& blas, float* dqkv, float* dy, float* datt, float* dqkvr, const float* dout,
                               const float* qkvr, const float* att, std::size_t B, std::size_t T, std::size_t C,
                               std::size_t NH) {
  const std::size_t hs = C / NH, N = B * T, BH = B * NH;
  if (N == 0) return;
  rows_to_heads_kernel<<<ceil_div(N * C, 256), 256>>>(dy, dout, B, T, NH, hs);
  RLHF_CUDA_CHECK(cudaGetLastError());
  const float *q = qkvr, *k = qkvr + N * C, *v = qkvr + 2 * N * C;
  float *dq = dqkvr, *dk = dqkvr + N * C, *dv = dqkvr + 2 * N * C;
  // datt [T, T] = dy · v^T: column-major datt^T = v · dy^T
  gemm_batched(blas, true, false, T, T, hs, v, hs, T * hs, dy, hs, T * hs, datt, T, T * T, BH, 0.0f);
  // dv [T, hs] = att^T · dy: column-major dv^T = dy^T · att
  gemm_batched(blas, false, true, hs, T, T, dy, hs, T * hs, att, T, T * T, dv, hs, T * hs, BH, 0.0f);
  causal_softmax_backward(datt, att, B, NH, T, 1.0f / std::sqrt(float(hs)));
  // dq [T, hs] = dscores · k: column-major dq^T = k^T · dscores^T
  gemm_batched(blas, false, false, hs, T, T, k, hs, T * hs, datt, T, T * T, dq, hs, T * hs, BH, 0.0f);
  // dk [T, hs] = dscores^T · q: column-major dk^T = q^T · dscores
  gemm_batched(blas, false, true, hs, T, T, q, hs, T * hs, datt, T, T * T, dk, hs, T * hs, BH, 0.0f);
  unpermute_qkv_kernel<<<ceil_div(N * C, 256), 256>>>(dqkv, dqkvr, B, T, NH, hs);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

}  // namespace rlhf::gpt_cuda
