#pragma once
// Sequence log-probability from logits: a fused log-softmax + gather of the target + masked reduction,
// and its backward straight to d logits. The log-softmax of the batch is never materialised: each row
// of logits is read, reduced to (max, log Σ exp) and its target's log-prob, and (backward) turned into
// its gradient row while it is still in cache.
//
//   row r (N = B·T rows, row r predicts targets[r]; the caller has already shifted):
//     m_r = max_v x[r,v],   s_r = Σ_v exp(x[r,v] − m_r)
//     log p_r = (x[r,t_r] − m_r) − log s_r                       (t_r = targets[r])
//     d log p_r / d x[r,v] = 1[v = t_r] − exp(x[r,v] − m_r) / s_r
//   sequence b (rows b·T … b·T+T−1, mask 0/1):
//     sum      : Σ_t mask · log p          mean : that sum / Σ_t mask
//     per_token: mask · log p, [B, T]
// docs/models/logprob.md has the settings and a worked example.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/elements.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/core/reduction.hpp"
#include "rlhf/core/validate.hpp"

namespace rlhf {

struct SequenceLogprobConfig {
  Reduction reduction = Reduction::sum;  // what the output is: Σ, mean or per-token log p
};

// How a backward writes d logits into the caller's buffer.
enum class GradWrite { overwrite, accumulate };

template <class Be>
struct SequenceLogprobResult {
  // The output: sequence [B] for sum / mean; tokens [B, T] for per_token. Both are always filled
  // (for per_token, sequence holds the sum over response tokens, a by-product not differentiated).
  typename Be::vector sequence;         // [B] Σ or mean of log p over each sequence's response tokens
  typename Be::matrix tokens;           // [B, T] log p of each target, 0 where mask is 0
  typename Be::vector row_max;          // [N] m_r = max_v logits[r, v]; 0 where mask is 0
  typename Be::vector row_log_sum;      // [N] log Σ_v exp(logits[r, v] − m_r); logsumexp = row_max + row_log_sum
  typename Be::vector response_length;  // [B] Σ_t mask
  SequenceLogprobConfig config;
  std::size_t batch = 0, time = 0, vocab = 0;  // B, T, V
  Metrics metrics;                             // logps/sequence (mean of sequence), logps/token, tokens/response
};

// ---- One row: the only place the formulas live ---------------------------------------------------
// x is one row of V logits; `next` (may be null) is the row the caller reads after this one. The passes
// that compute on a cached row go in chunks, each followed by a prefetch of the same chunk of `next`, so
// that the next row streams in from memory while this one is computed on (a whole-row prefetch up front
// would only wait for memory). The chunking is the same with or without `next`: results never depend on it.
// 256 elements = 16 cache lines of float per burst, about what one core keeps in flight (64 to 256 measured
// alike on the development machine; 1024 no better than no prefetch at all).
inline constexpr std::size_t logprob_chunk = 256;

template <class T>
struct RowLogprob {
  T max;      // m = max_v x[v]
  T log_sum;  // log s, s = Σ_v exp(x[v] − m)
  T logprob;  // log p(target) = (x[target] − m) − log s
};

// log p of x[target] under softmax(x). Not finite when the row holds NaN or +Inf, or x[target] is −Inf
// (other −Inf entries are allowed: they have probability 0).
template <class Be, class T>
RLHF_HOST_DEVICE inline RowLogprob<T> row_logprob(const T* x, std::size_t vocab, std::int32_t target, const T* next) {
  using std::log;
  const T m = Be::row_max(x, vocab);
  T s = T(0);
  for (std::size_t i = 0; i < vocab; i += logprob_chunk) {
    const std::size_t len = vocab - i < logprob_chunk ? vocab - i : logprob_chunk;
    s += Be::row_sum_exp(x + i, len, m);
    if (next) Be::row_prefetch(next + i, len);
  }
  const T log_sum = log(s);
  return {m, log_sum, (x[target] - m) - log_sum};
}

// dx[v] (+)= g · (1[v = target] − softmax(x)[v]), the gradient of g · log p(target), from the forward's
// max and log_sum. dx may be x itself (in place, overwrite only).
template <class Be, class T>
RLHF_HOST_DEVICE inline void row_logprob_backward(T* dx, const T* x, std::size_t vocab, std::int32_t target, T max,
                                                  T log_sum, T g, bool accumulate, const T* next = nullptr) {
  using std::exp;
  const T scale = -g * exp(-log_sum);  // −g · e^{x−m} / s
  for (std::size_t i = 0; i < vocab; i += logprob_chunk) {
    const std::size_t len = vocab - i < logprob_chunk ? vocab - i : logprob_chunk;
    Be::row_scaled_exp(dx + i, x + i, len, max, scale, accumulate);
    if (next) Be::row_prefetch(next + i, len);
  }
  dx[target] += g;
}

// Both at once, overwriting dx: e^{x−m} is written to dx as it is summed, then scaled by −g / s, so each
// exp is computed once. dx may be x itself.
template <class Be, class T>
RLHF_HOST_DEVICE inline RowLogprob<T> row_logprob_with_grad(T* dx, const T* x, std::size_t vocab, std::int32_t target,
                                                            T g, const T* next) {
  using std::log;
  const T target_logit = x[target];
  const T m = Be::row_max(x, vocab);
  T s = T(0);
  for (std::size_t i = 0; i < vocab; i += logprob_chunk) {
    const std::size_t len = vocab - i < logprob_chunk ? vocab - i : logprob_chunk;
    s += Be::row_exp(dx + i, x + i, len, m);
    if (next) Be::row_prefetch(next + i, len);
  }
  Be::row_scale(dx, vocab, -g / s);
  dx[target] += g;
  const T log_sum = log(s);
  return {m, log_sum, (target_logit - m) - log_sum};
}

namespace detail::lp {

// The next row, after r, with a response token (within a few rows), or null: the one to prefetch.
template <class T>
RLHF_HOST_DEVICE inline const T* next_response_row(const T* logits, const T* mask, std::size_t rows, std::size_t vocab,
                                                   std::size_t r) {
  for (std::size_t k = r + 1; k < rows && k <= r + 8; ++k)
    if (mask[k] != T(0)) return logits + k * vocab;
  return nullptr;
}

// Forward over rows; masked-out rows are not read.
template <class Be>
struct RowKernel {
  using T = typename Be::scalar;
  const T* logits;  // [N, V]
  const std::int32_t* targets;
  const T* mask;
  std::size_t rows, vocab;             // N, V
  T *logprob, *row_max, *row_log_sum;  // [N] each

