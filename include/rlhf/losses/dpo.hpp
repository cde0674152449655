#pragma once
// Direct Preference Optimization and its variants, on per-sequence log-probabilities.
//
//   u_w = log π(y_w) − log π_ref(y_w),  u_l likewise   (each divided by its response length when
//                                                       length_normalize; π_ref = 1 when reference_free)
//   h   = β (u_w − u_l) − γ
//   sigmoid : −(1−ε) log σ(h) − ε log σ(−h)             (ε > 0: conservative DPO)
//   robust  : (−(1−ε) log σ(h) + ε log σ(−h)) / (1 − 2ε)
//   hinge   : max(0, 1 − h)
//   ipo     : (u_w − u_l − 1/(2β))²
//   + nll_weight · (−log π(y_w) / |y_w|)                 (optional NLL on the chosen response, nll_aggregation =
//                                                        sequence_mean; token_mean: −Σ_b log π(y_w) / Σ_b |y_w|)
// Lengths are clamped to ≥ 1 wherever they divide (an empty completion is valid input, as in TRL).
// docs/losses/dpo.md has the table of settings, the papers and each peer's convention.
#include <cstddef>
#include <limits>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/elements.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/metric_names.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/core/reduction.hpp"
#include "rlhf/core/validate.hpp"
#include "rlhf/losses/batch_mean.hpp"

namespace rlhf {

enum class DpoVariant { sigmoid, robust, hinge, ipo };

// What the logged rewards/* metrics are computed from.
enum class DpoRewardMetrics {
  as_loss,  // β u as the loss sees it: length-normalised and reference-free when the loss is (TRL CPOTrainer)
  raw,      // β (Σ log π − Σ log π_ref) of the raw sums, the reference used whenever it is given (DPO repo
            // preference_loss, OpenRLHF DPOLoss, TRL DPOTrainer)
};

struct DpoConfig {
  DpoVariant variant = DpoVariant::sigmoid;
  double beta = 0.1;              // β: strength of the implicit KL constraint
  double label_smoothing = 0.0;   // ε: assumed probability that a label is flipped (sigmoid, robust)
  double margin = 0.0;            // γ: target reward margin (SimPO); not used by ipo
  bool length_normalize = false;  // divide each log-ratio by its response length
  bool reference_free = false;    // ignore the reference log-probs (π_ref uniform)
  double nll_weight = 0.0;        // weight of the per-token NLL of the chosen response
  // The NLL term over the batch: sequence_mean, the mean over pairs of −log π(y_w) / |y_w| (Pang et al. 2024;
  // OpenRLHF DPOTrainer's nll_loss), or token_mean, −Σ_b log π(y_w) / Σ_b |y_w| (TRL rpo_alpha: cross-entropy over
  // every chosen token)
  Aggregation nll_aggregation = Aggregation::sequence_mean;
  DpoRewardMetrics reward_metrics = DpoRewardMetrics::as_loss;

