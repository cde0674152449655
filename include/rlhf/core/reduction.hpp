#pragma once
// How the per-token values of one sequence become what a loss or a scorer returns for it.
namespace rlhf {

enum class Reduction {
  sum,        // Σ over the response tokens
  mean,       // Σ over the response tokens / their count
  per_token,  // no reduction: one value per token (only where a function says it takes it)
};

}  // namespace rlhf