  RLHF_HOST_DEVICE void operator()(std::size_t r) const {
    if (mask[r] == T(0)) {
      logprob[r] = row_max[r] = row_log_sum[r] = T(0);
      return;
    }
    const auto p =
        row_logprob<Be>(logits + r * vocab, vocab, targets[r], next_response_row(logits, mask, rows, vocab, r));
    logprob[r] = p.logprob;
    row_max[r] = p.max;
    row_log_sum[r] = p.log_sum;
  }
};

// d log p_r of each row from d output: d_output is [B] (sum, mean) or [N] (per_token).
template <class T>
struct RowUpstream {
  const T* d_output;
  const T* response_length;  // [B]
  std::size_t time;
  Reduction reduction;

  RLHF_HOST_DEVICE T operator()(std::size_t r) const {
    if (reduction == Reduction::per_token) return d_output[r];
    const std::size_t b = r / time;
    return reduction == Reduction::mean ? d_output[b] / response_length[b] : d_output[b];
  }
};

template <class T>
RLHF_HOST_DEVICE inline void zero_row(T* dx, std::size_t vocab) {
  for (std::size_t v = 0; v < vocab; ++v) dx[v] = T(0);
}

template <class Be>
struct BackwardKernel {
  using T = typename Be::scalar;
  T* d_logits;  // [N, V]
  const T* logits;
  const std::int32_t* targets;
  const T* mask;
  const T *row_max, *row_log_sum;  // [N] each, from the forward
  RowUpstream<T> upstream;
  std::size_t rows, vocab;  // N, V
  bool accumulate;

  RLHF_HOST_DEVICE void operator()(std::size_t r) const {
    T* dx = d_logits + r * vocab;
    if (mask[r] == T(0)) {
      if (!accumulate) zero_row(dx, vocab);
      return;
    }
    row_logprob_backward<Be>(dx, logits + r * vocab, vocab, targets[r], row_max[r], row_log_sum[r], upstream(r),
                             accumulate, next_response_row(logits, mask, rows, vocab, r));
  }
};

// Forward and backward of one row while it is in cache.
template <class Be>
struct FusedKernel {
  using T = typename Be::scalar;
  RowKernel<Be> forward;  // also holds the outputs
  T* d_logits;            // [N, V]
  RowUpstream<T> upstream;
  bool accumulate;

