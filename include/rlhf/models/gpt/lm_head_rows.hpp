#pragma once
// The LM head of the CPU models (gpt/model.hpp, llama/model.hpp) on the scoring rows of a ScoredBatch
// (gpt_host/scoring.hpp), rows m0 … m1 − 1 at a time (the GPT: a tile's; the Llama: all M):
//
//   forward : rows [M, C] = hidden[src[m]];  logits [M, V] = rows · Wᵀ;  out[dst[m]] = log softmax(logits[m])[target]
//   backward: d logits in place of the logits;  d rows [M, C] = d logits · W;  d W += d logitsᵀ · rows;
//             d hidden[src[m]] += d rows[m]
//
// W [V, C]: GPT-2's wte, the Llama's lm_head (its embedding when tied). The products here are float32 through
// Eigen; the GPT's bf16 products (gpt/bf16_matmul.hpp) stand in for them, not for the rows' bookkeeping. The
// log-softmax + gather is the fused one of models/logprob.hpp: each row reduced to (max, log Σ exp, log p of its
// target) and, in the backward, overwritten in place by its gradient.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "rlhf/models/gpt/layers.hpp"
#include "rlhf/models/gpt_host/scoring.hpp"
#include "rlhf/models/logprob.hpp"

namespace rlhf::gpt {

template <class Backend>
struct LmHeadRows {
  using T = typename Backend::scalar;
  using Scored = gpt_host::ScoredBatch<std::size_t>;

  aligned_vector<T> logits;                // [M, V] (capacity [N, V]); d logits after backward
  aligned_vector<T> rows;                  // [M, C] final hidden rows that score a response token
  aligned_vector<T> row_max, row_log_sum;  // [M]

  // Sizes every buffer for N rows; grows, never shrinks.
  void reserve(std::size_t N, std::size_t C, std::size_t V) {
    const auto grow = [](auto& v, std::size_t n) {
      if (v.size() < n) v.resize(n);
    };
    grow(logits, N * V), grow(rows, N * C), grow(row_max, N), grow(row_log_sum, N);
  }

  // rows[m] = hidden [N, C] at row src[m], m in [m0, m1).
  void gather(const T* hidden, const Scored& s, std::size_t m0, std::size_t m1, std::size_t C) {
    for (std::size_t m = m0; m < m1; ++m) std::copy_n(hidden + s.src[m] * C, C, rows.data() + m * C);
  }

  // out[dst[m]] = log p of target[m] under softmax(logits[m]), keeping each row's max and log Σ exp.
  void logprob_forward(const Scored& s, std::size_t m0, std::size_t m1, std::size_t V, T* out) {
    Backend::for_each(m1 - m0,
                      ForwardRows{logits.data() + m0 * V, s.targets.data() + m0, s.dst.data() + m0, m1 - m0, V, out,
                                  row_max.data() + m0, row_log_sum.data() + m0},
                      2 * V);
  }
  // logits[m] overwritten by d log p / d logits · d_logp[dst[m]] (one backward per forward).
  void logprob_backward(const Scored& s, std::size_t m0, std::size_t m1, std::size_t V, const T* d_logp) {
    Backend::for_each(m1 - m0,
                      BackwardRows{logits.data() + m0 * V, s.targets.data() + m0, s.dst.data() + m0, V, d_logp,
                                   row_max.data() + m0, row_log_sum.data() + m0},
                      2 * V);
  }

  // d hidden [N, C] at row src[m] += d_rows [m1 − m0, C] at row m − m0.
  static void scatter_add(T* d_hidden, const T* d_rows, const Scored& s, std::size_t m0, std::size_t m1,
                          std::size_t C) {
    for (std::size_t m = m0; m < m1; ++m)
      ArrayMap<T>(d_hidden + s.src[m] * C, ix(C)) += ConstArrayMap<T>(d_rows + (m - m0) * C, ix(C));
  }

  // logits [M, V] = hidden [M, C] · Wᵀ
  static void logits_product(T* logits_out, const T* hidden, const T* W, std::size_t M, std::size_t C,
                             std::size_t V) {
    MatrixMap<T>(logits_out, ix(M), ix(V)).noalias() =
        ConstMatrixMap<T>(hidden, ix(M), ix(C)) * ConstMatrixMap<T>(W, ix(V), ix(C)).transpose();
  }

  // d_rows [M, C] = d logits [M, V] · W [V, C];  d_W [V, C] += d logitsᵀ · rows [M, C] (null d_W: frozen, skipped)
  static void gradient_products(T* d_rows, T* d_W, const T* dlogits, const T* hidden_rows, const T* W, std::size_t M,
                                std::size_t C, std::size_t V) {
    const ConstMatrixMap<T> dl(dlogits, ix(M), ix(V));
    MatrixMap<T>(d_rows, ix(M), ix(C)).noalias() = dl * ConstMatrixMap<T>(W, ix(V), ix(C));
    if (d_W) MatrixMap<T>(d_W, ix(V), ix(C)).noalias() += dl.transpose() * ConstMatrixMap<T>(hidden_rows, ix(M), ix(C));
  }

 private:
  struct ForwardRows {
    const T* logits;  // [M, V]
    const std::int32_t* targets;
    const std::size_t* dst;
    std::size_t rows, vocab;
    T *out, *row_max, *row_log_sum;
    void operator()(std::size_t m) const {
      const T* next = m + 1 < rows ? logits + (m + 1) * vocab : nullptr;  // prefetched meanwhile
      const auto r = row_logprob<Backend>(logits + m * vocab, vocab, targets[m], next);
      out[dst[m]] = r.logprob;
      row_max[m] = r.max;
      row_log_sum[m] = r.log_sum;
    }
  };
  struct BackwardRows {
    T* logits;  // [M, V] in, d logits out
    const std::int32_t* targets;
    const std::size_t* dst;
    std::size_t vocab;
    const T *d_logp, *row_max, *row_log_sum;
    void operator()(std::size_t m) const {
      T* x = logits + m * vocab;
      row_logprob_backward<Backend>(x, x, vocab, targets[m], row_max[m], row_log_sum[m], d_logp[dst[m]], false);
    }
  };
};

}  // namespace rlhf::gpt
