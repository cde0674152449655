#pragma once
// Plain CPU references for the CUDA Llama (include/rlhf/models/llama_cuda/) where the CPU Llama has no function of
// the same form (any C++ compiler, no CUDA). Every other Llama kernel's reference is the CPU model's own layer
// (llama::rmsnorm_*, llama::swiglu_*, llama::rope_apply, llama::attention_*; models/llama/); tests/gpu/llama_kernels.cu
// pairs each kernel with its reference.
//
//   embedding_forward_reference / _backward_reference   llama_cuda/embedding.cuh (Llama<T> copies rows inline)
//   gemm_batched_reference                              one planned product of gqa_plan.hpp, as cuBLAS computes it
//   gqa_attention_*_by_plan                             llama_cuda/attention.cuh step for step on the CPU: the
//       permutes, the six planned products and the GPT's softmax references (reference.hpp)
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "reference.hpp"
#include "rlhf/models/llama_cuda/gqa_plan.hpp"

namespace rlhf::llama_cuda {

// out [N, C] = table[tokens[n]]
inline void embedding_forward_reference(float* out, const std::int32_t* tokens, const float* table, std::size_t N,
                                        std::size_t C) {
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t c = 0; c < C; ++c) out[n * C + c] = table[std::size_t(tokens[n]) * C + c];
}

// dtable[tokens[n]] += dout[n] where real[n]
inline void embedding_backward_reference(float* dtable, const float* dout, const std::int32_t* tokens,
                                         const std::uint8_t* real, std::size_t N, std::size_t C) {
  for (std::size_t n = 0; n < N; ++n)
    if (real[n])
      for (std::size_t c = 0; c < C; ++c) dtable[std::size_t(tokens[n]) * C + c] += dout[n * C + c];
}

// Column-major C [m, n] = op(A) · op(B) per batch, as cublasGemmStridedBatchedEx with alpha 1, beta 0; double sums.
inline void gemm_batched_reference(const BatchedGemm& g, const float* A, const float* B, float* C) {
  for (std::size_t b = 0; b < g.batches; ++b) {
    const float* a = A + b * g.stride_a;
    const float* x = B + b * g.stride_b;
    float* c = C + b * g.stride_c;
    for (std::size_t j = 0; j < g.n; ++j)
      for (std::size_t i = 0; i < g.m; ++i) {
        double acc = 0;
        for (std::size_t l = 0; l < g.k; ++l) {
          const double av = g.ta ? a[l + i * g.lda] : a[i + l * g.lda];
          const double bv = g.tb ? x[j + l * g.ldb] : x[l + j * g.ldb];
          acc += av * bv;
        }
        c[i + j * g.ldc] = float(acc);
      }
  }
}

// x [B, T, heads, hd] → xh [B, heads, T, hd], and back
inline std::vector<float> rows_to_heads_reference(const float* x, std::size_t B, std::size_t T, std::size_t heads,
                                                  std::size_t hd) {
  std::vector<float> xh(B * T * heads * hd);
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t t = 0; t < T; ++t)
      for (std::size_t h = 0; h < heads; ++h)
        for (std::size_t d = 0; d < hd; ++d)
          xh[((b * heads + h) * T + t) * hd + d] = x[((b * T + t) * heads + h) * hd + d];
  return xh;
}
inline void heads_to_rows_reference(float* x, const std::vector<float>& xh, std::size_t B, std::size_t T,
                                    std::size_t heads, std::size_t hd) {
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t t = 0; t < T; ++t)
      for (std::size_t h = 0; h < heads; ++h)
        for (std::size_t d = 0; d < hd; ++d)
          x[((b * T + t) * heads + h) * hd + d] = xh[((b * heads + h) * T + t) * hd + d];
}

// What gqa_attention_forward computes, on the CPU: out [B, T, NH·hd]; att [B, NH, T, T] (probabilities).
inline void gqa_attention_forward_by_plan(float* out, float* att, const float* q, const float* k, const float* v,
                                          const std::uint8_t* real, const GqaShape& s) {
  const GqaPlan plan = gqa_plan(s);
  const auto qh = rows_to_heads_reference(q, s.B, s.T, s.NH, s.hd);
  const auto kh = rows_to_heads_reference(k, s.B, s.T, s.KVH, s.hd);
  const auto vh = rows_to_heads_reference(v, s.B, s.T, s.KVH, s.hd);
  std::vector<float> y(qh.size());
  gemm_batched_reference(plan.scores, kh.data(), qh.data(), att);
  gpt_cuda::causal_softmax_forward_reference(att, real, s.B, s.NH, s.T, float(1.0 / std::sqrt(double(s.hd))));
  gemm_batched_reference(plan.output, vh.data(), att, y.data());
  heads_to_rows_reference(out, y, s.B, s.T, s.NH, s.hd);
}

// What gqa_attention_backward computes, on the CPU: dq [B, T, NH·hd], dk, dv [B, T, KVH·hd] from dout and the
// forward's inputs and probabilities att.
inline void gqa_attention_backward_by_plan(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                           const float* k, const float* v, const float* att, const GqaShape& s) {
  const GqaPlan plan = gqa_plan(s);
  const auto qh = rows_to_heads_reference(q, s.B, s.T, s.NH, s.hd);
  const auto kh = rows_to_heads_reference(k, s.B, s.T, s.KVH, s.hd);
  const auto vh = rows_to_heads_reference(v, s.B, s.T, s.KVH, s.hd);
  const auto dy = rows_to_heads_reference(dout, s.B, s.T, s.NH, s.hd);
  std::vector<float> datt(s.B * s.NH * s.T * s.T), dqh(qh.size()), dkh(kh.size()), dvh(vh.size());
  gemm_batched_reference(plan.d_probs, vh.data(), dy.data(), datt.data());
  gemm_batched_reference(plan.d_values, dy.data(), att, dvh.data());
  gpt_cuda::causal_softmax_backward_reference(datt.data(), att, s.B, s.NH, s.T, float(1.0 / std::sqrt(double(s.hd))));
  gemm_batched_reference(plan.d_queries, kh.data(), datt.data(), dqh.data());
  gemm_batched_reference(plan.d_keys, qh.data(), datt.data(), dkh.data());
  heads_to_rows_reference(dq, dqh, s.B, s.T, s.NH, s.hd);
  heads_to_rows_reference(dk, dkh, s.B, s.T, s.KVH, s.hd);
  heads_to_rows_reference(dv, dvh, s.B, s.T, s.KVH, s.hd);
}

}  // namespace rlhf::llama_cuda
