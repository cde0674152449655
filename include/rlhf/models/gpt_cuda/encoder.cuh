#pragma once
// Token + position embedding. CPU reference: gpt::encoder_forward / gpt::encoder_backward (layers.hpp).
//
// The backward is deterministic without atomics: the host groups the rows by token id (and by position)
// once per batch (RowBuckets), and one block per distinct id sums its rows in row order.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "rlhf/models/gpt_cuda/common.cuh"

namespace rlhf::gpt_cuda {

// out [N, C] = wte[tokens[n]] + wpe[pos[n]]
static __global__ void encoder_forward_kernel(float* out, const std::int32_t* tokens, const std::int32_t* pos,
                                              const float* wte, const float* wpe, std::size_t N, std::size_t C) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N * C) return;
  const std::size_t n = i / C, c = i % C;
  out[i] = wte[std::size_t(tokens[n]) * C + c] + wpe[std::size_t(pos[n]) * C + c];
}

inline void encoder_forward(float* out, const std::int32_t* tokens, const std::int32_t* pos, const float* wte,
                            const float* wpe, std::size_t N, std::size_t C) {
  if (N * C == 0) return;
  encoder_forward_kernel<<<ceil_div(N * C, 256), 256>>>(out, tokens, pos, wte, wpe, N, C);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

// Rows grouped by a key (a token id or a position), host side: bucket u holds key keys[u] and the rows
// rows[start[u] … start[u+1]), ascending. Only rows with real[n] = 1 are listed.
struct RowBuckets {
  std::vector<std::int32_t> keys, start, rows;

  static RowBuckets of(const std::int32_t* key, const std::uint8_t* real, std::size_t N) {
    std::vector<std::int32_t> order;
    order.reserve(N);
    for (std::size_t n = 0; n < N; ++n)
      if (real[n]) order.push_back(static_cast<std::int32_t>(n));
    std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) { return key[a] < key[b]; });
    RowBuckets out;
    out.rows = order;
    for (std::size_t i = 0; i < order.size(); ++i)
      if (i == 0 || key[order[i]] != key[order[i - 1]]) {
        out.keys.push_back(key[order[i]]);
        out.start.push_back(static_cast<std::int32_t>(i));
      }
    out.start.push_back(static_cast<std::int32_t>(order.size()));
    return out;
  }
  std::size_t size() const { return keys.size(); }
};

// Device copies of a RowBuckets (grow-only).
struct DeviceBuckets {
  device_buffer<std::int32_t> keys, start, rows;
  std::size_t count = 0;
  void upload(const RowBuckets& b) {
    count = b.size();
    keys.reserve(b.keys.size()), start.reserve(b.start.size()), rows.reserve(std::max<std::size_t>(b.rows.size(), 1));
    keys.upload(b.keys.data(), b.keys.size());
    start.upload(b.start.data(), b.start.size());
    rows.upload(b.rows.data(), b.rows.size());
  }
};

// dtable[keys[u]] += Σ_{rows r of bucket u, in order} dout[r]. grid (buckets, ceil(C / 256)).
static __global__ void bucket_sum_kernel(float* dtable, const float* dout, const std::int32_t* keys,
                                         const std::int32_t* start, const std::int32_t* rows, std::size_t C) {
  const std::size_t u = blockIdx.x, c = std::size_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float acc = 0.0f;
  for (std::int32_t r = start[u]; r < start[u + 1]; ++r) acc += dout[std::size_t(rows[r]) * C + c];
  dtable[std::size_t(keys[u]) * C + c] += acc;
}

inline void bucket_sum(float* dtable, const float* dout, const DeviceBuckets& b, std::size_t C) {
  if (b.count == 0 || C == 0) return;
  bucket_sum_kernel<<<dim3(unsigned(b.count), ceil_div(C, 256)), 256>>>(dtable, dout, b.keys.data(), b.start.data(),
                                                                       b.rows.data(), C);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

// dwte[tokens[n]] += dout[n], dwpe[pos[n]] += dout[n] for the real rows (padding gets no gradient).
inline void encoder_backward(float* dwte, float* dwpe, const float* dout, const DeviceBuckets& by_token,
                             const DeviceBuckets& by_position, std::size_t C) {
  bucket_sum(dwte, dout, by_token, C);
  bucket_sum(dwpe, dout, by_position, C);
}

}  // namespace rlhf::gpt_cuda
