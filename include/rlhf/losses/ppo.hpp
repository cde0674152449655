#pragma once
// Proximal Policy Optimization losses, on per-token tensors [B, T] with a 0/1 response mask.
//
//   policy : ρ = exp(clamp(log π − log π_old, ±20))
//            ℓ = max(−A ρ, −A clip(ρ, 1 − ε_low, 1 + ε_high))     (clipped surrogate; ε_low = ε_high = ε by default)
//            ℓ = min(ℓ, −c A)  when A < 0 and c > 0                (dual clip)
//   value  : ℓ = ½ max((V − R)², (clip(V, V_old − ε, V_old + ε) − R)²)   (ε = 0: ½ (V − R)²)
// Each loss aggregates ℓ over the masked tokens of the batch (aggregation.hpp: a token mean by default, or a mean
// of the rows' token means, or the rows' sums over a constant); its gradient is exact, so it is 0 wherever a clip
// (or the ±20 clamp on the log-ratio) is active. A row with no response token contributes nothing.
// docs/losses/ppo.md has the settings, the peers' conventions and the papers. Inputs must be finite where the mask
// is 1; entries under a 0 are never read. Includes gae.hpp: rewards, advantages and whitening come with the losses.
#include <cmath>
#include <cstddef>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/core/metric_names.hpp"
#include "rlhf/core/validate.hpp"
#include "rlhf/losses/aggregation.hpp"
#include "rlhf/losses/gae.hpp"
#include "rlhf/losses/token_loss.hpp"