  RLHF_HOST_DEVICE void operator()(std::size_t r) const {
    const std::size_t vocab = forward.vocab;
    T* dx = d_logits + r * vocab;
    if (forward.mask[r] == T(0)) {
      forward(r);
      if (!accumulate) zero_row(dx, vocab);
      return;
    }
    if (accumulate) {
      forward(r);
      row_logprob_backward<Be>(dx, forward.logits + r * vocab, vocab, forward.targets[r], forward.row_max[r],
                               forward.row_log_sum[r], upstream(r), true);
      return;
    }
    const auto p = row_logprob_with_grad<Be>(dx, forward.logits + r * vocab, vocab, forward.targets[r], upstream(r),
                                             next_response_row(forward.logits, forward.mask, forward.rows, vocab, r));
    forward.logprob[r] = p.logprob;
    forward.row_max[r] = p.max;
    forward.row_log_sum[r] = p.log_sum;
  }
};

// Per sequence: response length, Σ log p (in double), and the output.
template <class T>
struct SequenceReduceKernel {
  const T *logprob, *mask;  // [B, T]
  std::size_t time;
  bool mean;
  T *sequence, *length;  // [B]

  RLHF_HOST_DEVICE void operator()(std::size_t b) const {
    double total = 0, count = 0;
    for (std::size_t t = b * time; t < (b + 1) * time; ++t) {
      total += static_cast<double>(logprob[t]);
      count += static_cast<double>(mask[t]);
    }
    length[b] = T(count);
    sequence[b] = T(mean && count > 0 ? total / count : total);
  }
};

template <class T>
struct RowLength {
  const T* mask;
  std::size_t time;
  T* length;
  RLHF_HOST_DEVICE void operator()(std::size_t b) const {
    double count = 0;
    for (std::size_t t = b * time; t < (b + 1) * time; ++t) count += static_cast<double>(mask[t]);
    length[b] = T(count);
  }
};

// ---- Checks, as 0/1 flags per element so that a backend can count them and find the first -----------
template <class T>
struct not_binary_flag {
  const T* x;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return x[i] == T(0) || x[i] == T(1) ? 0.0 : 1.0; }
};
template <class T>
struct zero_flag {
  const T* x;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return x[i] == T(0) ? 1.0 : 0.0; }
};
template <class T>
struct bad_target_flag {  // only response rows are checked: padding may hold any id (e.g. −100)
  const std::int32_t* targets;
  const T* mask;
  std::int32_t vocab;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const {
    return mask[i] != T(0) && (targets[i] < 0 || targets[i] >= vocab) ? 1.0 : 0.0;
  }
};
template <class T>
struct non_finite_flag {
  const T* x;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return math::is_finite(x[i]) ? 0.0 : 1.0; }
};
template <class T>
struct value_at {  // reads one element through Be::sum, so that it works wherever the data lives
  const T* x;
  RLHF_HOST_DEVICE double operator()(std::size_t) const { return static_cast<double>(*x); }
};

// The smallest i in [0, n) whose flag is 1, given that one is: bisection on prefix counts. Error path only.
template <Backend Be, class Flag>
std::size_t first_flagged(std::size_t n, const Flag& flag) {
  std::size_t lo = 0, hi = n;  // no flag in [0, lo); some flag in [0, hi)
  while (hi - lo > 1) {
    const std::size_t mid = lo + (hi - lo) / 2;
    (Be::sum(mid, flag) > 0 ? hi : lo) = mid;
  }
  return lo;
}

template <Backend Be, class T>
double read_element(const T* x, std::size_t i) {
  return Be::sum(1, value_at<T>{x + i});
}

