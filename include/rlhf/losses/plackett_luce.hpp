#pragma once
// Plackett–Luce negative log-likelihood of ranked lists of scores (ListMLE).
//
// Row b holds K_b scores s_0..s_{K_b−1}, ranked best first. The ranking is a sequence of choices:
// stage k picks item k among those not yet picked, with probability e^{s_k} / Σ_{j ≥ k} e^{s_j}.
//
//   loss_b = −Σ_{k < S} [ s_k − log Σ_{j=k}^{K_b−1} e^{s_j} ]      S = K_b − 1, or min(top_k, K_b − 1)
//   loss   = mean over rows
//
// K = 2 is the Bradley–Terry loss. Columns past K_b are padding: never read into the loss, zero gradient.
// docs/losses/plackett_luce.md has the settings and the papers.
#include <cmath>
#include <cstddef>
#include <type_traits>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/elements.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/metric_names.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/core/validate.hpp"
#include "rlhf/losses/batch_mean.hpp"

namespace rlhf {

struct PlackettLuceConfig {
  std::size_t top_k = 0;  // 0: the full ranking; else only the first top_k choice stages count
};

template <class Matrix, class Vector>
struct PlackettLuceResult {
  double loss = 0;   // mean over rows
  Vector losses;     // [B] per row
  Matrix d_scores;   // [B, K] d loss / d score (of the mean loss); 0 past each row's length
  Metrics metrics;   // rewards/{accuracies,chosen,rejected,margins}
};

// Choice stages of a row of n ranked items: the last item is never chosen, it is what remains.
RLHF_HOST_DEVICE inline std::size_t plackett_luce_stages(std::size_t n, std::size_t top_k) {
  return top_k == 0 || top_k > n - 1 ? n - 1 : top_k;
}

// One ranked row: returns loss_b and writes d[j] = d loss_b / d s_j for j < n. score(j) gives s_j (a
// functor, so listwise DPO feeds in its implicit rewards without a copy). The only place the formula lives.
//
// Two O(n) sweeps. Backward: the suffix log-sum-exps L_k = log Σ_{j ≥ k} e^{s_j}, kept in d as scratch.
// Forward: d loss / d s_j = Σ_{k ≤ m} e^{s_j − L_k} − [j < S] with m = min(j, S − 1), computed as
// e^{s_j − L_m} · A_m with A_m = Σ_{k ≤ m} e^{L_m − L_k} = 1 + A_{m−1} e^{L_m − L_{m−1}}. L is non-increasing
// and s_j ≤ L_m, so every exponent is ≤ 0 and nothing overflows at any score spread. The loss is summed in the
// wide type (double for float), since L_k − s_k of scores ±3e38 exceeds float; the caller checks it fits T.
template <class T, class Row>
RLHF_HOST_DEVICE inline math::wide_t<T> plackett_luce_row(const Row& score, std::size_t n, std::size_t stages, T* d) {
  using std::exp;
  using std::expm1;
  using std::log1p;
  T lse = score(n - 1);
  d[n - 1] = lse;
  for (std::size_t k = n - 1; k-- > 0;) {
    const T s = score(k);
    lse = lse > s ? lse + log1p(exp(s - lse)) : s + log1p(exp(lse - s));
    d[k] = lse;
  }
  math::wide_t<T> loss = 0;
  T a = 0, l_m = 0;  // A_m and L_m of the latest stage m
  for (std::size_t j = 0; j < n; ++j) {
    const T s = score(j);
    if (j < stages) {
      const T l = d[j];
      const T carried = j == 0 ? T(0) : a * exp(l - l_m);  // A_j − 1
      a = T(1) + carried;
      l_m = l;
      loss += math::wide_t<T>(l) - math::wide_t<T>(s);
      d[j] = expm1(s - l) + carried * exp(s - l);  // A_j e^{s_j − L_j} − 1, exact when A_j = 1
    } else {
      d[j] = a * exp(s - l_m);
    }
  }
  return loss;
}

namespace detail {

template <class T>
RLHF_HOST_DEVICE inline std::size_t ranked_length(const T* lengths, std::size_t row, std::size_t cols) {
  return lengths ? static_cast<std::size_t>(lengths[row]) : cols;
}

// Row accessors: rows(b) gives a functor j -> score of item j in row b.
template <class T>
struct score_row {
  const T* s;  // [K]
  RLHF_HOST_DEVICE T operator()(std::size_t j) const { return s[j]; }
};
template <class T>
struct score_rows {
  const T* s;  // [B, K]
  std::size_t cols;
  RLHF_HOST_DEVICE score_row<T> operator()(std::size_t b) const { return {s + b * cols}; }
};


template <class T>
struct PlackettLuceKernel {
  const T* scores;   // [B, K]
  const T* lengths;  // [B], null: all K
  std::size_t cols, top_k;
  T inv_batch;
  T *losses, *d_scores;  // [B], [B, K]

