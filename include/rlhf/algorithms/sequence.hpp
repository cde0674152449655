#pragma once
// Plumbing shared by the training steps in algorithms/: the moves between per-token tensors [B, T] and
// per-sequence vectors [B], and the row blocks of batches that micro-batches are made of:
//
//   mask_matrix(batch)            TokenBatch::response_mask as a backend matrix [B, T] of 0/1
//   sequence_sums(x, mask)        [B, T] → [B]   Σ_t mask·x     (sequence log-prob from token log-probs)
//   spread_over_tokens(d, mask)   [B] → [B, T]   d[b]·mask      (its gradient, back to the tokens)
//   slice_rows / concat_rows      row blocks of TokenBatch, matrices and vectors, for micro-batches
//   pair_training_step            a training step over a preference batch's pairs, [chosen; rejected] per block
//
// Written against the Backend concept only (kernels + raw pointers), so it runs wherever the losses run.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "rlhf/core/batch.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/core/elements.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/algorithms/step.hpp"

namespace rlhf {

// ---- per-token ↔ per-sequence --------------------------------------------------------------------
namespace detail {

template <class T>
struct copy_kernel {  // dst[i] = scale · src[i]
  const T* src;
  T* dst;
  T scale;
  RLHF_HOST_DEVICE void operator()(std::size_t i) const { dst[i] = scale * src[i]; }
};

template <class T>
struct row_sum_kernel {  // out[b] = Σ_t mask[b,t] · x[b,t]
  const T *x, *mask;     // [B, T] each
  std::size_t cols;
  T* out;  // [B]
  RLHF_HOST_DEVICE void operator()(std::size_t b) const {
    T total = T(0);
    for (std::size_t t = 0; t < cols; ++t)
      if (mask[b * cols + t] != T(0)) total += x[b * cols + t];
    out[b] = total;
  }
};

template <class T>
struct spread_kernel {  // out[b,t] = mask[b,t] · d[b]
  const T *d, *mask;    // [B], [B, T]
  std::size_t cols;
  T* out;  // [B, T]
  RLHF_HOST_DEVICE void operator()(std::size_t i) const { out[i] = mask[i] != T(0) ? d[i / cols] : T(0); }
};

template <Backend Be>
void copy(const typename Be::scalar* src, typename Be::scalar* dst, std::size_t n, double scale = 1.0) {
  using T = typename Be::scalar;
  if (n) Be::for_each(n, copy_kernel<T>{src, dst, T(scale)});
}

}  // namespace detail

// response_mask as a 0/1 matrix [B, T] in the backend's scalar type.
template <Backend Be>
typename Be::matrix mask_matrix(const TokenBatch& batch) {
  using T = typename Be::scalar;
  require_size("rlhf::mask_matrix", "response_mask", batch.response_mask.size(), batch.batch * batch.time, "B*T");
  std::vector<T> host(batch.response_mask.size());
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = batch.response_mask[i] ? T(1) : T(0);
  const typename Be::vector flat = Be::from_host(host);  // [B*T], on the backend's device
  typename Be::matrix out = Be::matrix_of(batch.batch, batch.time);
  detail::copy<Be>(Be::data(flat), Be::data(out), host.size());
  return out;
}

// Response tokens per row [B], as scalars (the lengths the DPO family takes).
template <Backend Be>
typename Be::vector response_lengths(const TokenBatch& batch) {
  std::vector<typename Be::scalar> host(batch.batch);
  for (std::size_t b = 0; b < batch.batch; ++b) host[b] = static_cast<typename Be::scalar>(batch.response_length(b));
  return Be::from_host(host);
}

// Σ_t mask[b,t] · x[b,t] for each row: [B, T] → [B].
template <class Matrix, class Be = backend_of_t<Matrix>>
typename Be::vector sequence_sums(const Matrix& per_token, const Matrix& mask) {
  using T = typename Be::scalar;
  const std::size_t rows = Be::rows(per_token), cols = Be::cols(per_token);
  if (Be::rows(mask) != rows || Be::cols(mask) != cols)
    fail<shape_error>("rlhf::sequence_sums: 'mask' is [", Be::rows(mask), ", ", Be::cols(mask),
                      "] but 'per_token' is [", rows, ", ", cols, "]");
  typename Be::vector out = Be::vector_of(rows);
  Be::for_each(rows, detail::row_sum_kernel<T>{Be::data(per_token), Be::data(mask), cols, Be::data(out)}, cols);
  return out;
}

// The adjoint of sequence_sums: d[b] on every masked token of row b, 0 elsewhere: [B] → [B, T].
template <class Vector, class Matrix, class Be = backend_of_t<Matrix>>
Matrix spread_over_tokens(const Vector& per_sequence, const Matrix& mask) {
  using T = typename Be::scalar;
  const std::size_t rows = Be::rows(mask), cols = Be::cols(mask);
  require_size("rlhf::spread_over_tokens", "per_sequence", Be::size(per_sequence), rows, "the rows of 'mask'");
  Matrix out = Be::matrix_of(rows, cols);
  if (rows * cols != 0)
    Be::for_each(rows * cols, detail::spread_kernel<T>{Be::data(per_sequence), Be::data(mask), cols, Be::data(out)});
  return out;
}

// ---- row blocks ----------------------------------------------------------------------------------

// Rows [begin, end) of a token batch.
inline TokenBatch slice_rows(const TokenBatch& batch, std::size_t begin, std::size_t end) {
  if (begin > end || end > batch.batch)
    fail<shape_error>("rlhf::slice_rows: rows [", begin, ", ", end, ") are outside a batch of ", batch.batch);
  const std::size_t T = batch.time;
  TokenBatch out = TokenBatch::zeros(end - begin, T);
  std::copy(batch.tokens.begin() + begin * T, batch.tokens.begin() + end * T, out.tokens.begin());
  std::copy(batch.response_mask.begin() + begin * T, batch.response_mask.begin() + end * T, out.response_mask.begin());
  if (!batch.attention_mask.empty())
    out.attention_mask.assign(batch.attention_mask.begin() + begin * T, batch.attention_mask.begin() + end * T);
  return out;
}

// The rows `rows` of a token batch, in that order.
inline TokenBatch gather_rows(const TokenBatch& batch, std::span<const std::size_t> rows) {
  const std::size_t T = batch.time;
  TokenBatch out = TokenBatch::zeros(rows.size(), T);
  const bool attention = !batch.attention_mask.empty();
  if (attention) out.attention_mask.assign(rows.size() * T, 0);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    if (rows[r] >= batch.batch)
      fail<shape_error>("rlhf::gather_rows: row ", rows[r], " is outside a batch of ", batch.batch);
    std::copy_n(batch.tokens.begin() + rows[r] * T, T, out.tokens.begin() + r * T);
    std::copy_n(batch.response_mask.begin() + rows[r] * T, T, out.response_mask.begin() + r * T);
    if (attention) std::copy_n(batch.attention_mask.begin() + rows[r] * T, T, out.attention_mask.begin() + r * T);
  }
  return out;
}

