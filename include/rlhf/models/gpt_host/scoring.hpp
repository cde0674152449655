#pragma once
// The batch of a GPT's last forward pass, on the host, for both models (Gpt<T> and GptCuda): its checks, its
// scoring layout (which final hidden row scores which token) and the check that a backward is on the same batch.
//
// Positions count real tokens only (padding, attention_mask 0, gets position 0 and is never attended), so a row
// scores the same whichever side it is padded on. Response token t of row b is scored from the final hidden
// state of the last real position before it: scoring row m has src[m] = that position (b·T + t'), dst[m] = b·T + t
// and targets[m] = the token; rows run in batch order, those of sequence b from row_begin[b] to row_begin[b + 1].
// Index: std::size_t on the CPU, std::int32_t for the GPU's index buffers.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "rlhf/core/batch.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/models/gpt_host/config.hpp"

namespace rlhf::gpt_host {

inline void require_scalar_head(const GptConfig& c, const char* fn) {
  if (!c.scalar_head) fail<config_error>(fn, ": the model has no scalar head (GptConfig::scalar_head)");
}

template <class Index>
struct ScoredBatch {
  TokenBatch batch;                 // the batch of the last forward pass (response_mask sized B·T)
  bool trunk_ready = false;         // the model's activations hold the forward pass of `batch`
  bool logits_ready = false;        // the model holds logits of a log_probs on `batch` not yet consumed
  std::size_t rows = 0;             // M: response tokens in `batch`
  std::vector<Index> src, dst;      // [M] (capacity N = B·T) scoring row and scored position b·T + t
  std::vector<std::int32_t> targets;  // [M] the scored token ids
  std::vector<std::int32_t> pos;      // [N] position ids (real tokens before)
  std::vector<std::uint8_t> real;     // [N] 1 real, 0 padding
  std::vector<Index> last;          // [B] position b·T + t of each row's last response token (b·T without one)
  std::vector<Index> row_begin;     // [B + 1] first scoring row of each sequence

  // Checks `b` against the config (needs_response: a scoring call, which needs a valid response; logits() does
  // not), records it and lays out its scoring rows. The model runs its forward pass next and then sets
  // trunk_ready. A batch that differs from the last one drops the unconsumed logits. Buffers grow to the largest
  // batch seen and are reused.
  // Config: any model's config with vocab_size and max_seq_len (GptConfig, LlamaConfig).
  template <class Config>
  void record(const TokenBatch& b, const Config& c, const char* fn, bool needs_response) {
    const std::size_t B = b.batch, Tn = b.time, N = B * Tn;
    if (needs_response) {
      b.validate(c.vocab_size);
    } else {
      require_nonempty(fn, "batch", B);
      require_size(fn, "tokens", b.tokens.size(), N, "B*T");
      if (!b.attention_mask.empty()) require_size(fn, "attention_mask", b.attention_mask.size(), N, "B*T");
      for (auto id : b.tokens)
        if (id < 0 || std::size_t(id) >= c.vocab_size)
          fail<value_error>(fn, ": token id ", id, " is outside the vocabulary [0, ", c.vocab_size, ")");
    }
    if (!same(b)) logits_ready = false;
    trunk_ready = false;
    batch = b;  // same sizes as before in the steady state: no allocation
    batch.response_mask.resize(N, 0);
    const auto grow = [](auto& v, std::size_t n) {
      if (v.size() < n) v.resize(n);
    };
    grow(src, N), grow(dst, N), grow(targets, N), grow(pos, N), grow(real, N), grow(last, B), grow(row_begin, B + 1);

    rows = 0;
    for (std::size_t r = 0; r < B; ++r) {
      row_begin[r] = Index(rows);
      std::size_t count = 0;
      Index prev = Index(-1);
      last[r] = Index(r * Tn);
      for (std::size_t t = 0; t < Tn; ++t) {
        const std::size_t n = r * Tn + t;
        const bool is_real = b.real(r, t);
        real[n] = is_real;
        pos[n] = static_cast<std::int32_t>(is_real ? count : 0);
        if (batch.response_mask[n]) {
          src[rows] = prev, dst[rows] = Index(n), targets[rows] = b.tokens[n];
          ++rows;
          last[r] = Index(n);
        }
        if (is_real) prev = Index(n), ++count;
      }
      if (count > c.max_seq_len)
        fail<shape_error>(fn, ": row ", r, " has ", count, " real tokens but max_seq_len is ", c.max_seq_len);
    }
    row_begin[B] = Index(rows);
  }

  // Whether `b` is the batch whose forward pass the model holds.
  bool same(const TokenBatch& b) const {
    return trunk_ready && b.batch == batch.batch && b.time == batch.time && b.tokens == batch.tokens &&
           b.response_mask == batch.response_mask && b.attention_mask == batch.attention_mask;
  }

  // What every backward checks first: a forward pass to differentiate, on this very batch (sizes, tokens, masks).
  void require_same(const TokenBatch& b, const char* fn) const {
    if (!trunk_ready) fail<value_error>(fn, ": no forward pass to differentiate; call the forward on this batch first");
    if (b.batch != batch.batch || b.time != batch.time)
      fail<shape_error>(fn, ": the batch is [", b.batch, ", ", b.time, "] but the last forward pass was on [",
                        batch.batch, ", ", batch.time, "]; call the forward on this batch first");
    if (!same(b))
      fail<value_error>(fn, ": the batch differs from the one of the last forward pass (tokens or masks); "
                            "call the forward on this batch first");
  }

  // backward's check: the same batch, and logits of a log_probs on it that no backward has consumed yet.
  void require_logits(const TokenBatch& b, const char* fn) const {
    require_same(b, fn);
    if (!logits_ready)
      fail<value_error>(fn, ": no log_probs(batch) since the last backward on this batch; call log_probs first "
                            "(backward consumes the logits of one log_probs)");
  }
};

}  // namespace rlhf::gpt_host
