#pragma once
// What the LoRA tests share: a small padded batch and adapters with every parameter nonzero.
#include <cstddef>
#include <cstdint>

#include "rlhf/core/batch.hpp"
#include "rlhf/core/rng.hpp"

namespace rlhf::testing {

// Rows of 7 tokens, the first padded on the left, responses of different lengths.
rlhf::TokenBatch batch_of(std::size_t vocab, std::uint64_t seed) {
  rlhf::Rng rng(seed);
  rlhf::TokenBatch b = rlhf::TokenBatch::zeros(3, 7);
  for (std::size_t i = 0; i < 21; ++i) b.tokens[i] = rlhf::token_id(rng.below(vocab));
  b.attention_mask.assign(21, 1);
  b.attention_mask[0] = b.attention_mask[1] = 0;
  for (std::size_t t = 3; t < 7; ++t) b.mask(0, t) = 1;
  for (std::size_t t = 2; t < 5; ++t) b.mask(1, t) = 1;
  for (std::size_t t = 1; t < 7; ++t) b.mask(2, t) = 1;
  return b;
}

// Every adapter parameter (B too) uniform in ±0.3, so every path of the adapters carries signal.
template <class L>
void randomize_adapters(L& lora, std::uint64_t seed) {
  rlhf::Rng rng(seed);
  for (auto& p : lora.parameters()) p = 0.3 * (2 * rng.uniform() - 1);
}

}  // namespace rlhf::testing
