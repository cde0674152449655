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
//   + nll_weight · (−log π(y_w) / |y_w|)                 (optional NLL on the chosen response)
// docs/losses/dpo.md has the table of settings and the papers.
#include <cstddef>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/core/validate.hpp"

namespace rlhf {

enum class DpoVariant { sigmoid, robust, hinge, ipo };

struct DpoConfig {
  DpoVariant variant = DpoVariant::sigmoid;
  float beta = 0.1f;              // β: strength of the implicit KL constraint
  float label_smoothing = 0.0f;   // ε: assumed probability that a label is flipped (sigmoid, robust)
  float margin = 0.0f;            // γ: target reward margin (SimPO); not used by ipo
  bool length_normalize = false;  // divide each log-ratio by its response length
  bool reference_free = false;    // ignore the reference log-probs (π_ref uniform)
  float nll_weight = 0.0f;        // weight of the per-token NLL of the chosen response

  // SimPO: reference-free, length-normalised sigmoid loss with a margin.
  static constexpr DpoConfig simpo(float beta = 2.0f, float gamma = 1.0f) {
    return {.variant = DpoVariant::sigmoid, .beta = beta, .margin = gamma, .length_normalize = true,
            .reference_free = true};
  }
};

// Per-pair inputs, each [B]. Lengths (response token counts) may be left empty unless
// length_normalize is set or nll_weight > 0; empty means 1 (sums are used as they are).
template <class Vector>
struct PreferencePairs {
  Vector policy_chosen, policy_rejected;        // Σ log π over response tokens
  Vector reference_chosen, reference_rejected;  // Σ log π_ref; may be empty when reference_free
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

// One pair's loss and gradients: the only place the formulas live, shared by every backend.
template <class T>
struct DpoPair {
  T loss;
  T d_log_ratio_chosen, d_log_ratio_rejected;  // d loss / d (log π − log π_ref), before any 1/B
  T d_nll;                                     // extra d loss / d log π(y_w) from the NLL term
  T reward_chosen, reward_rejected;            // β u_w, β u_l
};

template <class T>
RLHF_HOST_DEVICE inline DpoPair<T> dpo_pair(const DpoConfig& c, T policy_chosen, T policy_rejected,
                                            T reference_chosen, T reference_rejected, T chosen_length,
                                            T rejected_length) {
  const T beta = T(c.beta), eps = T(c.label_smoothing);
  const T scale_w = c.length_normalize ? T(1) / chosen_length : T(1);
  const T scale_l = c.length_normalize ? T(1) / rejected_length : T(1);
  const T ref_w = c.reference_free ? T(0) : reference_chosen;
  const T ref_l = c.reference_free ? T(0) : reference_rejected;
  const T u_w = (policy_chosen - ref_w) * scale_w;
  const T u_l = (policy_rejected - ref_l) * scale_l;

  T loss = 0, d_du = 0;  // d loss / d (u_w − u_l)
  if (c.variant == DpoVariant::ipo) {
    const T r = u_w - u_l - T(1) / (T(2) * beta);
    loss = r * r;
    d_du = T(2) * r;
  } else {
    const T h = beta * (u_w - u_l) - T(c.margin);
    T d_dh = 0;
    if (c.variant == DpoVariant::sigmoid) {
      loss = -(T(1) - eps) * math::log_sigmoid(h) - eps * math::log_sigmoid(-h);
      d_dh = -(T(1) - eps) * math::sigmoid(-h) + eps * math::sigmoid(h);
    } else if (c.variant == DpoVariant::robust) {
      const T k = T(1) / (T(1) - T(2) * eps);
      loss = k * (-(T(1) - eps) * math::log_sigmoid(h) + eps * math::log_sigmoid(-h));
      d_dh = k * (-(T(1) - eps) * math::sigmoid(-h) - eps * math::sigmoid(h));
    } else {  // hinge
      loss = h < T(1) ? T(1) - h : T(0);
      d_dh = h < T(1) ? T(-1) : T(0);
    }
    d_du = d_dh * beta;
  }
  T d_nll = 0;
  if (c.nll_weight != 0.0f) {
    loss += -T(c.nll_weight) * policy_chosen / chosen_length;
    d_nll = -T(c.nll_weight) / chosen_length;
  }
  return {loss, d_du * scale_w, -d_du * scale_l, d_nll, beta * u_w, beta * u_l};
}

namespace detail {
template <class T>
struct DpoKernel {
  DpoConfig config;
  const T *policy_chosen, *policy_rejected, *reference_chosen, *reference_rejected;
  const T *chosen_length, *rejected_length;  // null: all ones
  T inv_batch;
  T *losses, *d_policy_chosen, *d_policy_rejected, *d_reference_chosen, *d_reference_rejected;
  T *reward_chosen, *reward_rejected;