namespace rlhf {

struct PpoConfig {
  double clip = 0.2;       // ε: the ratio is clipped to [1 − ε, 1 + ε]
  double clip_low = 0.0;   // > 0: replaces ε below 1, the ratio's floor is 1 − clip_low; 0 = ε
  double clip_high = 0.0;  // > 0: replaces ε above 1, the ratio's ceiling is 1 + clip_high; 0 = ε (DAPO: 0.28)
  double dual_clip = 0.0;  // c: 0 = off; else c > 1 bounds the loss of a negative-advantage token by −c A
  Aggregation aggregation = Aggregation::token_mean;  // how the tokens' losses make the loss (aggregation.hpp)
  double max_tokens = 1.0;  // L of Aggregation::sequence_sum (Dr. GRPO: the longest completion allowed)
};

template <class Matrix>
struct PpoPolicyResult {
  double loss = 0;  // aggregated as PpoConfig::aggregation says
  Matrix d_logp;    // [B, T], d loss / d logp, 0 where mask is 0
  Metrics metrics;  // policy/{clipfrac_avg, dual_clipfrac_avg, approxkl_avg, ppo_kl_avg}, val/ratio: token means
};

struct ValueLossConfig {
  double clip = 0.2;  // ε: the new value may move at most ε from the old one; 0 = unclipped
  Aggregation aggregation = Aggregation::token_mean;
  double max_tokens = 1.0;  // L of Aggregation::sequence_sum
};

template <class Matrix>
struct ValueLossResult {
  double loss = 0;  // aggregated as ValueLossConfig::aggregation says
  Matrix d_values;  // [B, T], d loss / d values, 0 where mask is 0
  Metrics metrics;  // val/{clipfrac_avg, mse_avg}: token means
};

// |log π − log π_old| is clamped here before exp: e^20 ≈ 4.9e8 keeps ρ, ρ·A and the gradient finite in
// float for any finite log-probs.
inline constexpr float ppo_max_log_ratio = 20.0f;

// One token's clipped surrogate: the only place the policy formula lives, shared by every backend. Computed in
// the wide type W (double for float inputs), so finite inputs, even ±3e38, give finite values; the caller checks
// that the gradient fits T.
template <class W>
struct PpoToken {
  W loss;
  W d_logp;           // d loss / d log π
  W ratio;            // ρ, after the clamp
  bool clipped;       // the clipped branch is active (gradient 0)
  bool dual_clipped;  // the dual clip is active (gradient 0)
};

template <class T, class W = math::wide_t<T>>
RLHF_HOST_DEVICE inline PpoToken<W> ppo_token(const PpoConfig& c, T logp, T old_logp, T advantage_) {
  using std::exp;
  const W advantage = W(advantage_);
  const W log_ratio = W(logp) - W(old_logp);
  const W bound = W(ppo_max_log_ratio);
  const W ratio = exp(math::clamp(log_ratio, -bound, bound));
  const W d_ratio = (log_ratio >= -bound && log_ratio <= bound) ? ratio : W(0);  // d ρ / d log π
  const W low = W(c.clip_low > 0.0 ? c.clip_low : c.clip), high = W(c.clip_high > 0.0 ? c.clip_high : c.clip);
  const W unclipped = -advantage * ratio;
  const W clipped = -advantage * math::clamp(ratio, W(1) - low, W(1) + high);
  PpoToken<W> out{unclipped, -advantage * d_ratio, ratio, false, false};
  if (clipped > unclipped) out = {clipped, W(0), ratio, true, false};  // ρ is outside the clip range here
  if (c.dual_clip > 0.0 && advantage < W(0)) {
    const W floor = -W(c.dual_clip) * advantage;
    if (out.loss > floor) out = {floor, W(0), ratio, false, true};
  }
  return out;
}

// One token's clipped value loss: the only place the value formula lives. In W, like ppo_token.
template <class W>
struct ValueToken {
  W loss;
  W d_value;  // d loss / d V
  bool clipped;
};

template <class T, class W = math::wide_t<T>>
RLHF_HOST_DEVICE inline ValueToken<W> value_token(const ValueLossConfig& c, T value_, T old_value_, T ret_) {
  const W value = W(value_), old_value = W(old_value_), ret = W(ret_);
  const W err = value - ret;
  const ValueToken<W> unclipped{W(0.5) * err * err, err, false};
  if (c.clip == 0.0) return unclipped;
  const W eps = W(c.clip);
  // V itself is clamped (not V_old + clamp(V − V_old)): inside V_old ± ε the clipped value is V exactly, so a
  // token there can never take the clipped branch by rounding. Strictly larger only outside that range, where
  // the clipped value does not move with V.
  const W clipped_err = math::clamp(value, old_value - eps, old_value + eps) - ret;
  if (clipped_err * clipped_err > err * err) return {W(0.5) * clipped_err * clipped_err, W(0), true};
  return unclipped;
}

namespace detail::ppo {

// The token kernels of token_loss.hpp: one token's loss and its derivative.
template <class T>
struct policy_token_kernel {
  PpoConfig config;
  const T *logp, *old_logp, *advantages;  // [B, T] x 3
  RLHF_HOST_DEVICE TokenLoss<math::wide_t<T>> operator()(std::size_t i) const {
    const auto k = ppo_token<T>(config, logp[i], old_logp[i], advantages[i]);
    return {k.loss, k.d_logp};
  }
};

template <class T>
struct value_token_kernel {
  ValueLossConfig config;
  const T *values, *old_values, *returns;  // [B, T] x 3
  RLHF_HOST_DEVICE TokenLoss<math::wide_t<T>> operator()(std::size_t i) const {
    const auto k = value_token<T>(config, values[i], old_values[i], returns[i]);
    return {k.loss, k.d_value};
  }
};

enum class PolicyStat { clipped, dual_clipped, approx_kl_k3, approx_kl_k1, ratio };

// Σ over masked tokens of one per-token quantity, recomputed from the token formula.
template <class T>
struct policy_stat {
  PpoConfig config;
  const T *logp, *old_logp, *advantages, *mask;
  PolicyStat stat;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const {
    if (mask[i] == T(0)) return 0.0;
    const double b = ppo_max_log_ratio;
    const double d = math::clamp(static_cast<double>(logp[i]) - old_logp[i], -b, b);  // log ρ, clamped
    switch (stat) {
      case PolicyStat::clipped:
        return ppo_token<T>(config, logp[i], old_logp[i], advantages[i]).clipped ? 1.0 : 0.0;
      case PolicyStat::dual_clipped:
        return ppo_token<T>(config, logp[i], old_logp[i], advantages[i]).dual_clipped ? 1.0 : 0.0;
      case PolicyStat::ratio:
        return std::exp(d);
      case PolicyStat::approx_kl_k3:  // (ρ − 1) − log ρ ≥ 0: unbiased for KL(π_old ‖ π) on tokens drawn from π_old
        return std::expm1(d) - d;
      case PolicyStat::approx_kl_k1:  // −log ρ: unbiased too, either sign (OpenRLHF's ppo_kl)
        return -d;
    }
    return 0.0;
  }
};

enum class ValueStat { clipped, squared_error };

template <class T>
struct value_stat {
  ValueLossConfig config;
  const T *values, *old_values, *returns, *mask;
  ValueStat stat;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const {
    if (mask[i] == T(0)) return 0.0;
    if (stat == ValueStat::squared_error) return math::square(static_cast<double>(values[i]) - returns[i]);
    return value_token<T>(config, values[i], old_values[i], returns[i]).clipped ? 1.0 : 0.0;
  }
};

inline void require_clip_range(const char* fn, const char* name, double x) {
  if (!(x >= 0.0) || !std::isfinite(x)) fail<config_error>(fn, ": ", name, " must be >= 0 (0 = clip) (got ", x, ")");
}

}  // namespace detail::ppo

// PPO's clipped surrogate. logp (the policy being trained), old_logp (the policy that sampled), advantages,
// mask: [B, T] each. Gradient with respect to logp only.
template <class Matrix, class Be = backend_of_t<Matrix>>
PpoPolicyResult<Matrix> ppo_policy_loss(const Matrix& logp, const Matrix& old_logp, const Matrix& advantages,
                                        const Matrix& mask, const PpoConfig& config = {}) {
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::ppo_policy_loss";
  const std::size_t B = Be::rows(logp), n = B * Be::cols(logp);
  require_nonempty(fn, "logp", B);
  require_positive(fn, "clip", config.clip);
  detail::ppo::require_clip_range(fn, "clip_low", config.clip_low);
  detail::ppo::require_clip_range(fn, "clip_high", config.clip_high);
  if (!(config.dual_clip == 0.0 || (config.dual_clip > 1.0 && std::isfinite(config.dual_clip))))
    fail<config_error>(fn, ": dual_clip must be 0 (off) or > 1 (got ", config.dual_clip, ")");
  const auto weights = token_loss_weights<Be>(fn, config.aggregation, config.max_tokens, mask,
                                              {{"logp", &logp}, {"old_logp", &old_logp}, {"advantages", &advantages}});
  const double tokens = weights.tokens;
  const T *lp = Be::data(logp), *old = Be::data(old_logp), *adv = Be::data(advantages), *m = Be::data(mask);
  PpoPolicyResult<Matrix> out;
  out.loss = token_loss<Be>(fn, detail::ppo::policy_token_kernel<T>{config, lp, old, adv}, weights, mask, out.d_logp,
                            "d_logp", "'advantages' (times the ratio, up to e^20) are too large in magnitude",
                            "'advantages' are too large");
  using S = detail::ppo::PolicyStat;
  const auto mean = [&](S stat) {  // over the batch's response tokens, whatever the aggregation (as every peer logs)
    return tokens > 0 ? Be::sum(n, detail::ppo::policy_stat<T>{config, lp, old, adv, m, stat}) / tokens : 0.0;
  };
  out.metrics.set(metric::policy_clipfrac_avg, mean(S::clipped));
  out.metrics.set(metric::policy_dual_clipfrac_avg, mean(S::dual_clipped));
  out.metrics.set(metric::policy_approxkl_avg, mean(S::approx_kl_k3));
  out.metrics.set(metric::policy_ppo_kl_avg, mean(S::approx_kl_k1));
  out.metrics.set(metric::val_ratio, mean(S::ratio));
  return out;
}

// PPO's clipped value loss. values (the critic being trained), old_values (at sampling time), returns, mask:
// [B, T] each. Gradient with respect to values only.
template <class Matrix, class Be = backend_of_t<Matrix>>
ValueLossResult<Matrix> ppo_value_loss(const Matrix& values, const Matrix& old_values, const Matrix& returns,
                                       const Matrix& mask, const ValueLossConfig& config = {}) {
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::ppo_value_loss";
  const std::size_t B = Be::rows(values), n = B * Be::cols(values);
  require_nonempty(fn, "values", B);
  if (!(config.clip >= 0.0) || !std::isfinite(config.clip))
    fail<config_error>(fn, ": clip must be >= 0 (0 = unclipped) (got ", config.clip, ")");
  const auto weights = token_loss_weights<Be>(fn, config.aggregation, config.max_tokens, mask,
                                              {{"values", &values}, {"old_values", &old_values}, {"returns", &returns}});
  const double tokens = weights.tokens;
  const T *v = Be::data(values), *old = Be::data(old_values), *ret = Be::data(returns), *m = Be::data(mask);
  ValueLossResult<Matrix> out;
  out.loss = token_loss<Be>(fn, detail::ppo::value_token_kernel<T>{config, v, old, ret}, weights, mask, out.d_values,
                            "d_values", "'values' − 'returns' is too large in magnitude",
                            "'values' − 'returns' is too large");
  using S = detail::ppo::ValueStat;
  const auto mean = [&](S stat) {
    return tokens > 0 ? Be::sum(n, detail::ppo::value_stat<T>{config, v, old, ret, m, stat}) / tokens : 0.0;
  };
  out.metrics.set(metric::val_clipfrac_avg, mean(S::clipped));
  out.metrics.set(metric::val_mse_avg, mean(S::squared_error));
  return out;
}

}  // namespace rlhf
