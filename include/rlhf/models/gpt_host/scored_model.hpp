#pragma once
// The members every host model built on a ScoredBatch (scoring.hpp) shares, whatever its blocks: the CPU GPT
// (models/gpt/model.hpp) and the CPU Llama (models/llama/model.hpp) derive from ScoredModel<Model, Backend>.
//
//   logits(batch)                         [B·T, V] at every position (padding included), nothing to differentiate
//   values / backward_values              ValueModel, through the scalar head at each scoring row
//   scores / backward_scores              RewardModel, through the scalar head at each row's last response token
//   require_finite_logprobs, begin_backward   the checks of log_probs and backward (the model keeps those two)
//
// Model provides, to this class as a friend: scored_ (its ScoredBatch<std::size_t>); require_head(fn);
// forward_trunk(batch, fn, needs_response) up to the final hidden state; width() (C); final_hidden() and
// d_final_hidden() ([N, C] each); logits_product(logits, hidden, rows); head_at(row) and head_backward(row, g) (the
// scalar head at a final hidden row, and its backward into d_final_hidden() and the head's gradients); and
// backward_from_final_hidden(), from d_final_hidden() to every parameter's gradient. Model::scored_names holds
// the names of its five members above, for messages.
#include <algorithm>
#include <cmath>
#include <cstddef>

#include "rlhf/core/batch.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/validate.hpp"
#include "rlhf/models/gpt_host/scoring.hpp"

namespace rlhf::gpt_host {

struct ScoredModelNames {
  const char *logits, *values, *backward_values, *scores, *backward_scores;  // "rlhf::Gpt::values", …
};

template <class Model, class Backend>
class ScoredModel {
 public:
  using matrix = typename Backend::matrix;
  using vector = typename Backend::vector;

  // [B·T, V]: the logits at every position (padding included), for inspection and parity tests.
  matrix logits(const TokenBatch& batch) {
    Model& m = self();
    m.forward_trunk(batch, Model::scored_names.logits, false);
    const std::size_t N = batch.batch * batch.time;
    matrix out(N, m.config().vocab_size);  // every value written below
    m.logits_product(Backend::data(out), m.final_hidden(), N);
    m.scored_.trunk_ready = false;  // not a scoring forward: nothing to differentiate
    return out;
  }

  // ---- ValueModel (scalar head) ----------------------------------------------------------------------------
  // [B, T]: V(prefix) = head(final hidden state of the last real position before t) for each response token t
  // (aligned with log_probs), 0 elsewhere.
  matrix values(const TokenBatch& batch) {
    constexpr const char* fn = Model::scored_names.values;
    Model& m = self();
    m.require_head(fn);
    m.forward_trunk(batch, fn, true);
    const ScoredBatch<std::size_t>& s = m.scored_;
    matrix out = Backend::matrix_of(batch.batch, batch.time);
    for (std::size_t r = 0; r < s.rows; ++r) Backend::data(out)[s.dst[r]] = m.head_at(s.src[r]);
    return out;
  }

  void backward_values(const TokenBatch& batch, const matrix& d_values) {
    constexpr const char* fn = Model::scored_names.backward_values;
    Model& m = self();
    begin_head_backward(batch, fn);
    detail::require_shape<Backend>(fn, "d_values", d_values, batch.batch, batch.time, "the batch [B, T]");
    const ScoredBatch<std::size_t>& s = m.scored_;
    const auto* d = Backend::data(d_values);
    for (std::size_t r = 0; r < s.rows; ++r) require_finite_upstream(d[s.dst[r]], fn);
    std::fill_n(m.d_final_hidden(), batch.batch * batch.time * m.width(), typename Backend::scalar(0));
    for (std::size_t r = 0; r < s.rows; ++r) m.head_backward(s.src[r], d[s.dst[r]]);
    m.backward_from_final_hidden();
  }

  // ---- RewardModel (scalar head) ---------------------------------------------------------------------------
  // [B]: head(final hidden state at the last response token of each row): the score of the whole sequence.
  vector scores(const TokenBatch& batch) {
    constexpr const char* fn = Model::scored_names.scores;
    Model& m = self();
    m.require_head(fn);
    m.forward_trunk(batch, fn, true);
    vector out = Backend::vector_of(batch.batch);
    for (std::size_t b = 0; b < batch.batch; ++b) Backend::data(out)[b] = m.head_at(m.scored_.last[b]);
    return out;
  }

  void backward_scores(const TokenBatch& batch, const vector& d_scores) {
    constexpr const char* fn = Model::scored_names.backward_scores;
    Model& m = self();
    begin_head_backward(batch, fn);
    require_size(fn, "d_scores", Backend::size(d_scores), batch.batch, "the batch size B");
    const auto* d = Backend::data(d_scores);
    for (std::size_t b = 0; b < batch.batch; ++b) require_finite_upstream(d[b], fn);
    std::fill_n(m.d_final_hidden(), batch.batch * batch.time * m.width(), typename Backend::scalar(0));
    for (std::size_t b = 0; b < batch.batch; ++b) m.head_backward(m.scored_.last[b], d[b]);
    m.backward_from_final_hidden();
  }

 protected:
  // log_probs' last check: a finite log-prob at every response token of `out` [B, T], else value_error (the
  // parameters hold NaN or Inf).
  void require_finite_logprobs(const TokenBatch& batch, const matrix& out, const char* fn) const {
    const ScoredBatch<std::size_t>& s = self().scored_;
    for (std::size_t r = 0; r < s.rows; ++r)
      if (!std::isfinite(double(Backend::data(out)[s.dst[r]])))
        fail<value_error>(fn, ": log-prob of token [", s.dst[r] / batch.time, ",", s.dst[r] % batch.time,
                          "] is not finite; the parameters hold NaN or Inf");
  }

  // backward's checks (ScoredBatch::require_logits; d_logp [B, T], finite at every response token), after which
  // it consumes the logits.
  void begin_backward(const TokenBatch& batch, const matrix& d_logp, const char* fn) {
    ScoredBatch<std::size_t>& s = self().scored_;
    s.require_logits(batch, fn);
    detail::require_shape<Backend>(fn, "d_logp", d_logp, batch.batch, batch.time, "the batch [B, T]");
    const auto* d = Backend::data(d_logp);
    for (std::size_t r = 0; r < s.rows; ++r)
      if (!std::isfinite(double(d[s.dst[r]])))
        fail<value_error>(fn, ": d_logp[", s.dst[r] / batch.time, ",", s.dst[r] % batch.time, "] is ", d[s.dst[r]],
                          " at a response token");
    s.logits_ready = false;
  }

 private:
  Model& self() { return static_cast<Model&>(*this); }
  const Model& self() const { return static_cast<const Model&>(*this); }

  void begin_head_backward(const TokenBatch& batch, const char* fn) {
    self().require_head(fn);
    self().scored_.require_same(batch, fn);
  }

  template <class T>
  static void require_finite_upstream(T g, const char* fn) {
    if (!std::isfinite(double(g))) fail<value_error>(fn, ": upstream gradient ", g, " is not finite");
  }
};

}  // namespace rlhf::gpt_host
