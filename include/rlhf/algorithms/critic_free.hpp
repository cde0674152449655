#pragma once
// Policy-gradient methods without a critic — GRPO (Shao et al. 2024) with Dr. GRPO's and DAPO's options, RLOO
// (Ahmadian et al. 2024) and REINFORCE++ (OpenRLHF) — for any SamplingPolicy + TrainablePolicy, any reference
// Policy and any reward (an rlhf::RewardModel or a callable, as PPO takes):
//
//   rollout  each prompt repeated G times, y ~ π(·|x)              policy.sample
//            log π_old, log π_ref  [B·G, T]                        policy / reference, no gradient
//            score [B·G]                                          reward
//            advantages, by config.advantage:
//              group       A = (R − mean_g R) [/ (std_g R + ε)]    GRPO; Dr. GRPO without the std
//              leave_one_out  A = R − mean_{j≠i} R_j               RLOO
//              token_whitened A_t = whiten(Σ_{t'≥t} γ^{t'−t} r_t')  REINFORCE++: r_t = −β k1_t + score at the end
//            R = score − β Σ_t k1_t when the KL is in the reward (kl_in_reward), else R = score
//   update   `iterations` (μ) passes, each in `minibatches` shuffled row blocks, one optimizer step per block of
//            PPO's clipped surrogate on A (clip, or DAPO's clip_low/clip_high; aggregation token_mean,
//            sequence_mean, or Dr. GRPO's sequence_sum over a constant) [+ β · mean k3(log π, log π_ref) when
//            the KL is a loss term]
//
// docs/algorithms/critic_free.md derives each method's fixed point on a bandit and names the peers' options.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "rlhf/algorithms/minibatch_passes.hpp"
#include "rlhf/algorithms/ppo.hpp"
#include "rlhf/algorithms/sequence.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/core/metric_names.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/losses/gae.hpp"
#include "rlhf/losses/group_advantage.hpp"
#include "rlhf/losses/kl.hpp"
#include "rlhf/losses/ppo.hpp"

namespace rlhf {

enum class AdvantageEstimator { group, leave_one_out, token_whitened };

// Each preset's arguments, by name, with the method's usual defaults.
struct GrpoPreset {
  std::size_t group_size = 8;
  double beta = 0.04;
};
struct DrGrpoPreset {
  std::size_t group_size = 8;
  double max_tokens = 1.0;  // L: the longest completion allowed
  double beta = 0.0;
};
struct RlooPreset {
  std::size_t group_size = 4;
  double beta = 0.05;
};
struct ReinforcePpPreset {
  std::size_t group_size = 1;
  double beta = 0.01;
};

struct CriticFreeConfig {
  AdvantageEstimator advantage = AdvantageEstimator::group;
  std::size_t group_size = 8;      // G completions per prompt (TRL: num_generations)
  bool scale_rewards = true;       // group: divide by the group's std + eps (false: Dr. GRPO)
  double eps = 1e-4;
  double beta = 0.0;               // KL coefficient β (0: no reference term)
  bool kl_in_reward = false;       // true: R = score − β Σ k1 (RLOO, REINFORCE++); false: β · k3 as a loss term (GRPO)
  KlEstimator kl_loss_estimator = KlEstimator::k3;  // of the loss term
  double gamma = 1.0;              // token_whitened: discount of the token returns
  bool drop_uniform_groups = false;  // DAPO dynamic sampling: groups whose scores are all equal are not trained on
  std::size_t iterations = 1;      // μ: passes over each rollout (TRL: num_iterations)
  std::size_t minibatches = 1;     // optimizer steps per pass
  bool shuffle = true;
  PpoConfig policy{};              // clip, clip_low / clip_high, aggregation, max_tokens
  SampleOptions sample{};
  // Deprecated: pass them in StepOptions (critic_free_step's last argument), which wins where it sets them.
  double max_grad_norm = 0;              // > 0: clip the gradient to this norm
  Communicator* communicator = nullptr;  // data parallel: metrics, token whitening and gradients over the ranks

  // The methods' usual settings, named at the call site: CriticFreeConfig::grpo({.group_size = 4, .beta = 0.1}).
  // Each field of the result can be changed after.
  static CriticFreeConfig grpo(const GrpoPreset& p = {}) { return {.group_size = p.group_size, .beta = p.beta}; }
  // Dr. GRPO: no std scaling, each response's token sum over a constant L (the longest completion allowed).
  static CriticFreeConfig dr_grpo(const DrGrpoPreset& p = {}) {
    return {.group_size = p.group_size,
            .scale_rewards = false,
            .beta = p.beta,
            .policy = {.aggregation = Aggregation::sequence_sum, .max_tokens = p.max_tokens}};
  }
  static CriticFreeConfig rloo(const RlooPreset& p = {}) {
    return kl_in_reward_preset(AdvantageEstimator::leave_one_out, p.group_size, p.beta);
  }
  static CriticFreeConfig reinforce_pp(const ReinforcePpPreset& p = {}) {
    return kl_in_reward_preset(AdvantageEstimator::token_whitened, p.group_size, p.beta);
  }

