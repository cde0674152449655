#pragma once
// The host side of sampling, for every sampler (gpt::Sampler, sampler.hpp; gpt_cuda::Sampler, sampler.cuh;
// llama::Sampler): the checks of the prompts and options, and the sequences being continued (prompt + drawn tokens,
// the log-prob of each draw, which rows are still going) up to the TokenBatch a sample() returns; for the two
// host samplers also the items of each step and the draw loop.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "rlhf/core/batch.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/models/gpt_host/config.hpp"

namespace rlhf::gpt_host {

// Config: any model's config with vocab_size and max_seq_len (GptConfig, LlamaConfig).
template <class Config>
void validate_sampling(const char* fn, const Config& c, const PromptBatch& x, const SampleOptions& o) {
  require_nonempty(fn, "prompts", x.batch);
  require_size(fn, "prompts.tokens", x.tokens.size(), x.batch * x.time, "B*T");
  require_size(fn, "prompts.prompt_length", x.prompt_length.size(), x.batch, "B");
  if (o.max_new_tokens == 0) fail<config_error>(fn, ": max_new_tokens must be >= 1");
  if (!(o.temperature >= 0.0f) || !std::isfinite(o.temperature))
    fail<config_error>(fn, ": temperature must be >= 0 and finite (got ", o.temperature, "); 0 means greedy");
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f)) fail<config_error>(fn, ": top_p must be in (0, 1] (got ", o.top_p, ")");
  if (o.stop_token < -1 || o.stop_token >= static_cast<token_id>(c.vocab_size))
    fail<config_error>(fn, ": stop_token ", o.stop_token, " is neither -1 (none) nor in the vocabulary [0, ",
                       c.vocab_size, ")");
  for (std::size_t b = 0; b < x.batch; ++b) {
    const std::size_t P = x.prompt_length[b];
    if (P == 0 || P > x.time)
      fail<value_error>(fn, ": prompt_length[", b, "] = ", P, " must be in [1, ", x.time, "]");
    if (P + o.max_new_tokens > c.max_seq_len)
      fail<config_error>(fn, ": prompt ", b, " has ", P, " tokens; with max_new_tokens = ", o.max_new_tokens,
                         " it would exceed max_seq_len = ", c.max_seq_len);
    for (std::size_t t = 0; t < P; ++t) {
      const token_id id = x.tokens[b * x.time + t];
      if (id < 0 || static_cast<std::size_t>(id) >= c.vocab_size)
        fail<value_error>(fn, ": prompt token ", id, " at [", b, ",", t, "] is outside the vocabulary [0, ",
                          c.vocab_size, ")");
    }
  }
}

// The B sequences of one sample() call, each in a row of `cap` slots: its prompt, then each drawn token with the
// model's log-prob of it (T: the model's scalar).
template <class T>
struct SampledRows {
  std::size_t cap = 0;                 // the longest prompt + max_new_tokens
  std::size_t prompt_tokens = 0;       // Σ prompt_length
  std::vector<token_id> seq;           // [B, cap]
  std::vector<std::size_t> len;        // [B] tokens so far
  std::vector<T> logp;                 // [B, cap] log-prob of each drawn token, 0 for prompt tokens
  std::vector<std::size_t> active;     // rows still drawing, in row order

  // Checks the prompts and options (validate_sampling; fn names the caller), then starts from the prompts.
  template <class Config>
  SampledRows(const char* fn, const Config& c, const PromptBatch& x, const SampleOptions& o) {
    validate_sampling(fn, c, x, o);
    len = x.prompt_length;
    std::size_t longest = 0;
    for (auto P : x.prompt_length) longest = std::max(longest, P), prompt_tokens += P;
    cap = longest + o.max_new_tokens;
    seq.assign(x.batch * cap, 0);
    logp.assign(x.batch * cap, T(0));
    for (std::size_t b = 0; b < x.batch; ++b) {
      std::copy_n(x.tokens.begin() + std::ptrdiff_t(b * x.time), len[b], seq.begin() + std::ptrdiff_t(b * cap));
      active.push_back(b);
    }
  }

  token_id last_token(std::size_t b) const { return seq[b * cap + len[b] - 1]; }

  // Row b draws `token` with log-prob `lp`.
  void append(std::size_t b, token_id token, T lp) {
    logp[b * cap + len[b]] = lp;
    seq[b * cap + len[b]++] = token;
  }

  // Drops the rows whose last token is the stop token; true when a row is left.
  bool drop_stopped(token_id stop) {
    std::vector<std::size_t> still;
    for (auto b : active)
      if (last_token(b) != stop) still.push_back(b);
    active.swap(still);
    return !active.empty();
  }

