#pragma once
// Token-level unlikelihood training: raise the likelihood of the chosen response's tokens and lower the
// probability of the rejected response's tokens, on per-token log-probabilities [B, T] with 0/1 masks.
//
//   chosen row b:    ℓ⁺_b = −Σ_t m⁺[b,t] log p⁺[b,t]
//   rejected row b:  ℓ⁻_b = −Σ_t m⁻[b,t] log(1 − p⁻[b,t])      log(1 − e^x) = math::log1m_exp(x)
//   (each divided by its row's token count when reduction = mean)
//   loss = mean_b ℓ⁺_b + α · mean_b ℓ⁻_b
//
// As p⁻ → 1, −log(1 − p⁻) → ∞. Log-probs above −ε (ε = unlikelihood_epsilon = 1e-6, for float and
// double alike) are read as −ε: such a token adds at most −log(1 − e^{−ε}) ≈ 13.8 to ℓ⁻, and its
// gradient is the one at −ε (≈ 1e6, not zero), so a token the model is sure of is still pushed down.
// docs/losses/unlikelihood.md has the settings.
#include <cmath>
#include <cstddef>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/core/validate.hpp"
#include "rlhf/losses/sft.hpp"

namespace rlhf {

// Rejected-token log-probs above −unlikelihood_epsilon are clamped to it (see the header comment).
inline constexpr double unlikelihood_epsilon = 1e-6;

struct UnlikelihoodConfig {
  double alpha = 1.0;                              // α ≥ 0: weight of the rejected (unlikelihood) term
  Reduction reduction = Reduction::sum;  // per row: sum of token terms, or their mean
};

template <class Matrix>
struct UnlikelihoodResult {
  double loss = 0;              // nll/chosen + α · unlikelihood/rejected
  Matrix d_chosen, d_rejected;  // [B⁺, T⁺] and [B⁻, T⁻]: d loss / d log p; zero where masked
  Metrics metrics;              // nll/chosen = mean_b ℓ⁺_b, unlikelihood/rejected = mean_b ℓ⁻_b (before α)
};

// −log(1 − p) of one rejected token from x = log p, and its derivative e^x / (1 − e^x) = 1 / expm1(−x).
struct UnlikelihoodToken {
  template <class T>
  RLHF_HOST_DEVICE TokenTerm<T> operator()(T logp) const {
    using std::expm1;
    const T cap = T(-unlikelihood_epsilon);
    const T x = logp < cap ? logp : cap;
    return {-math::log1m_exp(x), T(1) / expm1(-x)};  // expm1(−x) = inf for x ≪ 0: gradient 0, not NaN
  }
};

// chosen_logps/chosen_mask: [B⁺, T⁺]; rejected_logps/rejected_mask: [B⁻, T⁻]. The two batches need not
// pair up: B⁺ ≠ B⁻ and T⁺ ≠ T⁻ are fine.
template <class Matrix, class Be = backend_of_t<Matrix>>
UnlikelihoodResult<Matrix> unlikelihood_loss(const Matrix& chosen_logps, const Matrix& chosen_mask,
                                             const Matrix& rejected_logps, const Matrix& rejected_mask,
                                             const UnlikelihoodConfig& config = {}) {
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::unlikelihood_loss";
  if (!(config.alpha >= 0.0) || !std::isfinite(config.alpha))
    fail<config_error>(fn, ": alpha must be finite and >= 0 (got ", config.alpha, ")");
  detail::tok::require_reduction(fn, config.reduction);
  detail::tok::validate_masked_tokens<Be>(fn, "chosen_logps", chosen_logps, "chosen_mask", chosen_mask);
  detail::tok::validate_masked_tokens<Be>(fn, "rejected_logps", rejected_logps, "rejected_mask", rejected_mask);

  const double chosen_rows = static_cast<double>(Be::rows(chosen_logps));
  const double rejected_rows = static_cast<double>(Be::rows(rejected_logps));
  UnlikelihoodResult<Matrix> out;
  const MaskedRowLoss w = detail::tok::masked_rows<Be>(NllToken{}, chosen_logps, chosen_mask, config.reduction,
                                                       T(1) / T(chosen_rows), out.d_chosen);
  const MaskedRowLoss l =
      detail::tok::masked_rows<Be>(UnlikelihoodToken{}, rejected_logps, rejected_mask, config.reduction,
                                   T(config.alpha) / T(rejected_rows), out.d_rejected);
  const double nll = w.loss / chosen_rows, unlikelihood = l.loss / rejected_rows;
  out.loss = nll + static_cast<double>(config.alpha) * unlikelihood;
  out.metrics.set("nll/chosen", nll);
  out.metrics.set("unlikelihood/rejected", unlikelihood);
  return out;
}

}  // namespace rlhf
