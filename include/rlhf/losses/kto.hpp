#pragma once
// Kahneman–Tversky Optimization on unpaired examples: each a completion y of a prompt x labelled desirable or
// undesirable, on per-sequence log-probabilities.
//
//   u   = log π(y|x) − log π_ref(y|x)                           (sums over the response tokens)
//   z0  = max(0, mean_j (log π(y'_j|x_j) − log π_ref(y'_j|x_j)))  over M mismatched rows (x_j, y'_j), a constant:
//                                                                no gradient flows through it (TRL's detach)
//   desirable   : λ_D (1 − σ(β (u − z0)))
//   undesirable : λ_U (1 − σ(β (z0 − u)))
//   loss = (1/B) Σ_i of the weighted losses, desirable and undesirable alike (TRL KTOTrainer's mean)
// docs/losses/kto.md has the settings, the paper and TRL's convention.
#include <cstddef>
#include <limits>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/elements.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/metric_names.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/core/validate.hpp"

namespace rlhf {

struct KtoConfig {
  double beta = 0.1;                // β: the scale of the implicit reward β u
  double desirable_weight = 1.0;    // λ_D
  double undesirable_weight = 1.0;  // λ_U
};

// Per-example inputs [B], and the M ≥ 1 mismatched rows the reference point z0 is estimated from.
template <class Vector>
struct KtoExamples {
  Vector policy, reference;          // [B] Σ log π(y_i|x_i), Σ log π_ref(y_i|x_i)
  Vector desirable;                  // [B] 1: desirable, 0: undesirable
  Vector policy_kl, reference_kl;    // [M] Σ log π, Σ log π_ref of the rows (x_j, y'_j), y'_j another row's completion
};

template <class Vector>
struct KtoResult {
  double loss = 0;  // mean over the B examples
  double kl = 0;    // z0, the reference point the loss used
  Vector losses;    // [B] per example, weighted
  // d loss / d input, [B] each (of the mean loss); none for the mismatched rows, as z0 is a constant
  Vector d_policy, d_reference;
  Metrics metrics;  // rewards/{chosen,rejected}, logps/{chosen,rejected}, kl, count/{chosen,rejected}
};

// One example's loss and its derivative: the only place the formula lives, shared by every backend. Computed in
// the wide type W (double for float inputs); the caller checks that the outputs fit T.
template <class W>
struct KtoTerm {
  W loss;
  W d_log_ratio;  // d loss / d u, before any 1/B
  W reward;       // β u
};

template <class T, class W = math::wide_t<T>>
RLHF_HOST_DEVICE inline KtoTerm<W> kto_example(const KtoConfig& c, T policy, T reference, bool desirable, W kl) {
  const W beta = W(c.beta);
  const W u = W(policy) - W(reference);
  // 1 − σ(h) = σ(−h), and d σ(−h) / d h = −σ(h) σ(−h): both finite for every finite h.
  const W h = desirable ? beta * (u - kl) : beta * (kl - u);
  const W weight = desirable ? W(c.desirable_weight) : W(c.undesirable_weight);
  const W s = math::sigmoid(h), s_neg = math::sigmoid(-h);
  const W d_dh = -weight * s * s_neg;
  return {weight * s_neg, desirable ? d_dh * beta : -d_dh * beta, beta * u};
}

namespace detail {
template <class T>
struct KtoKernel {
  KtoConfig config;
  const T *policy, *reference, *desirable;  // [B] each
  double kl, inv_batch;
  T *losses, *d_policy, *d_reference;  // [B] each

