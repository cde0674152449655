#pragma once
// Token-level unlikelihood training: raise the likelihood of the chosen response's tokens and lower the
// probability of the rejected response's tokens, on per-token log-probabilities [B, T] with 0/1 masks.
//
//   chosen row b:    ℓ⁺_b = −Σ_t m⁺[b,t] log p⁺[b,t]
//   rejected row b:  ℓ⁻_b = −Σ_t m⁻[b,t] log(1 − p⁻[b,t])      log(1 − e^x) = math::log1m_exp(x)
//   loss = mean_b ℓ⁺_b + α · mean_b ℓ⁻_b           (aggregation = sequence_sum, L = 1: the default)
//   each half aggregated on its own: sequence_mean, token_mean and token_sum as SFT's (sft.hpp), each row's
//   terms divided by its token count under sequence_mean
//
// As p⁻ → 1, −log(1 − p⁻) → ∞. Two ways to keep it finite (form):
//   exact: log(1 − e^x) = math::log1m_exp(x), with log-probs above −ε (ε = epsilon, 1e-6 by default, float and
//          double alike) read as −ε: at most −log(1 − e^{−ε}) ≈ 13.8 per token, and the gradient is the one at
//          −ε (≈ 1e6, not zero), so a token the model is sure of is still pushed down.
//   clamp: fairseq's candidate-penalty criterion, −log(max(1 − e^x, clamp_min)) with 1 − e^x computed as it
//          reads, clamp_min = 1e-5; the gradient is 0 where the clamp bites (torch.clamp's).
// docs/losses/unlikelihood.md has the settings and the peers' conventions.
#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/metric_names.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/core/reduction.hpp"
#include "rlhf/core/validate.hpp"
#include "rlhf/losses/sft.hpp"

namespace rlhf {

// The default ε of the exact form: rejected-token log-probs above −ε are read as −ε (see the header comment).
inline constexpr double unlikelihood_epsilon = 1e-6;

enum class UnlikelihoodForm {
  exact,  // −log1m_exp(min(x, −ε)): accurate for every p, gradient kept above the cut
  clamp,  // −log(clamp(1 − e^x, min = clamp_min)): fairseq's candidate-penalty criterion, gradient 0 when clamped
};

struct UnlikelihoodConfig {
  double alpha = 1.0;                    // α ≥ 0: weight of the rejected (unlikelihood) term
  // each half over its own rows (or tokens): sequence_sum (L = 1), sequence_mean, token_mean or token_sum
  Aggregation aggregation = Aggregation::sequence_sum;
  UnlikelihoodForm form = UnlikelihoodForm::exact;
  double epsilon = unlikelihood_epsilon;  // exact: the cut ε > 0; log-probs above −ε are read as −ε
  double clamp_min = 1e-5;                // clamp: the smallest 1 − p, in (0, 1)
};

template <class Matrix>
struct UnlikelihoodResult {
  double loss = 0;                        // nll/chosen + α · unlikelihood/rejected
  std::vector<double> chosen_losses;      // [B⁺] ℓ⁺_b, on the host in double
  std::vector<double> rejected_losses;    // [B⁻] ℓ⁻_b (before α)
  Matrix d_chosen, d_rejected;            // [B⁺, T⁺] and [B⁻, T⁻]: d loss / d log p; zero where masked
  Metrics metrics;  // nll/chosen, unlikelihood/rejected: each half aggregated over the batch (before α)
};

// −log(1 − p) of one rejected token from x = log p, and its derivative e^x / (1 − e^x).
struct UnlikelihoodToken {
  UnlikelihoodForm form;
  double epsilon, clamp_min;

  template <class T>
  RLHF_HOST_DEVICE TokenTerm<T> operator()(T logp) const {
    using std::exp;
    using std::expm1;
    using std::log;
    if (form == UnlikelihoodForm::clamp) {  // as fairseq writes it: 1 − exp, then the clamp
      const T q = T(1) - exp(logp);
      if (q < T(clamp_min)) return {-log(T(clamp_min)), T(0)};
      return {-log(q), exp(logp) / q};
    }
    const T cap = T(-epsilon);
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
  if (config.form != UnlikelihoodForm::exact && config.form != UnlikelihoodForm::clamp)
    fail<config_error>(fn, ": form must be exact or clamp (got ", static_cast<int>(config.form), ")");
  if (!(config.epsilon > 0.0) || !(config.epsilon < 1.0))
    fail<config_error>(fn, ": epsilon must be in (0, 1) (got ", config.epsilon, ")");
  if (!(config.clamp_min > 0.0) || !(config.clamp_min < 1.0))
    fail<config_error>(fn, ": clamp_min must be in (0, 1) (got ", config.clamp_min, ")");
  if (!(T(config.epsilon) > T(0)) || !(T(config.clamp_min) > T(0)))
    fail<config_error>(fn, ": epsilon and clamp_min must not round to 0 in the scalar type");
  const Aggregation how = config.aggregation;
  detail::tok::require_aggregation(fn, how);
  detail::tok::validate_masked_tokens<Be>(fn, "chosen_logps", chosen_logps, "chosen_mask", chosen_mask, how);
  detail::tok::validate_masked_tokens<Be>(fn, "rejected_logps", rejected_logps, "rejected_mask", rejected_mask, how);

  UnlikelihoodResult<Matrix> out;
  detail::tok::MaskedBatch w =
      detail::tok::masked_rows<Be>(NllToken{}, chosen_logps, chosen_mask, how, 1.0, out.d_chosen);
  detail::tok::MaskedBatch l =
      detail::tok::masked_rows<Be>(UnlikelihoodToken{config.form, config.epsilon, config.clamp_min}, rejected_logps,
                                   rejected_mask, how, config.alpha, out.d_rejected);
  out.loss = w.loss + config.alpha * l.loss;
  out.chosen_losses = std::move(w.rows);
  out.rejected_losses = std::move(l.rows);
  out.metrics.set(metric::nll_chosen, w.loss);
  out.metrics.set(metric::unlikelihood_rejected, l.loss);
  return out;
}

}  // namespace rlhf
