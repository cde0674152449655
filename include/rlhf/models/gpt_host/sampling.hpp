#pragma once
// The host side of sampling, for both GPT samplers (gpt::Sampler, sampler.hpp; gpt_cuda::Sampler,
// sampler.cuh): the checks of the prompts and options, and the sequences being continued (prompt + drawn tokens,
// the log-prob of each draw, which rows are still going) up to the TokenBatch a sample() returns.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "rlhf/core/batch.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/models/gpt_host/config.hpp"

namespace rlhf::gpt_host {

inline void validate_sampling(const char* fn, const GptConfig& c, const PromptBatch& x, const SampleOptions& o) {
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
  SampledRows(const char* fn, const GptConfig& c, const PromptBatch& x, const SampleOptions& o) {
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

}  // namespace rlhf::gpt_host
