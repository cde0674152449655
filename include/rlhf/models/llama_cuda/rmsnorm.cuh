#pragma once
// RMSNorm (HF's LlamaRMSNorm), one warp per row: the model's input_layernorm, post_attention_layernorm and final
// norm over [N, C], and Qwen3's q/k norms over [N·heads, hd] (each head vector a row). CPU reference:
// llama::rmsnorm_forward / llama::rmsnorm_backward (models/llama/layers.hpp), with its conventions: dinp
// accumulates (+=, its input is the residual stream), as does dweight.
#include <cstddef>

#include "rlhf/models/gpt_cuda/common.cuh"

namespace rlhf::llama_cuda {

using gpt_cuda::ceil_div;
using gpt_cuda::warp_size;

// out [N, C] = inp · rstd · weight; rstd [N] = 1 / √(mean(inp²) + eps)
static __global__ void rmsnorm_forward_kernel(float* out, float* rstd, const float* inp, const float* weight,
                                              std::size_t N, std::size_t C, float eps) {
  const std::size_t n = (std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / warp_size;
  const unsigned lane = threadIdx.x % warp_size;
  if (n >= N) return;  // whole warps leave together
  const float* x = inp + n * C;
  float sq = 0.0f;
  for (std::size_t c = lane; c < C; c += warp_size) sq += x[c] * x[c];
  const float r = 1.0f / sqrtf(gpt_cuda::warp_sum(sq) / float(C) + eps);
  float* y = out + n * C;
  for (std::size_t c = lane; c < C; c += warp_size) y[c] = x[c] * r * weight[c];
  if (lane == 0) rstd[n] = r;
}

inline void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, std::size_t N,
                            std::size_t C, float eps) {
  if (N == 0) return;
  rmsnorm_forward_kernel<<<ceil_div(N * warp_size, 256), 256>>>(out, rstd, inp, weight, N, C, eps);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

// dinp [N, C] += r (dy w − x r² mean(dy w x)), r = rstd[n]
static __global__ void rmsnorm_backward_input_kernel(float* dinp, const float* dout, const float* inp,
                                                     const float* weight, const float* rstd, std::size_t N,
                                                     std::size_t C) {
  const std::size_t n = (std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / warp_size;
  const unsigned lane = threadIdx.x % warp_size;
  if (n >= N) return;
  const float* x = inp + n * C;
  const float* dy = dout + n * C;
  const float r = rstd[n];
  float proj = 0.0f;
  for (std::size_t c = lane; c < C; c += warp_size) proj += dy[c] * weight[c] * x[c];
  const float k = r * r * gpt_cuda::warp_sum(proj) / float(C);
  float* dx = dinp + n * C;
  for (std::size_t c = lane; c < C; c += warp_size) dx[c] += r * (dy[c] * weight[c] - x[c] * k);
}

struct rmsnorm_dweight {  // column_reduce functor: dy · x · rstd
  const float *dout, *inp, *rstd;
  std::size_t C;
  __device__ float operator()(std::size_t n, std::size_t c) const { return dout[n * C + c] * inp[n * C + c] * rstd[n]; }
};

// dinp [N, C] += d/dinp; dweight [C] += Σ_n dout · inp · rstd (deterministic column sums). scratch:
// gpt_cuda::column_scratch(N, C) floats.
inline void rmsnorm_backward(float* dinp, float* dweight, float* scratch, const float* dout, const float* inp,
                             const float* weight, const float* rstd, std::size_t N, std::size_t C) {
  if (N == 0) return;
  rmsnorm_backward_input_kernel<<<ceil_div(N * warp_size, 256), 256>>>(dinp, dout, inp, weight, rstd, N, C);
  RLHF_CUDA_CHECK(cudaGetLastError());
  gpt_cuda::column_reduce(dweight, scratch, N, C, rmsnorm_dweight{dout, inp, rstd, C}, true);
}

}  // namespace rlhf::llama_cuda
