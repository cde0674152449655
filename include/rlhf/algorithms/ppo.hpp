#pragma once
// PPO with a per-token KL penalty towards a reference policy (Ziegler et al., 2019; Ouyang et al., 2022),
// for any SamplingPolicy + TrainablePolicy, any reference Policy, any ValueModel and any reward:
//
//   rollout  y ~ π(·|x)                                    policy.sample
//            log π_old, log π_ref, V_old  [B, T]           policy / reference / value_model, no gradient
//            score [B]                                    reward(batch) or reward_model.scores(batch)
//            r_t = −κ k_t (+ score on the last response token)   kl_penalized_rewards (k: config.kl, k1 by default)
//            A, R = GAE(r, V_old);  A ← whiten(A)                 gae, whiten (config.advantage_whitening)
//   update   `epochs` passes over the rollout, each in `minibatches` shuffled row blocks; per block one
//            optimizer step of the clipped surrogate (policy) and one of the clipped value loss (critic)
//   control  κ ← kl_controller.update(observed KL per sequence, B)
//
// Its models and optimizers come by name (PpoModels, PpoOptimizers). ppo_rollout and ppo_update are the two halves of
// ppo_step, public for trainers that schedule them differently. docs/algorithms/ppo.md.
#include <cmath>
#include <concepts>
#include <cstddef>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "rlhf/algorithms/minibatch_passes.hpp"
#include "rlhf/algorithms/sequence.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/core/metric_names.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/distributed/communicator.hpp"
#include "rlhf/losses/gae.hpp"
#include "rlhf/losses/ppo.hpp"