  RLHF_HOST_DEVICE KtoTerm<math::wide_t<T>> term(std::size_t i) const {
    return kto_example<T>(config, policy[i], reference[i], desirable[i] != T(0), math::wide_t<T>(kl));
  }
  RLHF_HOST_DEVICE void operator()(std::size_t i) const {
    using W = math::wide_t<T>;
    const auto k = term(i);
    losses[i] = T(k.loss);
    d_policy[i] = T(k.d_log_ratio * W(inv_batch));
    d_reference[i] = T(-k.d_log_ratio * W(inv_batch));
  }
};

template <class T>
struct kto_difference {  // a[i] − b[i], in double
  const T *a, *b;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const {
    return static_cast<double>(a[i]) - static_cast<double>(b[i]);
  }
};

// Σ over the examples of one label of a value, or their count.
enum class KtoStat { count, reward, logp };
template <class T>
struct kto_label_stat {
  KtoKernel<T> kernel;
  bool desirable;
  KtoStat stat;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const {
    if ((kernel.desirable[i] != T(0)) != desirable) return 0.0;
    switch (stat) {
      case KtoStat::count: return 1.0;
      case KtoStat::reward: return static_cast<double>(kernel.term(i).reward);
      case KtoStat::logp: return static_cast<double>(kernel.policy[i]);
    }
    return 0.0;
  }
};

template <Backend Be>
void validate_kto(const char* fn, const KtoExamples<typename Be::vector>& in, const KtoConfig& c) {
  const std::size_t n = Be::size(in.policy);
  require_nonempty(fn, "policy", n);
  require_positive(fn, "beta", c.beta);
  constexpr double largest = std::numeric_limits<float>::max();  // rejects NaN and ±Inf too
  require_in_range(fn, "desirable_weight", c.desirable_weight, 0.0, largest);
  require_in_range(fn, "undesirable_weight", c.undesirable_weight, 0.0, largest);
  require_rows<Be>(fn, "policy", in.policy, n);
  require_rows<Be>(fn, "reference", in.reference, n);
  require_size(fn, "desirable", Be::size(in.desirable), n, "the batch size");
  require_mask<Be>(fn, "desirable", Be::data(in.desirable), n);
  const std::size_t m = Be::size(in.policy_kl);
  if (m == 0)
    fail<shape_error>(fn, ": 'policy_kl' is empty; the reference point z0 needs at least one mismatched row "
                          "(a prompt with another example's completion)");
  require_rows<Be>(fn, "reference_kl", in.reference_kl, m);
  require_finite<Be>(fn, "policy_kl", in.policy_kl);
}
}  // namespace detail

template <class Vector, class Be = backend_of_t<Vector>>
KtoResult<Vector> kto_loss(const KtoExamples<Vector>& in, const KtoConfig& config = {}) {
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::kto_loss";
  detail::validate_kto<Be>(fn, in, config);
  const std::size_t n = Be::size(in.policy), m = Be::size(in.policy_kl);
  KtoResult<Vector> out;
  const double mean_kl =
      Be::sum(m, detail::kto_difference<T>{Be::data(in.policy_kl), Be::data(in.reference_kl)}) / double(m);
  out.kl = mean_kl > 0 ? mean_kl : 0.0;
  out.losses = Be::vector_of(n);
  out.d_policy = Be::vector_of(n);
  out.d_reference = Be::vector_of(n);
  const detail::KtoKernel<T> kernel{config,          Be::data(in.policy),   Be::data(in.reference),
                                    Be::data(in.desirable), out.kl,          1.0 / double(n),
                                    Be::data(out.losses),   Be::data(out.d_policy), Be::data(out.d_reference)};
  Be::for_each(n, kernel);
  constexpr const char* cause = "the log-ratios of 'policy' against 'reference' are too large in magnitude";
  detail::require_representable<Be>(fn, "the loss", Be::data(out.losses), n, cause);
  detail::require_representable<Be>(fn, "d_policy", Be::data(out.d_policy), n, cause);
  detail::require_representable<Be>(fn, "d_reference", Be::data(out.d_reference), n, cause);
  out.loss = Be::sum(n, detail::element_as_double<T>{Be::data(out.losses)}) / double(n);

  // Means over one label's examples, weighted by their count when micro-batches are combined (TRL keeps sums and
  // counts for the same reason). A label absent from the batch reports 0 with weight 0, so that every batch has
  // the same metrics (which data-parallel ranks need to join them) and the combined mean ignores it.
  using S = detail::KtoStat;
  for (const bool desirable : {true, false}) {
    const auto total = [&](S stat) { return Be::sum(n, detail::kto_label_stat<T>{kernel, desirable, stat}); };
    const double count = total(S::count);
    out.metrics.set(desirable ? metric::count_chosen : metric::count_rejected, count, Combine::sum);
    const double inv = count > 0 ? 1.0 / count : 0.0;
    out.metrics.set(desirable ? metric::rewards_chosen : metric::rewards_rejected, total(S::reward) * inv,
                    Combine::token_mean, count);
    out.metrics.set(desirable ? metric::logps_chosen : metric::logps_rejected, total(S::logp) * inv,
                    Combine::token_mean, count);
  }
  out.metrics.set(metric::kl, out.kl);
  return out;
}

}  // namespace rlhf
