#pragma once
// Listwise DPO: the Plackett–Luce loss over K ranked responses to one prompt, scored by DPO's
// implicit reward.
//
//   r_j    = β (log π(y_j) − log π_ref(y_j))            (log π_ref = 0 when reference_free)
//   loss_b = −Σ_{k < S} [ r_k − log Σ_{j=k}^{K_b−1} e^{r_j} ]   S = K_b − 1, or min(top_k, K_b − 1)
//   loss   = mean over rows
//
// K = 2 is the sigmoid DPO loss. The row's value and gradient come from plackett_luce_row.
// docs/losses/listwise_dpo.md has the settings and the papers.
#include <cstddef>
#include <type_traits>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/elements.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/metric_names.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/core/validate.hpp"
#include "rlhf/losses/batch_mean.hpp"
#include "rlhf/losses/plackett_luce.hpp"

namespace rlhf {

struct ListwiseDpoConfig {
  double beta = 0.1;            // β > 0: strength of the implicit KL constraint
  std::size_t top_k = 0;        // 0: the full ranking; else only the first top_k choice stages count
  bool reference_free = false;  // ignore the reference log-probs (π_ref uniform)
};

template <class Matrix, class Vector>
struct ListwiseDpoResult {
  double loss = 0;                // mean over rows
  Vector losses;                  // [B] per row
  Matrix d_policy, d_reference;   // [B, K] d loss / d log-prob (of the mean loss); 0 past each row's length
  Metrics metrics;                // rewards/{chosen,rejected,accuracies,margins}, logps/{chosen,rejected}
};

namespace detail {

template <class T>
struct implicit_reward_row {
  const T *policy, *reference;  // [K] each; reference null when reference_free
  T beta;
  RLHF_HOST_DEVICE T operator()(std::size_t j) const {  // the difference in double for float: ±3e38 stay finite
    using W = math::wide_t<T>;
    return T(W(beta) * (W(policy[j]) - (reference ? W(reference[j]) : W(0))));
  }
};
template <class T>
struct implicit_reward_rows {
  const T *policy, *reference;  // [B, K] each
  std::size_t cols;
  T beta;
  RLHF_HOST_DEVICE implicit_reward_row<T> operator()(std::size_t b) const {
    return {policy + b * cols, reference ? reference + b * cols : nullptr, beta};
  }
};

template <class T>
struct ListwiseDpoKernel {
  implicit_reward_rows<T> rows;
  const T* lengths;  // [B], null: all K
  std::size_t top_k;
  T inv_batch;
  T *losses, *d_policy, *d_reference;  // [B], [B, K], [B, K]

  RLHF_HOST_DEVICE void operator()(std::size_t b) const {
    const std::size_t n = ranked_length(lengths, b, rows.cols);
    T* dp = d_policy + b * rows.cols;
    T* dr = d_reference + b * rows.cols;
    losses[b] = T(plackett_luce_row<T>(rows(b), n, plackett_luce_stages(n, top_k), dp));
    const T scale = rows.beta * inv_batch;  // d r_j / d log π = β, d r_j / d log π_ref = −β
    for (std::size_t j = 0; j < n; ++j) {
      dp[j] *= scale;
      if (rows.reference) dr[j] = -dp[j];
    }
  }
};

}  // namespace detail

template <class Matrix, class Vector = typename backend_of_t<Matrix>::vector, class Be = backend_of_t<Matrix>>
ListwiseDpoResult<Matrix, Vector> listwise_dpo_loss(const Matrix& policy_logps, const Matrix& reference_logps,
                                                    const Vector& lengths, const ListwiseDpoConfig& config = {}) {
  static_assert(std::is_same_v<Vector, typename Be::vector>,
                "rlhf::listwise_dpo_loss: 'lengths' must be the vector type of the backend of the log-probs");
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::listwise_dpo_loss";
  require_positive(fn, "beta", config.beta);
  detail::validate_ranking<Be>(fn, "policy_logps", policy_logps, lengths);
  const std::size_t n = Be::rows(policy_logps), cols = Be::cols(policy_logps);
  if (!config.reference_free) {
    detail::require_shape<Be>(fn, "reference_logps", reference_logps, n, cols, "'policy_logps'");
    detail::validate_ranking<Be>(fn, "reference_logps", reference_logps, lengths);
  }
  const T* len = Be::size(lengths) ? Be::data(lengths) : nullptr;

  ListwiseDpoResult<Matrix, Vector> out;
  out.losses = Be::vector_of(n);
  out.d_policy = Be::matrix_of(n, cols);
  out.d_reference = Be::matrix_of(n, cols);
  using Rows = detail::implicit_reward_rows<T>;
  const Rows rewards{Be::data(policy_logps), config.reference_free ? nullptr : Be::data(reference_logps), cols,
                     T(config.beta)};
  Be::for_each(n, detail::ListwiseDpoKernel<T>{rewards, len, config.top_k, T(1) / T(n), Be::data(out.losses),
                                               Be::data(out.d_policy), Be::data(out.d_reference)});
  constexpr const char* cause = "beta times the log-ratios of 'policy_logps' against 'reference_logps' is too large";
  out.loss = detail::checked_batch_loss<Be>(fn, cause, out.losses, {{"d_policy", Be::data(out.d_policy), n * cols}});
  const detail::BatchMean<Be> mean{n};
  const detail::score_rows<T> logps{Be::data(policy_logps), cols};
  using LogpRows = detail::score_rows<T>;
  out.metrics.set(metric::rewards_chosen, mean(detail::ranked_first<T, Rows>{rewards}));
  out.metrics.set(metric::rewards_rejected, mean(detail::ranked_last<T, Rows>{rewards, len, cols}));
  out.metrics.set(metric::rewards_accuracies, mean(detail::ranked_top_pair<T, Rows>{rewards}));
  out.metrics.set(metric::rewards_margins, mean(detail::ranked_spread<T, Rows>{rewards, len, cols}));
  out.metrics.set(metric::logps_chosen, mean(detail::ranked_first<T, LogpRows>{logps}));
  out.metrics.set(metric::logps_rejected, mean(detail::ranked_last<T, LogpRows>{logps, len, cols}));
  return out;
}

}  // namespace rlhf