// `top` above `bottom`, [B₁ + B₂, max(T₁, T₂)]; the narrower one is padded on the right with token 0 and
// response mask 0, which leaves every row's tokens at their positions. When either carries an
// attention_mask the result has one: the inputs' own, 1 for a batch without one, 0 on the added padding.
// One forward then scores both, so a model that keeps the activations of its last forward for backward
// sees one log_probs per backward.
inline TokenBatch concat_rows(const TokenBatch& top, const TokenBatch& bottom) {
  const std::size_t T = std::max(top.time, bottom.time);
  TokenBatch out = TokenBatch::zeros(top.batch + bottom.batch, T);
  const bool attention = !top.attention_mask.empty() || !bottom.attention_mask.empty();
  if (attention) out.attention_mask.assign(out.batch * T, 0);
  const auto put = [&](const TokenBatch& in, std::size_t row0) {
    for (std::size_t b = 0; b < in.batch; ++b) {
      const std::size_t from = b * in.time, to = (row0 + b) * T;
      std::copy_n(in.tokens.begin() + from, in.time, out.tokens.begin() + to);
      std::copy_n(in.response_mask.begin() + from, in.time, out.response_mask.begin() + to);
      if (!attention) continue;
      if (in.attention_mask.empty())
        std::fill_n(out.attention_mask.begin() + to, in.time, std::uint8_t{1});
      else
        std::copy_n(in.attention_mask.begin() + from, in.time, out.attention_mask.begin() + to);
    }
  };
  put(top, 0);
  put(bottom, top.batch);
  return out;
}

