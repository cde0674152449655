#pragma once
// The token embedding (model.embed_tokens): a gather of rows; no position table (positions enter through RoPE).
// Its backward is the GPT's deterministic bucketed sum (gpt_cuda/encoder.cuh: rows grouped by token id on the
// host, padding rows left out). CPU reference: the copy loop and the embedding backward of Llama<T> (model.hpp);
// tests/gpu/llama_reference.hpp.
#include <cstddef>
#include <cstdint>

#include "rlhf/models/gpt_cuda/common.cuh"
#include "rlhf/models/gpt_cuda/encoder.cuh"

namespace rlhf::llama_cuda {

// out [N, C] = table[tokens[n]]
static __global__ void embedding_forward_kernel(float* out, const std::int32_t* tokens, const float* table,
                                                std::size_t N, std::size_t C) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N * C) return;
  out[i] = table[std::size_t(tokens[i / C]) * C + i % C];
}

inline void embedding_forward(float* out, const std::int32_t* tokens, const float* table, std::size_t N,
                              std::size_t C) {
  if (N * C == 0) return;
  embedding_forward_kernel<<<gpt_cuda::ceil_div(N * C, 256), 256>>>(out, tokens, table, N, C);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

// dtable[tokens[n]] += dout[n] for the real rows (by_token: gpt_cuda::RowBuckets of the tokens, real rows only)
inline void embedding_backward(float* dtable, const float* dout, const gpt_cuda::DeviceBuckets& by_token,
                               std::size_t C) {
  gpt_cuda::bucket_sum(dtable, dout, by_token, C);
}

}  // namespace rlhf::llama_cuda