  // Prompt + response per row, right-padded with token 0 (attention_mask 0), the response (a drawn stop token
  // included) marked in response_mask; `log_probs` [B, T] gets the log-prob of each drawn token, 0 elsewhere.
  TokenBatch to_batch(const PromptBatch& x, std::vector<T>& log_probs) const {
    const std::size_t B = len.size();
    std::size_t Tout = 0;
    for (auto l : len) Tout = std::max(Tout, l);
    TokenBatch out = TokenBatch::zeros(B, Tout);
    out.attention_mask.assign(B * Tout, 0);
    log_probs.assign(B * Tout, T(0));
    for (std::size_t b = 0; b < B; ++b)
      for (std::size_t t = 0; t < len[b]; ++t) {
        out.token(b, t) = seq[b * cap + t];
        out.attention_mask[b * Tout + t] = 1;
        out.mask(b, t) = t >= x.prompt_length[b];
        log_probs[b * Tout + t] = logp[b * cap + t];
      }
    return out;
  }
};

// The items a host sampler (gpt::Sampler, llama::Sampler) runs through its model at one step, item i being token
// tok[i] of row row[i] at position pos[i]; sequence o owns items begin[o] … begin[o + 1] − 1. The prefill holds
// every prompt token (the last predicts the first new one); each later step one item per row still drawing.
struct SamplingItems {
  std::vector<std::size_t> row, pos;  // [items]
  std::vector<std::size_t> begin;     // [B + 1] each sequence's first item
  std::vector<token_id> tok;          // [items]

  // Grows the buffers for B sequences of `items` items in all (never shrinks them).
  void reserve(std::size_t items, std::size_t B) {
    const auto grow = [](auto& v, std::size_t n) {
      if (v.size() < n) v.resize(n);
    };
    grow(row, items), grow(pos, items), grow(tok, items), grow(begin, B + 1);
  }

  template <class T>
  void prefill(const SampledRows<T>& rows, const PromptBatch& x) {
    std::size_t n = 0;
    begin[0] = 0;
    for (std::size_t b = 0; b < x.batch; ++b) {
      for (std::size_t t = 0; t < rows.len[b]; ++t, ++n) row[n] = b, pos[n] = t, tok[n] = x.tokens[b * x.time + t];
      begin[b + 1] = n;
    }
  }

  // One item per active row: its last token.
  template <class T>
  void next(const SampledRows<T>& rows) {
    for (std::size_t k = 0; k < rows.active.size(); ++k) {
      const std::size_t b = rows.active[k];
      row[k] = b, pos[k] = rows.len[b] - 1, tok[k] = rows.last_token(b);
      begin[k + 1] = k + 1;
    }
  }
};

// One token from a row of logits: softmax(logits / temperature), restricted to the top_k most likely tokens and
// then to the smallest set whose probability reaches top_p; temperature 0 takes the argmax. Ties go to the
// lower id. u: a uniform draw in [0, 1), unused at temperature 0 (draw_uses_uniform). Its buffers grow to the
// largest vocabulary seen.
template <class T>
class TokenDraw {
 public:
  static bool draw_uses_uniform(const SampleOptions& o) { return o.temperature != 0.0f; }

  token_id operator()(const T* logits, std::size_t V, const SampleOptions& o, double u) {
    if (o.temperature == 0.0f) return static_cast<token_id>(std::max_element(logits, logits + V) - logits);
    reserve(V);
    std::iota(idx_.begin(), idx_.begin() + V, token_id(0));
    std::size_t n = V;
    const auto before = [&](token_id a, token_id b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    };
    if (o.top_k > 0 && o.top_k < V) {
      std::nth_element(idx_.begin(), idx_.begin() + o.top_k - 1, idx_.begin() + V, before);
      n = o.top_k;
      std::sort(idx_.begin(), idx_.begin() + n);  // a canonical order for the draw
    }
    double m = -INFINITY;
    for (std::size_t i = 0; i < n; ++i) m = std::max(m, double(logits[idx_[i]]));
    const double inv_temp = 1.0 / o.temperature;
    double total = 0;
    for (std::size_t i = 0; i < n; ++i) total += (weight_[i] = std::exp((double(logits[idx_[i]]) - m) * inv_temp));
    if (o.top_p < 1.0f) {
      std::vector<std::size_t>& order = order_;
      std::iota(order.begin(), order.begin() + n, std::size_t(0));
      std::sort(order.begin(), order.begin() + n, [&](std::size_t a, std::size_t b) {
        return weight_[a] > weight_[b] || (weight_[a] == weight_[b] && idx_[a] < idx_[b]);
      });
      double kept = 0;
      std::size_t k = 0;
      while (k < n && kept < double(o.top_p) * total) kept += weight_[order[k++]];
      for (std::size_t i = 0; i < k; ++i) sorted_weight_[i] = weight_[order[i]], sorted_idx_[i] = idx_[order[i]];
      u *= kept;
      for (std::size_t i = 0; i < k; ++i)
        if ((u -= sorted_weight_[i]) < 0) return sorted_idx_[i];
      return sorted_idx_[k - 1];
    }
    u *= total;
    for (std::size_t i = 0; i < n; ++i)
      if ((u -= weight_[i]) < 0) return idx_[i];
    return idx_[n - 1];
  }

