#pragma once
// KL divergence between the policy π and a reference π_ref, two ways.
//
// 1. Sample estimators (Schulman 2020, "Approximating KL Divergence") on per-token log-probs [B, T]
//    of tokens sampled from π, with a 0/1 mask. With r = log π_ref − log π per token:
//      k1 = −r              unbiased, high variance, can be negative
//      k2 = r² / 2          biased, low variance, ≥ 0
//      k3 = (e^r − 1) − r   unbiased, low variance, ≥ 0
//    per_sequence[b] = Σ_t m[b,t] k[b,t];  mean = (1/B) Σ_b per_sequence[b] by default, or the token mean
//    Σ m k / Σ m, or the mean of the rows' token means (KlConfig::aggregation, aggregation.hpp).
//    KlConfig::clamp > 0 clamps each token's estimate to [−clamp, clamp] (OpenRLHF: 10); its gradient is 0
//    where the clamp is active.
//    k3 reads r as min(r, kl_k3_max_log_ratio<T>) (44 in float, 354 in double: about half of
//    log(max)), so e^r stays below √max and sums of many tokens stay finite; above the cap the value
//    and gradient are those at the cap.
//
// 2. The exact KL(p ‖ q) = Σ_v p_v (log p_v − log q_v) of two sets of logits [N, V], one row at a time
//    through logsumexp, with its gradient with respect to the logits of p:
//      d KL / d z_p = p ⊙ (log p − log q − KL).
//    Rounding can make the sum slightly negative for nearly equal rows; the value returned is max(KL, 0).
// docs/losses/kl.md.
#include <cmath>
#include <cstddef>
#include <type_traits>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/elements.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/validate.hpp"
#include "rlhf/losses/aggregation.hpp"
#include "rlhf/losses/token_loss.hpp"

