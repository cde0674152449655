#pragma once
// Phase 3: one training run per method, setting and seed, each from the SFT model, saving the policy every
// `checkpoint_every` steps:
//   dpo           rlhf::dpo_step, β                          on the pairs (reference log-probs precomputed)
//   unlikelihood  rlhf::unlikelihood_step, α                 on the pairs
//   preferred_ft  rlhf::sft_step on the chosen completions
//   dpo_data      DPO at dpo_data_beta on a fraction of the pairs (the hyperparameter), the same steps as DPO
//   ppo_rm        rlhf::ppo_step, fixed κ, the learned reward (standardised), on the training prompts
//   ppo_gt        rlhf::ppo_step, fixed κ, the ground-truth VADER reward in [0, 1]
//   ppo_rm_akl    PPO-RM with rlhf::AdaptiveKlController at a target KL (nats per sequence, the hyperparameter)
//   ppo_gt_akl    PPO-GT with the adaptive controller
//   grpo_gt       rlhf::critic_free_step (GRPO: β·k3 as a loss term, std-scaled group advantages), ground truth
//   rloo_gt       rlhf::critic_free_step (RLOO: κ·KL in the reward, leave-one-out baseline), ground truth
// Each run is one cache entry: a finished run is skipped; an interrupted one starts over.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "cache.hpp"
#include "context.hpp"
#include "data.hpp"
#include "pairs_phase.hpp"
#include "progress.hpp"
#include "reward_model_phase.hpp"
#include "rlhf/algorithms/critic_free.hpp"
#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/algorithms/kl_control.hpp"
#include "rlhf/algorithms/ppo.hpp"
#include "rlhf/algorithms/sft.hpp"
#include "rlhf/algorithms/unlikelihood.hpp"
#include "rlhf/models/gpt/checkpoint.hpp"
#include "optimizer.hpp"
#include "sft_phase.hpp"

namespace sentiment {

struct RunSpec {
  std::string method;  // dpo, unlikelihood, preferred_ft, ppo_rm, ppo_gt (and sft: the reference itself)
  float hyper = 0;     // β, α or κ; 0 for preferred_ft and sft
  std::uint64_t seed = 1;
  OptimizerSettings optimizer{};  // the protocol's runs name theirs; the sweeps' use AdamW at the method's rate

  bool has_hyper() const { return method != "preferred_ft" && method != "sft"; }
  std::string hyper_text() const {
    if (!has_hyper()) return "-";
    char s[32];
    std::snprintf(s, sizeof s, "%g", double(hyper));
    return s;
  }
  std::string label() const {
    std::string text = method;
    if (has_hyper()) text.append(" ").append(hyper_text());
    if (!optimizer.is_default()) text.append(" ").append(optimizer.text());
    return text.append(" seed ").append(std::to_string(seed));
  }
  bool is_ppo() const {
    return method == "ppo_rm" || method == "ppo_gt" || method == "ppo_rm_akl" || method == "ppo_gt_akl";
  }
  bool is_adaptive() const { return method == "ppo_rm_akl" || method == "ppo_gt_akl"; }
  bool uses_reward_model() const { return method == "ppo_rm" || method == "ppo_rm_akl"; }
  bool is_critic_free() const { return method == "grpo_gt" || method == "rloo_gt"; }
  bool is_online() const { return is_ppo() || is_critic_free(); }
};

struct SavedCheckpoint {
  RunSpec run;
  std::size_t step = 0;
  fs::path path;
};

struct RunOutput {
  RunSpec spec;
  std::vector<SavedCheckpoint> checkpoints;
  double cpu_seconds = 0;  // process CPU time of the training (every thread), kept with the run when cached
};

inline std::vector<RunSpec> sweep_runs(const SweepConfig& c) {
  std::vector<RunSpec> runs;
  for (const auto seed : c.seeds) {
    for (const float b : c.train.dpo_betas) runs.push_back({"dpo", b, seed});
    for (const float a : c.train.unlikelihood_alphas) runs.push_back({"unlikelihood", a, seed});
    if (c.train.preferred_ft) runs.push_back({"preferred_ft", 0, seed});
    for (const float k : c.train.ppo_rm_kl_coefs) runs.push_back({"ppo_rm", k, seed});
    for (const float k : c.train.ppo_gt_kl_coefs) runs.push_back({"ppo_gt", k, seed});
    for (const float k : c.train.ppo_rm_kl_targets) runs.push_back({"ppo_rm_akl", k, seed});
    for (const float k : c.train.ppo_gt_kl_targets) runs.push_back({"ppo_gt_akl", k, seed});
    for (const float b : c.train.grpo_gt_betas) runs.push_back({"grpo_gt", b, seed});
    for (const float k : c.train.rloo_gt_kl_coefs) runs.push_back({"rloo_gt", k, seed});
    for (const float f : c.train.dpo_data_fractions) runs.push_back({"dpo_data", f, seed});
  }
  return runs;
}

namespace detail {

// The training prompts in epochs of seeded shuffles: take(n) gives the next n (at most all of them), reshuffling
// when an epoch runs out.
class PromptCycle {
 public:
  explicit PromptCycle(std::size_t n) : order_(n), next_(n) {
    for (std::size_t i = 0; i < n; ++i) order_[i] = i;
  }
  std::vector<std::vector<rlhf::token_id>> take(const std::vector<std::vector<rlhf::token_id>>& prompts, std::size_t n,
                                                rlhf::Rng& rng) {
    std::vector<std::vector<rlhf::token_id>> out;
    while (out.size() < std::min(n, order_.size())) {
      if (next_ == order_.size()) {
        for (std::size_t i = order_.size(); i-- > 1;) std::swap(order_[i], order_[rng.below(i + 1)]);
        next_ = 0;
      }
      out.push_back(prompts[order_[next_++]]);
    }
    return out;
  }

