#pragma once
// The Llama's projections, y = x W + b with W [in, out] (the CPU model's layout, llama/params.hpp), on the GPT's
// cuBLAS products (gpt_cuda/matmul.cuh). What is added here is the accumulating input gradient: k_proj and v_proj
// (and up_proj) add their d input to that of q_proj (gate_proj), as llama::linear_backward's `accumulate` does.
#include <cstddef>

#include "rlhf/models/gpt_cuda/matmul.cuh"

namespace rlhf::llama_cuda {

// out [N, OC] = inp [N, C] · weight [C, OC] + bias [OC] (bias may be null)
inline void linear_forward(gpt_cuda::Blas& blas, float* out, const float* inp, const float* weight, const float* bias,
                           std::size_t N, std::size_t C, std::size_t OC) {
  gpt_cuda::matmul_forward(blas, out, inp, weight, bias, N, C, OC);
}

// dinp [N, C] = dout · weightᵀ (+= when accumulate); dweight [C, OC] += inpᵀ · dout; dbias [OC] += Σ_n dout (when
// not null; scratch: gpt_cuda::column_scratch(N, OC) floats).
inline void linear_backward(gpt_cuda::Blas& blas, float* dinp, float* dweight, float* dbias, float* scratch,
                            const float* dout, const float* inp, const float* weight, std::size_t N, std::size_t C,
                            std::size_t OC, bool accumulate = false) {
  if (N == 0) return;
  // column-major dinpᵀ [C, N] (+)= weight [C, OC] · doutᵀ [OC, N]
  gpt_cuda::gemm(blas, true, false, C, N, OC, weight, OC, dout, OC, dinp, C, accumulate ? 1.0f : 0.0f);
  gpt_cuda::matmul_backward(blas, nullptr, dweight, dbias, scratch, dout, inp, weight, N, C, OC);
}

}  // namespace rlhf::llama_cuda
