#pragma once
// LayerNorm, one warp per row. CPU reference: gpt::layernorm_forward / gpt::layernorm_backward (layers.hpp),
// with the same conventions: dinp accumulates (+=), as do dweight and dbias.
#include <cstddef>

#include "rlhf/models/gpt_cuda/common.cuh"

namespace rlhf::gpt_cuda {

// out [N, C] = (inp − mean) · rstd · weight + bias; mean, rstd [N]
static __global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp,
                                                const float* weight, const float* bias, std::size_t N, std::size_t C,
                                                float eps) {
  const std::size_t n = (std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / warp_size;
  const unsigned lane = threadIdx.x % warp_size;
  if (n >= N) return;  // whole warps leave together
  const float* x = inp + n * C;
  float sum = 0.0f;
  for (std::size_t c = lane; c < C; c += warp_size) sum += x[c];
  const float m = warp_sum(sum) / float(C);
  float sq = 0.0f;
  for (std::size_t c = lane; c < C; c += warp_size) sq += (x[c] - m) * (x[c] - m);
  const float s = 1.0f / sqrtf(warp_sum(sq) / float(C) + eps);
  float* y = out + n * C;
  for (std::size_t c = lane; c < C; c += warp_size) y[c] = (x[c] - m) * s * weight[c] + bias[c];
  if (lane == 0) mean[n] = m, rstd[n] = s;
}

inline void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                              const float* bias, std::size_t N, std::size_t C, float eps) {
  if (N == 0) return;
  layernorm_forward_kernel<<<ceil_div(N * warp_size, 256), 256>>>(out, mean, rstd, inp, weight, bias, N, C, eps);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

// dinp [N, C] += s (dy w − mean(dy w) − norm · mean(dy w · norm)), norm = (x − mean) s
static __global__ void layernorm_backward_input_kernel(float* dinp, const float* dout, const float* inp,
                                                       const float* weight, const float* mean, const float* rstd,
                                                       std::size_t N, std::size_t C) {
  const std::size_t n = (std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / warp_size;
  const unsigned lane = threadIdx.x % warp_size;
  if (n >= N) return;
  const float* x = inp + n * C;
  const float* dy = dout + n * C;
  const float m = mean[n], s = rstd[n];
  float a = 0.0f, b = 0.0f;
  for (std::size_t c = lane; c < C; c += warp_size) {
    const float g = dy[c] * weight[c];
    a += g;
    b += g * (x[c] - m);
  }
  const float dnorm_mean = warp_sum(a) / float(C);
  const float dnorm_norm_mean = warp_sum(b) * s / float(C);
  float* dx = dinp + n * C;
  for (std::size_t c = lane; c < C; c += warp_size)
    dx[c] += s * (dy[c] * weight[c] - dnorm_mean - (x[c] - m) * s * dnorm_norm_mean);
}

struct layernorm_dweight {  // column_reduce functor: dy · norm
  const float *dout, *inp, *mean, *rstd;
  std::size_t C;
  __device__ float operator()(std::size_t n, std::size_t c) const {
    return dout[n * C + c] * (inp[n * C + c] - mean[n]) * rstd[n];
  }
};

// scratch: column_scratch(N, C) floats.
inline void layernorm_backward(float* dinp, float* dweight, float* dbias, float* scratch, const float* dout,
                               const float* inp, const float* weight, const float* mean, const float* rstd,
                               std::size_t N, std::size_t C) {
  if (N == 0) return;
  layernorm_backward_input_kernel<<<ceil_div(N * warp_size, 256), 256>>>(dinp, dout, inp, weight, mean, rstd, N, C);
  RLHF_CUDA_CHECK(cudaGetLastError());
  column_reduce(dweight, scratch, N, C, layernorm_dweight{dout, inp, mean, rstd, C}, true);
  column_reduce(dbias, scratch, N, C, entries{dout, C}, true);
}

}  // namespace rlhf::gpt_cuda
