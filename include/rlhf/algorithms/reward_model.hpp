#pragma once
// One optimizer step of a scalar reward model (any rlhf::RewardModel) on human preferences:
//
//   pairs    : scores([chosen; rejected]) → [B] + [B] → rlhf::bradley_terry_loss → backward_scores
//   rankings : scores(responses) [B*K] → [B, K] → rlhf::plackett_luce_loss → backward_scores
//   optimizer.step(model.parameters(), model.gradients())
//
// Micro-batches accumulate as in every step (algorithms/step.hpp). docs/algorithms/reward_model.md.
#include <cstddef>
#include <vector>

#include "rlhf/algorithms/sequence.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/losses/bradley_terry.hpp"
#include "rlhf/losses/plackett_luce.hpp"

namespace rlhf {

// Bradley–Terry: P(chosen ≻ rejected) = σ(r(chosen) − r(rejected) − margin). The batch's margin, when given,
// is each pair's own (TRL's margin column); its reference fields are unused.
template <class R, class O>
StepResult reward_model_step(R& model, O& optimizer, const PreferenceBatch& batch,
                             const BradleyTerryConfig& config = {}, const StepOptions& options = {}) {
  RLHF_REQUIRE_REWARD_MODEL(R, "rlhf::reward_model_step");
  RLHF_REQUIRE_OPTIMIZER(O, R, "rlhf::reward_model_step");
  using Be = typename R::backend;
  using V = typename Be::vector;
  constexpr const char* fn = "rlhf::reward_model_step";
  const std::size_t B = detail::require_preference_batch(fn, batch);
  if (!batch.margin.empty()) require_size(fn, "batch.margin", batch.margin.size(), B, "the number of pairs");
  const auto block = [&](const TokenBatch& joint, std::size_t lo, std::size_t hi, double share) {
    const std::size_t n = hi - lo;
    const V scores = model.scores(joint);  // [2n]
    require_size(fn, "model.scores(batch)", Be::size(scores), 2 * n, "the number of rows scored");
    const V margin = batch.margin.empty() ? V() : detail::vector_from_host<Be>(batch.margin, lo, hi);  // [n] or empty
    auto r = bradley_terry_loss(
        RewardPairs<V>{slice_elements(scores, 0, n), slice_elements(scores, n, 2 * n), margin}, config);
    model.backward_scores(joint, detail::concat<Be>(r.d_chosen, r.d_rejected, share));
    return r;
  };
  return pair_training_step(fn, model, optimizer, batch, B, options, block);
}

// Plackett–Luce: the K responses of each list are drawn best first, each with probability ∝ e^{r}.
// The batch's reference field is unused.
template <class R, class O>
StepResult reward_model_step(R& model, O& optimizer, const RankedBatch& batch, const PlackettLuceConfig& config = {},
                             const StepOptions& options = {}) {
  RLHF_REQUIRE_REWARD_MODEL(R, "rlhf::reward_model_step");
  RLHF_REQUIRE_OPTIMIZER(O, R, "rlhf::reward_model_step");
  using Be = typename R::backend;
  using V = typename Be::vector;
  constexpr const char* fn = "rlhf::reward_model_step";
  const std::size_t B = detail::require_ranked_batch(fn, batch), K = batch.k;
  return training_step(fn, model, optimizer, B, options, [&](std::size_t lo, std::size_t hi, double share) {
    const std::size_t n = hi - lo;
    const TokenBatch part = list_rows(batch, lo, hi);  // [n*K, T]
    const V flat = model.scores(part);                 // [n*K]
    require_size(fn, "model.scores(batch)", Be::size(flat), n * K, "the number of rows scored");
    auto r = plackett_luce_loss(detail::as_rows<Be>(flat, n, K), detail::list_lengths<Be>(batch, lo, hi), config);
    model.backward_scores(part, detail::flatten<Be>(r.d_scores, share));
    return r;
  });
}

}  // namespace rlhf
