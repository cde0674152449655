#pragma once
// The scalar head: a Linear C → 1 on final hidden states (a reward model's score, a value function's V).
// out[dst[m]] = lnf[src[m]] · w + b for M selected rows. CPU reference: scalar_head_*_reference
// (tests/gpu/reference.hpp), which is what Gpt::values / Gpt::scores compute row by row.
#include <cstddef>
#include <cstdint>

#include "rlhf/models/gpt_cuda/common.cuh"

namespace rlhf::gpt_cuda {

// One warp per selected row.
static __global__ void head_forward_kernel(float* out, const float* lnf, const float* w, const float* b,
                                           const std::int32_t* src, const std::int32_t* dst, std::size_t M,
                                           std::size_t C) {
  const std::size_t m = (std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / warp_size;
  const unsigned lane = threadIdx.x % warp_size;
  if (m >= M) return;
  const float* x = lnf + std::size_t(src[m]) * C;
  float acc = 0.0f;
  for (std::size_t c = lane; c < C; c += warp_size) acc += x[c] * w[c];
  acc = warp_sum(acc);
  if (lane == 0) out[dst[m]] = acc + b[0];
}

inline void head_forward(float* out, const float* lnf, const float* w, const float* b, const std::int32_t* src,
                         const std::int32_t* dst, std::size_t M, std::size_t C) {
  if (M == 0) return;
  head_forward_kernel<<<ceil_div(M * warp_size, 256), 256>>>(out, lnf, w, b, src, dst, M, C);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

// dlnf[src[m]] += g_m · w, g_m = dout[dst[m]]. The src rows are distinct.
static __global__ void head_backward_input_kernel(float* dlnf, const float* w, const float* dout,
                                                  const std::int32_t* src, const std::int32_t* dst, std::size_t M,
                                                  std::size_t C) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= M * C) return;
  const std::size_t m = i / C, c = i % C;
  dlnf[std::size_t(src[m]) * C + c] += dout[dst[m]] * w[c];
}

struct head_dweight {  // column_reduce functor over the M selected rows: g_m · lnf[src[m], c]
  const float *lnf, *dout;
  const std::int32_t *src, *dst;
  std::size_t C;
  __device__ float operator()(std::size_t m, std::size_t c) const {
    return dout[dst[m]] * lnf[std::size_t(src[m]) * C + c];
  }
};
struct head_dbias {  // column_reduce functor, one column: g_m
  const float* dout;
  const std::int32_t* dst;
  __device__ float operator()(std::size_t m, std::size_t) const { return dout[dst[m]]; }
};

// dlnf [N, C] += (rows src); dw [C] += Σ_m g_m lnf[src[m]]; db [1] += Σ_m g_m. scratch: column_scratch(M, C).
inline void head_backward(float* dlnf, float* dw, float* db, float* scratch, const float* lnf, const float* w,
                          const float* dout, const std::int32_t* src, const std::int32_t* dst, std::size_t M,
                          std::size_t C) {
  if (M == 0) return;
  head_backward_input_kernel<<<ceil_div(M * C, 256), 256>>>(dlnf, w, dout, src, dst, M, C);
  RLHF_CUDA_CHECK(cudaGetLastError());
  column_reduce(dw, scratch, M, C, head_dweight{lnf, dout, src, dst, C}, true);
  column_reduce(db, scratch, M, 1, head_dbias{dout, dst}, true);
}

}  // namespace rlhf::gpt_cuda