  RLHF_HOST_DEVICE void operator()(std::size_t b) const {
    const std::size_t n = ranked_length(lengths, b, cols);
    T* d = d_scores + b * cols;
    losses[b] = T(plackett_luce_row<T>(score_row<T>{scores + b * cols}, n, plackett_luce_stages(n, top_k), d));
    for (std::size_t j = 0; j < n; ++j) d[j] *= inv_batch;
  }
};

// Per-row reductions over ranked lists; Rows is score_rows or listwise DPO's implicit rewards.
template <class T, class Rows>
struct ranked_first {
  Rows rows;
  RLHF_HOST_DEVICE double operator()(std::size_t b) const { return static_cast<double>(rows(b)(0)); }
};
template <class T, class Rows>
struct ranked_last {
  Rows rows;
  const T* lengths;
  std::size_t cols;
  RLHF_HOST_DEVICE double operator()(std::size_t b) const {
    return static_cast<double>(rows(b)(ranked_length(lengths, b, cols) - 1));
  }
};
template <class T, class Rows>
struct ranked_spread {  // first − last
  Rows rows;
  const T* lengths;
  std::size_t cols;
  RLHF_HOST_DEVICE double operator()(std::size_t b) const {
    const auto row = rows(b);
    return static_cast<double>(row(0)) - static_cast<double>(row(ranked_length(lengths, b, cols) - 1));
  }
};
template <class T, class Rows>
struct ranked_top_pair {  // 1 when item 0 outscores item 1
  Rows rows;
  RLHF_HOST_DEVICE double operator()(std::size_t b) const {
    const auto row = rows(b);
    return row(0) > row(1) ? 1.0 : 0.0;
  }
};
template <class T, class Rows>
struct ranked_top_choice {  // 1 when item 0 outscores every other item of its row
  Rows rows;
  const T* lengths;
  std::size_t cols;
  RLHF_HOST_DEVICE double operator()(std::size_t b) const {
    const auto row = rows(b);
    const std::size_t n = ranked_length(lengths, b, cols);
    for (std::size_t j = 1; j < n; ++j)
      if (!(row(0) > row(j))) return 0.0;
    return 1.0;
  }
};

template <class T>
struct ranked_non_finite_count {  // over [B*K], counting only entries inside each row's length
  const T* x;
  const T* lengths;
  std::size_t cols;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const {
    return i % cols < ranked_length(lengths, i / cols, cols) && !math::is_finite(x[i]) ? 1.0 : 0.0;
  }
};

// Checks a [B, K] ranked input and its lengths [B] (empty: every row has K items). Lengths are read on
// the host, so a bad one is named by row and value.
template <Backend Be>
void validate_ranking(const char* fn, const char* arg, const typename Be::matrix& x, const typename Be::vector& lengths) {
  using T = typename Be::scalar;
  const std::size_t rows = Be::rows(x), cols = Be::cols(x);
  require_nonempty(fn, arg, rows);
  if (Be::size(lengths) == 0) {
    if (cols < 2)
      fail<shape_error>(fn, ": '", arg, "' has ", cols, " column(s); a ranking needs at least 2 items per row");
  } else {
    require_size(fn, "lengths", Be::size(lengths), rows, detail::cat("the number of rows of '", arg, "'"));
    const auto host = Be::to_host(lengths);
    for (std::size_t b = 0; b < rows; ++b) {
      const T v = host[b];
      if (!math::is_finite(v) || v != std::floor(v))
        fail<value_error>(fn, ": 'lengths' row ", b, " is ", v, "; a length must be a whole number");
      if (v < T(2))
        fail<value_error>(fn, ": 'lengths' row ", b, " is ", v, "; a ranking needs at least 2 items");
      if (v > T(cols))
        fail<value_error>(fn, ": 'lengths' row ", b, " is ", v, " but '", arg, "' has only ", cols, " columns");
    }
  }
  const T* len = Be::size(lengths) ? Be::data(lengths) : nullptr;
  const double bad = Be::sum(rows * cols, ranked_non_finite_count<T>{Be::data(x), len, cols});
  if (bad > 0)
    fail<value_error>(fn, ": '", arg, "' holds ", bad, " NaN or Inf value(s) among its ranked entries [", rows, "x",
                      cols, "]");
}

}  // namespace detail

template <class Matrix, class Vector = typename backend_of_t<Matrix>::vector, class Be = backend_of_t<Matrix>>
PlackettLuceResult<Matrix, Vector> plackett_luce_loss(const Matrix& scores, const Vector& lengths,
                                                      const PlackettLuceConfig& config = {}) {
  static_assert(std::is_same_v<Vector, typename Be::vector>,
                "rlhf::plackett_luce_loss: 'lengths' must be the vector type of the backend of 'scores'");
  using T = typename Be::scalar;
  detail::validate_ranking<Be>("rlhf::plackett_luce_loss", "scores", scores, lengths);
  const std::size_t n = Be::rows(scores), cols = Be::cols(scores);
  const T* len = Be::size(lengths) ? Be::data(lengths) : nullptr;

  PlackettLuceResult<Matrix, Vector> out;
  out.losses = Be::vector_of(n);
  out.d_scores = Be::matrix_of(n, cols);
  Be::for_each(n, detail::PlackettLuceKernel<T>{Be::data(scores), len, cols, config.top_k, T(1) / T(n),
                                                Be::data(out.losses), Be::data(out.d_scores)});
  constexpr const char* cause = "the spread of 'scores' within a row is too large";
  out.loss = detail::checked_batch_loss<Be>("rlhf::plackett_luce_loss", cause, out.losses,
                                            {{"d_scores", Be::data(out.d_scores), n * cols}});
  const detail::BatchMean<Be> mean{n};
  const detail::score_rows<T> rows{Be::data(scores), cols};
  using Rows = detail::score_rows<T>;
  out.metrics.set(metric::rewards_accuracies, mean(detail::ranked_top_choice<T, Rows>{rows, len, cols}));
  out.metrics.set(metric::rewards_chosen, mean(detail::ranked_first<T, Rows>{rows}));
  out.metrics.set(metric::rewards_rejected, mean(detail::ranked_last<T, Rows>{rows, len, cols}));
  out.metrics.set(metric::rewards_margins, mean(detail::ranked_spread<T, Rows>{rows, len, cols}));
  return out;
}

}  // namespace rlhf
