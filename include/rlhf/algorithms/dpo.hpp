#pragma once
// One optimizer step of DPO (rlhf::dpo_loss) on preference pairs, and of listwise DPO
// (rlhf::listwise_dpo_loss) on ranked lists, for any TrainablePolicy and any optimizer:
//
//   log π [2B, T] = policy.log_probs([chosen; rejected])        one forward over both halves
//   Σ_t log π → [B] + [B] → loss → d loss / d Σ log π → spread over tokens → policy.backward
//   optimizer.step(policy.parameters(), policy.gradients())
//
// The reference log-probs come from the batch (precompute_reference_logps, so no reference model is held
// while training) or, for a batch without them, from a reference Policy run before the policy.
// Micro-batches: each block's gradient is scaled by its share of the rows, so M blocks add up to the
// gradient of the whole batch's mean loss. docs/algorithms/dpo.md.
#include <cstddef>
#include <ranges>
#include <type_traits>
#include <vector>

#include "rlhf/algorithms/sequence.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/losses/dpo.hpp"
#include "rlhf/losses/listwise_dpo.hpp"

// The reference policy Ref of an offline step (DPO, listwise DPO, KTO): a Policy on the trained policy P's backend,
// unless it is detail::no_reference (the batch carries the reference log-probs).
#define RLHF_REQUIRE_REFERENCE_POLICY(Ref, P, where)                                                            \
  do {                                                                                                           \
    if constexpr (!std::is_same_v<Ref, ::rlhf::detail::no_reference>) {                                         \
      RLHF_REQUIRE_POLICY(Ref, where " (reference)");                                                           \
      static_assert(std::is_same_v<typename Ref::backend, typename P::backend>,                                 \
                    where ": the reference policy must use the same backend type as the policy (or precompute " \
                          "its log-probs with rlhf::precompute_reference_logps)");                              \
    }                                                                                                            \
  } while (false)