  RLHF_HOST_DEVICE void operator()(std::size_t i) const {
    const T ref_w = reference_chosen ? reference_chosen[i] : T(0);
    const T ref_l = reference_rejected ? reference_rejected[i] : T(0);
    const auto p = dpo_pair<T>(config, policy_chosen[i], policy_rejected[i], ref_w, ref_l,
                               chosen_length ? chosen_length[i] : T(1), rejected_length ? rejected_length[i] : T(1));
    losses[i] = p.loss;
    d_policy_chosen[i] = (p.d_log_ratio_chosen + p.d_nll) * inv_batch;
    d_policy_rejected[i] = p.d_log_ratio_rejected * inv_batch;
    d_reference_chosen[i] = config.reference_free ? T(0) : -p.d_log_ratio_chosen * inv_batch;
    d_reference_rejected[i] = config.reference_free ? T(0) : -p.d_log_ratio_rejected * inv_batch;
    reward_chosen[i] = p.reward_chosen;
    reward_rejected[i] = p.reward_rejected;
  }
};

template <class T>
struct element {
  const T* x;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return static_cast<double>(x[i]); }
};
template <class T>
struct difference {
  const T *a, *b;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return static_cast<double>(a[i]) - b[i]; }
};
template <class T>
struct greater_count {
  const T *a, *b;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return a[i] > b[i] ? 1.0 : 0.0; }
};

// Checks shared by every DPO-style entry point.
template <Backend Be>
void validate_pairs(const char* fn, const PreferencePairs<typename Be::vector>& in, const DpoConfig& c) {
  const std::size_t n = Be::size(in.policy_chosen);
  require_nonempty(fn, "policy_chosen", n);
  require_positive(fn, "beta", c.beta);
  require_in_range(fn, "label_smoothing", c.label_smoothing, 0.0, 0.4999);
  require_rows<Be>(fn, "policy_chosen", in.policy_chosen, n);
  require_rows<Be>(fn, "policy_rejected", in.policy_rejected, n);
  if (!c.reference_free) {
    require_rows<Be>(fn, "reference_chosen", in.reference_chosen, n);
    require_rows<Be>(fn, "reference_rejected", in.reference_rejected, n);
  }
  const bool need_lengths = c.length_normalize || c.nll_weight != 0.0f;
  if (need_lengths || Be::size(in.chosen_length) || Be::size(in.rejected_length)) {
    if (need_lengths && (Be::size(in.chosen_length) == 0 || Be::size(in.rejected_length) == 0))
      fail<shape_error>(fn, ": 'chosen_length' and 'rejected_length' are required when length_normalize is set "
                            "or nll_weight != 0");
    require_rows<Be>(fn, "chosen_length", in.chosen_length, n);
    require_rows<Be>(fn, "rejected_length", in.rejected_length, n);
    require_all_positive<Be>(fn, "chosen_length", in.chosen_length);
    require_all_positive<Be>(fn, "rejected_length", in.rejected_length);
  }
}
}  // namespace detail

template <class Vector, class Be = backend_of_t<Vector>>
DpoResult<Vector> dpo_loss(const PreferencePairs<Vector>& in, const DpoConfig& config = {}) {
  using T = typename Be::scalar;
  detail::validate_pairs<Be>("rlhf::dpo_loss", in, config);
  const std::size_t n = Be::size(in.policy_chosen);
  DpoResult<Vector> out;
  out.losses = Be::vector_of(n);
  out.d_policy_chosen = Be::vector_of(n);
  out.d_policy_rejected = Be::vector_of(n);
  out.d_reference_chosen = Be::vector_of(n);
  out.d_reference_rejected = Be::vector_of(n);
  Vector reward_chosen = Be::vector_of(n), reward_rejected = Be::vector_of(n);
  const bool has_lengths = Be::size(in.chosen_length) == n;
  Be::for_each(n, detail::DpoKernel<T>{
                      config, Be::data(in.policy_chosen), Be::data(in.policy_rejected),
                      config.reference_free ? nullptr : Be::data(in.reference_chosen),
                      config.reference_free ? nullptr : Be::data(in.reference_rejected),
                      has_lengths ? Be::data(in.chosen_length) : nullptr,
                      has_lengths ? Be::data(in.rejected_length) : nullptr, T(1) / T(n), Be::data(out.losses),
                      Be::data(out.d_policy_chosen), Be::data(out.d_policy_rejected),
                      Be::data(out.d_reference_chosen), Be::data(out.d_reference_rejected),
                      Be::data(reward_chosen), Be::data(reward_rejected)});
  const double inv_n = 1.0 / static_cast<double>(n);
  const T* rc = Be::data(reward_chosen);
  const T* rr = Be::data(reward_rejected);
  out.loss = Be::sum(n, detail::element<T>{Be::data(out.losses)}) * inv_n;
  out.metrics.set("rewards/chosen", Be::sum(n, detail::element<T>{rc}) * inv_n);
  out.metrics.set("rewards/rejected", Be::sum(n, detail::element<T>{rr}) * inv_n);
  out.metrics.set("rewards/accuracies", Be::sum(n, detail::greater_count<T>{rc, rr}) * inv_n);
  out.metrics.set("rewards/margins", Be::sum(n, detail::difference<T>{rc, rr}) * inv_n);
  out.metrics.set("logps/chosen", Be::sum(n, detail::element<T>{Be::data(in.policy_chosen)}) * inv_n);
  out.metrics.set("logps/rejected", Be::sum(n, detail::element<T>{Be::data(in.policy_rejected)}) * inv_n);
  return out;
}

}  // namespace rlhf
