#pragma once
// Rotary position embedding on the GPU, HF's rotate-half layout: the CPU model's cos/sin table
// (llama::RopeTable<float>, models/llama/rope.hpp: rope_theta, rope_scaling linear/llama3, head_dim; angles in
// double, rounded once to float) copied to the device, so both models rotate by the very same numbers. CPU
// reference: llama::rope_apply.
//   out[i]        = x[i] cos − x[i + hd/2] sin
//   out[i + hd/2] = x[i + hd/2] cos + x[i] sin          (inverse, the backward: sin → −sin)
#include <cstddef>
#include <cstdint>

#include "rlhf/models/gpt_cuda/common.cuh"
#include "rlhf/models/llama/config.hpp"
#include "rlhf/models/llama/rope.hpp"

namespace rlhf::llama_cuda {

// x [N, heads, hd] rotated in place, row n at position pos[n]; cos, sin [positions, hd / 2]. One thread per pair.
static __global__ void rope_kernel(float* x, const std::int32_t* pos, const float* cos, const float* sin,
                                   std::size_t N, std::size_t heads, std::size_t half, bool inverse) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;  // over [N, heads, half]
  if (i >= N * heads * half) return;
  const std::size_t k = i % half, nh = i / half, n = nh / heads;
  float* v = x + nh * 2 * half;
  const std::size_t at = std::size_t(pos[n]) * half + k;
  const float c = cos[at], s = inverse ? -sin[at] : sin[at];
  const float a = v[k], b = v[k + half];
  v[k] = a * c - b * s;
  v[k + half] = b * c + a * s;
}

// The host table and its device copy; grows on demand (ensure), never shrinks.
class RopeCache {
 public:
  explicit RopeCache(const LlamaConfig& c) : table_(c) {}

  // Makes positions 0 … positions − 1 available on the device (one upload when the table grows).
  void ensure(std::size_t positions) {
    if (positions <= rows_) return;
    table_.ensure(positions);
    const std::size_t n = positions * table_.half();
    cos_.reserve(n), sin_.reserve(n);
    cos_.upload(table_.cos(0), n);
    sin_.upload(table_.sin(0), n);
    rows_ = positions;
  }
  std::size_t half() const { return table_.half(); }
  const float* cos() const { return cos_.data(); }  // [positions, hd / 2], device
  const float* sin() const { return sin_.data(); }

 private:
  llama::RopeTable<float> table_;
  gpt_cuda::device_buffer<float> cos_, sin_;
  std::size_t rows_ = 0;
};

// x [N, heads, hd] in place; every pos[n] below the positions ensured.
inline void rope_apply(float* x, const std::int32_t* pos, const RopeCache& rope, std::size_t N, std::size_t heads,
                       bool inverse) {
  const std::size_t n = N * heads * rope.half();
  if (n == 0) return;
  rope_kernel<<<gpt_cuda::ceil_div(n, 256), 256>>>(x, pos, rope.cos(), rope.sin(), N, heads, rope.half(), inverse);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

}  // namespace rlhf::llama_cuda
