#pragma once
// Bradley–Terry loss of a scalar reward model on preference pairs.
//
//   h    = r(x, y_w) − r(x, y_l) − m − m_b
//   loss = −(1−ε) log σ(h) − ε log σ(−h)  +  c · (r(x, y_w) + r(x, y_l))²      (mean over pairs)
//
// m: margin of the batch; m_b: the pair's own margin (TRL's margin column, OpenRLHF PairWiseLoss(margin));
// ε: label smoothing (probability that a label is flipped); c: reward-centering coefficient (the auxiliary
// term of Eisenstein et al. 2023, which pulls each pair's summed reward toward 0). Centering sees the raw
// rewards; no margin enters it (TRL RewardTrainer.compute_loss).
// docs/losses/bradley_terry.md has the table of settings and the papers.
#include <cstddef>
#include <limits>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/elements.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/metric_names.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/core/validate.hpp"
#include "rlhf/losses/batch_mean.hpp"

namespace rlhf {

struct BradleyTerryConfig {
  double margin = 0;              // m: reward gap the chosen response must clear (added to each pair's own margin)
  double label_smoothing = 0;     // ε in [0, 0.5): assumed probability that a label is flipped
  double center_coefficient = 0;  // c ≥ 0: weight of (r_w + r_l)², keeps rewards centred on 0
};

// Scalar rewards of the chosen and rejected responses, [B] each, and optionally a margin per pair.
template <class Vector>
struct RewardPairs {
  Vector chosen, rejected;
  Vector margin;  // [B] m_b (e.g. from rating gaps), or empty: 0
};

template <class Vector>
struct BradleyTerryResult {
  double loss = 0;               // mean over pairs
  Vector losses;                 // [B] per pair
  Vector d_chosen, d_rejected;   // [B] d loss / d reward (of the mean loss)
  Metrics metrics;               // rewards/{accuracies,chosen,rejected,margins}
};

// One pair's loss and gradients: the only place the formula lives, shared by every backend. Computed in the
// wide type W (double for float rewards), so finite rewards, even ±3e38, give finite values; the caller checks
// that they fit T.
template <class W>
struct BradleyTerryPair {
  W loss;
  W d_chosen, d_rejected;  // before any 1/B
};

template <class T, class W = math::wide_t<T>>
RLHF_HOST_DEVICE inline BradleyTerryPair<W> bradley_terry_pair(const BradleyTerryConfig& c, T chosen, T rejected,
                                                               T pair_margin = T(0)) {
  const W eps = W(c.label_smoothing), center = W(c.center_coefficient);
  const W h = W(chosen) - W(rejected) - W(c.margin) - W(pair_margin);
  const W loss = -(W(1) - eps) * math::log_sigmoid(h) - eps * math::log_sigmoid(-h);
  const W d_dh = -(W(1) - eps) * math::sigmoid(-h) + eps * math::sigmoid(h);
  if (c.center_coefficient == 0.0) return {loss, d_dh, -d_dh};  // no 0 · (r_w + r_l)², which is NaN past the range
  const W sum = W(chosen) + W(rejected);
  const W d_center = W(2) * center * sum;
  return {loss + center * sum * sum, d_dh + d_center, -d_dh + d_center};
}

namespace detail {
template <class T>
struct BradleyTerryKernel {
  BradleyTerryConfig config;
  const T *chosen, *rejected;
  const T* margin;  // [B], or null
  double inv_batch;
  T *losses, *d_chosen, *d_rejected;

  RLHF_HOST_DEVICE void operator()(std::size_t i) const {
    using W = math::wide_t<T>;
    const auto p = bradley_terry_pair<T>(config, chosen[i], rejected[i], margin ? margin[i] : T(0));
    losses[i] = T(p.loss);
    d_chosen[i] = T(p.d_chosen * W(inv_batch));
    d_rejected[i] = T(p.d_rejected * W(inv_batch));
  }
};

template <class T>
struct bt_gap {
  const T *a, *b;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return static_cast<double>(a[i]) - b[i]; }
};
template <class T>
struct bt_ordered {
  const T *a, *b;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return a[i] > b[i] ? 1.0 : 0.0; }
};
}  // namespace detail

template <class Vector, class Be = backend_of_t<Vector>>
BradleyTerryResult<Vector> bradley_terry_loss(const RewardPairs<Vector>& in, const BradleyTerryConfig& config = {}) {
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::bradley_terry_loss";
  constexpr double largest = std::numeric_limits<float>::max();
  const std::size_t n = Be::size(in.chosen);
  require_nonempty(fn, "chosen", n);
  require_in_range(fn, "margin", config.margin, -largest, largest);
  require_in_range(fn, "label_smoothing", config.label_smoothing, 0.0, max_label_smoothing);
  require_in_range(fn, "center_coefficient", config.center_coefficient, 0.0, largest);
  detail::require_rows<Be>(fn, "chosen", in.chosen, n);
  detail::require_rows<Be>(fn, "rejected", in.rejected, n);
  const bool has_margin = Be::size(in.margin) != 0;
  if (has_margin) detail::require_rows<Be>(fn, "margin", in.margin, n);

  BradleyTerryResult<Vector> out;
  out.losses = Be::vector_of(n);
  out.d_chosen = Be::vector_of(n);
  out.d_rejected = Be::vector_of(n);
  Be::for_each(n, detail::BradleyTerryKernel<T>{config, Be::data(in.chosen), Be::data(in.rejected),
                                                has_margin ? Be::data(in.margin) : nullptr, 1.0 / double(n),
                                                Be::data(out.losses), Be::data(out.d_chosen),
                                                Be::data(out.d_rejected)});
  constexpr const char* cause =
      "'chosen' − 'rejected' − 'margin' (or, with center_coefficient, their sum squared) is too large in magnitude";
  out.loss = detail::checked_batch_loss<Be>(
      fn, cause, out.losses, {{"d_chosen", Be::data(out.d_chosen), n}, {"d_rejected", Be::data(out.d_rejected), n}});
  const detail::BatchMean<Be> mean{n};
  const T* rc = Be::data(in.chosen);
  const T* rr = Be::data(in.rejected);
  out.metrics.set(metric::rewards_accuracies, mean(detail::bt_ordered<T>{rc, rr}));
  out.metrics.set(metric::rewards_chosen, mean.of(in.chosen));
  out.metrics.set(metric::rewards_rejected, mean.of(in.rejected));
  out.metrics.set(metric::rewards_margins, mean(detail::bt_gap<T>{rc, rr}));
  return out;
}

}  // namespace rlhf
