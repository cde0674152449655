#pragma once
// Global gradient-norm clipping: if ‖g‖₂ over all parameters exceeds max_norm, scale g by max_norm / ‖g‖₂.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string_view>

#include "rlhf/core/error.hpp"

namespace rlhf {

// The global L2 norm of a gradient (accumulated in double, so it overflows only past ~1e154 per element).
// Throws rlhf::value_error naming `arg` when it is not finite: an optimizer checks this before it changes
// anything, so a NaN or Inf gradient never reaches the parameters.
template <class T>
double require_finite_gradient(std::string_view fn, std::string_view arg, std::span<const T> grads) {
  // Eight partial sums, not one: a single chain of dependent double additions ran at one element per addition's
  // latency (a tenth of a 135M-parameter step); eight independent ones keep the adders busy.
  constexpr std::size_t lanes = 8;
  double partial[lanes] = {};
  const std::size_t whole = grads.size() / lanes * lanes;
  for (std::size_t i = 0; i < whole; i += lanes)
    for (std::size_t j = 0; j < lanes; ++j) partial[j] += double(grads[i + j]) * double(grads[i + j]);
  for (std::size_t i = whole; i < grads.size(); ++i) partial[i - whole] += double(grads[i]) * double(grads[i]);
  double sum_sq = 0.0;
  for (const double p : partial) sum_sq += p;
  const double norm = std::sqrt(sum_sq);
  if (std::isfinite(norm)) return norm;
  std::size_t bad = 0, first = grads.size();
  for (std::size_t i = 0; i < grads.size(); ++i)
    if (!std::isfinite(double(grads[i]))) bad++, first = std::min(first, i);
  fail<value_error>(fn, ": '", arg, "' has a non-finite global norm (", norm, "): ", bad, " NaN or Inf value(s) among ",
                    grads.size(), ", the first at index ", first, "; the step is refused and nothing is changed");
}

// Returns the norm before clipping (accumulated in double). Throws if the gradient holds NaN or Inf,
// which clipping would otherwise spread to every parameter.
template <class T>
double clip_gradient_norm(std::span<T> grads, double max_norm) {
  constexpr const char* fn = "rlhf::clip_gradient_norm";
  require_positive(fn, "max_norm", max_norm);
  const double norm = require_finite_gradient(fn, "grads", std::span<const T>(grads));
  if (norm > max_norm) {
    const T scale = static_cast<T>(max_norm / norm);
    for (T& g : grads) g *= scale;
  }
  return norm;
}

}  // namespace rlhf