// Checks every input of a forward; returns nothing, throws naming the argument, index and value.
template <Backend Be>
void validate_inputs(const char* fn, const typename Be::matrix& logits, const typename Be::index_vector& targets,
                     const typename Be::vector& mask, std::size_t batch, const SequenceLogprobConfig& c) {
  using T = typename Be::scalar;
  if (c.reduction != Reduction::sum && c.reduction != Reduction::mean &&
      c.reduction != Reduction::per_token)
    fail<config_error>(fn, ": reduction must be sum, mean or per_token (got ", static_cast<int>(c.reduction), ")");
  const std::size_t n = Be::rows(logits), vocab = Be::cols(logits);
  require_nonempty(fn, "logits", n);
  require_nonempty(fn, "batch", batch);
  if (n % batch != 0)
    fail<shape_error>(fn, ": 'logits' has ", n, " rows, not a multiple of the batch size B = ", batch);
  if (vocab == 0) fail<shape_error>(fn, ": 'logits' has 0 columns (empty vocabulary)");
  if (vocab > static_cast<std::size_t>(INT32_MAX))
    fail<shape_error>(fn, ": 'logits' has ", vocab, " columns, more than int32 token ids can address");
  require_size(fn, "targets", Be::size(targets), n, "the number of logits rows N = B*T");
  require_size(fn, "mask", Be::size(mask), n, "the number of logits rows N = B*T");
  const T* m = Be::data(mask);
  if (Be::sum(n, not_binary_flag<T>{m}) > 0) {
    const std::size_t i = first_flagged<Be>(n, not_binary_flag<T>{m});
    fail<value_error>(fn, ": 'mask' must hold 0 or 1; mask[", i, "] = ", read_element<Be>(m, i));
  }
  const std::size_t time = n / batch;
  auto length = Be::vector_of(batch);
  Be::for_each(batch, RowLength<T>{m, time, Be::data(length)}, time);
  if (Be::sum(batch, zero_flag<T>{Be::data(length)}) > 0)
    fail<value_error>(fn, ": sequence ", first_flagged<Be>(batch, zero_flag<T>{Be::data(length)}), " of ", batch,
                      " has no response token in 'mask'");
  const bad_target_flag<T> bad{Be::data(targets), m, static_cast<std::int32_t>(vocab)};
  if (Be::sum(n, bad) > 0) {
    const std::size_t i = first_flagged<Be>(n, bad);
    fail<value_error>(fn, ": targets[", i, "] = ", read_element<Be>(Be::data(targets), i),
                      " is outside the vocabulary [0, ", vocab, ")");
  }
}

// After the row kernel: names the first response row whose log-prob is not finite. `logits` and `targets`, where
// still intact (not overwritten in place by a gradient), let the message say which of the two causes it is.
template <Backend Be>
void require_finite_rows(const char* fn, const SequenceLogprobResult<Be>& out,
                         const typename Be::scalar* logits = nullptr, const std::int32_t* targets = nullptr) {
  using T = typename Be::scalar;
  const std::size_t n = out.batch * out.time;
  const non_finite_flag<T> bad{Be::data(out.tokens)};
  if (Be::sum(n, bad) == 0) return;
  const std::size_t r = first_flagged<Be>(n, bad);
  const double lse = read_element<Be>(Be::data(out.row_max), r) + read_element<Be>(Be::data(out.row_log_sum), r);
  if (!std::isfinite(lse))
    fail<value_error>(fn, ": 'logits' row ", r, " (sequence ", r / out.time, ", position ", r % out.time,
                      ") holds NaN or +Inf (its log-sum-exp is ", lse, ")");
  const std::string row =
      detail::cat("'logits' row ", r, " (sequence ", r / out.time, ", position ", r % out.time, ")");
  const double max = read_element<Be>(Be::data(out.row_max), r);
  if (logits && targets) {
    const auto target = static_cast<std::size_t>(read_element<Be>(targets, r));
    const double x = read_element<Be>(logits, r * out.vocab + target);
    if (std::isinf(x)) fail<value_error>(fn, ": ", row, " has logit -Inf at its target (", target, ")");
    fail<value_error>(fn, ": ", row, " has logit ", x, " at its target (", target, "), so far below the row's max ",
                      max, " that log p(target) = logit - max - log-sum-exp overflows to -Inf");
  }
  fail<value_error>(fn, ": ", row,
                    " has log p(target) = -Inf: its target's logit is -Inf, or so far below the row's max ", max,
                    " that the difference overflows");
}

template <Backend Be>
SequenceLogprobResult<Be> allocate_result(std::size_t n, std::size_t batch, std::size_t vocab,
                                          const SequenceLogprobConfig& c) {
  SequenceLogprobResult<Be> out;
  out.batch = batch;
  out.time = n / batch;
  out.vocab = vocab;
  out.config = c;
  out.sequence = Be::vector_of(batch);
  out.tokens = Be::matrix_of(batch, out.time);
  out.row_max = Be::vector_of(n);
  out.row_log_sum = Be::vector_of(n);
  out.response_length = Be::vector_of(batch);
  return out;
}

