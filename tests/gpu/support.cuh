#pragma once
// Shared by the CUDA GPT tests: host ↔ device copies, random inputs, and the tolerances of the error measures
// (compare.hpp; docs/models/gpt_cuda.md explains the numbers).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "compare.hpp"  // rel_err, close_scalar, update_error: fail on NaN / Inf
#include "rlhf/core/rng.hpp"
#include "rlhf/models/gpt_cuda/common.cuh"

namespace rlhf::gpu_testing {

using gpt_cuda::device_buffer;

// Tolerances, relative to the largest magnitude of the reference tensor (rel_err below).
inline constexpr double tol_elementwise = 2e-6;  // one kernel, float32, no GEMM: a few ulp
inline constexpr double tol_gelu_backward = 1e-5;  // 1 - tanh^2 cancels (kernels.cu, the GELU test)
inline constexpr double tol_fp32 = 2e-5;         // GEMMs in plain float32 (GemmPrecision::fp32)
inline constexpr double tol_tf32 = 1e-2;         // GEMMs on TF32 tensor cores (2^-11 per input rounding)
inline constexpr double tol_model_fp32 = 1e-4;   // a whole model (several layers) in fp32
inline constexpr double tol_model_tf32 = 3e-2;   // a whole model in tf32

template <class T>
device_buffer<T> to_device(const std::vector<T>& h) {
  device_buffer<T> d(std::max<std::size_t>(h.size(), 1));
  d.upload(h.data(), h.size());
  return d;
}

template <class T>
std::vector<T> to_host(const device_buffer<T>& d, std::size_t n) {
  std::vector<T> h(n);
  d.download(h.data(), n);
  return h;
}

inline std::vector<float> uniform(std::size_t n, double lo, double hi, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = float(lo + (hi - lo) * rng.uniform());
  return v;
}

}  // namespace rlhf::gpu_testing
