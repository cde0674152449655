#pragma once
// Global gradient-norm clipping: if ‖g‖₂ over all parameters exceeds max_norm, scale g by max_norm / ‖g‖₂.
#include <cmath>
#include <cstddef>
#include <span>

#include "rlhf/core/error.hpp"

namespace rlhf {

// Returns the norm before clipping (accumulated in double). Throws if the gradient holds NaN or Inf,
// which clipping would otherwise spread to every parameter.
template <class T>
double clip_gradient_norm(std::span<T> grads, double max_norm) {
  constexpr const char* fn = "rlhf::clip_gradient_norm";
  require_positive(fn, "max_norm", max_norm);
  double sum_sq = 0.0;
  for (const T g : grads) sum_sq += double(g) * double(g);
  const double norm = std::sqrt(sum_sq);
  if (!std::isfinite(norm)) fail<value_error>(fn, ": the gradient holds NaN or Inf (norm ", norm, ")");
  if (norm > max_norm) {
    const T scale = static_cast<T>(max_norm / norm);
    for (T& g : grads) g *= scale;
  }
  return norm;
}

}  // namespace rlhf