  // SimPO: reference-free, length-normalised sigmoid loss with a margin.
  static constexpr DpoConfig simpo(double beta = 2.0, double gamma = 1.0) {
    return {.variant = DpoVariant::sigmoid, .beta = beta, .margin = gamma, .length_normalize = true,
            .reference_free = true};
  }
};

// Per-pair inputs, each [B]. Lengths (response token counts, ≥ 0) may be left empty unless
// length_normalize is set or nll_weight > 0; empty means 1 (sums are used as they are).
template <class Vector>
struct PreferencePairs {
  Vector policy_chosen, policy_rejected;        // Σ log π over response tokens
  Vector reference_chosen, reference_rejected;  // Σ log π_ref; may be empty when reference_free (then
                                                // reward_metrics = raw takes log π_ref = 0)
  Vector chosen_length, rejected_length;        // response token counts
};

template <class Vector>
struct DpoResult {
  double loss = 0;  // mean over pairs
  Vector losses;    // [B] per pair
  // d loss / d input, [B] each (of the mean loss)
  Vector d_policy_chosen, d_policy_rejected, d_reference_chosen, d_reference_rejected;
  Metrics metrics;  // rewards/{chosen,rejected,accuracies,margins}, logps/{chosen,rejected}
};

// One pair's loss and gradients: the only place the formulas live, shared by every backend. Computed in the
// wide type W (double for float inputs), so finite log-probs, even ±3e38, give finite values; the caller checks
// that they fit T.
template <class W>
struct DpoPair {
  W loss;
  W d_log_ratio_chosen, d_log_ratio_rejected;  // d loss / d (log π − log π_ref), before any 1/B
  W d_nll;                                     // extra d loss / d log π(y_w) from the NLL term
  W reward_chosen, reward_rejected;            // β u_w, β u_l
};

// nll_length: the denominator of the NLL term; 0 means the pair's own chosen length (sequence_mean); under
// token_mean the entry point passes the batch's mean chosen length, so that the mean over pairs is Σ/Σ.
template <class T, class W = math::wide_t<T>>
RLHF_HOST_DEVICE inline DpoPair<W> dpo_pair(const DpoConfig& c, T policy_chosen, T policy_rejected,
                                            T reference_chosen, T reference_rejected, T chosen_length,
                                            T rejected_length, W nll_length = W(0)) {
  const W beta = W(c.beta), eps = W(c.label_smoothing);
  // TRL clamps the token count to ≥ 1: an empty completion (Σ log π = 0) is divided by 1.
  const W len_w = W(chosen_length) < W(1) ? W(1) : W(chosen_length);
  const W len_l = W(rejected_length) < W(1) ? W(1) : W(rejected_length);
  const W scale_w = c.length_normalize ? W(1) / len_w : W(1);
  const W scale_l = c.length_normalize ? W(1) / len_l : W(1);
  const W ref_w = c.reference_free ? W(0) : W(reference_chosen);
  const W ref_l = c.reference_free ? W(0) : W(reference_rejected);
  const W u_w = (W(policy_chosen) - ref_w) * scale_w;  // the difference before the scaling
  const W u_l = (W(policy_rejected) - ref_l) * scale_l;

  W loss = 0, d_du = 0;  // d loss / d (u_w − u_l)
  if (c.variant == DpoVariant::ipo) {
    const W r = u_w - u_l - W(1) / (W(2) * beta);
    loss = r * r;
    d_du = W(2) * r;
  } else {
    const W h = beta * (u_w - u_l) - W(c.margin);
    W d_dh = 0;
    if (c.variant == DpoVariant::sigmoid) {
      loss = -(W(1) - eps) * math::log_sigmoid(h) - eps * math::log_sigmoid(-h);
      d_dh = -(W(1) - eps) * math::sigmoid(-h) + eps * math::sigmoid(h);
    } else if (c.variant == DpoVariant::robust) {
      const W k = W(1) / (W(1) - W(2) * eps);
      loss = k * (-(W(1) - eps) * math::log_sigmoid(h) + eps * math::log_sigmoid(-h));
      d_dh = k * (-(W(1) - eps) * math::sigmoid(-h) - eps * math::sigmoid(h));
    } else {  // hinge
      loss = h < W(1) ? W(1) - h : W(0);
      d_dh = h < W(1) ? W(-1) : W(0);
    }
    d_du = d_dh * beta;
  }
  W d_nll = 0;
  if (c.nll_weight != 0.0) {
    const W len = nll_length > W(0) ? nll_length : len_w;
    loss += -W(c.nll_weight) * (W(policy_chosen) / len);
    d_nll = -W(c.nll_weight) / len;
  }
  return {loss, d_du * scale_w, -d_du * scale_l, d_nll, beta * u_w, beta * u_l};
}

namespace detail {
template <class T>
struct DpoKernel {
  DpoConfig config;
  const T *policy_chosen, *policy_rejected, *reference_chosen, *reference_rejected;
  const T *chosen_length, *rejected_length;  // null: all ones
  double nll_length;                         // 0, or the batch's mean chosen length (token_mean)
  double inv_batch;
  T *losses, *d_policy_chosen, *d_policy_rejected, *d_reference_chosen, *d_reference_rejected;

