#pragma once
// The six batched GEMMs of grouped-query attention (attention.cuh), as plain numbers: which operands, which
// transposes, leading dimensions and strides. Host-only C++ (no CUDA), so that a g++ test runs the very same plan
// through a plain column-major GEMM and checks it against the CPU Llama's attention (tests/gpu/llama_reference.cpp,
// the ctest gpu_llama_reference): the index algebra below is verified on any machine, with or without a GPU.
//
// Layouts: qh [B, NH, T, hd] = [B, KVH, G·T, hd] (the G query heads of kv head g are contiguous, G = NH / KVH);
// kh, vh [B, KVH, T, hd]; att [B, NH, T, T] = [B, KVH, G·T, T]. Every product runs once per (row b, kv head g):
// B·KVH batches. cuBLAS is column-major, so a row-major [R, K] matrix is a column-major [K, R] one and each
// product is written transposed (as in gpt_cuda/matmul.cuh).
#include <cstddef>

namespace rlhf::llama_cuda {

// The shapes of one attention call.
struct GqaShape {
  std::size_t B, T, NH, KVH, hd;
  std::size_t group() const { return NH / KVH; }  // G
};

// Column-major C [m, n] = op(A) [m, k] · op(B) [k, n], `batches` times; each operand's next matrix is stride_*
// elements after the previous one.
struct BatchedGemm {
  bool ta, tb;
  std::size_t m, n, k;
  std::size_t lda, stride_a, ldb, stride_b, ldc, stride_c;
  std::size_t batches;
};

struct GqaPlan {
  // forward
  BatchedGemm scores;     // att [G·T, T] = Q_g K_gᵀ               A = kh, B = qh,   C = att
  BatchedGemm output;     // y [G·T, hd] = P_g V_g                  A = vh, B = att,  C = y
  // backward (dS: d scores, what the softmax backward makes of dP in place)
  BatchedGemm d_probs;    // dP [G·T, T] = dY_g V_gᵀ                A = vh, B = dy,   C = datt
  BatchedGemm d_values;   // dV_g [T, hd] = P_gᵀ dY_g (Σ over group) A = dy, B = att,  C = dvh
  BatchedGemm d_queries;  // dQ_g [G·T, hd] = dS K_g                A = kh, B = datt, C = dqh
  BatchedGemm d_keys;     // dK_g [T, hd] = dSᵀ Q_g (Σ over group)   A = qh, B = datt, C = dkh
};

inline GqaPlan gqa_plan(const GqaShape& s) {
  const std::size_t T = s.T, hd = s.hd, GT = s.group() * T, BK = s.B * s.KVH;
  return {
      // column-major attᵀ [T, G·T] = (kh as column-major [hd, T])ᵀ · (qh as column-major [hd, G·T])
      .scores = {true, false, T, GT, hd, hd, T * hd, hd, GT * hd, T, GT * T, BK},
      // column-major yᵀ [hd, G·T] = (vh as [hd, T]) · (att as [T, G·T])
      .output = {false, false, hd, GT, T, hd, T * hd, T, GT * T, hd, GT * hd, BK},
      // column-major dPᵀ [T, G·T] = (vh as [hd, T])ᵀ · (dy as [hd, G·T])
      .d_probs = {true, false, T, GT, hd, hd, T * hd, hd, GT * hd, T, GT * T, BK},
      // column-major dV_gᵀ [hd, T] = (dy as [hd, G·T]) · (att as [T, G·T])ᵀ
      .d_values = {false, true, hd, T, GT, hd, GT * hd, T, GT * T, hd, T * hd, BK},
      // column-major dQ_gᵀ [hd, G·T] = (kh as [hd, T]) · (dS as [T, G·T])
      .d_queries = {false, false, hd, GT, T, hd, T * hd, T, GT * T, hd, GT * hd, BK},
      // column-major dK_gᵀ [hd, T] = (qh as [hd, G·T]) · (dS as [T, G·T])ᵀ
      .d_keys = {false, true, hd, T, GT, hd, GT * hd, T, GT * T, hd, T * hd, BK},
  };
}

}  // namespace rlhf::llama_cuda
