#pragma once
// The library's one reduction vocabulary: how per-token values become a number.
//   Reduction    one sequence: its tokens' values → the value for that sequence (scorers, SFT's per-row term)
//   Aggregation  a batch [B, T] with a 0/1 mask → the loss (the PPO family, KL, and any token loss through
//                losses/token_loss.hpp); the weights per row are in losses/aggregation.hpp
// SFT's BatchReduction and DPO's DpoNllNormalization are older names for points of this vocabulary:
//   SftConfig{sum, mean_tokens}  = Aggregation::token_mean       DpoNllNormalization::batch_tokens = token_mean
//   SftConfig{mean, mean_rows}   = Aggregation::sequence_mean    DpoNllNormalization::per_sequence = sequence_mean
//   SftConfig{sum, mean_rows}    = Aggregation::sequence_sum, L = 1
//   SftConfig{…, sum_rows}       (a sum over rows, fairseq's) has no Aggregation: it is not a mean.
namespace rlhf {

enum class Reduction {
  sum,        // Σ over the response tokens
  mean,       // Σ over the response tokens / their count
  per_token,  // no reduction: one value per token (only where a function says it takes it)
};

enum class Aggregation {
  token_mean,              // Σ m x / Σ m: every token of the batch alike
  sequence_mean,           // (1/B) Σ_b (Σ_t m x / n_b): every row alike, a row with no token counting as 0
  sequence_sum,            // Σ m x / (B · L), L a constant (Dr. GRPO)
  nonempty_sequence_mean,  // OpenRLHF's sequence_mean: the mean of Σ_t m x / (n_b + 1e-8) over rows with a token
};

}  // namespace rlhf
