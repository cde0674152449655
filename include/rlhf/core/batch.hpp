#pragma once
// Token batches: the data that crosses the policy seam, and the preference and ranked batches the training
// steps take. Host-side, row-major [B, T].
#include <cstddef>
#include <cstdint>
#include <vector>

#include "rlhf/core/error.hpp"

namespace rlhf {

using token_id = std::int32_t;

// A batch of token sequences, each a prompt followed by a response, padded on either side.
// response_mask[b,t] = 1 marks tokens[b,t] as a response token: the policy scores it as
// log p(tokens[b,t] | tokens[b,<t]). Prompt tokens and padding carry 0 and never contribute.
struct TokenBatch {
  std::size_t batch = 0;                    // B
  std::size_t time = 0;                     // T
  std::vector<token_id> tokens;             // [B, T]
  std::vector<std::uint8_t> response_mask;  // [B, T], 0 or 1
  // Optional [B, T]: 1 marks a real token, 0 padding. Empty means every token is real. Padding is attended
  // by no token and not counted in positions, so a row scores the same wherever its padding is. Right
  // padding needs no mask (causal attention never looks ahead); left padding does.
  std::vector<std::uint8_t> attention_mask;

  static TokenBatch zeros(std::size_t B, std::size_t T) {
    return {B, T, std::vector<token_id>(B * T, 0), std::vector<std::uint8_t>(B * T, 0), {}};
  }
  token_id& token(std::size_t b, std::size_t t) { return tokens[b * time + t]; }
  token_id token(std::size_t b, std::size_t t) const { return tokens[b * time + t]; }
  std::uint8_t& mask(std::size_t b, std::size_t t) { return response_mask[b * time + t]; }
  std::uint8_t mask(std::size_t b, std::size_t t) const { return response_mask[b * time + t]; }

  bool real(std::size_t b, std::size_t t) const { return attention_mask.empty() || attention_mask[b * time + t]; }

  std::size_t response_length(std::size_t b) const {
    std::size_t n = 0;
    for (std::size_t t = 0; t < time; ++t) n += response_mask[b * time + t] != 0;
    return n;
  }

  // Throws if the buffers disagree with B x T, the batch is empty, a row has no response
  // token, position 0 is marked (it has no prefix to condition on), or an id is outside [0, vocab);
  // with an attention_mask, also if a response token is padding or has no real token before it.
  void validate(std::size_t vocab) const {
    require_nonempty("TokenBatch", "tokens", batch);
    require_size("TokenBatch", "tokens", tokens.size(), batch * time, "B*T");
    require_size("TokenBatch", "response_mask", response_mask.size(), batch * time, "B*T");
    if (!attention_mask.empty())
      require_size("TokenBatch", "attention_mask", attention_mask.size(), batch * time, "B*T (or 0: all real)");
    for (std::size_t b = 0; b < batch; ++b) {
      if (response_length(b) == 0)
        fail<value_error>("TokenBatch: row ", b, " of ", batch, " has no response token in response_mask");
      if (time > 0 && mask(b, 0))
        fail<value_error>("TokenBatch: row ", b, " marks position 0 as a response token; it has no prefix");
      if (!attention_mask.empty()) {
        bool seen_real = false;
        for (std::size_t t = 0; t < time; ++t) {
          if (attention_mask[b * time + t] > 1)
            fail<value_error>("TokenBatch: attention_mask[", b, ",", t, "] is ", int(attention_mask[b * time + t]),
                              "; it must be 0 or 1");
          if (mask(b, t) && !real(b, t))
            fail<value_error>("TokenBatch: row ", b, " marks position ", t, " as a response token but "
                              "attention_mask says it is padding");
          if (mask(b, t) && !seen_real)
            fail<value_error>("TokenBatch: row ", b, " has response token at position ", t,
                              " with no real token before it to condition on");
          seen_real = seen_real || real(b, t);
        }
      }
      for (std::size_t t = 0; t < time; ++t) {
        const token_id id = token(b, t);
        if (id < 0 || static_cast<std::size_t>(id) >= vocab)
          fail<value_error>("TokenBatch: token id ", id, " at [", b, ",", t, "] is outside the vocabulary [0, ",
                            vocab, ")");
      }
    }
  }
};

// Preference pairs: pair i is row i of `chosen` and row i of `rejected` (the two may differ in T).
// reference_*: Σ_t log π_ref of each row, precomputed (rlhf::precompute_reference_logps) so that no
// reference model need be held while training; empty when a reference policy is passed to the step.
// margin: a reward margin per pair for reward_model_step (TRL's margin column); empty: none.
struct PreferenceBatch {
  TokenBatch chosen, rejected;                               // [B, T⁺], [B, T⁻]
  std::vector<double> reference_chosen, reference_rejected;  // [B] each, or empty
  std::vector<double> margin;                                // [B], or empty
};

// K ranked responses per prompt, best first: row b*K + k of `responses` is prompt b's k-th best.
// A list b shorter than K (lengths[b] < K) still fills its K rows with valid sequences (repeat one);
// the rows past its length are scored but carry no weight in the loss.
struct RankedBatch {
  std::size_t k = 0;                 // K ≥ 2 responses per list
  TokenBatch responses;              // [B*K, T]
  std::vector<std::size_t> lengths;  // [B] ranked responses per list, 2..K; empty: all K
  std::vector<double> reference;     // [B*K] Σ_t log π_ref, or empty

  std::size_t lists() const { return k ? responses.batch / k : 0; }  // B
};

// Prompts to be continued by a SamplingPolicy: one row each, left-aligned, prompt_length[b] real tokens.
struct PromptBatch {
  std::size_t batch = 0;                     // B
  std::size_t time = 0;                      // T (longest prompt)
  std::vector<token_id> tokens;              // [B, T], padding after prompt_length[b]
  std::vector<std::size_t> prompt_length;    // [B]
};

struct SampleOptions {
  std::size_t max_new_tokens = 32;
  float temperature = 1.0f;
  std::size_t top_k = 0;  // 0: off
  float top_p = 1.0f;     // 1: off
  token_id stop_token = -1;  // -1: none
};

}  // namespace rlhf
