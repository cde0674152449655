#pragma once
// Per-token log-probs from the LM head's logits: the fused log-softmax + gather, one block per scored row.
// The forward reads each row of logits once (an online max and sum of exponentials per thread, merged over
// the block) and never writes log-softmax; the backward overwrites the row with d logits in place.
// CPU reference: row_logprob / row_logprob_backward (models/logprob.hpp), which the CPU GPT runs.
//
// Rows: the model computes logits only for the M rows that score a response token; row m scores token
// targets[m] and its log-prob lands at position dst[m] (= b·T + t) of the [B, T] output.
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "rlhf/models/gpt_cuda/common.cuh"

namespace rlhf::gpt_cuda {

inline constexpr unsigned logprob_threads = 512;

// out [M, C] = in[src[m]] (the final hidden states of the scoring rows)
static __global__ void gather_rows_kernel(float* out, const float* in, const std::int32_t* src, std::size_t M,
                                          std::size_t C) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < M * C) out[i] = in[std::size_t(src[i / C]) * C + i % C];
}

// out[src[m]] += rows[m]. The src rows are distinct (each response token is scored from a different
// position), so no two threads write one element.
static __global__ void scatter_add_rows_kernel(float* out, const float* rows, const std::int32_t* src, std::size_t M,
                                               std::size_t C) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < M * C) out[std::size_t(src[i / C]) * C + i % C] += rows[i];
}

inline void gather_rows(float* out, const float* in, const std::int32_t* src, std::size_t M, std::size_t C) {
  if (M * C == 0) return;
  gather_rows_kernel<<<ceil_div(M * C, 256), 256>>>(out, in, src, M, C);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

inline void scatter_add_rows(float* out, const float* rows, const std::int32_t* src, std::size_t M, std::size_t C) {
  if (M * C == 0) return;
  scatter_add_rows_kernel<<<ceil_div(M * C, 256), 256>>>(out, rows, src, M, C);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

// out[dst[m]] = log softmax(logits[m])[targets[m]]; row_max, row_log_sum [M] kept for the backward. Row m of
// logits starts at m · ld (ld ≥ V: the model pads its rows, model.cuh's padded_vocab); the padding is not read.
static __global__ void __launch_bounds__(logprob_threads)
    logprob_forward_kernel(float* out, float* row_max, float* row_log_sum, const float* logits,
                           const std::int32_t* targets, const std::int32_t* dst, std::size_t V, std::size_t ld) {
  const std::size_t m = blockIdx.x;
  const float* x = logits + m * ld;
  float mx = -INFINITY, s = 0.0f;  // this thread's running max and Σ exp(x − mx)
  for (std::size_t v = threadIdx.x; v < V; v += blockDim.x) {
    const float xv = x[v];
    if (xv == -INFINITY) continue;  // probability 0 (and −∞ − −∞ would be NaN)
    if (xv > mx) {
      s = s * expf(mx - xv) + 1.0f;
      mx = xv;
    } else {
      s += expf(xv - mx);  // NaN propagates through here
    }
  }
  const float M = block_max(mx);
  s = mx == -INFINITY ? (s != s ? s : 0.0f) : s * expf(mx - M);
  const float log_sum = logf(block_sum(s));
  if (threadIdx.x == 0) {
    out[dst[m]] = (x[targets[m]] - M) - log_sum;
    row_max[m] = M;
    row_log_sum[m] = log_sum;
  }
}

// logits[m] ← d logits = g (1[v = target] − softmax(logits[m])), g = d_logps[dst[m]]: in place; the ld − V
// padding columns are set to 0 (the LM head's backward products run over them).
static __global__ void __launch_bounds__(logprob_threads)
    logprob_backward_kernel(float* logits, const std::int32_t* targets, const std::int32_t* dst, const float* d_logps,
                            const float* row_max, const float* row_log_sum, std::size_t V, std::size_t ld) {
  const std::size_t m = blockIdx.x;
  float* x = logits + m * ld;
  const float g = d_logps[dst[m]], mx = row_max[m];
  const float scale = -g * expf(-row_log_sum[m]);  // −g / Σ exp(x − max)
  const std::int32_t target = targets[m];
  for (std::size_t v = threadIdx.x; v < V; v += blockDim.x) {
    const float d = scale * expf(x[v] - mx);
    x[v] = v == std::size_t(target) ? d + g : d;
  }
  for (std::size_t v = V + threadIdx.x; v < ld; v += blockDim.x) x[v] = 0.0f;  // padding: no gradient (unread)
}

inline void logprob_forward(float* out, float* row_max, float* row_log_sum, const float* logits,
                            const std::int32_t* targets, const std::int32_t* dst, std::size_t M, std::size_t V,
                            std::size_t ld) {
  if (M == 0) return;
  logprob_forward_kernel<<<unsigned(M), logprob_threads>>>(out, row_max, row_log_sum, logits, targets, dst, V, ld);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

inline void logprob_backward(float* logits, const std::int32_t* targets, const std::int32_t* dst, const float* d_logps,
                             const float* row_max, const float* row_log_sum, std::size_t M, std::size_t V,
                             std::size_t ld) {
  if (M == 0) return;
  logprob_backward_kernel<<<unsigned(M), logprob_threads>>>(logits, targets, dst, d_logps, row_max, row_log_sum, V,
                                                            ld);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

// *flag |= 1 when some values[dst[m]] (m < M) is NaN or ±Inf. The caller zeroes flag first.
static __global__ void any_non_finite_kernel(int* flag, const float* values, const std::int32_t* dst, std::size_t M) {
  const std::size_t m = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (m < M && !isfinite(values[dst[m]])) atomicOr(flag, 1);
}

// Whether values[dst[m]] is finite for every m < M (one 4-byte copy back; syncs). flag: one device int.
inline bool all_finite_at(int* flag, const float* values, const std::int32_t* dst, std::size_t M) {
  RLHF_CUDA_CHECK(cudaMemset(flag, 0, sizeof(int)));
  if (M) {
    any_non_finite_kernel<<<ceil_div(M, 256), 256>>>(flag, values, dst, M);
    RLHF_CUDA_CHECK(cudaGetLastError());
  }
  int host = 0;
  RLHF_CUDA_CHECK(cudaMemcpy(&host, flag, sizeof(int), cudaMemcpyDeviceToHost));
  return host == 0;
}

}  // namespace rlhf::gpt_cuda