template <Backend Be>
void finish_result(SequenceLogprobResult<Be>& out, const typename Be::vector& mask) {
  using T = typename Be::scalar;
  const bool mean = out.config.reduction == Reduction::mean;
  Be::for_each(out.batch,
               SequenceReduceKernel<T>{Be::data(out.tokens), Be::data(mask), out.time, mean, Be::data(out.sequence),
                                       Be::data(out.response_length)},
               out.time);
  const double tokens = Be::sum(out.batch, element_as_double<T>{Be::data(out.response_length)});
  out.metrics.set("logps/sequence", Be::sum(out.batch, element_as_double<T>{Be::data(out.sequence)}) / out.batch);
  out.metrics.set("logps/token", Be::sum(out.batch * out.time, element_as_double<T>{Be::data(out.tokens)}) / tokens,
                  Combine::token_mean, tokens);
  out.metrics.set("tokens/response", tokens / out.batch);
}

// d_logits must be [N, V]; the upstream gradient must match the reduction; in place cannot accumulate.
template <Backend Be>
void validate_backward(const char* fn, const typename Be::matrix& d_logits, const typename Be::matrix& logits,
                       std::size_t upstream_size, bool per_token_upstream, const SequenceLogprobConfig& c,
                       std::size_t batch, GradWrite write) {
  const std::size_t n = Be::rows(logits), vocab = Be::cols(logits);
  if (Be::rows(d_logits) != n || Be::cols(d_logits) != vocab)
    fail<shape_error>(fn, ": 'd_logits' is [", Be::rows(d_logits), ", ", Be::cols(d_logits), "] but 'logits' is [", n,
                      ", ", vocab, "]; pass a buffer of the same shape");
  const bool per_token = c.reduction == Reduction::per_token;
  if (per_token_upstream != per_token)
    fail<config_error>(fn, ": reduction is ", per_token ? "per_token" : "sum/mean",
                       per_token ? ", so the upstream gradient must be the [B, T] matrix 'd_tokens'"
                                 : ", so the upstream gradient must be the [B] vector 'd_sequence'");
  require_size(fn, per_token ? "d_tokens" : "d_sequence", upstream_size, per_token ? n : batch,
               per_token ? "B*T" : "the batch size B");
  if (write == GradWrite::accumulate && Be::data(d_logits) == Be::data(logits))
    fail<value_error>(fn, ": 'd_logits' is 'logits' itself (in place), which can only be overwritten, not accumulated");
}

}  // namespace detail::lp

// ---- Forward ---------------------------------------------------------------------------------------
// logits [N, V], targets [N] (int32; read only where mask is 1), mask [N] of 0/1, batch = B (T = N / B).
// Only rows with mask 1 are read: NaN or garbage in padding rows is ignored.
template <class Matrix, class Be = backend_of_t<Matrix>>
SequenceLogprobResult<Be> sequence_logprob(const Matrix& logits, const typename Be::index_vector& targets,
                                           const typename Be::vector& mask, std::size_t batch,
                                           const SequenceLogprobConfig& config = {}) {
  constexpr const char* fn = "rlhf::sequence_logprob";
  detail::lp::validate_inputs<Be>(fn, logits, targets, mask, batch, config);
  const std::size_t n = Be::rows(logits), vocab = Be::cols(logits);
  auto out = detail::lp::allocate_result<Be>(n, batch, vocab, config);
  Be::for_each(n,
               detail::lp::RowKernel<Be>{Be::data(logits), Be::data(targets), Be::data(mask), n, vocab,
                                         Be::data(out.tokens), Be::data(out.row_max), Be::data(out.row_log_sum)},
               2 * vocab);
  detail::lp::require_finite_rows<Be>(fn, out, Be::data(logits), Be::data(targets));
  detail::lp::finish_result<Be>(out, mask);
  return out;
}

namespace detail::lp {
// The upstream gradient as (pointer, size, per_token?): an evaluated Be::vector [B] or Be::matrix [B, T].
template <Backend Be, class Upstream>
struct upstream_view {
  static constexpr bool per_token = std::is_same_v<Upstream, typename Be::matrix>;
  static_assert(per_token || std::is_same_v<Upstream, typename Be::vector>,
                "rlhf::sequence_logprob_backward/_with_grad: the upstream gradient must be an evaluated backend "
                "vector [B] (d_sequence, for sum/mean) or matrix [B, T] (d_tokens, for per_token); call .eval() "
                "on an expression. See docs/models/logprob.md");
  const typename Be::scalar* data;
  std::size_t size;
  explicit upstream_view(const Upstream& u) : data(Be::data(u)) {
    if constexpr (per_token)
      size = Be::rows(u) * Be::cols(u);
    else
      size = Be::size(u);
  }
  static constexpr const char* name = per_token ? "d_tokens" : "d_sequence";
};
}  // namespace detail::lp

