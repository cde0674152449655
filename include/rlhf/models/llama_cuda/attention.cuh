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
// [B, KVH, G·T, T] read the same way, so the GPT's softmax kernels apply unchanged. The products' arguments are
// gqa_plan.hpp's, which a g++ test checks against the CPU attention without a GPU.
//
// CPU reference: llama::attention_forward / llama::attention_backward (models/llama/layers.hpp), same masking:
// query t attends the real keys t' ≤ t; a padding query gets zero probabilities and a zero output.
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "rlhf/models/gpt_cuda/attention.cuh"
#include "rlhf/models/gpt_cuda/common.cuh"
#include "rlhf/models/gpt_cuda/matmul.cuh"
#include "rlhf/models/llama_cuda/gqa_plan.hpp"

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

// One planned product (gqa_plan.hpp) on cuBLAS.
inline void planned_gemm(Blas& blas, const BatchedGemm& g, const float* A, const float* B, float* C) {
  gpt_cuda::gemm_batched(blas, g.ta, g.tb, g.m, g.n, g.k, A, g.lda, g.stride_a, B, g.ldb, g.stride_b, C, g.ldc,
                         g.stride_c, g.batches, 0.0f);
}

// out [B, T, NH·hd] from q [B, T, NH·hd], k, v [B, T, KVH·hd] (rotated, as attention reads them); real [B, T].
// Kept for the backward: qh [B, NH, T, hd], kh, vh [B, KVH, T, hd], att [B, NH, T, T] (probabilities).
// Scratch: y [B, NH, T, hd].
inline void gqa_attention_forward(Blas& blas, float* out, float* qh, float* kh, float* vh, float* att, float* y,
                                  const float* q, const float* k, const float* v, const std::uint8_t* real,
                                  const GqaShape& s) {
  if (s.B * s.T == 0) return;
  const GqaPlan plan = gqa_plan(s);
  rows_to_heads(qh, q, s.B, s.T, s.NH, s.hd);
  rows_to_heads(kh, k, s.B, s.T, s.KVH, s.hd);
  rows_to_heads(vh, v, s.B, s.T, s.KVH, s.hd);
  planned_gemm(blas, plan.scores, kh, qh, att);
  gpt_cuda::causal_softmax_forward(att, real, s.B, s.NH, s.T, 1.0f / std::sqrt(float(s.hd)));
  planned_gemm(blas, plan.output, vh, att, y);
  heads_to_rows(out, y, s.B, s.T, s.NH, s.hd);
}

// dq [B, T, NH·hd], dk, dv [B, T, KVH·hd] (overwritten; each kv head's the sum over its group) from
// dout [B, T, NH·hd]; qh, kh, vh, att from the forward. Scratch: dy, dqh [B, NH, T, hd], dkh, dvh [B, KVH, T, hd],
// datt [B, NH, T, T].
inline void gqa_attention_backward(Blas& blas, float* dq, float* dk, float* dv, float* dy, float* dqh, float* dkh,
                                   float* dvh, float* datt, const float* dout, const float* qh, const float* kh,
                                   const float* vh, const float* att, const GqaShape& s) {
  if (s.B * s.T == 0) return;
  const GqaPlan plan = gqa_plan(s);
  rows_to_heads(dy, dout, s.B, s.T, s.NH, s.hd);
  planned_gemm(blas, plan.d_probs, vh, dy, datt);
  planned_gemm(blas, plan.d_values, dy, att, dvh);
  gpt_cuda::causal_softmax_backward(datt, att, s.B, s.NH, s.T, 1.0f / std::sqrt(float(s.hd)));
  planned_gemm(blas, plan.d_queries, kh, datt, dqh);
  planned_gemm(blas, plan.d_keys, qh, datt, dkh);
  heads_to_rows(dq, dqh, s.B, s.T, s.NH, s.hd);
  heads_to_rows(dk, dkh, s.B, s.T, s.KVH, s.hd);
  heads_to_rows(dv, dvh, s.B, s.T, s.KVH, s.hd);
}

}  // namespace rlhf::llama_cuda
