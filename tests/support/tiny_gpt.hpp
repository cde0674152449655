#pragma once
// A GPT-2 small enough for step-level tests, and batches of short responses for it.
#include <cstddef>
#include <cstdint>

#include "rlhf/core/batch.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/models/gpt_host/config.hpp"

namespace rlhf::test {

inline const GptConfig tiny_gpt{.vocab_size = 8, .max_seq_len = 8, .channels = 16, .layers = 1, .heads = 2};

// `rows` sequences [rows, T = 5]: prompt [1 + b % 3, 2], then 1 to 3 response tokens drawn from `seed`, padded on
// the right. Two seeds give two sides of a preference batch whose responses differ.
inline TokenBatch short_responses(std::size_t rows, std::uint64_t seed) {
  Rng rng(seed);
  TokenBatch out = TokenBatch::zeros(rows, 5);
  for (std::size_t b = 0; b < rows; ++b) {
    out.token(b, 0) = static_cast<token_id>(1 + b % 3);
    out.token(b, 1) = 2;
    const std::size_t n = 1 + rng.below(3);
    for (std::size_t t = 2; t < 2 + n; ++t) {
      out.token(b, t) = static_cast<token_id>(rng.below(8));
      out.mask(b, t) = 1;
    }
  }
  return out;
}

}  // namespace rlhf::test
