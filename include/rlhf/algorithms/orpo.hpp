#pragma once
// One optimizer step of ORPO (rlhf::orpo_loss) on preference pairs, for any TrainablePolicy and any optimizer. No
// reference model:
//
//   log π [2n, T] = policy.log_probs([chosen; rejected])       one forward over both halves of a micro-batch
//   Σ_t log π → [n] + [n], with the response lengths → orpo_loss → d/d Σ log π [2n] → spread → policy.backward
//   optimizer.step(policy.parameters(), policy.gradients())
//
// The NLL term is the whole batch's chosen-token mean: every micro-batch divides by the whole batch's chosen
// tokens per pair, so M micro-batches give the step of one. docs/algorithms/orpo.md.
#include <cstddef>
#include <span>

#include "rlhf/algorithms/sequence.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/losses/orpo.hpp"

namespace rlhf {

// The batch's reference and margin fields are unused.
template <class P, class O>
StepResult orpo_step(P& policy, O& optimizer, const PreferenceBatch& batch, const OrpoConfig& config = {},
                     const StepOptions& options = {}) {
  RLHF_REQUIRE_TRAINING_STEP(P, O, "rlhf::orpo_step");
  using Be = typename P::backend;
  using V = typename Be::vector;
  constexpr const char* fn = "rlhf::orpo_step";
  const std::size_t B = detail::require_preference_batch(fn, batch);
  double chosen_tokens = 0;
  for (std::size_t b = 0; b < B; ++b) chosen_tokens += static_cast<double>(batch.chosen.response_length(b));
  double totals[2] = {chosen_tokens, static_cast<double>(B)};
  if (options.communicator && options.communicator->size() > 1)  // the NLL is a token mean over every rank's pairs
    options.communicator->all_reduce_sum(std::span<double>(totals, 2));
  const double tokens_per_pair = totals[0] / totals[1];  // every row has a response token

  const auto block = [&](const TokenBatch& joint, std::size_t lo, std::size_t hi, double share) {
    const std::size_t n = hi - lo;
    const auto mask = mask_matrix<Be>(joint);                     // [2n, T]
    const V lengths = response_lengths<Be>(joint);                // [2n]
    const V sums = sequence_sums(policy.log_probs(joint), mask);  // [2n]
    const OrpoPairs<V> pairs{slice_elements(sums, 0, n), slice_elements(sums, n, 2 * n),
                             slice_elements(lengths, 0, n), slice_elements(lengths, n, 2 * n)};
    auto r = orpo_loss(pairs, config, tokens_per_pair);
    policy.backward(joint, spread_over_tokens(detail::concat<Be>(r.d_policy_chosen, r.d_policy_rejected, share), mask));
    return r;
  };
  return pair_training_step(fn, policy, optimizer, batch, B, options, block);
}

}  // namespace rlhf