namespace rlhf {

enum class KlEstimator { k1, k2, k3 };

struct KlConfig {
  KlEstimator estimator = KlEstimator::k1;
  Aggregation aggregation = Aggregation::sequence_sum;  // kl_estimate's mean: (1/B) Σ_b Σ_t m k (TRL's objective/kl)
  double clamp = 0.0;  // > 0: each token's estimate is clamped to [−clamp, clamp] (OpenRLHF: 10); 0 = off
};

// The largest log-ratio r that k3 exponentiates, per scalar type.
template <class T>
inline constexpr T kl_k3_max_log_ratio = sizeof(T) >= 8 ? T(354) : T(44);

template <class Matrix, class Vector>
struct KlResult {
  double mean = 0;            // aggregated as KlConfig::aggregation says (default: mean over rows of per_sequence)
  Vector per_sequence;        // [B] Σ_t m k
  Matrix per_token;           // [B, T] k, zero where masked
  Matrix d_logp, d_ref_logp;  // [B, T] d mean / d log π and d mean / d log π_ref; zero where masked
};

template <class Matrix, class Vector>
struct ExactKlResult {
  double mean = 0;    // mean of per_row over the rows whose mask is 1
  Vector per_row;     // [N] KL(p_i ‖ q_i); zero where the mask is 0
  Matrix d_logits_p;  // [N, V] d mean / d logits_p; zero in masked rows
};

// One token's estimate and its derivatives with respect to log π and log π_ref, in the wide type W (double
// for float: r of log-probs ±3e38 stays finite; the caller checks the results fit T). clamp > 0 bounds the
// estimate to [−clamp, clamp], with gradient 0 strictly outside (at the bound it passes, as torch.clamp's does).
template <class W>
struct KlToken {
  W value, d_logp, d_ref_logp;
};

template <class T, class W = math::wide_t<T>>
RLHF_HOST_DEVICE inline KlToken<W> kl_token(KlEstimator estimator, T logp, T ref_logp, double clamp = 0.0) {
  using std::expm1;
  const W r = W(ref_logp) - W(logp);
  KlToken<W> k;
  if (estimator == KlEstimator::k1) {
    k = {-r, W(1), W(-1)};
  } else if (estimator == KlEstimator::k2) {
    k = {r * r / W(2), -r, r};
  } else {
    const W cap = W(kl_k3_max_log_ratio<T>);
    const W rc = r < cap ? r : cap;
    const W e = expm1(rc);  // d k3 / d r = e^r − 1
    k = {e - rc, -e, e};
  }
  if (clamp > 0.0 && (k.value > W(clamp) || k.value < -W(clamp)))
    k = {k.value > W(0) ? W(clamp) : -W(clamp), W(0), W(0)};
  return k;
}

// KL(p ‖ q) of one row of logits [V]; writes d[v] = scale · d KL / d zp[v]. Three passes over the row
// (maxima, sums of exponentials, KL) and one to write the gradient; nothing of size V is stored
// besides d. Sums are accumulated in double.
template <class T>
RLHF_HOST_DEVICE inline double exact_kl_row(const T* zp, const T* zq, std::size_t vocab, T scale, T* d) {
  using std::exp;
  using std::log;
  T max_p = zp[0], max_q = zq[0];
  for (std::size_t v = 1; v < vocab; ++v) {
    max_p = zp[v] > max_p ? zp[v] : max_p;
    max_q = zq[v] > max_q ? zq[v] : max_q;
  }
  double sum_p = 0, sum_q = 0;
  for (std::size_t v = 0; v < vocab; ++v) {
    sum_p += static_cast<double>(exp(zp[v] - max_p));
    sum_q += static_cast<double>(exp(zq[v] - max_q));
  }
  const T lse_p = max_p + T(log(sum_p)), lse_q = max_q + T(log(sum_q));
  // log p_v − log q_v = (zp_v − zq_v) − lse_gap, taken in double for float (logits of ±3e38 stay finite)
  using W = math::wide_t<T>;
  const W lse_gap = W(lse_p) - W(lse_q);
  double kl = 0;
  for (std::size_t v = 0; v < vocab; ++v)
    kl += static_cast<double>(W(exp(zp[v] - lse_p)) * ((W(zp[v]) - W(zq[v])) - lse_gap));
  for (std::size_t v = 0; v < vocab; ++v)
    d[v] = T(W(scale) * W(exp(zp[v] - lse_p)) * ((W(zp[v]) - W(zq[v])) - lse_gap - W(kl)));
  // KL ≥ 0; for nearly equal rows rounding can leave a value of order −1e-15 (double), read as 0. NaN stays NaN.
  return kl < 0 ? 0.0 : kl;
}

namespace detail::kl {
// One row: its tokens' estimates, their sum, and the gradients of the mean (the row's weight, aggregation.hpp,
// times each token's derivatives).
template <class T>
struct KlEstimateKernel {
  KlConfig config;
  aggregation::Weights weights;
  const T *logp, *ref_logp, *mask;     // [B, T]
  std::size_t cols;                    // T
  T *per_token, *d_logp, *d_ref_logp;  // [B, T]
  T* per_sequence;                     // [B]

  RLHF_HOST_DEVICE void operator()(std::size_t i) const {
    using W = math::wide_t<T>;
    const W w = W(aggregation::row_weight(weights, aggregation::row_tokens(mask, i, cols)));
    double total = 0;
    for (std::size_t j = i * cols; j < (i + 1) * cols; ++j) {
      if (mask[j] != T(0)) {
        const auto k = kl_token<T>(config.estimator, logp[j], ref_logp[j], config.clamp);
        total += static_cast<double>(k.value);
        per_token[j] = T(k.value);
        d_logp[j] = T(k.d_logp * w);
        d_ref_logp[j] = T(k.d_ref_logp * w);
      } else {
        per_token[j] = d_logp[j] = d_ref_logp[j] = T(0);
      }
    }
    per_sequence[i] = T(total);
  }
};

// One token's estimate, as the token kernel of token_loss.hpp (its mean is that driver's loss).
template <class T>
struct KlTokenKernel {
  KlConfig config;
  const T *logp, *ref_logp;  // [B, T] x 2
  RLHF_HOST_DEVICE TokenLoss<math::wide_t<T>> operator()(std::size_t i) const {
    const auto k = kl_token<T>(config.estimator, logp[i], ref_logp[i], config.clamp);
    return {k.value, k.d_logp};
  }
};

template <class T>
struct ExactKlKernel {
  const T *logits_p, *logits_q;  // [N, V]
  const T* mask;                 // [N]
  std::size_t vocab;             // V
  T inv_rows;                    // 1 / Σ mask
  T* per_row;                    // [N]
  T* d_logits_p;                 // [N, V]