namespace rlhf {

// Fills batch.reference_chosen / reference_rejected with Σ_t log π_ref of each row.
template <class Ref>
void precompute_reference_logps(Ref& reference, PreferenceBatch& batch, const StepOptions& options = {}) {
  RLHF_REQUIRE_POLICY(Ref, "rlhf::precompute_reference_logps");
  batch.reference_chosen = sequence_logps(reference, batch.chosen, options);
  batch.reference_rejected = sequence_logps(reference, batch.rejected, options);
}

// Fills batch.reference with Σ_t log π_ref of each of the B·K responses.
template <class Ref>
void precompute_reference_logps(Ref& reference, RankedBatch& batch, const StepOptions& options = {}) {
  RLHF_REQUIRE_POLICY(Ref, "rlhf::precompute_reference_logps");
  batch.reference = sequence_logps(reference, batch.responses, options);
}

// Every batch of a dataset (any range of PreferenceBatch or RankedBatch), once, before training.
template <class Ref, std::ranges::range Dataset>
void precompute_reference_logps(Ref& reference, Dataset& dataset, const StepOptions& options = {}) {
  for (auto& b : dataset) precompute_reference_logps(reference, b, options);
}

namespace detail {

struct no_reference {  // stands in for the reference policy when the batch carries the log-probs
  using backend = void;
};

// Σ_t log π_ref [rows] of `joint` (the rows [lo, hi) of the chosen half, then of the rejected half):
// from the host copies when the batch carries them, else from the reference policy.
template <class Be, class Ref>
typename Be::vector reference_sums(const char* fn, Ref* reference, const TokenBatch& joint,
                                   const typename Be::matrix& mask, const std::vector<double>* first,
                                   const std::vector<double>* second, std::size_t lo, std::size_t hi) {
  if (!first->empty()) {
    const auto a = vector_from_host<Be>(*first, lo, hi);
    if (!second) return a;
    return concat<Be>(a, vector_from_host<Be>(*second, lo, hi));
  }
  if constexpr (std::is_same_v<Ref, no_reference>) {
    fail<value_error>(fn,
                      ": the batch carries no reference log-probs and no reference policy was given; fill them "
                      "with rlhf::precompute_reference_logps, pass a reference, or set reference_free");
  } else {
    return sequence_sums(reference->log_probs(joint), mask);
  }
}

inline void require_reference_sizes(const char* fn, const char* arg, const std::vector<double>& v, std::size_t n) {
  if (!v.empty()) require_size(fn, arg, v.size(), n, "the number of rows");
}

template <class P, class Ref, class O>
StepResult dpo_step(P& policy, Ref* reference, O& optimizer, const PreferenceBatch& batch, const DpoConfig& config,
                    const StepOptions& options) {
  RLHF_REQUIRE_TRAINING_STEP(P, O, "rlhf::dpo_step");  // the checks of both public overloads, once
  RLHF_REQUIRE_REFERENCE_POLICY(Ref, P, "rlhf::dpo_step");
  using Be = typename P::backend;
  using V = typename Be::vector;
  constexpr const char* fn = "rlhf::dpo_step";
  const std::size_t B = require_preference_batch(fn, batch);
  require_reference_sizes(fn, "reference_chosen", batch.reference_chosen, B);
  require_reference_sizes(fn, "reference_rejected", batch.reference_rejected, B);
  if (batch.reference_chosen.empty() != batch.reference_rejected.empty())
    fail<shape_error>(fn, ": the batch carries reference log-probs for one side only; fill both or neither");

  const auto block = [&](const TokenBatch& joint, std::size_t lo, std::size_t hi, double share) {
    const std::size_t n = hi - lo;
    const auto mask = mask_matrix<Be>(joint);       // [2n, T]
    const V lengths = response_lengths<Be>(joint);  // [2n]
    V ref;                                          // [2n]
    if (!config.reference_free)
      ref = reference_sums<Be>(fn, reference, joint, mask, &batch.reference_chosen, &batch.reference_rejected, lo, hi);
    const V sums = sequence_sums(policy.log_probs(joint), mask);  // [2n]

    PreferencePairs<V> pairs{slice_elements(sums, 0, n),    slice_elements(sums, n, 2 * n),   V(), V(),
                             slice_elements(lengths, 0, n), slice_elements(lengths, n, 2 * n)};
    if (!config.reference_free) {
      pairs.reference_chosen = slice_elements(ref, 0, n);
      pairs.reference_rejected = slice_elements(ref, n, 2 * n);
    }
    auto r = dpo_loss(pairs, config);
    policy.backward(joint, spread_over_tokens(concat<Be>(r.d_policy_chosen, r.d_policy_rejected, share), mask));
    return r;
  };
  return pair_training_step(fn, policy, optimizer, batch, B, options, block);
}

template <class P, class Ref, class O>
StepResult listwise_dpo_step(P& policy, Ref* reference, O& optimizer, const RankedBatch& batch,
                             const ListwiseDpoConfig& config, const StepOptions& options) {
  RLHF_REQUIRE_TRAINING_STEP(P, O, "rlhf::listwise_dpo_step");  // the checks of both public overloads, once
  RLHF_REQUIRE_REFERENCE_POLICY(Ref, P, "rlhf::listwise_dpo_step");
  using Be = typename P::backend;
  constexpr const char* fn = "rlhf::listwise_dpo_step";
  const std::size_t B = require_ranked_batch(fn, batch), K = batch.k;
  require_reference_sizes(fn, "reference", batch.reference, B * K);

  return training_step(fn, policy, optimizer, B, options, [&](std::size_t lo, std::size_t hi, double share) {
    const std::size_t n = hi - lo;
    const TokenBatch part = list_rows(batch, lo, hi);  // [n*K, T]
    const auto mask = mask_matrix<Be>(part);
    auto ref = Be::matrix_of(0, 0);  // [n, K], or empty when reference-free
    if (!config.reference_free)
      ref = as_rows<Be>(reference_sums<Be>(fn, reference, part, mask, &batch.reference, nullptr, lo * K, hi * K), n, K);
    const auto logps = as_rows<Be>(sequence_sums(policy.log_probs(part), mask), n, K);  // [n, K]
    auto r = listwise_dpo_loss(logps, ref, list_lengths<Be>(batch, lo, hi), config);
    policy.backward(part, spread_over_tokens(flatten<Be>(r.d_policy, share), mask));
    return r;
  });
}

}  // namespace detail

// One DPO step on `batch`, reference log-probs from `reference` (any Policy on the same backend, run
// without gradient) for a batch that does not carry them.
template <class P, class Ref, class O>
StepResult dpo_step(P& policy, Ref& reference, O& optimizer, const PreferenceBatch& batch, const DpoConfig& config = {},
                    const StepOptions& options = {}) {
  return detail::dpo_step(policy, &reference, optimizer, batch, config, options);
}

// One DPO step on a batch that carries its reference log-probs (or with config.reference_free).
template <class P, class O>
StepResult dpo_step(P& policy, O& optimizer, const PreferenceBatch& batch, const DpoConfig& config = {},
                    const StepOptions& options = {}) {
  return detail::dpo_step(policy, static_cast<detail::no_reference*>(nullptr), optimizer, batch, config, options);
}

// One listwise DPO step on K ranked responses per prompt (a Plackett–Luce model of the implicit reward).
template <class P, class Ref, class O>
StepResult listwise_dpo_step(P& policy, Ref& reference, O& optimizer, const RankedBatch& batch,
                             const ListwiseDpoConfig& config = {}, const StepOptions& options = {}) {
  return detail::listwise_dpo_step(policy, &reference, optimizer, batch, config, options);
}

template <class P, class O>
StepResult listwise_dpo_step(P& policy, O& optimizer, const RankedBatch& batch, const ListwiseDpoConfig& config = {},
                             const StepOptions& options = {}) {
  return detail::listwise_dpo_step(policy, static_cast<detail::no_reference*>(nullptr), optimizer, batch, config,
                                   options);
}

}  // namespace rlhf
