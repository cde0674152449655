#pragma once
// The error measures of the CUDA GPT tests, in plain C++ so that g++ checks them too (tests/gpu/compare.cpp, the
// ctest gpu_compare). Each one is +infinity as soon as the tensor under test holds a NaN or an infinity the
// reference does not have at that place, so every `measure <= tolerance` check fails on it. (A plain
// std::max(diff, NaN) keeps diff: an all-NaN GPU tensor would score 0 and pass.)
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>

namespace rlhf::gpu_testing {

inline constexpr double not_close = std::numeric_limits<double>::infinity();

// max |a − b| / max |b| over b's elements (0 when both are all zero): the error relative to the tensor's scale.
// Equal values, equal infinities included, match; a NaN on either side, an infinity on one side only, or a shorter
// `a` gives +infinity.
template <class A, class B>
double rel_err(const A& a, const B& b) {
  if (a.size() < b.size()) return not_close;
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    const double x = double(a[i]), y = double(b[i]);
    if (x == y) {  // false for NaN
      if (std::isfinite(y)) scale = std::max(scale, std::abs(y));
      continue;
    }
    if (!std::isfinite(x) || !std::isfinite(y)) return not_close;
    diff = std::max(diff, std::abs(x - y));
    scale = std::max(scale, std::abs(y));
  }
  return scale == 0 ? diff : diff / scale;
}

// |got − want| <= tol · max(1, |want|), false for any non-finite value (a NaN compares false either way round).
inline bool close_scalar(double got, double want, double tol) {
  return std::isfinite(got) && std::isfinite(want) && std::abs(got - want) <= tol * std::max(1.0, std::abs(want));
}

// ‖Δ_gpu − Δ_cpu‖ / ‖Δ_cpu‖ for the parameter updates of one step (Δ = after − before). +infinity when any value
// is not finite, when the sizes differ, or when the CPU update is zero and the GPU one is not.
inline double update_error(std::span<const float> before, std::span<const float> gpu_after,
                           std::span<const float> cpu_after) {
  if (gpu_after.size() != before.size() || cpu_after.size() != before.size()) return not_close;
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < before.size(); ++i) {
    if (!std::isfinite(before[i]) || !std::isfinite(gpu_after[i]) || !std::isfinite(cpu_after[i])) return not_close;
    const double dg = double(gpu_after[i]) - before[i], dc = double(cpu_after[i]) - before[i];
    diff += (dg - dc) * (dg - dc);
    norm += dc * dc;
  }
  if (norm == 0) return diff == 0 ? 0.0 : not_close;
  return std::sqrt(diff / norm);
}

}  // namespace rlhf::gpu_testing
