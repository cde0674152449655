#pragma once
// Grouped-query causal attention with padding (num_key_value_heads): the GPT's attention (gpt_cuda/attention.cuh)
// with K and V heads shared by groups of G = NH / KVH query heads. No new kernel: the GPT's permutes, its fused
// scale + causal/padding mask + softmax, and batched GEMMs whose batch is one (row b, kv head g) pair.
//
// Why that works: with the query heads in head-major order [B, NH, T, hd], the G query heads of kv head g are
// contiguous, so they read as one [G·T, hd] matrix Q_g. Then, per (b, g), as one GEMM each:
//   scores [G·T, T] = Q_g K_gᵀ,   y [G·T, hd] = P_g V_g                                 (forward)
//   dP = dY_g V_gᵀ,   dV_g [T, hd] = P_gᵀ dY_g,   dQ_g = dS K_g,   dK_g [T, hd] = dSᵀ Q_g   (backward)
// and the backward's products over G·T rows sum each kv head's gradient over its group. att [B, NH, T, T] is
// [B, KVH, G·T, T] read the same way, so the GPT's softmax kernels apply unchanged.
//
// CPU reference: llama::attention_forward / llama::attention_backward (models/llama/layers.hpp), same masking:
// query t attends the real keys t' ≤ t; a padding query gets zero probabilities and a zero output.
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "rlhf/models/gpt_cuda/attention.cuh"
#include "rlhf/models/gpt_cuda/common.cuh"
#include "rlhf/models/gpt_cuda/matmul.cuh"

namespace rlhf::llama_cuda {

using gpt_cuda::Blas;

// x [B, T, heads, hd] (rows of the projections) → xh [B, heads, T, hd]
inline void rows_to_heads(float* xh, const float* x, std::size_t B, std::size_t T, std::size_t heads, std::size_t hd) {
  const std::size_t n = B * T * heads * hd;
  if (n == 0) return;
  gpt_cuda::rows_to_heads_kernel<<<gpt_cuda::ceil_div(n, 256), 256>>>(xh, x, B, T, heads, hd);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

// The reverse: x [B, T, heads, hd] from xh [B, heads, T, hd]
inline void heads_to_rows(float* x, const float* xh, std::size_t B, std::size_t T, std::size_t heads, std::size_t hd) {
  const std::size_t n = B * T * heads * hd;
  if (n == 0) return;
  gpt_cuda::heads_to_rows_kernel<<<gpt_cuda::ceil_div(n, 256), 256>>>(x, xh, B, T, heads, hd);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

// The shapes of one attention call.
struct GqaShape {
  std::size_t B, T, NH, KVH, hd;
  std::size_t group() const { return NH / KVH; }  // G
};

// out [B, T, NH·hd] from q [B, T, NH·hd], k, v [B, T, KVH·hd] (rotated, as attention reads them); real [B, T].
// Kept for the backward: qh [B, NH, T, hd], kh, vh [B, KVH, T, hd], att [B, NH, T, T] (probabilities).
// Scratch: y [B, NH, T, hd].
inline void gqa_attention_forward(Blas& blas, float* out, float* qh, float* kh, float* vh, float* att, float* y,
                                  const float* q, const float* k, const float* v, const std::uint8_t* real,
                                  const GqaShape& s) {
  const std::size_t T = s.T, hd = s.hd, GT = s.group() * T, BK = s.B * s.KVH;
  if (s.B * T == 0) return;
  rows_to_heads(qh, q, s.B, T, s.NH, hd);
  rows_to_heads(kh, k, s.B, T, s.KVH, hd);
  rows_to_heads(vh, v, s.B, T, s.KVH, hd);
  // scores [G·T, T] per (b, g): column-major scoresᵀ [T, G·T] = K_g (column-major [hd, T])ᵀ · Q_gᵀ
  gpt_cuda::gemm_batched(blas, true, false, T, GT, hd, kh, hd, T * hd, qh, hd, GT * hd, att, T, GT * T, BK, 0.0f);
  gpt_cuda::causal_softmax_forward(att, real, s.B, s.NH, T, 1.0f / std::sqrt(float(hd)));
  // y [G·T, hd] = P_g · V_g: column-major yᵀ = V_gᵀ · P_gᵀ
  gpt_cuda::gemm_batched(blas, false, false, hd, GT, T, vh, hd, T * hd, att, T, GT * T, y, hd, GT * hd, BK, 0.0f);
  heads_to_rows(out, y, s.B, T, s.NH, hd);
}

// dq [B, T, NH·hd], dk, dv [B, T, KVH·hd] (overwritten; each kv head's the sum over its group) from
// dout [B, T, NH·hd]; qh, kh, vh, att from the forward. Scratch: dy, dqh [B, NH, T, hd], dkh, dvh [B, KVH, T, hd],
// datt [B, NH, T, T].
inline void gqa_attention_backward(Blas& blas, float* dq, float* dk, float* dv, float* dy, float* dqh, float* dkh,
                                   float* dvh, float* datt, const float* dout, const float* qh, const float* kh,
                                   const float* vh, const float* att, const GqaShape& s) {
  const std::size_t T = s.T, hd = s.hd, GT = s.group() * T, BK = s.B * s.KVH;
  if (s.B * T == 0) return;
  rows_to_heads(dy, dout, s.B, T, s.NH, hd);
  // dP [G·T, T] = dY_g · V_gᵀ: column-major dPᵀ = V_g (column-major [hd, T])ᵀ · dY_gᵀ
  gpt_cuda::gemm_batched(blas, true, false, T, GT, hd, vh, hd, T * hd, dy, hd, GT * hd, datt, T, GT * T, BK, 0.0f);
  // dV_g [T, hd] = P_gᵀ · dY_g (a sum over the G·T query rows): column-major dV_gᵀ = dY_gᵀ · P_g
  gpt_cuda::gemm_batched(blas, false, true, hd, T, GT, dy, hd, GT * hd, att, T, GT * T, dvh, hd, T * hd, BK, 0.0f);
  gpt_cuda::causal_softmax_backward(datt, att, s.B, s.NH, T, 1.0f / std::sqrt(float(hd)));
  // dQ_g [G·T, hd] = dS · K_g: column-major dQ_gᵀ = K_gᵀ · dSᵀ
  gpt_cuda::gemm_batched(blas, false, false, hd, GT, T, kh, hd, T * hd, datt, T, GT * T, dqh, hd, GT * hd, BK, 0.0f);
  // dK_g [T, hd] = dSᵀ · Q_g: column-major dK_gᵀ = Q_gᵀ · dS
  gpt_cuda::gemm_batched(blas, false, true, hd, T, GT, qh, hd, GT * hd, datt, T, GT * T, dkh, hd, T * hd, BK, 0.0f);
  heads_to_rows(dq, dqh, s.B, T, s.NH, hd);
  heads_to_rows(dk, dkh, s.B, T, s.KVH, hd);
  heads_to_rows(dv, dvh, s.B, T, s.KVH, hd);
}

}  // namespace rlhf::llama_cuda
