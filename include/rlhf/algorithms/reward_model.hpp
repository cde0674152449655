#pragma once
// One optimizer step of a scalar reward model (any rlhf::RewardModel) on human preferences:
//
//   pairs    : scores([chosen; rejected]) → [B] + [B] → rlhf::bradley_terry_loss → backward_scores
//   rankings : scores(responses) [B*K] → [B, K] → rlhf::plackett_luce_loss → backward_scores
//   optimizer.step(model.parameters(), model.gradients())
//
// Micro-batches accumulate exactly as in dpo_step. docs/algorithms/reward_model.md.
#include <cstddef>
#include <vector>

#include "rlhf/algorithms/sequence.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/losses/bradley_terry.hpp"
#include "rlhf/losses/plackett_luce.hpp"

namespace rlhf {

// Bradley–Terry: P(chosen ≻ rejected) = σ(r(chosen) − r(rejected)). The batch's reference fields are unused.
template <class R, class O>
StepResult reward_model_step(R& model, O& optimizer, const PreferenceBatch& batch,
                             const BradleyTerryConfig& config = {}, const StepOptions& options = {}) {
  RLHF_REQUIRE_REWARD_MODEL(R, "rlhf::reward_model_step");
  RLHF_REQUIRE_OPTIMIZER(O, R, "rlhf::reward_model_step");
  using Be = typename R::backend;
  using V = typename Be::vector;
  constexpr const char* fn = "rlhf::reward_model_step";
  detail::require_token_batch(fn, "chosen", batch.chosen);
  detail::require_token_batch(fn, "rejected", batch.rejected);
  const std::size_t B = batch.chosen.batch;
  require_size(fn, "rejected", batch.rejected.batch, B, "the number of chosen rows");
  const std::size_t count = detail::micro_batch_count(fn, options, B);

  StepResult out;
  model.zero_grad();
  for (std::size_t m = 0; m < count; ++m) {
    const auto [lo, hi] = detail::micro_batch_rows(B, count, m);
    const std::size_t n = hi - lo;
    const double share = static_cast<double>(n) / static_cast<double>(B);
    const TokenBatch joint = concat_rows(slice_rows(batch.chosen, lo, hi), slice_rows(batch.rejected, lo, hi));
    const V scores = model.scores(joint);  // [2n]
    require_size(fn, "model.scores(batch)", Be::size(scores), 2 * n, "the number of rows scored");
    const auto r =
        bradley_terry_loss(RewardPairs<V>{slice_elements(scores, 0, n), slice_elements(scores, n, 2 * n)}, config);
    model.backward_scores(joint, detail::concat<Be>(r.d_chosen, r.d_rejected, share));
    out.loss += share * r.loss;
    detail::add_weighted(out.metrics, r.metrics, share);
  }
  optimizer.step(model.parameters(), model.gradients());
  return out;
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
  const std::size_t K = batch.k;
  if (K < 2) fail<shape_error>(fn, ": k is ", K, "; a ranking needs at least 2 responses per list");
  detail::require_token_batch(fn, "responses", batch.responses);
  if (batch.responses.batch % K != 0)
    fail<shape_error>(fn, ": 'responses' has ", batch.responses.batch, " rows, not a multiple of k = ", K);
  const std::size_t B = batch.lists();
  if (!batch.lengths.empty()) require_size(fn, "lengths", batch.lengths.size(), B, "the number of lists");
  const std::size_t count = detail::micro_batch_count(fn, options, B);

  StepResult out;
  model.zero_grad();
  for (std::size_t m = 0; m < count; ++m) {
    const auto [lo, hi] = detail::micro_batch_rows(B, count, m);
    const std::size_t n = hi - lo;
    const double share = static_cast<double>(n) / static_cast<double>(B);
    const TokenBatch part = slice_rows(batch.responses, lo * K, hi * K);  // [n*K, T]
    const V flat = model.scores(part);                                    // [n*K]
    require_size(fn, "model.scores(batch)", Be::size(flat), n * K, "the number of rows scored");
    auto scores = Be::matrix_of(n, K);
    detail::copy<Be>(Be::data(flat), Be::data(scores), n * K);
    V lengths = Be::vector_of(0);
    if (!batch.lengths.empty())
      lengths = Be::from_host(std::vector<typename Be::scalar>(batch.lengths.begin() + lo, batch.lengths.begin() + hi));
    const auto r = plackett_luce_loss(scores, lengths, config);
    V d = Be::vector_of(n * K);
    detail::copy<Be>(Be::data(r.d_scores), Be::data(d), n * K, share);
    model.backward_scores(part, d);
    out.loss += share * r.loss;
    detail::add_weighted(out.metrics, r.metrics, share);
  }
  optimizer.step(model.parameters(), model.gradients());
  return out;
}

}  // namespace rlhf