// Rows [begin, end) of a backend matrix.
template <class Matrix, class Be = backend_of_t<Matrix>>
Matrix slice_rows(const Matrix& m, std::size_t begin, std::size_t end) {
  const std::size_t rows = Be::rows(m), cols = Be::cols(m);
  if (begin > end || end > rows)
    fail<shape_error>("rlhf::slice_rows: rows [", begin, ", ", end, ") are outside a matrix of ", rows, " rows");
  Matrix out = Be::matrix_of(end - begin, cols);
  detail::copy<Be>(Be::data(m) + begin * cols, Be::data(out), (end - begin) * cols);
  return out;
}

// The rows `rows` of a backend matrix, in that order (one copy per row).
template <class Matrix, class Be = backend_of_t<Matrix>>
Matrix gather_rows(const Matrix& m, std::span<const std::size_t> rows) {
  const std::size_t cols = Be::cols(m);
  Matrix out = Be::matrix_of(rows.size(), cols);
  for (std::size_t r = 0; r < rows.size(); ++r) {
    if (rows[r] >= Be::rows(m))
      fail<shape_error>("rlhf::gather_rows: row ", rows[r], " is outside a matrix of ", Be::rows(m), " rows");
    detail::copy<Be>(Be::data(m) + rows[r] * cols, Be::data(out) + r * cols, cols);
  }
  return out;
}

// Elements [begin, end) of a backend vector.
template <class Vector, class Be = backend_of_t<Vector>>
Vector slice_elements(const Vector& v, std::size_t begin, std::size_t end) {
  if (begin > end || end > Be::size(v))
    fail<shape_error>("rlhf::slice_elements: [", begin, ", ", end, ") is outside a vector of ", Be::size(v));
  Vector out = Be::vector_of(end - begin);
  detail::copy<Be>(Be::data(v) + begin, Be::data(out), end - begin);
  return out;
}

// Pairs [lo, hi) of a preference batch: their chosen rows above their rejected rows, [2n, T], so that one
// forward scores both sides.
inline TokenBatch pair_rows(const PreferenceBatch& batch, std::size_t lo, std::size_t hi) {
  return concat_rows(slice_rows(batch.chosen, lo, hi), slice_rows(batch.rejected, lo, hi));
}

// training_step (step.hpp) over the B pairs of a preference batch: body(joint, lo, hi, share) for each micro-batch
// of pairs [lo, hi), joint = pair_rows(batch, lo, hi).
template <class Model, class Optimizer, class Body>
StepResult pair_training_step(std::string_view fn, Model& model, Optimizer& optimizer, const PreferenceBatch& batch,
                              std::size_t B, const StepOptions& options, Body&& body) {
  return training_step(fn, model, optimizer, B, options, [&](std::size_t lo, std::size_t hi, double share) {
    return body(pair_rows(batch, lo, hi), lo, hi, share);
  });
}