namespace rlhf {

struct PpoStepConfig {
  std::size_t epochs = 4;         // passes over each rollout
  std::size_t minibatches = 1;    // optimizer steps per pass (row blocks of the rollout)
  bool shuffle = true;            // a new row order for every pass
  bool whiten_advantages = true;  // advantages ← (A − mean) / std over the rollout's response tokens
  PpoConfig policy{};             // clip ε (or clip_low, clip_high), dual clip, aggregation
  ValueLossConfig value{};        // value clip, aggregation
  GaeConfig gae{};                // γ, λ
  KlConfig kl{};                  // the per-token KL of the rewards and of objective/kl: estimator, clamp, aggregation
  WhitenConfig advantage_whitening{};  // variance (n − 1 or n), ε inside or as a floor, zeros outside the mask
  SampleOptions sample{};              // passed to policy.sample
  // Deprecated: pass them in StepOptions (ppo_step's last argument), which wins where it sets them.
  double max_grad_norm = 0;              // > 0: each model's gradient clipped to this global norm
  Communicator* communicator = nullptr;  // data parallel: global whitening, metrics and gradients
};

// One rollout, everything the update needs. Per-token tensors are [B, T], 0 where mask is 0.
template <Backend Be>
struct PpoRollout {
  TokenBatch batch;  // prompts + sampled responses
  typename Be::matrix mask, logp, ref_logp, values, rewards, advantages, returns;
  typename Be::vector scores;  // [B] the reward of each sequence, before the KL penalty
  double kl_coef = 0;          // κ used for `rewards`
  Metrics metrics;             // objective/{scores, kl, kl_coef, non_score_reward, rlhf_reward}, tokens/...
};

// What ppo_step returned before it returned StepResult; converts from one. Deprecated: read StepResult's loss
// (the policy loss) and metrics[metric::loss_value_avg].
struct [[deprecated("ppo_step returns rlhf::StepResult: .loss is the policy loss, metrics[\"loss/value_avg\"] the value loss")]]
PpoStepResult {
  double policy_loss = 0;  // mean over the update's minibatch steps
  double value_loss = 0;   // likewise
  Metrics metrics;         // the rollout's metrics, then the losses' metrics averaged over the steps
  PpoStepResult() = default;
  PpoStepResult(const StepResult& r)  // NOLINT: implicit, so that `PpoStepResult r = ppo_step(...)` still compiles
      : policy_loss(r.loss), value_loss(r.metrics[metric::loss_value_avg]), metrics(r.metrics) {}
};

// The models of PPO and their optimizers, by name, so that two of one type (policy and reference, the two
// optimizers) cannot be swapped by position:
//   rlhf::PpoModels models{.policy = policy, .reference = reference, .value_model = critic, .reward = reward};
//   rlhf::ppo_step(models, rlhf::PpoOptimizers{.policy = po, .value = vo}, kl_controller, prompts, rng, config);
// `reward` is an rlhf::RewardModel or a callable reward(const TokenBatch&) → one score per sequence; a
// temporary one lives as long as the braces that hold it. Compilers without C++20 aggregate deduction
// (Clang < 17) deduce the types from the same list written without the designators, in this order.
template <class Policy, class Reference, class ValueModel, class Reward>
struct PpoModels {
  Policy& policy;           // SamplingPolicy + TrainablePolicy
  Reference& reference;     // Policy, frozen
  ValueModel& value_model;  // ValueModel (the critic)
  Reward&& reward;          // RewardModel or callable
};
template <class P, class Ref, class Vm, class Reward>
PpoModels(P&, Ref&, Vm&, Reward&&) -> PpoModels<P, Ref, Vm, Reward>;

template <class PolicyOptimizer, class ValueOptimizer>
struct PpoOptimizers {
  PolicyOptimizer& policy;  // steps models.policy
  ValueOptimizer& value;    // steps models.value_model
};
template <class PO, class VO>
PpoOptimizers(PO&, VO&) -> PpoOptimizers<PO, VO>;

namespace detail {

// The sequence scores [B] of a batch from a RewardModel, or from a callable returning a backend vector
// or a host range of numbers (std::vector<float>, std::vector<double>, ...).
template <Backend Be, class Reward>
typename Be::vector score_batch(Reward& reward, const TokenBatch& batch) {
  using R = std::remove_cvref_t<Reward>;
  if constexpr (RewardModel<R>) {
    static_assert(std::is_same_v<typename R::backend, Be>,
                  "rlhf::ppo_step: the reward model must use the same backend type as the policy");
    return reward.scores(batch);
  } else {
    static_assert(std::is_invocable_v<Reward&, const TokenBatch&>,
                  "rlhf::ppo_step: the reward is neither an rlhf::RewardModel nor callable as reward(const "
                  "rlhf::TokenBatch&) returning one score per sequence; see docs/algorithms/ppo.md");
    auto s = reward(batch);
    if constexpr (std::is_same_v<decltype(s), typename Be::vector>) {
      return s;
    } else {
      std::vector<typename Be::scalar> host;
      for (const auto& x : s) host.push_back(static_cast<typename Be::scalar>(x));
      return Be::from_host(host);
    }
  }
}

// whiten(x, mask, config) with the mean and variance over every rank's masked entries, in two passes as whiten_stats
// does: the global count and mean first, then the squared deviations from that mean.
template <class Matrix, class Be = backend_of_t<Matrix>>
Matrix whiten_over_ranks(const char* fn, const Matrix& x, const Matrix& mask, const WhitenConfig& config,
                         Communicator* communicator) {
  if (!communicator || communicator->size() == 1) return whiten(x, mask, config);
  using T = typename Be::scalar;
  const std::size_t n = Be::rows(x) * Be::cols(x);
  const T *px = Be::data(x), *pm = Be::data(mask);
  double totals[2] = {Be::sum(n, detail::element_as_double<T>{pm}), Be::sum(n, detail::masked_element<T>{px, pm})};
  communicator->all_reduce_sum(std::span<double>(totals, 2));
  WhitenStats s;
  s.count = totals[0];
  const double needed = config.unbiased ? 2 : 1;
  if (s.count < needed)
    fail<value_error>(fn, ": the ranks' masks select ", s.count, " entries; the variance needs at least ", needed);
  s.mean = totals[1] / s.count;
  double squares = Be::sum(n, detail::masked_square_deviation<T>{px, pm, s.mean});
  communicator->all_reduce_sum(std::span<double>(&squares, 1));
  s.variance = squares / (config.unbiased ? s.count - 1 : s.count);
  s.inv_std = 1.0 / std::sqrt(config.eps_as_floor ? std::max(s.variance, config.eps) : s.variance + config.eps);
  return whiten(x, mask, config, s);
}

inline void validate_ppo(const char* fn, const PpoStepConfig& c) {
  if (c.epochs == 0) fail<config_error>(fn, ": epochs must be >= 1 (got 0)");
  if (c.minibatches == 0) fail<config_error>(fn, ": minibatches must be >= 1 (got 0)");
}

}  // namespace detail

// Samples continuations of `prompts` with the policy, scores them and computes advantages and returns.
template <class P, class Ref, class Vm, class Reward>
PpoRollout<typename P::backend> ppo_rollout(const PpoModels<P, Ref, Vm, Reward>& models, const PromptBatch& prompts,
                                            Rng& rng, double kl_coef, const PpoStepConfig& config = {},
                                            const StepOptions& options = {}) {
  RLHF_REQUIRE_POLICY(P, "rlhf::ppo_rollout");
  RLHF_REQUIRE_SAMPLING_POLICY(P, "rlhf::ppo_rollout");
  RLHF_REQUIRE_POLICY(Ref, "rlhf::ppo_rollout (reference)");
  RLHF_REQUIRE_VALUE_MODEL(Vm, "rlhf::ppo_rollout");
  using Be = typename P::backend;
  static_assert(std::is_same_v<typename Ref::backend, Be> && std::is_same_v<typename Vm::backend, Be>,
                "rlhf::ppo_rollout: the reference and the value model must use the same backend type as the policy");
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::ppo_rollout";
  detail::validate_ppo(fn, config);
  if (!(kl_coef >= 0.0) || !std::isfinite(kl_coef))
    fail<config_error>(fn, ": kl_coef must be finite and >= 0 (got ", kl_coef, ")");
  Communicator* const communicator = detail::online_step_options(config, options).communicator;

  PpoRollout<Be> out;
  out.batch = models.policy.sample(prompts, config.sample, rng);
  detail::require_token_batch(fn, "policy.sample(prompts)", out.batch);
  const std::size_t B = out.batch.batch, Tn = out.batch.time;
  out.mask = mask_matrix<Be>(out.batch);
  out.ref_logp = models.reference.log_probs(out.batch);
  out.logp = models.policy.log_probs(out.batch);
  out.values = models.value_model.values(out.batch);
  out.scores = detail::score_batch<Be>(models.reward, out.batch);
  require_size(fn, "reward(batch)", Be::size(out.scores), B, "the number of sampled sequences");
  out.kl_coef = kl_coef;
  out.rewards = kl_penalized_rewards(out.scores, out.logp, out.ref_logp, out.mask, kl_coef, config.kl);
  auto g = gae(out.rewards, out.values, out.mask, config.gae);
  out.advantages = config.whiten_advantages ? detail::whiten_over_ranks(fn, g.advantages, out.mask,
                                                                       config.advantage_whitening, communicator)
                                           : std::move(g.advantages);
  out.returns = std::move(g.returns);

  // The KL (by default k1 summed over each response, TRL's kl.sum(1).mean()) and the scores, over the rollout.
  const T* m = Be::data(out.mask);
  const double inv_b = 1.0 / static_cast<double>(B);
  const double kl = kl_estimate(out.logp, out.ref_logp, out.mask, config.kl).mean;
  const double score = Be::sum(B, detail::element_as_double<T>{Be::data(out.scores)}) * inv_b;
  out.metrics.set(metric::objective_scores, score);
  out.metrics.set(metric::objective_kl, kl);
  out.metrics.set(metric::objective_kl_coef, kl_coef);
  out.metrics.set(metric::objective_non_score_reward, -kl_coef * kl);
  out.metrics.set(metric::objective_rlhf_reward, score - kl_coef * kl);
  out.metrics.set(metric::tokens_response_mean, Be::sum(B * Tn, detail::masked_count<T>{m}) * inv_b);
  if (communicator) reduce_step_result(*communicator, B, double(B), 0.0, out.metrics);  // all rollouts
  return out;
}

// `epochs` passes of minibatch updates of the policy and the value model on one rollout (the reference and
// the reward of `models` are not used). The result's loss is the policy loss averaged over the minibatch steps,
// its grad_norm the policy's; the value loss and norm are the metrics loss/value_avg and value_grad_norm.
// `options`: clipping and communicator (each minibatch is one micro-batch, so micro_batches is not read).
template <class P, class Ref, class Vm, class Reward, class PO, class VO, class Be>
StepResult ppo_update(const PpoModels<P, Ref, Vm, Reward>& models, const PpoOptimizers<PO, VO>& optimizers,
                      const PpoRollout<Be>& rollout, Rng& rng, const PpoStepConfig& config = {},
                      const StepOptions& options = {}) {
  RLHF_REQUIRE_TRAINABLE_POLICY(P, "rlhf::ppo_update");
  RLHF_REQUIRE_VALUE_MODEL(Vm, "rlhf::ppo_update");
  RLHF_REQUIRE_OPTIMIZER(PO, P, "rlhf::ppo_update (policy optimizer)");
  RLHF_REQUIRE_OPTIMIZER(VO, Vm, "rlhf::ppo_update (value optimizer)");
  static_assert(std::is_same_v<typename P::backend, Be> && std::is_same_v<typename Vm::backend, Be>,
                "rlhf::ppo_update: the policy and the value model must use the backend type of the rollout");
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::ppo_update";
  detail::validate_ppo(fn, config);
  const std::size_t B = rollout.batch.batch;
  if (config.minibatches > B)
    fail<config_error>(fn, ": minibatches must be in [1, ", B, "] for a rollout of ", B, " (got ", config.minibatches,
                       ")");
  const StepOptions outer = detail::online_step_options(config, options);

  StepResult out{.loss = 0, .metrics = rollout.metrics, .grad_norm = 0};  // grad_norm: a mean over the steps
  Metrics losses;
  double value_loss = 0, value_grad_norm = 0;
  const MinibatchSchedule schedule{.passes = config.epochs, .minibatches = config.minibatches, .shuffle = config.shuffle};
  minibatch_passes(B, schedule, rng, [&](std::span<const std::size_t> rows, double weight) {
    const TokenBatch part = gather_rows(rollout.batch, rows);
    const auto mask = gather_rows(rollout.mask, rows);
    const double n = double(rows.size());
    const double tokens = Be::sum(rows.size() * Be::cols(mask), detail::masked_count<T>{Be::data(mask)});

    // One optimizer step of each model on the minibatch.
    const auto step = minibatch_step_options(outer, config.policy.aggregation, tokens, n);
    const auto value_step = minibatch_step_options(outer, config.value.aggregation, tokens, n);
    const auto p = training_step(fn, models.policy, optimizers.policy, rows.size(), step, [&](auto, auto, double) {
      auto r = ppo_policy_loss(models.policy.log_probs(part), gather_rows(rollout.logp, rows),
                               gather_rows(rollout.advantages, rows), mask, config.policy);
      models.policy.backward(part, r.d_logp);
      return r;
    });
    const auto v = training_step(fn, models.value_model, optimizers.value, rows.size(), value_step,
                                 [&](auto, auto, double) {
                                   auto r = ppo_value_loss(models.value_model.values(part),
                                                           gather_rows(rollout.values, rows),
                                                           gather_rows(rollout.returns, rows), mask, config.value);
                                   models.value_model.backward_values(part, r.d_values);
                                   return r;
                                 });
    out.loss += weight * p.loss;
    value_loss += weight * v.loss;
    losses.combine(p.metrics, weight);  // each minibatch step counts alike
    losses.combine(v.metrics, weight);
    out.grad_norm += weight * p.grad_norm;
    value_grad_norm += weight * v.grad_norm;
  });
  out.metrics.set(metric::loss_policy_avg, out.loss);
  out.metrics.set(metric::loss_value_avg, value_loss);
  out.metrics.set(metric::grad_norm, out.grad_norm);
  out.metrics.set(metric::value_grad_norm, value_grad_norm);
  for (const auto& [name, value] : losses.items()) out.metrics.set(name, value);
  return out;
}

// One PPO iteration: rollout with κ = kl_controller.value(), update, then kl_controller.update(KL, B).
template <class P, class Ref, class Vm, class Reward, class PO, class VO, class Kl>
StepResult ppo_step(const PpoModels<P, Ref, Vm, Reward>& models, const PpoOptimizers<PO, VO>& optimizers,
                    Kl& kl_controller, const PromptBatch& prompts, Rng& rng, const PpoStepConfig& config = {},
                    const StepOptions& options = {}) {
  RLHF_REQUIRE_TRAINABLE_POLICY(P, "rlhf::ppo_step");
  RLHF_REQUIRE_SAMPLING_POLICY(P, "rlhf::ppo_step");
  static_assert(
      requires(Kl & k) {
        { k.value() } -> std::convertible_to<double>;
        k.update(0.0, std::size_t{1});
      },
      "rlhf::ppo_step: the KL controller has no members 'value()' and 'update(observed_kl, n_steps)'; "
      "see docs/algorithms/kl_control.md");
  const auto rollout = ppo_rollout(models, prompts, rng, static_cast<double>(kl_controller.value()), config, options);
  StepResult out = ppo_update(models, optimizers, rollout, rng, config, options);
  Communicator* const communicator = detail::online_step_options(config, options).communicator;
  // The controller's step counts every rank's samples, as one process with the whole batch would.
  const double samples =
      communicator ? all_reduce_sum(*communicator, double(rollout.batch.batch)) : double(rollout.batch.batch);
  kl_controller.update(rollout.metrics[metric::objective_kl], static_cast<std::size_t>(samples));
  return out;
}

}  // namespace rlhf
