#pragma once
// The reward side of PPO, on per-token tensors [B, T] with a 0/1 response mask:
//
//   kl_penalized_rewards : r_t = −κ k(t)          on every response token (k: a KL estimate, kl.hpp; k1 by default)
//                          r_last += score         on the last response token of the row
//   gae                  : δ_t = r_t + γ V_{t+1} − V_t,  A_t = δ_t + γλ A_{t+1},  R_t = A_t + V_t
//                          (t runs over the row's response tokens; after the last one V = A = 0)
//   whiten               : (x − mean) / sqrt(var + 1e-8) over the masked entries of the whole batch
//                          (unbiased variance, n − 1; WhitenConfig offers OpenRLHF's biased variance and max(var, ε))
// A row with no response token is accepted and gets zeros (its score has no token to land on). Inputs must be
// finite where the mask is 1; entries under a 0 are never read (padding may hold -inf or NaN). Every output is 0
// where the mask is 0 (whiten: unless told otherwise). None of them has a gradient: every peer computes them
// without one (under torch.no_grad, or detached) and so does this library. docs/losses/gae.md.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string_view>
#include <type_traits>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/elements.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/validate.hpp"
#include "rlhf/losses/kl.hpp"

namespace rlhf {

struct GaeConfig {
  double gamma = 1.0;    // γ: discount per token
  double lambda = 0.95;  // λ: bias/variance trade-off (0: one-step TD, 1: Monte-Carlo return − V)
};

template <class Matrix>
struct GaeResult {
  Matrix advantages;  // [B, T], 0 where mask is 0
  Matrix returns;     // [B, T], advantages + values, 0 where mask is 0
};

struct WhitenConfig {
  bool shift_mean = true;         // false: the mean is added back (only the spread is normalised)
  bool unbiased = true;           // variance over n − 1 (TRL's masked_var) or n (OpenRLHF)
  double eps = 1e-8;              // ε > 0 below
  bool eps_as_floor = false;      // false: 1 / sqrt(var + ε) (TRL); true: 1 / sqrt(max(var, ε)) (OpenRLHF)
  bool zero_outside_mask = true;  // false: entries under a 0 are transformed too (and must be finite), as OpenRLHF
};

// The numbers whiten uses, over the masked entries of the batch.
struct WhitenStats {
  double mean = 0;
  double variance = 0;  // as WhitenConfig::unbiased says
  double inv_std = 0;   // the scale applied: 1 / sqrt(var + ε) or 1 / sqrt(max(var, ε))
  double count = 0;     // masked entries
};

namespace detail::ppo {

template <class T>
struct kl_reward_row {
  T kl_coef;
  KlConfig kl;                               // the estimator and its clamp
  const T *scores, *logp, *ref_logp, *mask;  // [B], [B, T] x 3
  std::size_t cols;
  T* rewards;  // [B, T]

  RLHF_HOST_DEVICE void operator()(std::size_t b) const {
    using W = math::wide_t<T>;
    bool any = false;
    std::size_t last = 0;
    for (std::size_t t = 0; t < cols; ++t) {
      const std::size_t i = b * cols + t;
      if (mask[i] == T(0)) {
        rewards[i] = T(0);
        continue;
      }
      // the estimate in double for float
      rewards[i] = T(-W(kl_coef) * kl_token<T>(kl.estimator, logp[i], ref_logp[i], kl.clamp).value);
      last = i;
      any = true;
    }
    if (any) rewards[last] = T(W(rewards[last]) + W(scores[b]));
  }
};

// One row's backward recursion; masked positions are passed over, so the step after a row's last response
// token is terminal whatever padding follows it.
template <class T>
struct gae_row {
  T gamma, lambda;
  const T *rewards, *values, *mask;  // [B, T] x 3
  std::size_t cols;
  T *advantages, *returns;  // [B, T] x 2

