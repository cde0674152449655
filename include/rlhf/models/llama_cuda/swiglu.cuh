#pragma once
// The SwiGLU gate of the Llama MLP: out = silu(gate) · up, silu(g) = g σ(g), elementwise over [N, F]. CPU reference:
// llama::swiglu_forward / llama::swiglu_backward (models/llama/layers.hpp).
#include <cstddef>

#include "rlhf/models/gpt_cuda/common.cuh"

namespace rlhf::llama_cuda {

static __global__ void swiglu_forward_kernel(float* out, const float* gate, const float* up, std::size_t n) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float g = gate[i];
  out[i] = g / (1.0f + expf(-g)) * up[i];
}

inline void swiglu_forward(float* out, const float* gate, const float* up, std::size_t n) {
  if (n == 0) return;
  swiglu_forward_kernel<<<gpt_cuda::ceil_div(n, 256), 256>>>(out, gate, up, n);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

// dgate, dup [n] from dout [n] (overwritten; dgate may alias dout, not gate or up):
//   dup = dout · silu(g),  dgate = dout · up · σ(g) (1 + g (1 − σ(g)))
static __global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dout, const float* gate,
                                              const float* up, std::size_t n) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float g = gate[i], s = 1.0f / (1.0f + expf(-g)), d = dout[i];
  dup[i] = d * g * s;
  dgate[i] = d * up[i] * s * (1.0f + g * (1.0f - s));
}

inline void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                            std::size_t n) {
  if (n == 0) return;
  swiglu_backward_kernel<<<gpt_cuda::ceil_div(n, 256), 256>>>(dgate, dup, dout, gate, up, n);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

}  // namespace rlhf::llama_cuda
