#pragma once
// The reward side of PPO, on per-token tensors [B, T] with a 0/1 response mask:
//
//   kl_penalized_rewards : r_t = −κ (log π(y_t) − log π_ref(y_t))   on every response token (k1 estimate)
//                          r_last += score                           on the last response token of the row
//   gae                  : δ_t = r_t + γ V_{t+1} − V_t,  A_t = δ_t + γλ A_{t+1},  R_t = A_t + V_t
//                          (t runs over the row's response tokens; after the last one V = A = 0)
//   whiten               : (x − mean) / sqrt(var + 1e-8) over the masked entries of the whole batch
//                          (unbiased variance, n − 1)
// Inputs must be finite where the mask is 1; entries under a 0 are never read (padding may hold -inf or NaN).
// Every output is 0 where the mask is 0. docs/losses/gae.md has the settings and the papers.
#include <cmath>
#include <cstddef>
#include <string_view>
#include <type_traits>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/validate.hpp"

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

// Checks and small reductions shared by gae.hpp and ppo.hpp. Their own namespace keeps them apart from
// the helpers of other loss headers.
namespace detail::ppo {

template <class T>
struct masked_element {  // mask[i] · x[i]
  const T *x, *mask;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return mask[i] != T(0) ? static_cast<double>(x[i]) : 0.0; }
};

template <class T>
struct masked_square_deviation {  // mask[i] · (x[i] − mean)²
  const T *x, *mask;
  double mean;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const {
    const double d = static_cast<double>(x[i]) - mean;
    return mask[i] != T(0) ? d * d : 0.0;
  }
};

template <class T>
struct element_value {
  const T* x;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return static_cast<double>(x[i]); }
};

template <class T>
struct not_binary_count {  // entries other than exactly 0 or 1 (NaN included)
  const T* x;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return x[i] == T(0) || x[i] == T(1) ? 0.0 : 1.0; }
};

// Per row of a 0/1 mask: 1 if the row has no response token (empty) or more than one run of them (gapped).
template <class T>
struct mask_row_flag {
  const T* mask;
  std::size_t cols;
  bool gapped;  // false: flag empty rows
  RLHF_HOST_DEVICE double operator()(std::size_t b) const {
    std::size_t runs = 0;
    bool previous = false;
    for (std::size_t t = 0; t < cols; ++t) {
      const bool on = mask[b * cols + t] != T(0);
      if (on && !previous) ++runs;
      previous = on;
    }
    return (gapped ? runs > 1 : runs == 0) ? 1.0 : 0.0;
  }
};

template <Backend Be>
void require_shape(std::string_view fn, std::string_view arg, const typename Be::matrix& m, std::size_t rows,
                   std::size_t cols, std::string_view like) {
  if (Be::rows(m) != rows || Be::cols(m) != cols)
    fail<shape_error>(fn, ": '", arg, "' is ", Be::rows(m), "x", Be::cols(m), " but '", like, "' is ", rows, "x", cols);
}

template <class T>
struct masked_non_finite_count {
  const T *x, *mask;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const {
    return mask[i] != T(0) && !math::is_finite(x[i]) ? 1.0 : 0.0;
  }
};

// A per-token input [B, T] like `like`, finite wherever the (already checked) mask is 1; entries under a 0
// are never read, so padding may hold anything (0, -inf, NaN).
template <Backend Be>
void require_tokens(std::string_view fn, std::string_view arg, const typename Be::matrix& m,
                    const typename Be::matrix& mask, std::string_view like) {
  require_shape<Be>(fn, arg, m, Be::rows(mask), Be::cols(mask), like);
  const double bad =
      Be::sum(Be::rows(m) * Be::cols(m), masked_non_finite_count<typename Be::scalar>{Be::data(m), Be::data(mask)});
  if (bad > 0) fail<value_error>(fn, ": '", arg, "' holds ", bad, " NaN or Inf value(s) where the mask is 1");
}

enum class MaskRule {
  any,            // 0/1 only
  nonempty_rows,  // and at least one response token per row
  one_run,        // and exactly one contiguous run of response tokens per row
};

template <Backend Be>
void require_mask(std::string_view fn, const typename Be::matrix& mask, std::size_t rows, std::size_t cols,
                  std::string_view like, MaskRule rule) {
  using T = typename Be::scalar;
  require_shape<Be>(fn, "mask", mask, rows, cols, like);
  const T* m = Be::data(mask);
  const double bad = Be::sum(rows * cols, not_binary_count<T>{m});
  if (bad > 0) fail<value_error>(fn, ": 'mask' holds ", bad, " value(s) other than 0 and 1 among ", rows * cols);
  if (rule == MaskRule::any) return;
  const double empty = Be::sum(rows, mask_row_flag<T>{m, cols, false});
  if (empty > 0) fail<value_error>(fn, ": 'mask' has ", empty, " row(s) of ", rows, " with no response token");
  if (rule == MaskRule::nonempty_rows) return;
  const double gapped = Be::sum(rows, mask_row_flag<T>{m, cols, true});
  if (gapped > 0)
    fail<value_error>(fn, ": 'mask' has ", gapped, " row(s) of ", rows,
                      " whose response tokens are not contiguous (a gap of 0s inside the response)");
}

template <class T>
struct kl_reward_row {
  T kl_coef;
  const T *scores, *logp, *ref_logp, *mask;  // [B], [B, T] x 3
  std::size_t cols;
  T* rewards;  // [B, T]

