#pragma once
// One optimizer step of unlikelihood training on preference pairs, for any TrainablePolicy and optimizer:
// raise log π of the chosen responses' tokens, push down π of the rejected responses' tokens.
//
//   log π [2B, T] = policy.log_probs([chosen; rejected]) → rlhf::unlikelihood_loss → policy.backward
//   optimizer.step(policy.parameters(), policy.gradients())
//
// Micro-batches accumulate exactly as in dpo_step. docs/algorithms/unlikelihood.md.
#include <cstddef>

#include "rlhf/algorithms/sequence.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/losses/unlikelihood.hpp"

namespace rlhf {

// The batch's reference fields are unused.
template <class P, class O>
StepResult unlikelihood_step(P& policy, O& optimizer, const PreferenceBatch& batch,
                             const UnlikelihoodConfig& config = {}, const StepOptions& options = {}) {
  RLHF_REQUIRE_TRAINABLE_POLICY(P, "rlhf::unlikelihood_step");
  RLHF_REQUIRE_OPTIMIZER(O, P, "rlhf::unlikelihood_step");
  using Be = typename P::backend;
  using M = typename Be::matrix;
  constexpr const char* fn = "rlhf::unlikelihood_step";
  detail::require_token_batch(fn, "chosen", batch.chosen);
  detail::require_token_batch(fn, "rejected", batch.rejected);
  const std::size_t B = batch.chosen.batch;
  require_size(fn, "rejected", batch.rejected.batch, B, "the number of chosen rows");
  const std::size_t count = detail::micro_batch_count(fn, options, B);

  StepResult out;
  policy.zero_grad();
  for (std::size_t m = 0; m < count; ++m) {
    const auto [lo, hi] = detail::micro_batch_rows(B, count, m);
    const std::size_t n = hi - lo;
    const double share = static_cast<double>(n) / static_cast<double>(B);
    const TokenBatch joint = concat_rows(slice_rows(batch.chosen, lo, hi), slice_rows(batch.rejected, lo, hi));
    const M mask = mask_matrix<Be>(joint);   // [2n, T]
    const M logp = policy.log_probs(joint);  // [2n, T]
    const auto r = unlikelihood_loss(slice_rows(logp, 0, n), slice_rows(mask, 0, n), slice_rows(logp, n, 2 * n),
                                     slice_rows(mask, n, 2 * n), config);
    const std::size_t T = Be::cols(mask);
    M d = Be::matrix_of(2 * n, T);
    detail::copy<Be>(Be::data(r.d_chosen), Be::data(d), n * T, share);
    detail::copy<Be>(Be::data(r.d_rejected), Be::data(d) + n * T, n * T, share);
    policy.backward(joint, d);
    out.loss += share * r.loss;
    detail::add_weighted(out.metrics, r.metrics, share);
  }
  optimizer.step(policy.parameters(), policy.gradients());
  return out;
}

}  // namespace rlhf
