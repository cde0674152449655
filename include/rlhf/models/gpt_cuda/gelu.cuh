#pragma once
// GELU, tanh approximation: gelu(x) = ½ x (1 + tanh(√(2/π) (x + 0.044715 x³))).
// CPU reference: gpt::gelu_forward / gpt::gelu_backward (layers.hpp).
#include <cstddef>

#include "rlhf/models/gpt_cuda/common.cuh"

namespace rlhf::gpt_cuda {

inline constexpr float gelu_k0 = 0.7978845608028654f;  // √(2/π)
inline constexpr float gelu_k1 = 0.044715f;

// out [n] = gelu(inp)
static __global__ void gelu_forward_kernel(float* out, const float* inp, std::size_t n) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float x = inp[i];
  out[i] = 0.5f * x * (1.0f + tanhf(gelu_k0 * (x + gelu_k1 * x * x * x)));
}

// dinp [n] = dout · gelu'(inp); dinp may be dout (in place).
static __global__ void gelu_backward_kernel(float* dinp, const float* inp, const float* dout, std::size_t n) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float x = inp[i];
  const float t = tanhf(gelu_k0 * (x + gelu_k1 * x * x * x));
  const float local = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * gelu_k0 * (1.0f + 3.0f * gelu_k1 * x * x);
  dinp[i] = local * dout[i];
}

inline void gelu_forward(float* out, const float* inp, std::size_t n) {
  if (n == 0) return;
  gelu_forward_kernel<<<ceil_div(n, 256), 256>>>(out, inp, n);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

inline void gelu_backward(float* dinp, const float* inp, const float* dout, std::size_t n) {
  if (n == 0) return;
  gelu_backward_kernel<<<ceil_div(n, 256), 256>>>(dinp, inp, dout, n);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

}  // namespace rlhf::gpt_cuda
