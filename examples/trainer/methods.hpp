#pragma once
// Each method's step on a block of dataset rows — the library's step (algorithms/) on the collated batch — and
// its evaluation pass (the same step under rlhf::evaluate: no update). One function per method family, so that
// the training and the evaluation of a method are the same code.
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "rlhf/algorithms/critic_free.hpp"
#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/algorithms/evaluate.hpp"
#include "rlhf/algorithms/kto.hpp"
#include "rlhf/algorithms/orpo.hpp"
#include "rlhf/algorithms/kl_control.hpp"
#include "rlhf/algorithms/ppo.hpp"
#include "rlhf/algorithms/reward_model.hpp"
#include "rlhf/algorithms/sft.hpp"
#include "rlhf/algorithms/unlikelihood.hpp"
#include "rlhf/core/metric_names.hpp"
#include "session.hpp"

namespace trainer {

using Rows = std::span<const std::size_t>;

// What a step did, for the log.
struct StepOutcome {
  rlhf::StepResult result;
  double tokens = 0;  // sequence tokens processed (prompts and responses, every row)
};

namespace detail {

inline rlhf::DpoConfig dpo_config(const Config& c) {
  rlhf::DpoConfig d;
  d.variant = c.loss_type == "robust" ? rlhf::DpoVariant::robust
              : c.loss_type == "hinge" ? rlhf::DpoVariant::hinge
              : c.loss_type == "ipo"   ? rlhf::DpoVariant::ipo
                                       : rlhf::DpoVariant::sigmoid;
  d.beta = c.beta;
  d.label_smoothing = c.label_smoothing;
  d.reference_free = c.reference_free;
  d.nll_weight = c.rpo_alpha;
  d.nll_normalization = rlhf::DpoNllNormalization::batch_tokens;  // TRL's rpo_alpha
  d.reward_metrics = rlhf::DpoRewardMetrics::raw;                  // TRL DPOTrainer's rewards/*
  return d;
}

inline double sequence_tokens(const TokenizedDataset& d, Rows rows, bool prompt_per_completion) {
  double n = 0;
  for (const auto i : rows) {
    const auto& r = d.rows[i];
    for (const auto& c : r.completions) n += double(c.size()) + (prompt_per_completion ? double(r.prompt.size()) : 0);
    if (!prompt_per_completion) n += double(r.prompt.size());
  }
  return n;
}

// The reference sums of `rows`, when precomputed.
inline void attach_reference(rlhf::PreferenceBatch& b, Rows rows, const std::vector<double>& chosen,
                             const std::vector<double>& rejected) {
  if (chosen.empty()) return;
  for (const auto i : rows) b.reference_chosen.push_back(chosen[i]), b.reference_rejected.push_back(rejected[i]);
}

}  // namespace detail

// One step of a non-PPO method on `rows` of `data`, with `model` and `optimizer` (the session's, to train; a
// Frozen model and NoUpdate, to evaluate). `eval` selects the eval set's precomputed reference sums.
template <class M, class O>
StepOutcome method_step(Session& s, M& model, O& optimizer, const TokenizedDataset& data, Rows rows, bool eval,
                        const rlhf::StepOptions& options) {
  using rlhf::io::collate_preferences;
  using rlhf::io::collate_ranked;
  using rlhf::io::collate_sft;
  const Config& c = s.cfg;
  StepOutcome out;
  switch (c.method) {
    case Method::sft: {
      const auto batch = collate_sft(data.rows, rows);
      for (const auto i : rows) out.tokens += double(data.rows[i].prompt.size() + data.rows[i].completions[0].size());
      out.result = rlhf::sft_step(model, optimizer, batch, {.batch_reduction = rlhf::BatchReduction::mean_tokens}, options);
      break;
    }
    case Method::dpo:
      out.tokens = detail::sequence_tokens(data, rows, true);
      if (s.ranked()) {
        const auto batch = collate_ranked(data.rows, rows);
        const rlhf::ListwiseDpoConfig lc{.beta = c.beta, .reference_free = c.reference_free};
        out.result = c.reference_free ? rlhf::listwise_dpo_step(model, optimizer, batch, lc, options)
                                      : rlhf::listwise_dpo_step(model, *s.reference, optimizer, batch, lc, options);
      } else {
        auto batch = collate_preferences(data.rows, rows);
        detail::attach_reference(batch, rows, eval ? s.eval_ref_chosen : s.train_ref_chosen,
                                 eval ? s.eval_ref_rejected : s.train_ref_rejected);
        const auto dc = detail::dpo_config(c);
        out.result = !batch.reference_chosen.empty() || c.reference_free
                         ? rlhf::dpo_step(model, optimizer, batch, dc, options)
                         : rlhf::dpo_step(model, *s.reference, optimizer, batch, dc, options);
      }
      break;
    case Method::reward:
      out.tokens = detail::sequence_tokens(data, rows, true);
      if (s.ranked()) {
        out.result = rlhf::reward_model_step(model, optimizer, collate_ranked(data.rows, rows), {}, options);
      } else {
        const rlhf::BradleyTerryConfig bc{.label_smoothing = c.label_smoothing,
                                          .center_coefficient = c.center_rewards_coefficient};
        out.result = rlhf::reward_model_step(model, optimizer, collate_preferences(data.rows, rows), bc, options);
      }
      break;
    case Method::unlikelihood:
      out.tokens = detail::sequence_tokens(data, rows, true);
      out.result = rlhf::unlikelihood_step(model, optimizer, collate_preferences(data.rows, rows), {.alpha = c.alpha},
                                           options);
      break;
    case Method::kto: {
      out.tokens = detail::sequence_tokens(data, rows, true);
      const rlhf::KtoConfig kc{.beta = c.beta, .desirable_weight = c.desirable_weight,
                               .undesirable_weight = c.undesirable_weight};
      out.result = rlhf::kto_step(model, *s.reference, optimizer, rlhf::io::collate_unpaired(data.rows, rows, s.policy->config().max_seq_len), kc, options);
      break;
    }
    case Method::orpo:
      out.tokens = detail::sequence_tokens(data, rows, true);
      out.result = rlhf::orpo_step(model, optimizer, collate_preferences(data.rows, rows), {.lambda = c.beta}, options);
      break;
    case Method::ppo:
    case Method::grpo:
    case Method::rloo:
    case Method::reinforce_pp:
      rlhf::fail<rlhf::error>("method_step: ", name_of(c.method), " samples; its step is online_iteration");
  }
  return out;
}

// PPO's reward: the reward model's score, or VADER's sentiment of the decoded response in [0, 1].
inline std::vector<double> ppo_scores(Session& s, const rlhf::TokenBatch& batch) {
  std::vector<double> out;
  if (s.reward_model) {
    for (const float v : Model::backend::to_host(s.reward_model->scores(batch))) out.push_back(v);
    return out;
  }
  for (std::size_t r = 0; r < batch.batch; ++r) {
    std::vector<rlhf::token_id> response;
    for (std::size_t t = 0; t < batch.time; ++t)
      if (batch.response_mask[r * batch.time + t]) response.push_back(batch.tokens[r * batch.time + t]);
    out.push_back(rlhf::eval::sentiment_reward(s.vader->compound(s.codec.decode(response))));
  }
  return out;
}

inline rlhf::PpoStepConfig ppo_config(const Session& s) {
  const Config& c = s.cfg;
  rlhf::PpoStepConfig p;
  p.epochs = c.num_ppo_epochs;
  p.minibatches = c.num_mini_batches;
  p.policy.clip = c.cliprange;
  p.value.clip = c.cliprange_value;
  p.gae = {.gamma = c.gamma, .lambda = c.lam};
  p.kl.estimator = c.kl_estimator == "k3" ? rlhf::KlEstimator::k3 : rlhf::KlEstimator::k1;
  p.sample = {.max_new_tokens = c.response_length, .temperature = float(c.temperature), .stop_token = s.codec.eos};
  p.max_grad_norm = c.max_grad_norm;
  p.communicator = s.comm;
  return p;
}

// One PPO iteration on the prompts of `rows`: rollout, update, KL controller.
inline StepOutcome ppo_iteration(Session& s, Rows rows) {
  const auto prompts = rlhf::io::collate_prompts(s.train.rows, rows);
  auto reward = [&](const rlhf::TokenBatch& b) { return ppo_scores(s, b); };
  rlhf::PpoModels models{.policy = *s.policy, .reference = *s.reference, .value_model = *s.value, .reward = reward};
  rlhf::PpoOptimizers optimizers{.policy = *s.optimizer, .value = *s.value_optimizer};
  s.value_optimizer->set_learning_rate(s.optimizer->config().learning_rate);
  rlhf::PpoStepResult r;
  if (s.cfg.adaptive_kl) {
    rlhf::AdaptiveKlController kl{.coef = s.kl_coef, .target = s.cfg.kl_target, .horizon = s.cfg.kl_horizon};
    r = rlhf::ppo_step(models, optimizers, kl, prompts, s.rng, ppo_config(s));
    s.kl_coef = kl.value();
  } else {
    rlhf::FixedKlController kl{.coef = s.kl_coef};
    r = rlhf::ppo_step(models, optimizers, kl, prompts, s.rng, ppo_config(s));
  }
  StepOutcome out;
  out.result.loss = r.policy_loss;
  out.result.metrics = r.metrics;
  out.result.grad_norm = r.metrics[rlhf::metric::grad_norm];
  for (const auto i : rows) out.tokens += double(s.train.rows[i].prompt.size());
  out.tokens += r.metrics[rlhf::metric::tokens_response_mean] * double(rows.size());
  return out;
}

inline rlhf::CriticFreeConfig critic_free_config(const Session& s) {
  const Config& c = s.cfg;
  rlhf::CriticFreeConfig f;
  switch (c.method) {
    case Method::grpo:
      f = rlhf::CriticFreeConfig::grpo(c.num_generations, c.beta);
      f.scale_rewards = c.scale_rewards;
      // TRL's loss_type: grpo averages each completion's tokens, bnpo every token of the batch alike, dr_grpo
      // each completion's token sum over the longest completion allowed.
      f.policy.aggregation = c.loss_type == "bnpo"      ? rlhf::Aggregation::token_mean
                             : c.loss_type == "dr_grpo" ? rlhf::Aggregation::sequence_sum
                                                        : rlhf::Aggregation::sequence_mean;
      f.policy.max_tokens = double(c.response_length);
      break;
    case Method::rloo: f = rlhf::CriticFreeConfig::rloo(c.num_generations, c.kl_coef); break;
    default: f = rlhf::CriticFreeConfig::reinforce_pp(c.kl_coef, c.num_generations); f.gamma = c.gamma; break;
  }
  f.policy.clip = c.epsilon;
  if (c.epsilon_high > 0) f.policy.clip_low = c.epsilon, f.policy.clip_high = c.epsilon_high;
  f.iterations = c.num_iterations;
  f.minibatches = c.num_mini_batches;
  f.drop_uniform_groups = c.drop_uniform_groups;
  f.sample = {.max_new_tokens = c.response_length, .temperature = float(c.temperature), .stop_token = s.codec.eos};
  f.max_grad_norm = c.max_grad_norm;
  f.communicator = s.comm;
  return f;
}

// One GRPO / RLOO / REINFORCE++ iteration on the prompts of `rows`.
inline StepOutcome critic_free_iteration(Session& s, Rows rows) {
  auto reward = [&](const rlhf::TokenBatch& b) { return ppo_scores(s, b); };
  Model& reference = s.reference ? *s.reference : *s.policy;  // unused when the KL coefficient is 0
  rlhf::CriticFreeModels models{.policy = *s.policy, .reference = reference, .reward = reward};
  const auto config = critic_free_config(s);
  StepOutcome out;
  out.result = rlhf::critic_free_step(models, *s.optimizer, rlhf::io::collate_prompts(s.train.rows, rows), s.rng, config);
  for (const auto i : rows) out.tokens += double(s.train.rows[i].prompt.size() * config.group_size);
  out.tokens += out.result.metrics["completions/mean_length"] * double(rows.size() * config.group_size);
  return out;
}

// Any method that samples: PPO or a critic-free one.
inline StepOutcome online_iteration(Session& s, Rows rows) {
  return s.cfg.method == Method::ppo ? ppo_iteration(s, rows) : critic_free_iteration(s, rows);
}

// The evaluation pass over eval_file: every row once, in file order, in batches of per_device_eval_batch_size;
// metrics combined over the batches by their own rules. PPO samples from the eval prompts with its own RNG
// (seeded by the step), so the training RNG's stream is untouched.
inline rlhf::Metrics evaluation_pass(Session& s, std::size_t step, double& loss) {
  const std::size_t n = s.eval.size(), bs = s.cfg.per_device_eval_batch_size;
  rlhf::Metrics total;
  loss = 0;
  for (std::size_t lo = 0, hi = 0; lo < n; lo = hi) {
    hi = std::min(n, lo + bs);
    if (s.cfg.method == Method::kto && n - hi == 1) hi = n;  // no batch of one row: KTO pairs rows with each other
    std::vector<std::size_t> rows;
    for (std::size_t i = lo; i < hi; ++i) rows.push_back(i);
    const double share = double(rows.size()) / double(n);
    if (s.cfg.method == Method::ppo) {
      auto reward = [&](const rlhf::TokenBatch& b) { return ppo_scores(s, b); };
      rlhf::PpoModels models{.policy = *s.policy, .reference = *s.reference, .value_model = *s.value, .reward = reward};
      rlhf::Rng rng(s.cfg.seed ^ (0xd1b54a32d192ed03ULL * (step + 1)) ^ (0x9e3779b97f4a7c15ULL * (lo + 1)));
      const auto rollout = rlhf::ppo_rollout(models, rlhf::io::collate_prompts(s.eval.rows, rows), rng, s.kl_coef, ppo_config(s));
      total.combine(rollout.metrics, share);
      loss -= share * rollout.metrics[rlhf::metric::objective_rlhf_reward];  // eval_loss: − the KL-penalised reward
    } else if (is_critic_free(s.cfg.method)) {
      auto reward = [&](const rlhf::TokenBatch& b) { return ppo_scores(s, b); };
      Model& reference = s.reference ? *s.reference : *s.policy;
      rlhf::CriticFreeModels models{.policy = *s.policy, .reference = reference, .reward = reward};
      rlhf::Rng rng(s.cfg.seed ^ (0xd1b54a32d192ed03ULL * (step + 1)) ^ (0x9e3779b97f4a7c15ULL * (lo + 1)));
      const auto rollout =
          rlhf::critic_free_rollout(models, rlhf::io::collate_prompts(s.eval.rows, rows), rng, critic_free_config(s));
      total.combine(rollout.metrics, share);
      loss -= share * rollout.metrics["reward"];  // eval_loss: − the mean reward
    } else {
      const auto r = rlhf::evaluate(*s.policy, [&](auto& frozen, auto& no_update) {
        return method_step(s, frozen, no_update, s.eval, rows, true, {}).result;
      });
      total.combine(r.metrics, share);
      loss += share * r.loss;
    }
  }
  return total;
}

// precompute_ref_log_probs: the reference's Σ log π of every pair's two responses, in fixed batches.
inline void precompute_reference(Session& s) {
  if (s.cfg.method != Method::dpo || !s.cfg.precompute_ref_log_probs || s.ranked()) return;
  const auto fill = [&](const TokenizedDataset& d, std::vector<double>& chosen, std::vector<double>& rejected) {
    chosen.clear(), rejected.clear();
    const std::size_t bs = s.cfg.per_device_eval_batch_size;
    for (std::size_t lo = 0; lo < d.size(); lo += bs) {
      std::vector<std::size_t> rows;
      for (std::size_t i = lo; i < std::min(d.size(), lo + bs); ++i) rows.push_back(i);
      auto b = rlhf::io::collate_preferences(d.rows, rows);
      rlhf::precompute_reference_logps(*s.reference, b);
      chosen.insert(chosen.end(), b.reference_chosen.begin(), b.reference_chosen.end());
      rejected.insert(rejected.end(), b.reference_rejected.begin(), b.reference_rejected.end());
    }
  };
  fill(s.train, s.train_ref_chosen, s.train_ref_rejected);
  if (s.eval.size()) fill(s.eval, s.eval_ref_chosen, s.eval_ref_rejected);
  s.reference.reset();  // no longer needed: the batches carry the sums
}

}  // namespace trainer
