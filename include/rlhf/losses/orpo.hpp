#pragma once
// Odds Ratio Preference Optimization: an NLL term on the chosen responses plus a pairwise term on the odds of the
// two responses' mean token probabilities, with no reference model, on per-sequence log-probabilities.
//
//   ℓ_w = log π(y_w|x) / max(1, |y_w|),  ℓ_l likewise           (mean token log-prob)
//   log odds(ℓ) = ℓ − log(1 − e^ℓ),  with ℓ clamped to ≤ max_mean_logp (a probability of 1 has infinite odds)
//   Δ   = log odds(ℓ_w) − log odds(ℓ_l)
//   loss = −Σ_b log π(y_w) / max(1, Σ_b |y_w|)  −  λ (1/B) Σ_b log σ(Δ_b)
//          (the chosen tokens' mean NLL over the batch: TRL ORPOTrainer's cross-entropy)
// docs/losses/orpo.md has the settings, the paper and TRL's convention.
#include <cmath>
#include <cstddef>
#include <limits>
#include <utility>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/elements.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/metric_names.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/core/validate.hpp"
#include "rlhf/losses/batch_mean.hpp"

namespace rlhf {

struct OrpoConfig {
  double lambda = 0.1;           // λ: weight of the odds-ratio term (TRL's beta); rewards/* are λ ℓ
  double max_mean_logp = -1e-6;  // ℓ above it is read as it (the odds term has no gradient there): must be < 0
};

// Per-pair inputs, each [B]. Lengths are required: ℓ is a mean over the response's tokens.
template <class Vector>
struct OrpoPairs {
  Vector policy_chosen, policy_rejected;  // Σ log π over response tokens
  Vector chosen_length, rejected_length;  // response token counts (≥ 0; an empty response counts as 1)
};

template <class Vector>
struct OrpoResult {
  double loss = 0;  // NLL term + λ · mean odds-ratio term
  Vector losses;    // [B] per pair: −log π(y_w) / (mean chosen length) − λ log σ(Δ); their mean is `loss`
  // d loss / d input, [B] each
  Vector d_policy_chosen, d_policy_rejected;
  Metrics metrics;  // nll_loss, log_odds_ratio, log_odds_chosen, rewards/*, logps/{chosen,rejected} (of ℓ)
};

// One pair's loss and gradients: the only place the formulas live, shared by every backend. Computed in the wide
// type W (double for float inputs); the caller checks that the outputs fit T.
template <class W>
struct OrpoPair {
  W loss;
  W d_chosen, d_rejected;        // d loss / d Σ log π, before any 1/B
  W log_odds;                    // Δ
  W log_sigmoid;                 // log σ(Δ)
  W mean_chosen, mean_rejected;  // ℓ_w, ℓ_l (not clamped)
};

// nll_length: the chosen tokens per pair the NLL term divides by (the batch's Σ|y_w| / B), so that the mean of
// the pairs' terms is the batch's token mean.
template <class T, class W = math::wide_t<T>>
RLHF_HOST_DEVICE inline OrpoPair<W> orpo_pair(const OrpoConfig& c, T policy_chosen, T policy_rejected,
                                              T chosen_length, T rejected_length, W nll_length) {
  using std::expm1;
  const W lambda = W(c.lambda), ceiling = W(c.max_mean_logp);
  const W len_w = W(chosen_length) < W(1) ? W(1) : W(chosen_length);
  const W len_l = W(rejected_length) < W(1) ? W(1) : W(rejected_length);
  const W mean_w = W(policy_chosen) / len_w, mean_l = W(policy_rejected) / len_l;
  const bool clamp_w = mean_w > ceiling, clamp_l = mean_l > ceiling;
  const W a = clamp_w ? ceiling : mean_w, b = clamp_l ? ceiling : mean_l;
  // log odds(ℓ) = ℓ − log(1 − e^ℓ); its derivative 1 / (1 − e^ℓ) = −1 / expm1(ℓ), finite for ℓ < 0.
  const W delta = (a - math::log1m_exp(a)) - (b - math::log1m_exp(b));
  const W d_delta = -lambda * math::sigmoid(-delta);  // d (−λ log σ(Δ)) / d Δ
  const W d_w = clamp_w ? W(0) : d_delta * (-W(1) / expm1(a)) / len_w;
  const W d_l = clamp_l ? W(0) : -d_delta * (-W(1) / expm1(b)) / len_l;
  const W log_sig = math::log_sigmoid(delta);
  return {-W(policy_chosen) / nll_length - lambda * log_sig,
          d_w - W(1) / nll_length,
          d_l,
          delta,
          log_sig,
          mean_w,
          mean_l};
}

namespace detail {
template <class T>
struct OrpoKernel {
  OrpoConfig config;
  const T *policy_chosen, *policy_rejected, *chosen_length, *rejected_length;  // [B] each
  double nll_length, inv_batch;
  T *losses, *d_policy_chosen, *d_policy_rejected;  // [B] each

