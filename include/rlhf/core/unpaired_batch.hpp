#pragma once
// Unpaired examples for KTO: each a prompt and one completion, labelled desirable or undesirable, and the
// mismatched rows (a prompt with another example's completion) that KTO's reference point z0 is estimated from.
// Host-side, row-major, like the other batches (core/batch.hpp).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "rlhf/core/batch.hpp"
#include "rlhf/core/error.hpp"

namespace rlhf {

// Example i is row i of `sequences` with label desirable[i]. `mismatched` holds M ≥ 1 rows (x_j, y'_j), y'_j the
// completion of another example (rlhf::mismatched_rows builds TRL's rotation; any M works).
// reference / reference_mismatched: Σ_t log π_ref of each row, precomputed (rlhf::precompute_reference_logps), so
// that no reference model need be held while training; empty when a reference policy is passed to the step.
struct UnpairedBatch {
  TokenBatch sequences;                 // [B, T]: prompt x_i, then completion y_i
  std::vector<std::uint8_t> desirable;  // [B] 1: desirable (TRL's label True), 0: undesirable
  TokenBatch mismatched;                // [M, T']: KTO's KL rows
  std::vector<double> reference;             // [B], or empty
  std::vector<double> reference_mismatched;  // [M], or empty
};

// Row i: the prompt of row i followed by the completion of row (i − 1) mod B, right-padded, with no attention mask.
// This is TRL KTOTrainer's KL data set (its completions moved down one place: prompt i meets completion i − 1).
// A row's prompt is its real tokens before its first response token, its completion its response tokens; tokens
// after the completion are dropped. Needs B ≥ 2: with one row the "mismatched" row would be the example itself.
// max_length > 0 bounds each row (a prompt and another row's completion may together be longer than either row):
// the completion's end is cut, and a prompt that leaves no room keeps its last max_length − 1 tokens.
inline TokenBatch mismatched_rows(const TokenBatch& sequences, std::size_t max_length = 0) {
  constexpr const char* fn = "rlhf::mismatched_rows";
  const std::size_t B = sequences.batch, T = sequences.time;
  require_size(fn, "tokens", sequences.tokens.size(), B * T, "B*T");
  require_size(fn, "response_mask", sequences.response_mask.size(), B * T, "B*T");
  if (!sequences.attention_mask.empty())
    require_size(fn, "attention_mask", sequences.attention_mask.size(), B * T, "B*T (or 0)");
  if (B < 2) fail<shape_error>(fn, ": 'sequences' has ", B, " row(s); mismatched pairs need at least 2");
  std::vector<std::vector<token_id>> prompts(B), completions(B);
  for (std::size_t b = 0; b < B; ++b) {
    std::size_t t = 0;
    for (; t < T && !sequences.mask(b, t); ++t)
      if (sequences.real(b, t)) prompts[b].push_back(sequences.token(b, t));
    for (; t < T; ++t)
      if (sequences.mask(b, t)) completions[b].push_back(sequences.token(b, t));
    if (completions[b].empty()) fail<value_error>(fn, ": 'sequences' row ", b, " of ", B, " has no response token");
  }
  if (max_length == 1) fail<value_error>(fn, ": max_length must be 0 (no bound) or at least 2");
  std::vector<std::vector<token_id>> taken(B);  // the completion each row takes, cut to fit
  for (std::size_t b = 0; b < B; ++b) {
    taken[b] = completions[(b + B - 1) % B];
    if (max_length == 0) continue;
    if (prompts[b].size() >= max_length)
      prompts[b].erase(prompts[b].begin(), prompts[b].end() - std::ptrdiff_t(max_length - 1));
    if (prompts[b].size() + taken[b].size() > max_length) taken[b].resize(max_length - prompts[b].size());
  }
  std::size_t width = 0;
  for (std::size_t b = 0; b < B; ++b) {
    const std::size_t n = prompts[b].size() + taken[b].size();
    width = n > width ? n : width;
  }
  TokenBatch out = TokenBatch::zeros(B, width);
  for (std::size_t b = 0; b < B; ++b) {
    std::size_t t = 0;
    for (const token_id id : prompts[b]) out.token(b, t++) = id;
    for (const token_id id : taken[b]) {
      out.mask(b, t) = 1;
      out.token(b, t++) = id;
    }
  }
  return out;
}

}  // namespace rlhf