 private:
  std::vector<std::size_t> order_;
  std::size_t next_;
};

// The run's optimizer over `steps` training steps; `rate` the sweep's rate for the method (the default's).
inline SweepOptimizer make_optimizer(const RunSpec& run, float rate, std::size_t steps, float rate_factor = 1.0f) {
  const float lr = run.optimizer.learning_rate > 0 ? run.optimizer.learning_rate : rate;
  return SweepOptimizer(run.optimizer.kind, rate_factor * lr, steps);
}

inline fs::path checkpoint_path(const CacheEntry& e, std::size_t step) {
  char name[40];
  std::snprintf(name, sizeof name, "step-%06zu.safetensors", step);
  return e.file(name);
}

// DPO, unlikelihood and preferred-FT: `steps` steps over the pairs in a seeded order (dpo_data: over the first
// fraction of that order, cycled).
inline void train_on_pairs(Context& ctx, const RunSpec& run, const PairsOutput& data, rlhf::Gpt<float>& policy,
                           const CacheEntry& entry, std::vector<SavedCheckpoint>& saved) {
  const auto& t = ctx.config.train;
  std::vector<Pair> pairs = data.pairs;
  rlhf::Rng rng(run.seed * 1000 + 7);
  for (std::size_t i = pairs.size(); i-- > 1;) std::swap(pairs[i], pairs[rng.below(i + 1)]);
  if (run.method == "dpo_data")
    pairs.resize(std::max<std::size_t>(1, std::size_t(std::ceil(double(run.hyper) * double(pairs.size())))));
  auto opt = make_optimizer(run, t.learning_rate, t.steps);
  Progress progress(run.label(), t.steps, ctx.quiet);
  for (std::size_t s = 0; s < t.steps; ++s) {
    const auto batch = pair_batch(data, pairs, s * t.batch, (s + 1) * t.batch);
    const rlhf::StepOptions options = opt.next_step();
    rlhf::StepResult r;
    if (run.method == "dpo") {
      r = rlhf::dpo_step(policy, opt, batch, {.beta = run.hyper}, options);
    } else if (run.method == "dpo_data") {
      r = rlhf::dpo_step(policy, opt, batch, {.beta = t.dpo_data_beta}, options);
    } else if (run.method == "unlikelihood") {
      r = rlhf::unlikelihood_step(policy, opt, batch, {.alpha = run.hyper}, options);
    } else {
      r = rlhf::sft_step(policy, opt, batch.chosen, {}, options);
    }
    progress.update(s + 1, "loss", r.loss);
    if ((s + 1) % t.checkpoint_every == 0 || s + 1 == t.steps) {
      saved.push_back({run, s + 1, checkpoint_path(entry, s + 1)});
      rlhf::save_checkpoint(policy, saved.back().path);
    }
  }
}

// PPO: each step a rollout on `ppo_batch` training prompts, then `ppo_epochs` passes of updates.
inline void train_ppo(Context& ctx, const RunSpec& run, const SftOutput& sft, const PairsOutput& data,
                      const RewardModelOutput* rm_out, rlhf::Gpt<float>& policy, const CacheEntry& entry,
                      std::vector<SavedCheckpoint>& saved) {
  const auto& t = ctx.config.train;
  auto reference = rlhf::load_checkpoint<float>(sft.checkpoint);
  for_training(ctx, reference);
  auto head_config = policy.config();
  head_config.scalar_head = true;
  auto value_model = rlhf::load_checkpoint<float>(sft.checkpoint, head_config);
  for_training(ctx, value_model);
  std::optional<rlhf::Gpt<float>> rm;
  if (rm_out) for_training(ctx, rm.emplace(rlhf::load_checkpoint<float>(rm_out->checkpoint)));

  const auto reward = [&](const rlhf::TokenBatch& batch) {
    std::vector<double> out(batch.batch);
    if (rm) {
      const auto s = rm->scores(batch);
      for (std::size_t b = 0; b < batch.batch; ++b) out[b] = (double(s[Eigen::Index(b)]) - rm_out->mean) / rm_out->std;
    } else {
      for (std::size_t b = 0; b < batch.batch; ++b)
        out[b] = reward_of_text(ctx, sequence_text(*ctx.tokenizer, row_sequence(batch, b).tokens));
    }
    return out;
  };

  auto policy_opt = make_optimizer(run, t.ppo_learning_rate, t.ppo_steps);
  auto value_opt = make_optimizer(run, t.ppo_learning_rate, t.ppo_steps, 2.0f);  // the critic at twice the rate
  rlhf::FixedKlController fixed{run.hyper};
  rlhf::AdaptiveKlController adaptive{.coef = t.adaptive_kl_init, .target = run.hyper,
                                      .horizon = t.adaptive_kl_horizon};
  const rlhf::PpoStepConfig config{.epochs = t.ppo_epochs,
                                   .minibatches = 1,
                                   .sample = {.max_new_tokens = ctx.config.pairs.max_new_tokens,
                                              .temperature = 1.0f,
                                              .stop_token = ctx.tokenizer->eos()}};
  rlhf::Rng rng(run.seed * 1000 + 13);
  PromptCycle cycle(data.prompts.size());
  Progress progress(run.label(), t.ppo_steps, ctx.quiet);
  for (std::size_t s = 0; s < t.ppo_steps; ++s) {
    const auto prompts = cycle.take(data.prompts, t.ppo_batch, rng);
    const rlhf::PpoModels models{.policy = policy, .reference = reference, .value_model = value_model, .reward = reward};
    const rlhf::PpoOptimizers optimizers{.policy = policy_opt, .value = value_opt};
    const auto x = prompt_batch(prompts, 0, prompts.size());
    const rlhf::StepOptions options = policy_opt.next_step();  // clips the policy's and the critic's gradients
    value_opt.next_step();
    const auto r = run.is_adaptive() ? rlhf::ppo_step(models, optimizers, adaptive, x, rng, config, options)
                                     : rlhf::ppo_step(models, optimizers, fixed, x, rng, config, options);
    progress.update(s + 1, "reward", r.metrics[rlhf::metric::objective_scores]);
    if ((s + 1) % t.ppo_checkpoint_every == 0 || s + 1 == t.ppo_steps) {
      saved.push_back({run, s + 1, checkpoint_path(entry, s + 1)});
      rlhf::save_checkpoint(policy, saved.back().path);
    }
  }
}

// GRPO and RLOO with the ground-truth reward: each step ppo_batch / G training prompts, G samples each, then
// ppo_epochs passes (μ) of clipped updates; no value model.
inline void train_critic_free(Context& ctx, const RunSpec& run, const SftOutput& sft, const PairsOutput& data,
                              rlhf::Gpt<float>& policy, const CacheEntry& entry, std::vector<SavedCheckpoint>& saved) {
  const auto& t = ctx.config.train;
  auto reference = rlhf::load_checkpoint<float>(sft.checkpoint);
  for_training(ctx, reference);
  const auto reward = [&](const rlhf::TokenBatch& batch) {
    std::vector<double> out(batch.batch);
    for (std::size_t b = 0; b < batch.batch; ++b)
      out[b] = reward_of_text(ctx, sequence_text(*ctx.tokenizer, row_sequence(batch, b).tokens));
    return out;
  };
  const std::size_t G = ctx.config.pairs.completions;
  auto config = run.method == "grpo_gt" ? rlhf::CriticFreeConfig::grpo({.group_size = G, .beta = run.hyper})
                                        : rlhf::CriticFreeConfig::rloo({.group_size = G, .beta = run.hyper});
  config.iterations = t.ppo_epochs;
  config.sample = {.max_new_tokens = ctx.config.pairs.max_new_tokens, .temperature = 1.0f,
                   .stop_token = ctx.tokenizer->eos()};
  auto opt = make_optimizer(run, t.ppo_learning_rate, t.ppo_steps);
  rlhf::Rng rng(run.seed * 1000 + 17);
  const std::size_t per_step = std::max<std::size_t>(1, t.ppo_batch / G);
  PromptCycle cycle(data.prompts.size());
  Progress progress(run.label(), t.ppo_steps, ctx.quiet);
  for (std::size_t s = 0; s < t.ppo_steps; ++s) {
    const auto prompts = cycle.take(data.prompts, per_step, rng);
    const rlhf::StepOptions options = opt.next_step();
    const auto r = rlhf::critic_free_step(
        rlhf::CriticFreeModels{.policy = policy, .reference = reference, .reward = reward}, opt,
        prompt_batch(prompts, 0, prompts.size()), rng, config, options);
    progress.update(s + 1, "reward", r.metrics["reward"]);
    if ((s + 1) % t.ppo_checkpoint_every == 0 || s + 1 == t.ppo_steps) {
      saved.push_back({run, s + 1, checkpoint_path(entry, s + 1)});
      rlhf::save_checkpoint(policy, saved.back().path);
    }
  }
}

}  // namespace detail

inline RunOutput run_training(Context& ctx, const RunSpec& run, const SftOutput& sft, const PairsOutput& data,
                              const RewardModelOutput& rm) {
  const auto& t = ctx.config.train;
  CacheKey key("run");
  key.add("method", run.method).add("hyper", run.hyper).add("seed", run.seed).add("pairs", data.key.hex());
  if (run.is_online()) {
    key.add("steps", t.ppo_steps).add("batch", t.ppo_batch).add("epochs", t.ppo_epochs)
        .add("every", t.ppo_checkpoint_every).add("lr", t.ppo_learning_rate);
    if (run.uses_reward_model()) key.add("rm", rm.key.hex());
    if (run.is_adaptive()) key.add("kl_init", t.adaptive_kl_init).add("horizon", t.adaptive_kl_horizon);
  } else {
    key.add("steps", t.steps).add("batch", t.batch).add("every", t.checkpoint_every).add("lr", t.learning_rate);
    if (run.method == "dpo_data") key.add("beta", t.dpo_data_beta);
  }
  if (ctx.config.bf16) key.add("bf16", 1);
  if (!run.optimizer.is_default()) {  // absent for the sweeps' AdamW, so that their cache keys stay as they were
    const RmspropRecipe recipe;
    key.add("optimizer", optimizer_name(run.optimizer.kind)).add("opt_lr", run.optimizer.learning_rate);
    if (run.optimizer.kind == OptimizerKind::rmsprop)
      key.add("warmup", recipe.warmup_fraction).add("max_grad_norm", recipe.max_grad_norm);
  }
  if (ctx.config.train.hold_out_pairs && !run.is_online()) key.add("pairs_held_out", "every-10th-prompt");
  const CacheEntry entry(ctx.out / "runs", key);
  RunOutput out{run, {}};
  const auto t0 = Clock::now();
  if (entry.done()) {
    const std::size_t steps = run.is_online() ? t.ppo_steps : t.steps;
    const std::size_t every = run.is_online() ? t.ppo_checkpoint_every : t.checkpoint_every;
    for (std::size_t s = 1; s <= steps; ++s)
      if (s % every == 0 || s == steps) out.checkpoints.push_back({run, s, detail::checkpoint_path(entry, s)});
    if (fs::exists(entry.file("cpu_seconds.txt"))) out.cpu_seconds = std::stod(read_file(entry.file("cpu_seconds.txt")));
    ctx.record("train " + run.label(), seconds_since(t0), true);
    return out;
  }
  entry.begin();
  const std::clock_t cpu0 = std::clock();
  auto policy = rlhf::load_checkpoint<float>(sft.checkpoint);
  for_training(ctx, policy);
  if (run.is_critic_free())
    detail::train_critic_free(ctx, run, sft, data, policy, entry, out.checkpoints);
  else if (run.is_ppo())
    detail::train_ppo(ctx, run, sft, data, run.uses_reward_model() ? &rm : nullptr, policy, entry, out.checkpoints);
  else
    detail::train_on_pairs(ctx, run, data, policy, entry, out.checkpoints);
  out.cpu_seconds = double(std::clock() - cpu0) / CLOCKS_PER_SEC;
  write_file_atomic(entry.file("cpu_seconds.txt"), std::to_string(out.cpu_seconds) + "\n");
  entry.finish();
  ctx.record("train " + run.label(), seconds_since(t0), false);
  return out;
}

}  // namespace sentiment