  void reserve(std::size_t V) {
    if (idx_.size() >= V) return;
    idx_.resize(V), weight_.resize(V), order_.resize(V), sorted_weight_.resize(V), sorted_idx_.resize(V);
  }

 private:
  std::vector<token_id> idx_, sorted_idx_;      // [V]
  std::vector<double> weight_, sorted_weight_;  // [V]
  std::vector<std::size_t> order_;              // [V]
};

// The draws of one round, one per row still going. The uniforms are taken from the Rng first, in row order, one per
// row as a draw row by row would take them; then the rows draw and score their tokens independently, in parallel
// when the vocabulary is large (each thread with its own TokenDraw). So a seed draws the same tokens whatever the
// number of threads.
template <class T>
class RoundDraws {
 public:
  void reserve(std::size_t V) {
    std::size_t threads = 1;
#ifdef _OPENMP
    threads = std::size_t(omp_get_max_threads());
#endif
    if (draws_.size() < threads) draws_.resize(threads);
    for (auto& d : draws_) d.reserve(V);
  }

  // tokens[k], logps[k] for row k of logits [rows, V]: its draw and logprob(logits row, V, token).
  template <class LogProb>
  void run(const T* logits, std::size_t rows, std::size_t V, const SampleOptions& o, Rng& rng, LogProb logprob) {
    reserve(V);
    uniforms.assign(rows, 0.0), tokens.assign(rows, 0), logps.assign(rows, T(0));
    if (TokenDraw<T>::draw_uses_uniform(o))
      for (auto& u : uniforms) u = rng.uniform();
#pragma omp parallel for schedule(dynamic, 1) if (rows > 1 && rows * V >= (std::size_t(1) << 16))
    for (std::ptrdiff_t k = 0; k < std::ptrdiff_t(rows); ++k) {
      std::size_t thread = 0;
#ifdef _OPENMP
      thread = std::size_t(omp_get_thread_num());
#endif
      const T* row = logits + std::size_t(k) * V;
      tokens[std::size_t(k)] = draws_[thread](row, V, o, uniforms[std::size_t(k)]);
      logps[std::size_t(k)] = logprob(row, V, tokens[std::size_t(k)]);
    }
  }

  std::vector<double> uniforms;  // [rows]
  std::vector<token_id> tokens;  // [rows]
  std::vector<T> logps;          // [rows]

 private:
  std::vector<TokenDraw<T>> draws_;  // one per thread
};

// A NaN or Inf logit (non-finite or overflowing parameters) has no distribution to draw from: refuse it.
template <class T>
void require_finite_logits(const char* fn, const T* logits, std::size_t V, std::size_t b, std::size_t t) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < V; ++i) bad += std::isfinite(logits[i]) ? 0 : 1;
  if (bad > 0)
    fail<value_error>(fn, ": the logits for row ", b, " at position ", t, " hold ", bad, " NaN or Inf value(s) among ",
                      V, "; the model's parameters are not finite or overflow");
}

// The draw loop of a host sampler, once step(B) has run the prefill items: each round draws a token for every row
// still going from its row k of logits [rows, V] (finite, or refused; `draws`), with the log-prob
// logprob(logits row, V, token); then drops the rows that drew the stop token and runs step(rows left) on the
// next items, until max_new_tokens. fn names the caller.
template <class T, class LogProb, class Step>
void draw_tokens(const char* fn, SampledRows<T>& rows, SamplingItems& items, const T* logits, std::size_t V,
                 const SampleOptions& o, Rng& rng, RoundDraws<T>& draws, LogProb logprob, Step step) {
  for (std::size_t generated = 0;; ++generated) {
    const std::size_t n = rows.active.size();
    for (std::size_t k = 0; k < n; ++k)
      require_finite_logits(fn, logits + k * V, V, rows.active[k], rows.len[rows.active[k]]);
    draws.run(logits, n, V, o, rng, logprob);
    for (std::size_t k = 0; k < n; ++k) rows.append(rows.active[k], draws.tokens[k], draws.logps[k]);
    if (!rows.drop_stopped(o.stop_token) || generated + 1 == o.max_new_tokens) return;
    items.next(rows);
    step(rows.active.size());
  }
}

}  // namespace rlhf::gpt_host
