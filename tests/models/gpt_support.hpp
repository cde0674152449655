#pragma once
// Shared by the GPT tests: tiny configs, random parameters and batches.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "rlhf/core/batch.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/models/gpt/model.hpp"

namespace rlhf::testing {

inline GptConfig tiny_gpt_config(bool head = false) {
  return {.vocab_size = 13, .max_seq_len = 12, .channels = 8, .layers = 2, .heads = 2, .scalar_head = head};
}

// Parameters far from GPT-2's small initialisation, so attention is peaked and every path carries signal.
template <class T>
void randomize(Gpt<T>& model, std::uint64_t seed, double scale = 0.5) {
  Rng rng(seed);
  for (const auto& t : gpt_param_layout(model.config())) {
    T* p = model.parameters().data() + t.offset;
    const bool ln_weight = t.name == "ln1w" || t.name == "ln2w" || t.name == "lnfw";
    for (std::size_t i = 0; i < t.size; ++i)
      p[i] = T((ln_weight ? 1.0 : 0.0) + scale * (2 * rng.uniform() - 1));
  }
}

// One row: tokens, and how many of them (at the end) are the response.
struct Row {
  std::vector<token_id> tokens;
  std::size_t response = 1;
};

enum class Pad { right, left, right_masked };

// Rows padded to T (the longest, or more) on the given side with pad id `pad`; left and right_masked set
// attention_mask.
inline TokenBatch pad_rows(const std::vector<Row>& rows, Pad side, std::size_t T = 0, token_id pad = 0) {
  for (const auto& r : rows) T = std::max(T, r.tokens.size());
  TokenBatch b = TokenBatch::zeros(rows.size(), T);
  for (auto& t : b.tokens) t = pad;
  if (side != Pad::right) b.attention_mask.assign(rows.size() * T, 0);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::size_t n = rows[i].tokens.size(), start = side == Pad::left ? T - n : 0;
    for (std::size_t k = 0; k < n; ++k) {
      b.token(i, start + k) = rows[i].tokens[k];
      b.mask(i, start + k) = k >= n - rows[i].response;
      if (side != Pad::right) b.attention_mask[i * T + start + k] = 1;
    }
  }
  return b;
}

inline std::vector<Row> random_rows(std::size_t count, std::size_t min_len, std::size_t max_len, std::size_t vocab,
                                    std::uint64_t seed) {
  Rng rng(seed);
  std::vector<Row> rows(count);
  for (auto& r : rows) {
    const std::size_t n = min_len + rng.below(max_len - min_len + 1);
    for (std::size_t k = 0; k < n; ++k) r.tokens.push_back(static_cast<token_id>(rng.below(vocab)));
    r.response = 1 + rng.below(n - 1);
  }
  return rows;
}

}  // namespace rlhf::testing
