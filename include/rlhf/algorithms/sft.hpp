#pragma once
// One optimizer step of supervised fine-tuning (preferred-FT when the batch holds the chosen responses),
// for any TrainablePolicy and optimizer:
//
//   log π [B, T] = policy.log_probs(batch) → rlhf::sft_loss → d loss / d log π → policy.backward
//   optimizer.step(policy.parameters(), policy.gradients())
//
// Micro-batches accumulate as in every step (algorithms/step.hpp). docs/algorithms/sft.md.
#include <cstddef>

#include "rlhf/algorithms/sequence.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/losses/sft.hpp"

namespace rlhf {

template <class P, class O>
StepResult sft_step(P& policy, O& optimizer, const TokenBatch& batch, const SftConfig& config = {},
                    const StepOptions& options = {}) {
  RLHF_REQUIRE_TRAINING_STEP(P, O, "rlhf::sft_step");
  using Be = typename P::backend;
  constexpr const char* fn = "rlhf::sft_step";
  detail::require_token_batch(fn, "batch", batch);
  StepOptions step = options;
  if (options.communicator && options.communicator->size() > 1) {
    if (config.aggregation == Aggregation::token_sum)
      fail<config_error>(fn, ": aggregation token_sum has no mean to take over ranks; use sequence_sum, sequence_mean "
                             "or token_mean");
    if (config.aggregation == Aggregation::token_mean && step.rank_weight == 0)
      for (std::size_t r = 0; r < batch.batch; ++r) step.rank_weight += double(batch.response_length(r));
  }
  // A token mean over the batch: each micro-batch counts by its share of the tokens, not of the rows.
  double batch_tokens = 0;
  if (config.aggregation == Aggregation::token_mean)
    for (std::size_t r = 0; r < batch.batch; ++r) batch_tokens += double(batch.response_length(r));
  return training_step(fn, policy, optimizer, batch.batch, step, [&](std::size_t lo, std::size_t hi, double share) {
    const TokenBatch part = slice_rows(batch, lo, hi);
    auto r = sft_loss(policy.log_probs(part), mask_matrix<Be>(part), config);
    double weight = share;
    if (batch_tokens > 0) {
      double tokens = 0;
      for (std::size_t row = 0; row < part.batch; ++row) tokens += double(part.response_length(row));
      weight = tokens / batch_tokens;
      r.loss *= weight / share;  // training_step adds share · loss
    }
    policy.backward(part, detail::scaled<Be>(r.d_logp, weight));
    return r;
  });
}

}  // namespace rlhf
