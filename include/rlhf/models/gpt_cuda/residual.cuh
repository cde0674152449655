#pragma once
// The residual connection: out = a + b (out may alias a or b); its backward is the identity on both inputs.
// CPU reference: gpt::residual_forward (layers.hpp).
#include <cstddef>

#include "rlhf/models/gpt_cuda/common.cuh"

namespace rlhf::gpt_cuda {

static __global__ void residual_forward_kernel(float* out, const float* a, const float* b, std::size_t n) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}

inline void residual_forward(float* out, const float* a, const float* b, std::size_t n) {
  if (n == 0) return;
  residual_forward_kernel<<<ceil_div(n, 256), 256>>>(out, a, b, n);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

}  // namespace rlhf::gpt_cuda
