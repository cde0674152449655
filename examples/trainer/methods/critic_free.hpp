#pragma once
// The base of GRPO, RLOO and REINFORCE++ (algorithms/critic_free.hpp): G sampled completions per prompt, an
// advantage from the group's rewards instead of a critic, PPO's clipped ratio. A method derived from it gives its
// own keys and its CriticFreeConfig; the keys below are shared.
#include "online.hpp"
#include "rlhf/algorithms/critic_free.hpp"

namespace trainer {

struct CriticFreeArguments {
  std::size_t num_generations = 8;           // G completions per prompt
  double epsilon = 0.2, epsilon_high = 0.0;  // the ratio's clip below / above 1 (0: epsilon)
  std::size_t num_iterations = 1;            // μ: passes over each rollout
  bool drop_uniform_groups = false;          // DAPO's dynamic sampling

  static const std::vector<KeySpec<CriticFreeArguments>>& keys() {
    using A = CriticFreeArguments;
    static const std::vector<KeySpec<A>> table = {
        count_key("num_generations", &A::num_generations, "completions sampled per prompt (G)", 1, 1 << 16),
        real_key("epsilon", &A::epsilon, "clip of the ratio below 1 (and above, unless epsilon_high)", 1e-12, 10),
        real_key("epsilon_high", &A::epsilon_high, "clip above 1 (DAPO's clip-higher); 0: epsilon", 0, 10),
        count_key("num_iterations", &A::num_iterations, "passes over each rollout (mu)", 1, 1e6),
        flag_key("drop_uniform_groups", &A::drop_uniform_groups,
                 "skip groups whose rewards are all equal (DAPO's dynamic sampling)"),
    };
    return table;
  }
};

// Derived provides `rlhf::CriticFreeConfig estimator() const` (the advantage, the KL and their settings) and
// `bool uses_reference() const`; its own keys are Settings' (after the shared ones), held in settings_.
template <class Derived, class Settings>
class CriticFreeMethod : public Method {
 public:
  std::vector<Key> keys() override {
    std::vector<Key> k;
    bind_keys(k, OnlineArguments::keys(), online_);
    bind_keys(k, CriticFreeArguments::keys(), group_);
    bind_keys(k, Settings::keys(), settings_);
    return k;
  }
  DataNeed data() const override { return prompt_data(); }
  bool samples() const override { return true; }
  std::size_t response_length() const override { return online_.response_length; }
  std::vector<std::string> shown_metrics() const override { return {"reward", "kl"}; }
  double default_learning_rate() const override { return 1e-6; }
  void check(const TrainingArguments&) const override { online_.check(derived().name()); }

  void load_models(Session& s) override {
    if (derived().uses_reference()) reference_.emplace(s.reference_model());
    reward_.load(s, online_);
  }

  StepOutcome train_step(Session& s, Rows rows, const rlhf::StepOptions& options) override {
    auto reward = [&](const rlhf::TokenBatch& b) { return reward_.scores(s, b); };
    rlhf::CriticFreeModels<Model, Model, decltype(reward)&> models{
        .policy = *s.policy, .reference = reference(s), .reward = reward};
    const auto config = step_config(s);
    StepOutcome out;
    const auto prompts = rlhf::io::collate_prompts(s.train.rows, rows);
    out.result = rlhf::critic_free_step(models, *s.optimizer, prompts, s.rng, config, options);
    for (const auto i : rows) out.tokens += double(s.train.rows[i].prompt.size() * config.group_size);
    out.tokens += out.result.metrics["completions/mean_length"] * double(rows.size() * config.group_size);
    return out;
  }

  // A rollout of the eval prompts; eval_loss is − the mean reward.
  Evaluation evaluate(Session& s, Rows rows, std::size_t step) override {
    auto reward = [&](const rlhf::TokenBatch& b) { return reward_.scores(s, b); };
    rlhf::CriticFreeModels<Model, Model, decltype(reward)&> models{
        .policy = *s.policy, .reference = reference(s), .reward = reward};
    rlhf::Rng rng = evaluation_rng(s, step, rows);
    const auto rollout = rlhf::critic_free_rollout(models, rlhf::io::collate_prompts(s.eval.rows, rows), rng,
                                                   step_config(s), {.communicator = s.comm});
    return {rollout.metrics, -rollout.metrics["reward"]};
  }

 protected:
  OnlineArguments online_;
  CriticFreeArguments group_;
  Settings settings_;

 private:
  const Derived& derived() const { return static_cast<const Derived&>(*this); }
  Model& reference(Session& s) { return reference_ ? *reference_ : *s.policy; }  // unused when the KL term is off

  rlhf::CriticFreeConfig step_config(const Session& s) const {
    rlhf::CriticFreeConfig f = derived().estimator();
    f.group_size = group_.num_generations;
    f.policy.clip = group_.epsilon;
    if (group_.epsilon_high > 0) f.policy.clip_low = group_.epsilon, f.policy.clip_high = group_.epsilon_high;
    f.iterations = group_.num_iterations;
    f.minibatches = online_.num_mini_batches;
    f.drop_uniform_groups = group_.drop_uniform_groups;
    f.sample = online_.sample_options(s);
    return f;
  }

  RewardSource reward_;
  std::optional<Model> reference_;
};

}  // namespace trainer
