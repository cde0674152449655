#pragma once
// One optimizer step of KTO (rlhf::kto_loss) on unpaired examples, for any TrainablePolicy and any optimizer:
//
//   z0's inputs: Σ_t log π, Σ_t log π_ref of the mismatched rows [M]    forward only, once for the whole batch
//   per micro-batch: log π [n, T] = policy.log_probs(rows) → Σ_t → [n] → kto_loss → d/d Σ log π → spread → backward
//   optimizer.step(policy.parameters(), policy.gradients())
//
// The mismatched rows are scored before any matched row, so a model that keeps its last forward's activations for
// backward (the CPU GPT) sees each backward right after the forward of the same rows. z0 is computed once from all
// M mismatched rows and is the same in every micro-batch, so M micro-batches give the step of one.
// docs/algorithms/kto.md.
#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/algorithms/sequence.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/core/unpaired_batch.hpp"
#include "rlhf/losses/kto.hpp"

namespace rlhf {

// Fills batch.reference and batch.reference_mismatched with Σ_t log π_ref of each row.
template <class Ref>
void precompute_reference_logps(Ref& reference, UnpairedBatch& batch, const StepOptions& options = {}) {
  RLHF_REQUIRE_POLICY(Ref, "rlhf::precompute_reference_logps");
  batch.reference = sequence_logps(reference, batch.sequences, options);
  StepOptions mismatched = options;
  mismatched.micro_batches = std::min(options.micro_batches, batch.mismatched.batch);
  batch.reference_mismatched = sequence_logps(reference, batch.mismatched, mismatched);
}

namespace detail {

// The sequences, a 0/1 label per row, at least one mismatched row, reference log-probs of the right sizes and for
// both kinds of row or neither; returns B, the number of examples.
inline std::size_t require_unpaired_batch(const char* fn, const UnpairedBatch& batch) {
  require_token_batch(fn, "sequences", batch.sequences);
  const std::size_t B = batch.sequences.batch;
  require_size(fn, "desirable", batch.desirable.size(), B, "the number of rows of 'sequences'");
  for (std::size_t i = 0; i < B; ++i)
    if (batch.desirable[i] > 1)
      fail<value_error>(fn, ": 'desirable' row ", i, " is ", int(batch.desirable[i]), "; a label is 0 or 1");
  if (batch.mismatched.batch == 0)
    fail<shape_error>(fn, ": 'mismatched' is an empty batch (0 rows); KTO's reference point z0 needs mismatched "
                          "rows (rlhf::mismatched_rows builds them)");
  require_token_batch(fn, "mismatched", batch.mismatched);
  require_reference_sizes(fn, "reference", batch.reference, B);
  if (!batch.reference_mismatched.empty())
    require_size(fn, "reference_mismatched", batch.reference_mismatched.size(), batch.mismatched.batch,
                 "the number of rows of 'mismatched'");
  if (batch.reference.empty() != batch.reference_mismatched.empty())
    fail<shape_error>(fn, ": the batch carries reference log-probs for one kind of row only ('reference' has ",
                      batch.reference.size(), ", 'reference_mismatched' ", batch.reference_mismatched.size(),
                      "); fill both or neither");
  return B;
}

// Σ_t log π_ref of rows [lo, hi) of `rows`: from the batch's host copies when it carries them, else from the
// reference policy.
template <class Be, class Ref>
typename Be::vector kto_reference_sums(const char* fn, Ref* reference, const TokenBatch& rows,
                                       const std::vector<double>& carried, std::size_t lo, std::size_t hi) {
  if (!carried.empty()) return vector_from_host<Be>(carried, lo, hi);
  if constexpr (std::is_same_v<Ref, no_reference>) {
    fail<value_error>(fn, ": the batch carries no reference log-probs and no reference policy was given; fill them "
                          "with rlhf::precompute_reference_logps or pass a reference");
  } else {
    const TokenBatch part = slice_rows(rows, lo, hi);
    return sequence_sums(reference->log_probs(part), mask_matrix<Be>(part));
  }
}

template <class P, class Ref, class O>
StepResult kto_step(P& policy, Ref* reference, O& optimizer, const UnpairedBatch& batch, const KtoConfig& config,
                    const StepOptions& options) {
  RLHF_REQUIRE_TRAINING_STEP(P, O, "rlhf::kto_step");  // the checks of both public overloads, once
  RLHF_REQUIRE_REFERENCE_POLICY(Ref, P, "rlhf::kto_step");
  using Be = typename P::backend;
  using V = typename Be::vector;
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::kto_step";
  const std::size_t B = require_unpaired_batch(fn, batch), M = batch.mismatched.batch;
  micro_batch_count(fn, options, B);

  // z0's inputs, forward only, in as many blocks as the matched rows (at most one row each).
  const std::size_t kl_blocks = std::min(options.micro_batches, M);
  std::vector<double> policy_kl, reference_kl;  // [M] each
  policy_kl.reserve(M);
  for (std::size_t m = 0; m < kl_blocks; ++m) {
    const auto [lo, hi] = micro_batch_rows(M, kl_blocks, m);
    if (batch.reference_mismatched.empty()) {
      const auto ref = vector_to_host<Be>(kto_reference_sums<Be>(fn, reference, batch.mismatched, {}, lo, hi));
      reference_kl.insert(reference_kl.end(), ref.begin(), ref.end());
    }
    const TokenBatch part = slice_rows(batch.mismatched, lo, hi);
    const auto sums = vector_to_host<Be>(sequence_sums(policy.log_probs(part), mask_matrix<Be>(part)));
    policy_kl.insert(policy_kl.end(), sums.begin(), sums.end());
  }
  V policy_kl_v = vector_from_host<Be>(policy_kl, 0, M);
  V reference_kl_v = vector_from_host<Be>(batch.reference_mismatched.empty() ? reference_kl
                                                                             : batch.reference_mismatched,
                                          0, M);
  if (options.communicator && options.communicator->size() > 1) {
    // z0 over every rank's mismatched rows (as TRL gathers it): their mean log-ratio, passed as one row.
    const auto& ref_kl = batch.reference_mismatched.empty() ? reference_kl : batch.reference_mismatched;
    double totals[2] = {0, double(M)};
    for (std::size_t i = 0; i < M; ++i) totals[0] += policy_kl[i] - ref_kl[i];
    options.communicator->all_reduce_sum(std::span<double>(totals, 2));
    policy_kl_v = vector_from_host<Be>(std::vector<double>{totals[0] / totals[1]}, 0, 1);
    reference_kl_v = vector_from_host<Be>(std::vector<double>{0.0}, 0, 1);
  }

  return training_step(fn, policy, optimizer, B, options, [&](std::size_t lo, std::size_t hi, double share) {
    const TokenBatch part = slice_rows(batch.sequences, lo, hi);
    const auto mask = mask_matrix<Be>(part);  // [n, T]
    V ref = kto_reference_sums<Be>(fn, reference, batch.sequences, batch.reference, lo, hi);  // [n]
    const V sums = sequence_sums(policy.log_probs(part), mask);                               // [n]
    std::vector<T> labels(hi - lo);                                                           // [n]
    for (std::size_t i = lo; i < hi; ++i) labels[i - lo] = batch.desirable[i] ? T(1) : T(0);
    auto r = kto_loss(KtoExamples<V>{sums, ref, Be::from_host(labels), policy_kl_v, reference_kl_v}, config);
    policy.backward(part, scaled<Be>(spread_over_tokens(r.d_policy, mask), share));
    return r;
  });
}

}  // namespace detail

// One KTO step on `batch`, reference log-probs from `reference` (any Policy on the same backend, run without
// gradient) for a batch that does not carry them.
template <class P, class Ref, class O>
StepResult kto_step(P& policy, Ref& reference, O& optimizer, const UnpairedBatch& batch, const KtoConfig& config = {},
                    const StepOptions& options = {}) {
  return detail::kto_step(policy, &reference, optimizer, batch, config, options);
}

// One KTO step on a batch that carries its reference log-probs.
template <class P, class O>
StepResult kto_step(P& policy, O& optimizer, const UnpairedBatch& batch, const KtoConfig& config = {},
                    const StepOptions& options = {}) {
  return detail::kto_step(policy, static_cast<detail::no_reference*>(nullptr), optimizer, batch, config, options);
}

}  // namespace rlhf
