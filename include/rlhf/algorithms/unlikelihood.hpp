#pragma once
// One optimizer step of unlikelihood training on preference pairs, for any TrainablePolicy and optimizer:
// raise log π of the chosen responses' tokens, push down π of the rejected responses' tokens.
//
//   log π [2B, T] = policy.log_probs([chosen; rejected]) → rlhf::unlikelihood_loss → policy.backward
//   optimizer.step(policy.parameters(), policy.gradients())
//
// Micro-batches accumulate as in every step (algorithms/step.hpp). docs/algorithms/unlikelihood.md.
#include <cstddef>

#include "rlhf/algorithms/sequence.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/losses/unlikelihood.hpp"

namespace rlhf {

// The batch's reference fields are unused.
template <class P, class O>
StepResult unlikelihood_step(P& policy, O& optimizer, const PreferenceBatch& batch,
                             const UnlikelihoodConfig& config = {}, const StepOptions& options = {}) {
  RLHF_REQUIRE_TRAINING_STEP(P, O, "rlhf::unlikelihood_step");
  using Be = typename P::backend;
  using M = typename Be::matrix;
  constexpr const char* fn = "rlhf::unlikelihood_step";
  const std::size_t B = detail::require_preference_batch(fn, batch);
  const auto block = [&](const TokenBatch& joint, std::size_t lo, std::size_t hi, double share) {
    const std::size_t n = hi - lo;
    const M mask = mask_matrix<Be>(joint);   // [2n, T]
    const M logp = policy.log_probs(joint);  // [2n, T]
    auto r = unlikelihood_loss(slice_rows(logp, 0, n), slice_rows(mask, 0, n), slice_rows(logp, n, 2 * n),
                               slice_rows(mask, n, 2 * n), config);
    const std::size_t T = Be::cols(mask);
    M d = Be::matrix_of(2 * n, T);  // [d_chosen; d_rejected] · share
    detail::copy<Be>(Be::data(r.d_chosen), Be::data(d), n * T, share);
    detail::copy<Be>(Be::data(r.d_rejected), Be::data(d) + n * T, n * T, share);
    policy.backward(joint, d);
    return r;
  };
  return pair_training_step(fn, policy, optimizer, batch, B, options, block);
}

}  // namespace rlhf