  RLHF_HOST_DEVICE OrpoPair<math::wide_t<T>> pair(std::size_t i) const {
    return orpo_pair<T>(config, policy_chosen[i], policy_rejected[i], chosen_length[i], rejected_length[i],
                        math::wide_t<T>(nll_length));
  }
  RLHF_HOST_DEVICE void operator()(std::size_t i) const {
    using W = math::wide_t<T>;
    const auto p = pair(i);
    losses[i] = T(p.loss);
    d_policy_chosen[i] = T(p.d_chosen * W(inv_batch));
    d_policy_rejected[i] = T(p.d_rejected * W(inv_batch));
  }
};

// Σ over pairs of one statistic, recomputed from the pair formula in double.
enum class OrpoStat { nll, log_sigmoid, log_odds, chosen, rejected, accuracy };
template <class T>
struct orpo_stat {
  OrpoKernel<T> kernel;
  OrpoStat stat;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const {
    const auto p = kernel.pair(i);
    switch (stat) {
      case OrpoStat::nll: return -static_cast<double>(kernel.policy_chosen[i]) / kernel.nll_length;
      case OrpoStat::log_sigmoid: return static_cast<double>(p.log_sigmoid);
      case OrpoStat::log_odds: return static_cast<double>(p.log_odds);
      case OrpoStat::chosen: return static_cast<double>(p.mean_chosen);
      case OrpoStat::rejected: return static_cast<double>(p.mean_rejected);
      case OrpoStat::accuracy:  // of the rewards λ ℓ, as TRL: with λ = 0 every pair is a tie, counted as wrong
        return kernel.config.lambda * p.mean_chosen > kernel.config.lambda * p.mean_rejected ? 1.0 : 0.0;
    }
    return 0.0;
  }
};

template <Backend Be>
void validate_orpo(const char* fn, const OrpoPairs<typename Be::vector>& in, const OrpoConfig& c) {
  const std::size_t n = Be::size(in.policy_chosen);
  require_nonempty(fn, "policy_chosen", n);
  constexpr double largest = std::numeric_limits<float>::max();  // rejects NaN and ±Inf too
  require_in_range(fn, "lambda", c.lambda, 0.0, largest);
  if (!(c.max_mean_logp < 0) || !(c.max_mean_logp > -largest))
    fail<config_error>(fn, ": max_mean_logp must be < 0 and finite (got ", c.max_mean_logp, ")");
  require_rows<Be>(fn, "policy_chosen", in.policy_chosen, n);
  require_rows<Be>(fn, "policy_rejected", in.policy_rejected, n);
  require_pair_lengths<Be>(fn, in.chosen_length, in.rejected_length, n);
}
}  // namespace detail

// chosen_tokens_per_pair: the NLL term's denominator per pair; 0 means this batch's own max(1, Σ|y_w|) / B. A step
// over micro-batches passes the whole batch's, so that the blocks add up to the whole batch's token mean.
template <class Vector, class Be = backend_of_t<Vector>>
OrpoResult<Vector> orpo_loss(const OrpoPairs<Vector>& in, const OrpoConfig& config = {},
                             double chosen_tokens_per_pair = 0) {
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::orpo_loss";
  detail::validate_orpo<Be>(fn, in, config);
  const std::size_t n = Be::size(in.policy_chosen);
  if (!(chosen_tokens_per_pair >= 0) || !std::isfinite(chosen_tokens_per_pair))
    fail<value_error>(fn, ": 'chosen_tokens_per_pair' must be >= 0 and finite (got ", chosen_tokens_per_pair, ")");
  double nll_length = chosen_tokens_per_pair;
  if (nll_length == 0) nll_length = detail::chosen_tokens_per_pair<Be>(in.chosen_length, n);
  OrpoResult<Vector> out;
  out.losses = Be::vector_of(n);
  out.d_policy_chosen = Be::vector_of(n);
  out.d_policy_rejected = Be::vector_of(n);
  const detail::OrpoKernel<T> kernel{config,
                                     Be::data(in.policy_chosen),
                                     Be::data(in.policy_rejected),
                                     Be::data(in.chosen_length),
                                     Be::data(in.rejected_length),
                                     nll_length,
                                     1.0 / double(n),
                                     Be::data(out.losses),
                                     Be::data(out.d_policy_chosen),
                                     Be::data(out.d_policy_rejected)};
  Be::for_each(n, kernel);
  constexpr const char* cause =
      "'policy_chosen' or 'policy_rejected' (or the mean token log-prob of one, near 0) is too large in magnitude";
  out.loss = detail::checked_batch_loss<Be>(fn, cause, out.losses,
                                            {{"d_policy_chosen", Be::data(out.d_policy_chosen), n},
                                             {"d_policy_rejected", Be::data(out.d_policy_rejected), n}});
  using S = detail::OrpoStat;
  const auto mean = [&](S stat) { return detail::BatchMean<Be>{n}(detail::orpo_stat<T>{kernel, stat}); };
  const double chosen = mean(S::chosen), rejected = mean(S::rejected);
  out.metrics.set(metric::nll_loss, mean(S::nll));
  out.metrics.set(metric::log_odds_ratio, mean(S::log_sigmoid));
  out.metrics.set(metric::log_odds_chosen, mean(S::log_odds));
  out.metrics.set(metric::rewards_chosen, config.lambda * chosen);
  out.metrics.set(metric::rewards_rejected, config.lambda * rejected);
  out.metrics.set(metric::rewards_accuracies, mean(S::accuracy));
  out.metrics.set(metric::rewards_margins, config.lambda * (chosen - rejected));
  out.metrics.set(metric::logps_chosen, chosen);
  out.metrics.set(metric::logps_rejected, rejected);
  return out;
}

}  // namespace rlhf