  RLHF_HOST_DEVICE void operator()(std::size_t b) const {
    using W = math::wide_t<T>;  // the recursion in double for float: rewards and values of ±3e38 stay finite
    W next_value = W(0), next_advantage = W(0);
    for (std::size_t t = cols; t-- > 0;) {
      const std::size_t i = b * cols + t;
      if (mask[i] == T(0)) {
        advantages[i] = returns[i] = T(0);
        continue;
      }
      const W delta = W(rewards[i]) + W(gamma) * next_value - W(values[i]);
      next_advantage = delta + W(gamma) * W(lambda) * next_advantage;
      next_value = W(values[i]);
      advantages[i] = T(next_advantage);
      returns[i] = T(next_advantage + next_value);
    }
  }
};

template <class T>
struct whiten_kernel {
  const T *x, *mask;
  double mean, inv_std, offset;  // offset: 0, or the mean when it is kept; in double, so x − mean of ±3e38 is finite
  bool zero_outside_mask;
  T* out;
  RLHF_HOST_DEVICE void operator()(std::size_t i) const {
    using W = math::wide_t<T>;
    out[i] = mask[i] != T(0) || !zero_outside_mask ? T((W(x[i]) - W(mean)) * W(inv_std) + W(offset)) : T(0);
  }
};

}  // namespace detail::ppo

// Per-token rewards for PPO: −kl_coef · k on every response token (k the estimate `kl` selects, of
// KL(π ‖ π_ref); k1 = logp − ref_logp by default), plus the sequence score on the last response token of each row,
// wherever the padding is. A row with no response token gets zeros. scores [B]; the rest [B, T]. Returns [B, T].
// kl.aggregation is not used.
template <class Matrix, class Vector, class Be = backend_of_t<Matrix>>
Matrix kl_penalized_rewards(const Vector& scores, const Matrix& logp, const Matrix& ref_logp, const Matrix& mask,
                            double kl_coef, const KlConfig& kl = {}) {
  static_assert(std::is_same_v<backend_of_t<Vector>, Be>,
                "rlhf::kl_penalized_rewards: 'scores' and 'logp' must "
                "come from the same backend and scalar type");
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::kl_penalized_rewards";
  const std::size_t B = Be::rows(logp), Tn = Be::cols(logp);
  require_nonempty(fn, "logp", B);
  if (!(kl_coef >= 0.0) || !std::isfinite(kl_coef))
    fail<config_error>(fn, ": kl_coef must be >= 0 (got ", kl_coef, ")");
  detail::kl::require_config(fn, kl);
  detail::require_rows<Be>(fn, "scores", scores, B);
  detail::require_token_mask<Be>(fn, mask, B, Tn, "'logp'", detail::MaskRule::any);
  detail::require_tokens<Be>(fn, "logp", logp, mask, "'logp'");
  detail::require_tokens<Be>(fn, "ref_logp", ref_logp, mask, "'logp'");

  Matrix rewards = Be::matrix_of(B, Tn);
  Be::for_each(B, detail::ppo::kl_reward_row<T>{T(kl_coef), kl, Be::data(scores), Be::data(logp), Be::data(ref_logp),
                                                Be::data(mask), Tn, Be::data(rewards)});
  detail::require_representable<Be>(
      fn, "the rewards", Be::data(rewards), B * Tn,
      "kl_coef times the KL estimate of 'logp' and 'ref_logp', plus 'scores', is too large in magnitude");
  return rewards;
}

// Generalised advantage estimation over each row's response tokens. rewards, values, mask [B, T].
template <class Matrix, class Be = backend_of_t<Matrix>>
GaeResult<Matrix> gae(const Matrix& rewards, const Matrix& values, const Matrix& mask, const GaeConfig& config = {}) {
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::gae";
  const std::size_t B = Be::rows(rewards), Tn = Be::cols(rewards);
  require_nonempty(fn, "rewards", B);
  require_in_range(fn, "gamma", config.gamma, 0.0, 1.0);
  require_in_range(fn, "lambda", config.lambda, 0.0, 1.0);
  detail::require_token_mask<Be>(fn, mask, B, Tn, "'rewards'", detail::MaskRule::one_run);
  detail::require_tokens<Be>(fn, "rewards", rewards, mask, "'rewards'");
  detail::require_tokens<Be>(fn, "values", values, mask, "'rewards'");

  GaeResult<Matrix> out{Be::matrix_of(B, Tn), Be::matrix_of(B, Tn)};
  Be::for_each(B, detail::ppo::gae_row<T>{T(config.gamma), T(config.lambda), Be::data(rewards), Be::data(values),
                                          Be::data(mask), Tn, Be::data(out.advantages), Be::data(out.returns)});
  constexpr const char* cause = "the discounted sums of 'rewards' and 'values' are too large in magnitude";
  detail::require_representable<Be>(fn, "the advantages", Be::data(out.advantages), B * Tn, cause);
  detail::require_representable<Be>(fn, "the returns", Be::data(out.returns), B * Tn, cause);
  return out;
}

// The mean, variance and scale whiten(x, mask, config) uses: over the masked entries of the whole batch.
template <class Matrix, class Be = backend_of_t<Matrix>>
WhitenStats whiten_stats(const Matrix& x, const Matrix& mask, const WhitenConfig& config = {}) {
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::whiten";
  const std::size_t B = Be::rows(x), Tn = Be::cols(x), n = B * Tn;
  require_nonempty(fn, "x", B);
  if (!(config.eps > 0.0) || !std::isfinite(config.eps))
    fail<config_error>(fn, ": eps must be finite and > 0 (got ", config.eps, ")");
  detail::require_token_mask<Be>(fn, mask, B, Tn, "'x'", detail::MaskRule::any);
  if (config.zero_outside_mask)
    detail::require_tokens<Be>(fn, "x", x, mask, "'x'");
  else
    detail::require_finite<Be>(fn, "x", Be::data(x), n);  // every entry is transformed
  const T *px = Be::data(x), *pm = Be::data(mask);
  WhitenStats s;
  s.count = Be::sum(n, detail::element_as_double<T>{pm});
  const double needed = config.unbiased ? 2 : 1;
  if (s.count < needed)
    fail<value_error>(fn, ": 'mask' selects ", s.count, " entries; the ", config.unbiased ? "unbiased " : "",
                      "variance needs at least ", needed);
  s.mean = Be::sum(n, detail::masked_element<T>{px, pm}) / s.count;
  s.variance =
      Be::sum(n, detail::masked_square_deviation<T>{px, pm, s.mean}) / (config.unbiased ? s.count - 1 : s.count);
  s.inv_std = 1.0 / std::sqrt(config.eps_as_floor ? std::max(s.variance, config.eps) : s.variance + config.eps);
  return s;
}

// Standardises x over the masked entries of the whole batch: (x − mean) · inv_std (whiten_stats), the mean added
// back when config.shift_mean is false; 0 where the mask is 0 unless config.zero_outside_mask is false.
// (With `s` given: statistics computed elsewhere, over every rank's tokens in data-parallel training.)
template <class Matrix, class Be = backend_of_t<Matrix>>
Matrix whiten(const Matrix& x, const Matrix& mask, const WhitenConfig& config, const WhitenStats& s) {
  Matrix out = Be::matrix_of(Be::rows(x), Be::cols(x));
  Be::for_each(Be::rows(x) * Be::cols(x),
               detail::ppo::whiten_kernel<typename Be::scalar>{Be::data(x), Be::data(mask), s.mean, s.inv_std,
                                                               config.shift_mean ? 0.0 : s.mean,
                                                               config.zero_outside_mask, Be::data(out)});
  return out;
}
template <class Matrix, class Be = backend_of_t<Matrix>>
Matrix whiten(const Matrix& x, const Matrix& mask, const WhitenConfig& config) {
  return whiten(x, mask, config, whiten_stats(x, mask, config));
}

// TRL's masked_whiten: unbiased variance, 1 / sqrt(var + 1e-8), 0 outside the mask.
template <class Matrix, class Be = backend_of_t<Matrix>>
Matrix whiten(const Matrix& x, const Matrix& mask, bool shift_mean = true) {
  return whiten(x, mask, WhitenConfig{.shift_mean = shift_mean});
}

}  // namespace rlhf
