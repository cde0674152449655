#pragma once
// One optimizer step of supervised fine-tuning (preferred-FT when the batch holds the chosen responses),
// for any TrainablePolicy and optimizer:
//
//   log π [B, T] = policy.log_probs(batch) → rlhf::sft_loss → d loss / d log π → policy.backward
//   optimizer.step(policy.parameters(), policy.gradients())
//
// Micro-batches accumulate exactly as in dpo_step. docs/algorithms/sft.md.
#include <cstddef>

#include "rlhf/algorithms/sequence.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/losses/sft.hpp"

namespace rlhf {

template <class P, class O>
StepResult sft_step(P& policy, O& optimizer, const TokenBatch& batch, const SftConfig& config = {},
                    const StepOptions& options = {}) {
  RLHF_REQUIRE_TRAINABLE_POLICY(P, "rlhf::sft_step");
  RLHF_REQUIRE_OPTIMIZER(O, P, "rlhf::sft_step");
  using Be = typename P::backend;
  constexpr const char* fn = "rlhf::sft_step";
  detail::require_token_batch(fn, "batch", batch);
  const std::size_t B = batch.batch;
  const std::size_t count = detail::micro_batch_count(fn, options, B);

  StepResult out;
  double nll = 0, tokens = 0;  // Σ NLL and Σ tokens over the whole batch, for nll/token
  policy.zero_grad();
  for (std::size_t m = 0; m < count; ++m) {
    const auto [lo, hi] = detail::micro_batch_rows(B, count, m);
    const double share = static_cast<double>(hi - lo) / static_cast<double>(B);
    const TokenBatch part = slice_rows(batch, lo, hi);
    const auto mask = mask_matrix<Be>(part);
    const auto r = sft_loss(policy.log_probs(part), mask, config);
    auto d = r.d_logps;
    detail::copy<Be>(Be::data(d), Be::data(d), Be::rows(d) * Be::cols(d), share);  // in place
    policy.backward(part, d);
    out.loss += share * r.loss;
    nll += r.metrics["nll/token"] * r.metrics["tokens"];
    tokens += r.metrics["tokens"];
  }
  out.metrics.set("nll/token", nll / tokens);
  out.metrics.set("tokens", tokens);
  optimizer.step(policy.parameters(), policy.gradients());
  return out;
}

}  // namespace rlhf