// Lists [lo, hi) of a ranked batch: rows [lo·K, hi·K) of its responses, [n·K, T].
inline TokenBatch list_rows(const RankedBatch& batch, std::size_t lo, std::size_t hi) {
  return slice_rows(batch.responses, lo * batch.k, hi * batch.k);
}

// ---- helpers of the step functions ---------------------------------------------------------------
namespace detail {

// Host doubles → backend vector, elements [begin, end).
template <Backend Be>
typename Be::vector vector_from_host(const std::vector<double>& host, std::size_t begin, std::size_t end) {
  std::vector<typename Be::scalar> part(host.begin() + begin, host.begin() + end);
  return Be::from_host(part);
}

template <Backend Be>
std::vector<double> vector_to_host(const typename Be::vector& v) {
  const auto host = Be::to_host(v);
  return {host.begin(), host.end()};
}

// [a; b] as one backend vector, each part scaled.
template <Backend Be>
typename Be::vector concat(const typename Be::vector& a, const typename Be::vector& b, double scale = 1.0) {
  typename Be::vector out = Be::vector_of(Be::size(a) + Be::size(b));
  copy<Be>(Be::data(a), Be::data(out), Be::size(a), scale);
  copy<Be>(Be::data(b), Be::data(out) + Be::size(a), Be::size(b), scale);
  return out;
}

// lengths[lo, hi) of a ranked batch as a backend vector [n]; empty when every list has all K responses.
template <Backend Be>
typename Be::vector list_lengths(const RankedBatch& batch, std::size_t lo, std::size_t hi) {
  if (batch.lengths.empty()) return Be::vector_of(0);
  return Be::from_host(std::vector<typename Be::scalar>(batch.lengths.begin() + lo, batch.lengths.begin() + hi));
}

// A vector [n·K] read as a matrix [n, K] (row-major), and back, each element scaled.
template <Backend Be>
typename Be::matrix as_rows(const typename Be::vector& v, std::size_t n, std::size_t K) {
  typename Be::matrix out = Be::matrix_of(n, K);
  copy<Be>(Be::data(v), Be::data(out), n * K);
  return out;
}
template <Backend Be>
typename Be::vector flatten(const typename Be::matrix& m, double scale = 1.0) {
  typename Be::vector out = Be::vector_of(Be::rows(m) * Be::cols(m));
  copy<Be>(Be::data(m), Be::data(out), Be::rows(m) * Be::cols(m), scale);
  return out;
}

// scale · m, a new matrix of m's shape.
template <Backend Be>
typename Be::matrix scaled(const typename Be::matrix& m, double scale) {
  typename Be::matrix out = Be::matrix_of(Be::rows(m), Be::cols(m));
  copy<Be>(Be::data(m), Be::data(out), Be::rows(m) * Be::cols(m), scale);
  return out;
}


}  // namespace detail

// Σ_t log π(y_t | y_<t) of every row of `batch` [B], on the host, scored M rows-blocks at a time
// (options.micro_batches). For precomputing reference log-probs once, before training.
template <class P>
std::vector<double> sequence_logps(P& policy, const TokenBatch& batch, const StepOptions& options = {}) {
  RLHF_REQUIRE_POLICY(P, "rlhf::sequence_logps");
  using Be = typename P::backend;
  constexpr const char* fn = "rlhf::sequence_logps";
  detail::require_token_batch(fn, "batch", batch);
  const std::size_t count = detail::micro_batch_count(fn, options, batch.batch);
  std::vector<double> out;
  out.reserve(batch.batch);
  for (std::size_t m = 0; m < count; ++m) {
    const auto [lo, hi] = detail::micro_batch_rows(batch.batch, count, m);
    const TokenBatch part = slice_rows(batch, lo, hi);
    const auto mask = mask_matrix<Be>(part);
    const auto sums = detail::vector_to_host<Be>(sequence_sums(policy.log_probs(part), mask));
    out.insert(out.end(), sums.begin(), sums.end());
  }
  return out;
}

}  // namespace rlhf