// ---- Backward --------------------------------------------------------------------------------------
// Writes d loss / d logits [N, V] into d_logits, a caller-owned [N, V] buffer: overwritten by default
// (rows with mask 0 get zeros), added to with GradWrite::accumulate (rows with mask 0 are left alone).
// d_logits may be logits itself (in place, overwrite only). `forward` is sequence_logprob's result for
// these inputs. d_output is d loss / d output: a Be::vector [B] for sum / mean, a Be::matrix [B, T] for
// per_token.
template <class Matrix, class Upstream, class Be = backend_of_t<Matrix>>
void sequence_logprob_backward(Matrix& d_logits, const Matrix& logits, const typename Be::index_vector& targets,
                               const typename Be::vector& mask, const SequenceLogprobResult<Be>& forward,
                               const Upstream& d_output, GradWrite write = GradWrite::overwrite) {
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::sequence_logprob_backward";
  const detail::lp::upstream_view<Be, Upstream> up(d_output);
  const std::size_t n = Be::rows(logits), vocab = Be::cols(logits);
  if (forward.batch * forward.time != n || forward.vocab != vocab || Be::size(targets) != n || Be::size(mask) != n)
    fail<shape_error>(fn, ": 'forward' is for [", forward.batch * forward.time, ", ", forward.vocab,
                      "] logits but 'logits' is [", n, ", ", vocab, "] with ", Be::size(targets), " targets and ",
                      Be::size(mask), " mask entries");
  detail::lp::validate_backward<Be>(fn, d_logits, logits, up.size, up.per_token, forward.config, forward.batch, write);
  detail::require_finite<Be>(fn, up.name, up.data, up.size);
  Be::for_each(n,
               detail::lp::BackwardKernel<Be>{Be::data(d_logits), Be::data(logits), Be::data(targets), Be::data(mask),
                                              Be::data(forward.row_max), Be::data(forward.row_log_sum),
                                              detail::lp::RowUpstream<T>{up.data, Be::data(forward.response_length),
                                                                         forward.time, forward.config.reduction},
                                              n, vocab, write == GradWrite::accumulate},
               vocab);
}

// ---- Forward and backward in one call ----------------------------------------------------------------
// For when d loss / d output is known before the forward (SFT: d_sequence = −1/B): each row is read from
// memory once, and its gradient written while the row is in cache. The same result as sequence_logprob
// and the same d_logits contract as sequence_logprob_backward. If a row turns out not finite the call
// throws, and d_logits is then unspecified.
template <class Matrix, class Upstream, class Be = backend_of_t<Matrix>>
SequenceLogprobResult<Be> sequence_logprob_with_grad(Matrix& d_logits, const Matrix& logits,
                                                     const typename Be::index_vector& targets,
                                                     const typename Be::vector& mask, std::size_t batch,
                                                     const Upstream& d_output, const SequenceLogprobConfig& config = {},
                                                     GradWrite write = GradWrite::overwrite) {
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::sequence_logprob_with_grad";
  const detail::lp::upstream_view<Be, Upstream> up(d_output);
  detail::lp::validate_inputs<Be>(fn, logits, targets, mask, batch, config);
  detail::lp::validate_backward<Be>(fn, d_logits, logits, up.size, up.per_token, config, batch, write);
  detail::require_finite<Be>(fn, up.name, up.data, up.size);
  const std::size_t n = Be::rows(logits), vocab = Be::cols(logits);
  auto out = detail::lp::allocate_result<Be>(n, batch, vocab, config);
  Be::for_each(batch, detail::lp::RowLength<T>{Be::data(mask), out.time, Be::data(out.response_length)}, out.time);
  Be::for_each(n,
               detail::lp::FusedKernel<Be>{
                   detail::lp::RowKernel<Be>{Be::data(logits), Be::data(targets), Be::data(mask), n, vocab,
                                             Be::data(out.tokens), Be::data(out.row_max), Be::data(out.row_log_sum)},
                   Be::data(d_logits),
                   detail::lp::RowUpstream<T>{up.data, Be::data(out.response_length), out.time, config.reduction},
                   write == GradWrite::accumulate},
               3 * vocab);
  const bool in_place = Be::data(d_logits) == Be::data(logits);
  detail::lp::require_finite_rows<Be>(fn, out, in_place ? nullptr : Be::data(logits), Be::data(targets));
  detail::lp::finish_result<Be>(out, mask);
  return out;
}

}  // namespace rlhf
