#pragma once
// The library's one reduction vocabulary: how per-token values become a number.
//   Reduction    one sequence: its tokens' values → the value for that sequence (scorers)
//   Aggregation  a batch [B, T] with a 0/1 mask → the loss (the PPO family, KL, SFT, unlikelihood, DPO's NLL term,
//                and any token loss through losses/token_loss.hpp); the weights per row are in
//                losses/aggregation.hpp
// Each loss takes the points its peers use and says which; n_b = Σ_t m[b,t], the tokens of row b.
namespace rlhf {

enum class Reduction {
  sum,        // Σ over the response tokens
  mean,       // Σ over the response tokens / their count
  per_token,  // no reduction: one value per token (only where a function says it takes it)
};

enum class Aggregation {
  token_mean,              // Σ m x / Σ m: every token alike (TRL SFTTrainer, OpenRLHF GPTLMLoss, TRL rpo_alpha)
  sequence_mean,           // (1/B) Σ_b (Σ_t m x / n_b): every row alike, a row with no token counting as 0
                           // (OpenRLHF DPOTrainer's nll_loss)
  sequence_sum,            // Σ m x / (B · L), L a constant (Dr. GRPO; L = 1 in SFT and KL: the mean of the rows' sums)
  nonempty_sequence_mean,  // OpenRLHF's sequence_mean: the mean of Σ_t m x / (n_b + 1e-8) over rows with a token
  token_sum,               // Σ m x: every token alike, not divided (what a fairseq criterion returns)
};

}  // namespace rlhf