  RLHF_HOST_DEVICE void operator()(std::size_t i) const {
    T* d = d_logits_p + i * vocab;
    if (mask[i] == T(0)) {
      per_row[i] = T(0);
      for (std::size_t v = 0; v < vocab; ++v) d[v] = T(0);
      return;
    }
    per_row[i] = T(exact_kl_row<T>(logits_p + i * vocab, logits_q + i * vocab, vocab, inv_rows, d));
  }
};


template <class T>
struct non_finite_in_masked_row_count {
  const T* x;     // [N, V]
  const T* mask;  // [N]
  std::size_t cols;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const {
    if (mask[i] == T(0)) return 0.0;
    double bad = 0;
    for (std::size_t v = i * cols; v < (i + 1) * cols; ++v) bad += math::is_finite(x[v]) ? 0.0 : 1.0;
    return bad;
  }
};

inline void require_config(const char* fn, const KlConfig& c) {
  if (c.estimator != KlEstimator::k1 && c.estimator != KlEstimator::k2 && c.estimator != KlEstimator::k3)
    fail<config_error>(fn, ": estimator must be KlEstimator::k1, ::k2 or ::k3 (got ", static_cast<int>(c.estimator),
                       ")");
  aggregation::require_valid(fn, c.aggregation, 1.0, "");
  if (!(c.clamp >= 0.0) || !std::isfinite(c.clamp))
    fail<config_error>(fn, ": clamp must be finite and >= 0 (0 = off) (got ", c.clamp, ")");
}

template <Backend Be>
void require_finite_in_masked_rows(const char* fn, const char* arg, const typename Be::matrix& x,
                                   const typename Be::vector& mask) {
  const double bad = Be::sum(
      Be::rows(x), non_finite_in_masked_row_count<typename Be::scalar>{Be::data(x), Be::data(mask), Be::cols(x)},
      Be::cols(x));
  if (bad > 0) fail<value_error>(fn, ": '", arg, "' holds ", bad, " NaN or Inf value(s) in rows whose mask is 1");
}
}  // namespace detail::kl

// logp, ref_logp: [B, T] log π and log π_ref of the sampled tokens; mask: [B, T] 0/1. A row with no
// token set contributes 0 (it still counts in B).
template <class Matrix, class Be = backend_of_t<Matrix>>
KlResult<Matrix, typename Be::vector> kl_estimate(const Matrix& logp, const Matrix& ref_logp, const Matrix& mask,
                                                  const KlConfig& config) {
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::kl_estimate";
  detail::kl::require_config(fn, config);
  const std::size_t rows = Be::rows(logp), cols = Be::cols(logp), n = rows * cols;
  require_nonempty(fn, "logp", rows);
  detail::require_shape<Be>(fn, "ref_logp", ref_logp, rows, cols, "'logp'");
  detail::require_shape<Be>(fn, "mask", mask, rows, cols, "'logp'");
  detail::require_mask<Be>(fn, "mask", Be::data(mask), n);
  detail::require_finite_where_masked<Be>(fn, "logp", Be::data(logp), Be::data(mask), n);
  detail::require_finite_where_masked<Be>(fn, "ref_logp", Be::data(ref_logp), Be::data(mask), n);

  KlResult<Matrix, typename Be::vector> out;
  out.per_sequence = Be::vector_of(rows);
  out.per_token = Be::matrix_of(rows, cols);
  out.d_logp = Be::matrix_of(rows, cols);
  out.d_ref_logp = Be::matrix_of(rows, cols);
  const auto weights = detail::aggregation::weights_of<Be>(config.aggregation, mask, 1.0);
  Be::for_each(rows,
               detail::kl::KlEstimateKernel<T>{config, weights, Be::data(logp), Be::data(ref_logp), Be::data(mask),
                                               cols, Be::data(out.per_token), Be::data(out.d_logp),
                                               Be::data(out.d_ref_logp), Be::data(out.per_sequence)},
               cols);
  constexpr const char* cause = "'ref_logp' − 'logp' is too large in magnitude";
  detail::require_representable<Be>(fn, "per_token", Be::data(out.per_token), n, cause);
  detail::require_representable<Be>(fn, "per_sequence", Be::data(out.per_sequence), rows, cause);
  detail::require_representable<Be>(fn, "d_logp", Be::data(out.d_logp), n, cause);
  out.mean =
      token_loss_value<Be>(detail::kl::KlTokenKernel<T>{config, Be::data(logp), Be::data(ref_logp)}, weights, mask);
  return out;
}

// The same with only the estimator chosen (the other settings at their defaults).
template <class Matrix, class Be = backend_of_t<Matrix>>
KlResult<Matrix, typename Be::vector> kl_estimate(const Matrix& logp, const Matrix& ref_logp, const Matrix& mask,
                                                  KlEstimator estimator = KlEstimator::k1) {
  return kl_estimate(logp, ref_logp, mask, KlConfig{.estimator = estimator});
}

// logits_p, logits_q: [N, V] unnormalised log-probabilities of p and q (e.g. policy and reference at N
// positions); mask: [N] 0/1, the rows to average over (at least one). Rows whose mask is 0 may hold anything.
template <class Matrix, class Vector, class Be = backend_of_t<Matrix>>
ExactKlResult<Matrix, Vector> exact_kl_from_logits(const Matrix& logits_p, const Matrix& logits_q, const Vector& mask) {
  static_assert(std::is_same_v<Vector, typename Be::vector>,
                "rlhf::exact_kl_from_logits: 'mask' must be the vector type of the logits' backend");
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::exact_kl_from_logits";
  const std::size_t rows = Be::rows(logits_p), vocab = Be::cols(logits_p);
  require_nonempty(fn, "logits_p", rows);
  if (vocab == 0) fail<shape_error>(fn, ": 'logits_p' has 0 columns (an empty vocabulary)");
  detail::require_shape<Be>(fn, "logits_q", logits_q, rows, vocab, "'logits_p'");
  require_size(fn, "mask", Be::size(mask), rows, "the number of rows of 'logits_p'");
  detail::require_mask<Be>(fn, "mask", Be::data(mask), rows);
  detail::kl::require_finite_in_masked_rows<Be>(fn, "logits_p", logits_p, mask);
  detail::kl::require_finite_in_masked_rows<Be>(fn, "logits_q", logits_q, mask);
  const double selected = Be::sum(rows, detail::element_as_double<T>{Be::data(mask)});
  if (selected == 0) fail<value_error>(fn, ": 'mask' selects none of the ", rows, " rows");

  ExactKlResult<Matrix, Vector> out;
  out.per_row = Be::vector_of(rows);
  out.d_logits_p = Be::matrix_of(rows, vocab);
  Be::for_each(rows,
               detail::kl::ExactKlKernel<T>{Be::data(logits_p), Be::data(logits_q), Be::data(mask), vocab,
                                            T(1.0 / selected), Be::data(out.per_row), Be::data(out.d_logits_p)},
               vocab);
  constexpr const char* cause = "'logits_p' and 'logits_q' differ by too much";
  detail::require_representable<Be>(fn, "per_row", Be::data(out.per_row), rows, cause);
  detail::require_representable<Be>(fn, "d_logits_p", Be::data(out.d_logits_p), rows * vocab, cause);
  out.mean = Be::sum(rows, detail::element_as_double<T>{Be::data(out.per_row)}) / selected;
  return out;
}

}  // namespace rlhf