  RLHF_HOST_DEVICE void operator()(std::size_t b) const {
    using W = math::wide_t<T>;
    std::size_t last = 0;
    for (std::size_t t = 0; t < cols; ++t) {
      const std::size_t i = b * cols + t;
      if (mask[i] == T(0)) {
        rewards[i] = T(0);
        continue;
      }
      rewards[i] = T(-W(kl_coef) * (W(logp[i]) - W(ref_logp[i])));  // the difference in double for float
      last = i;
    }
    rewards[last] = T(W(rewards[last]) + W(scores[b]));  // validation guarantees every row has a response token
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
  T* out;
  RLHF_HOST_DEVICE void operator()(std::size_t i) const {
    using W = math::wide_t<T>;
    out[i] = mask[i] != T(0) ? T((W(x[i]) - W(mean)) * W(inv_std) + W(offset)) : T(0);
  }
};

}  // namespace detail::ppo

// Per-token rewards for PPO: −kl_coef · (logp − ref_logp) on every response token, plus the sequence score
// on the last response token of each row, wherever the padding is. scores [B]; the rest [B, T]. Returns [B, T].
template <class Matrix, class Vector, class Be = backend_of_t<Matrix>>
Matrix kl_penalized_rewards(const Vector& scores, const Matrix& logp, const Matrix& ref_logp, const Matrix& mask,
                            double kl_coef) {
  static_assert(std::is_same_v<backend_of_t<Vector>, Be>,
                "rlhf::kl_penalized_rewards: 'scores' and 'logp' must "
                "come from the same backend and scalar type");
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::kl_penalized_rewards";
  const std::size_t B = Be::rows(logp), Tn = Be::cols(logp);
  require_nonempty(fn, "logp", B);
  if (!(kl_coef >= 0.0) || !std::isfinite(kl_coef))
    fail<config_error>(fn, ": kl_coef must be >= 0 (got ", kl_coef, ")");
  detail::require_rows<Be>(fn, "scores", scores, B);
  detail::ppo::require_mask<Be>(fn, mask, B, Tn, "logp", detail::ppo::MaskRule::nonempty_rows);
  detail::ppo::require_tokens<Be>(fn, "logp", logp, mask, "logp");
  detail::ppo::require_tokens<Be>(fn, "ref_logp", ref_logp, mask, "logp");

  Matrix rewards = Be::matrix_of(B, Tn);
  Be::for_each(B, detail::ppo::kl_reward_row<T>{T(kl_coef), Be::data(scores), Be::data(logp), Be::data(ref_logp),
                                                Be::data(mask), Tn, Be::data(rewards)});
  detail::require_representable<Be>(fn, "the rewards", Be::data(rewards), B * Tn,
                                    "kl_coef · ('logp' − 'ref_logp') plus 'scores' is too large in magnitude");
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
  detail::ppo::require_mask<Be>(fn, mask, B, Tn, "rewards", detail::ppo::MaskRule::one_run);
  detail::ppo::require_tokens<Be>(fn, "rewards", rewards, mask, "rewards");
  detail::ppo::require_tokens<Be>(fn, "values", values, mask, "rewards");

  GaeResult<Matrix> out{Be::matrix_of(B, Tn), Be::matrix_of(B, Tn)};
  Be::for_each(B, detail::ppo::gae_row<T>{T(config.gamma), T(config.lambda), Be::data(rewards), Be::data(values),
                                          Be::data(mask), Tn, Be::data(out.advantages), Be::data(out.returns)});
  constexpr const char* cause = "the discounted sums of 'rewards' and 'values' are too large in magnitude";
  detail::require_representable<Be>(fn, "the advantages", Be::data(out.advantages), B * Tn, cause);
  detail::require_representable<Be>(fn, "the returns", Be::data(out.returns), B * Tn, cause);
  return out;
}

// Standardises x over the masked entries of the whole batch: (x − mean) / sqrt(var + 1e-8), var unbiased
// (divided by n − 1). shift_mean = false adds the mean back (rescales only). 0 where mask is 0.
template <class Matrix, class Be = backend_of_t<Matrix>>
Matrix whiten(const Matrix& x, const Matrix& mask, bool shift_mean = true) {
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::whiten";
  const std::size_t B = Be::rows(x), Tn = Be::cols(x), n = B * Tn;
  require_nonempty(fn, "x", B);
  detail::ppo::require_mask<Be>(fn, mask, B, Tn, "x", detail::ppo::MaskRule::any);
  detail::ppo::require_tokens<Be>(fn, "x", x, mask, "x");
  const T *px = Be::data(x), *pm = Be::data(mask);
  const double count = Be::sum(n, detail::ppo::element_value<T>{pm});
  if (count < 2) fail<value_error>(fn, ": 'mask' selects ", count, " entries; the variance needs at least 2");
  const double mean = Be::sum(n, detail::ppo::masked_element<T>{px, pm}) / count;
  const double var = Be::sum(n, detail::ppo::masked_square_deviation<T>{px, pm, mean}) / (count - 1);
  const double inv_std = 1.0 / std::sqrt(var + 1e-8);

  Matrix out = Be::matrix_of(B, Tn);
  Be::for_each(n,
               detail::ppo::whiten_kernel<T>{px, pm, mean, inv_std, shift_mean ? 0.0 : mean, Be::data(out)});
  return out;
}

}  // namespace rlhf