  RLHF_HOST_DEVICE DpoPair<math::wide_t<T>> pair(std::size_t i) const {
    const T ref_w = reference_chosen ? reference_chosen[i] : T(0);
    const T ref_l = reference_rejected ? reference_rejected[i] : T(0);
    return dpo_pair<T>(config, policy_chosen[i], policy_rejected[i], ref_w, ref_l,
                       chosen_length ? chosen_length[i] : T(1), rejected_length ? rejected_length[i] : T(1),
                       math::wide_t<T>(nll_length));
  }

  // β (Σ log π − Σ log π_ref) of the raw sums (reward_metrics = raw); log π_ref = 0 when not given.
  RLHF_HOST_DEVICE double raw_reward(const T* policy, const T* reference, std::size_t i) const {
    return config.beta * (static_cast<double>(policy[i]) - (reference ? static_cast<double>(reference[i]) : 0.0));
  }

  RLHF_HOST_DEVICE void operator()(std::size_t i) const {
    using W = math::wide_t<T>;
    const auto p = pair(i);
    const W inv = W(inv_batch);
    losses[i] = T(p.loss);
    d_policy_chosen[i] = T((p.d_log_ratio_chosen + p.d_nll) * inv);
    d_policy_rejected[i] = T(p.d_log_ratio_rejected * inv);
    d_reference_chosen[i] = config.reference_free ? T(0) : T(-p.d_log_ratio_chosen * inv);
    d_reference_rejected[i] = config.reference_free ? T(0) : T(-p.d_log_ratio_rejected * inv);
  }
};

// Σ over pairs of one reward statistic, recomputed from the pair formula in double (never overflows for float).
enum class DpoRewardStat { chosen, rejected, accuracy, margin };
template <class T>
struct dpo_reward_stat {
  DpoKernel<T> kernel;
  DpoRewardStat stat;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const {
    double rc = 0, rr = 0;
    if (kernel.config.reward_metrics == DpoRewardMetrics::raw) {
      rc = kernel.raw_reward(kernel.policy_chosen, kernel.reference_chosen, i);
      rr = kernel.raw_reward(kernel.policy_rejected, kernel.reference_rejected, i);
    } else {
      const auto p = kernel.pair(i);
      rc = static_cast<double>(p.reward_chosen), rr = static_cast<double>(p.reward_rejected);
    }
    switch (stat) {
      case DpoRewardStat::chosen: return rc;
      case DpoRewardStat::rejected: return rr;
      case DpoRewardStat::accuracy: return rc > rr ? 1.0 : 0.0;
      case DpoRewardStat::margin: return rc - rr;
    }
    return 0.0;
  }
};

// Checks shared by every DPO-style entry point.
template <Backend Be>
void validate_pairs(const char* fn, const PreferencePairs<typename Be::vector>& in, const DpoConfig& c) {
  const std::size_t n = Be::size(in.policy_chosen);
  require_nonempty(fn, "policy_chosen", n);
  require_positive(fn, "beta", c.beta);
  require_in_range(fn, "label_smoothing", c.label_smoothing, 0.0, max_label_smoothing);
  constexpr double largest = std::numeric_limits<float>::max();  // rejects NaN and ±Inf too
  require_in_range(fn, "margin", c.margin, -largest, largest);
  require_in_range(fn, "nll_weight", c.nll_weight, 0.0, largest);
  require_rows<Be>(fn, "policy_chosen", in.policy_chosen, n);
  require_rows<Be>(fn, "policy_rejected", in.policy_rejected, n);
  if (c.nll_aggregation != Aggregation::sequence_mean && c.nll_aggregation != Aggregation::token_mean)
    fail<config_error>(fn, ": nll_aggregation must be Aggregation::sequence_mean or ::token_mean (got ",
                       static_cast<int>(c.nll_aggregation), ")");
  if (c.reward_metrics != DpoRewardMetrics::as_loss && c.reward_metrics != DpoRewardMetrics::raw)
    fail<config_error>(fn, ": reward_metrics must be as_loss or raw (got ", static_cast<int>(c.reward_metrics), ")");
  // reference_free with raw reward metrics reads the reference when it is given
  const bool read_reference = !c.reference_free || (c.reward_metrics == DpoRewardMetrics::raw &&
                                                    (Be::size(in.reference_chosen) || Be::size(in.reference_rejected)));
  if (read_reference) {
    require_rows<Be>(fn, "reference_chosen", in.reference_chosen, n);
    require_rows<Be>(fn, "reference_rejected", in.reference_rejected, n);
  }
  const bool need_lengths = c.length_normalize || c.nll_weight != 0.0;
  if (need_lengths || Be::size(in.chosen_length) || Be::size(in.rejected_length)) {
    if (need_lengths && (Be::size(in.chosen_length) == 0 || Be::size(in.rejected_length) == 0))
      fail<shape_error>(fn, ": 'chosen_length' and 'rejected_length' are required when length_normalize is set "
                            "or nll_weight != 0");
    require_pair_lengths<Be>(fn, in.chosen_length, in.rejected_length, n);
  }
}
}  // namespace detail

template <class Vector, class Be = backend_of_t<Vector>>
DpoResult<Vector> dpo_loss(const PreferencePairs<Vector>& in, const DpoConfig& config = {}) {
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::dpo_loss";
  detail::validate_pairs<Be>(fn, in, config);
  const std::size_t n = Be::size(in.policy_chosen);
  DpoResult<Vector> out;
  out.losses = Be::vector_of(n);
  out.d_policy_chosen = Be::vector_of(n);
  out.d_policy_rejected = Be::vector_of(n);
  out.d_reference_chosen = Be::vector_of(n);
  out.d_reference_rejected = Be::vector_of(n);
  const bool has_lengths = Be::size(in.chosen_length) == n;
  const bool has_reference = Be::size(in.reference_chosen) == n;  // dpo_pair ignores it when reference_free
  double nll_length = 0;  // sequence_mean: each pair's own length
  if (config.nll_weight != 0.0 && config.nll_aggregation == Aggregation::token_mean)
    nll_length = detail::chosen_tokens_per_pair<Be>(in.chosen_length, n);
  const detail::DpoKernel<T> kernel{config, Be::data(in.policy_chosen), Be::data(in.policy_rejected),
                                    has_reference ? Be::data(in.reference_chosen) : nullptr,
                                    has_reference ? Be::data(in.reference_rejected) : nullptr,
                                    has_lengths ? Be::data(in.chosen_length) : nullptr,
                                    has_lengths ? Be::data(in.rejected_length) : nullptr, nll_length, 1.0 / double(n),
                                    Be::data(out.losses), Be::data(out.d_policy_chosen),
                                    Be::data(out.d_policy_rejected), Be::data(out.d_reference_chosen),
                                    Be::data(out.d_reference_rejected)};
  Be::for_each(n, kernel);
  constexpr const char* cause =
      "the log-ratios of 'policy_chosen'/'policy_rejected' against 'reference_chosen'/'reference_rejected' "
      "(or the NLL term of 'policy_chosen') are too large in magnitude";
  out.loss = detail::checked_batch_loss<Be>(fn, cause, out.losses,
                                            {{"d_policy_chosen", Be::data(out.d_policy_chosen), n},
                                             {"d_policy_rejected", Be::data(out.d_policy_rejected), n},
                                             {"d_reference_chosen", Be::data(out.d_reference_chosen), n},
                                             {"d_reference_rejected", Be::data(out.d_reference_rejected), n}});
  const detail::BatchMean<Be> mean{n};
  using S = detail::DpoRewardStat;
  const auto reward_mean = [&](S stat) { return mean(detail::dpo_reward_stat<T>{kernel, stat}); };
  out.metrics.set(metric::rewards_chosen, reward_mean(S::chosen));
  out.metrics.set(metric::rewards_rejected, reward_mean(S::rejected));
  out.metrics.set(metric::rewards_accuracies, reward_mean(S::accuracy));
  out.metrics.set(metric::rewards_margins, reward_mean(S::margin));
  out.metrics.set(metric::logps_chosen, mean.of(in.policy_chosen));
  out.metrics.set(metric::logps_rejected, mean.of(in.policy_rejected));
  return out;
}

}  // namespace rlhf