  // RLOO and REINFORCE++: the KL in the reward, no std scaling.
  static CriticFreeConfig kl_in_reward_preset(AdvantageEstimator advantage, std::size_t group_size, double beta) {
    return {.advantage = advantage, .group_size = group_size, .scale_rewards = false, .beta = beta, .kl_in_reward = true};
  }

  // The positional forms these replace; their argument orders differ (reinforce_pp takes beta first).
  [[deprecated("use CriticFreeConfig::grpo({.group_size = G, .beta = b})")]]
  static CriticFreeConfig grpo(std::size_t group_size, double beta = 0.04) {
    return grpo(GrpoPreset{.group_size = group_size, .beta = beta});
  }
  [[deprecated("use CriticFreeConfig::dr_grpo({.group_size = G, .max_tokens = L, .beta = b})")]]
  static CriticFreeConfig dr_grpo(std::size_t group_size, double max_tokens, double beta = 0.0) {
    return dr_grpo(DrGrpoPreset{.group_size = group_size, .max_tokens = max_tokens, .beta = beta});
  }
  [[deprecated("use CriticFreeConfig::rloo({.group_size = G, .beta = b})")]]
  static CriticFreeConfig rloo(std::size_t group_size, double beta = 0.05) {
    return rloo(RlooPreset{.group_size = group_size, .beta = beta});
  }
  [[deprecated("use CriticFreeConfig::reinforce_pp({.group_size = G, .beta = b})")]]
  static CriticFreeConfig reinforce_pp(double beta, std::size_t group_size = 1) {
    return reinforce_pp(ReinforcePpPreset{.group_size = group_size, .beta = beta});
  }
};

// The models by name: policy (SamplingPolicy + TrainablePolicy), reference (Policy; unused when β = 0), reward.
template <class Policy, class Reference, class Reward>
struct CriticFreeModels {
  Policy& policy;
  Reference& reference;
  Reward&& reward;
};
template <class P, class Ref, class Reward>
CriticFreeModels(P&, Ref&, Reward&&) -> CriticFreeModels<P, Ref, Reward>;

template <Backend Be>
struct CriticFreeRollout {
  TokenBatch batch;                     // the kept rows: prompts + sampled responses
  typename Be::matrix mask, logp, ref_logp, advantages;  // [N, T]; ref_logp empty when β = 0
  std::vector<double> scores;           // [N] before any KL
  Metrics metrics;                      // reward, reward_std, frac_reward_zero_std, kl, completions/mean_length
};

namespace detail {

template <class T>
struct add_scaled_kernel {  // out[i] += scale · x[i]
  const T* x;
  T* out;
  T scale;
  RLHF_HOST_DEVICE void operator()(std::size_t i) const { out[i] += scale * x[i]; }
};

inline void validate_critic_free(const char* fn, const CriticFreeConfig& c, const Communicator* communicator) {
  if (c.group_size == 0) fail<config_error>(fn, ": group_size must be >= 1 (got 0)");
  if (c.iterations == 0) fail<config_error>(fn, ": iterations must be >= 1 (got 0)");
  if (c.minibatches == 0) fail<config_error>(fn, ": minibatches must be >= 1 (got 0)");
  if (!(c.beta >= 0) || !std::isfinite(c.beta)) fail<config_error>(fn, ": beta must be finite and >= 0 (got ", c.beta, ")");
  if (c.advantage == AdvantageEstimator::leave_one_out && c.group_size < 2)
    fail<config_error>(fn, ": leave_one_out needs group_size >= 2 (got ", c.group_size, ")");
  if (!(c.gamma >= 0 && c.gamma <= 1)) fail<config_error>(fn, ": gamma must be in [0, 1] (got ", c.gamma, ")");
  if (c.drop_uniform_groups && communicator && communicator->size() > 1)
    fail<config_error>(fn, ": drop_uniform_groups is not supported with several ranks (each would keep a different "
                           "number of rows)");
}

inline PromptBatch repeat_prompts(const PromptBatch& prompts, std::size_t G) {
  PromptBatch out;
  out.batch = prompts.batch * G;
  out.time = prompts.time;
  for (std::size_t b = 0; b < prompts.batch; ++b)
    for (std::size_t g = 0; g < G; ++g) {
      out.tokens.insert(out.tokens.end(), prompts.tokens.begin() + std::ptrdiff_t(b * prompts.time),
                        prompts.tokens.begin() + std::ptrdiff_t((b + 1) * prompts.time));
      out.prompt_length.push_back(prompts.prompt_length[b]);
    }
  return out;
}

}  // namespace detail

// Samples G responses per prompt, scores them and computes the advantages (no update).
template <class P, class Ref, class Reward>
CriticFreeRollout<typename P::backend> critic_free_rollout(const CriticFreeModels<P, Ref, Reward>& models,
                                                           const PromptBatch& prompts, Rng& rng,
                                                           const CriticFreeConfig& config,
                                                           const StepOptions& options = {}) {
  RLHF_REQUIRE_POLICY(P, "rlhf::critic_free_rollout");
  RLHF_REQUIRE_SAMPLING_POLICY(P, "rlhf::critic_free_rollout");
  RLHF_REQUIRE_POLICY(Ref, "rlhf::critic_free_rollout (reference)");
  using Be = typename P::backend;
  using T = typename Be::scalar;
  static_assert(std::is_same_v<typename Ref::backend, Be>,
                "rlhf::critic_free_rollout: the reference must use the same backend type as the policy");
  constexpr const char* fn = "rlhf::critic_free_rollout";
  detail::validate_critic_free(fn, config, detail::online_step_options(config, options).communicator);
  require_nonempty(fn, "prompts", prompts.batch);
  const std::size_t G = config.group_size;
  Communicator* const communicator = detail::online_step_options(config, options).communicator;

  CriticFreeRollout<Be> out;
  TokenBatch all = models.policy.sample(detail::repeat_prompts(prompts, G), config.sample, rng);
  detail::require_token_batch(fn, "policy.sample(prompts)", all);
  const std::size_t n_all = all.batch;
  const auto scores_be = detail::score_batch<Be>(models.reward, all);
  require_size(fn, "reward(batch)", Be::size(scores_be), n_all, "the number of sampled sequences");
  const auto scores = detail::vector_to_host<Be>(scores_be);

  // Which groups to train on: all, or (dynamic sampling) those whose scores are not all equal.
  GroupAdvantageConfig group{.group_size = G, .scale_rewards = config.scale_rewards, .eps = config.eps};
  const auto by_score = group_advantages(scores, group);
  std::vector<std::size_t> kept;
  for (std::size_t r = 0; r < n_all; ++r)
    if (!config.drop_uniform_groups || !by_score.uniform[r / G]) kept.push_back(r);
  out.metrics.set("frac_reward_zero_std", by_score.metrics["frac_reward_zero_std"]);
  out.metrics.set("groups/dropped", config.drop_uniform_groups ? by_score.metrics["frac_reward_zero_std"] : 0.0);
  out.metrics.set("reward", by_score.metrics["reward"]);
  out.metrics.set("reward_std", by_score.metrics["reward_std"]);
  if (kept.empty()) {  // nothing to learn from: every group was uniform
    out.metrics.set("kl", 0.0);
    out.metrics.set("completions/mean_length", 0.0);
    return out;
  }

  out.batch = kept.size() == n_all ? std::move(all) : gather_rows(all, kept);
  const std::size_t N = out.batch.batch, Tn = out.batch.time;
  for (const auto r : kept) out.scores.push_back(scores[r]);
  out.mask = mask_matrix<Be>(out.batch);
  out.logp = models.policy.log_probs(out.batch);
  const bool use_reference = config.beta > 0;
  if (use_reference) out.ref_logp = models.reference.log_probs(out.batch);

  // The sequence rewards R (with the KL when it is in the reward) and the advantages.
  const KlConfig k1{};
  std::vector<double> kl(N, 0.0);
  if (use_reference) kl = detail::vector_to_host<Be>(kl_estimate(out.logp, out.ref_logp, out.mask, k1).per_sequence);
  if (config.advantage == AdvantageEstimator::token_whitened) {
    const auto score_v = Be::from_host(std::vector<T>(out.scores.begin(), out.scores.end()));
    const double coef = use_reference && config.kl_in_reward ? config.beta : 0.0;
    const auto token_rewards =
        kl_penalized_rewards(score_v, out.logp, use_reference ? out.ref_logp : out.logp, out.mask, coef, k1);
    const auto returns = gae(token_rewards, Be::matrix_of(N, Tn), out.mask, {.gamma = config.gamma, .lambda = 1.0});
    out.advantages = detail::whiten_over_ranks(fn, returns.advantages, out.mask, WhitenConfig{}, communicator);
  } else {
    std::vector<double> R(N);
    for (std::size_t i = 0; i < N; ++i) R[i] = out.scores[i] - (config.kl_in_reward ? config.beta * kl[i] : 0.0);
    group.baseline = config.advantage == AdvantageEstimator::leave_one_out ? GroupBaseline::leave_one_out
                                                                           : GroupBaseline::mean;
    const auto a = group_advantages(R, group);  // kept rows are whole groups, in order
    out.advantages = spread_over_tokens(detail::vector_from_host<Be>(a.advantages, 0, N), out.mask);
  }
  double kl_mean = 0, length = 0;
  for (std::size_t i = 0; i < N; ++i) kl_mean += kl[i] / double(N);
  length = Be::sum(N * Tn, detail::masked_count<T>{Be::data(out.mask)}) / double(N);
  out.metrics.set("kl", kl_mean);
  out.metrics.set("completions/mean_length", length);
  if (communicator) reduce_step_result(*communicator, N, double(N), 0.0, out.metrics);
  return out;
}

// μ passes of minibatch updates of the policy on one rollout. `options`: clipping and communicator (each
// minibatch is one micro-batch, so micro_batches is not read).
template <class P, class Ref, class Reward, class O, class Be>
StepResult critic_free_update(const CriticFreeModels<P, Ref, Reward>& models, O& optimizer,
                              const CriticFreeRollout<Be>& rollout, Rng& rng, const CriticFreeConfig& config,
                              const StepOptions& options = {}) {
  RLHF_REQUIRE_TRAINING_STEP(P, O, "rlhf::critic_free_update");
  using T = typename Be::scalar;
  constexpr const char* fn = "rlhf::critic_free_update";
  detail::validate_critic_free(fn, config, detail::online_step_options(config, options).communicator);
  StepResult out{.loss = 0, .metrics = rollout.metrics, .grad_norm = 0};  // grad_norm: a mean over the steps
  const std::size_t N = rollout.batch.batch;
  if (N == 0) return out;
  const StepOptions outer = detail::online_step_options(config, options);
  const bool kl_loss = config.beta > 0 && !config.kl_in_reward;
  KlConfig kl_config{.estimator = config.kl_loss_estimator, .aggregation = config.policy.aggregation};

  Metrics losses;
  const MinibatchSchedule schedule{
      .passes = config.iterations, .minibatches = std::min(config.minibatches, N), .shuffle = config.shuffle};
  minibatch_passes(N, schedule, rng, [&](std::span<const std::size_t> rows, double weight) {
    const TokenBatch part = gather_rows(rollout.batch, rows);
    const auto mask = gather_rows(rollout.mask, rows);
    const double tokens = Be::sum(rows.size() * Be::cols(mask), detail::masked_count<T>{Be::data(mask)});
    const auto step = minibatch_step_options(outer, config.policy.aggregation, tokens, double(rows.size()));
    const auto r = training_step(fn, models.policy, optimizer, rows.size(), step, [&](auto, auto, double) {
      const auto logp = models.policy.log_probs(part);
      auto p = ppo_policy_loss(logp, gather_rows(rollout.logp, rows), gather_rows(rollout.advantages, rows), mask,
                               config.policy);
      if (kl_loss) {
        const auto k = kl_estimate(logp, gather_rows(rollout.ref_logp, rows), mask, kl_config);
        const std::size_t n = Be::rows(logp) * Be::cols(logp);
        // Under Dr. GRPO's sequence_sum the surrogate's token sums are divided by the constant L; so is the KL's
        // (kl_estimate's sequence_sum divides by the rows only).
        const double scale =
            config.policy.aggregation == Aggregation::sequence_sum ? 1.0 / config.policy.max_tokens : 1.0;
        Be::for_each(n, detail::add_scaled_kernel<T>{Be::data(k.d_logp), Be::data(p.d_logp), T(config.beta * scale)});
        p.loss += config.beta * scale * k.mean;
        p.metrics.set("kl_loss", scale * k.mean);
      }
      models.policy.backward(part, p.d_logp);
      return p;
    });
    out.loss += weight * r.loss;
    out.grad_norm += weight * r.grad_norm;
    losses.combine(r.metrics, weight);
  });
  for (const auto& [name, value] : losses.items()) out.metrics.set(name, value);
  out.metrics.set(metric::grad_norm, out.grad_norm);
  return out;
}

// One iteration: rollout, then update.
template <class P, class Ref, class Reward, class O>
StepResult critic_free_step(const CriticFreeModels<P, Ref, Reward>& models, O& optimizer, const PromptBatch& prompts,
                            Rng& rng, const CriticFreeConfig& config, const StepOptions& options = {}) {
  const auto rollout = critic_free_rollout(models, prompts, rng, config, options);
  return critic_free_update(models, optimizer, rollout, rng, config, options);
}

}  // namespace rlhf
