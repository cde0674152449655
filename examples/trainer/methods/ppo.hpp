#pragma once
// rlhf-train ppo: PPO against a reward with a KL penalty to the frozen reference, a critic trained beside the
// policy (TRL's PPOTrainer and PPOConfig), the KL coefficient fixed or steered to a target.
#include "online.hpp"
#include "rlhf/algorithms/kl_control.hpp"
#include "rlhf/algorithms/ppo.hpp"
#include "rlhf/core/metric_names.hpp"
#include "rlhf/optim/state_file.hpp"

namespace trainer {

struct PpoSettings {
  OnlineArguments online;
  std::size_t num_ppo_epochs = 4;
  double kl_coef = 0.05;
  bool adaptive_kl = false;  // the adaptive controller of Ziegler et al. (kl_target, kl_horizon)
  double kl_target = 6.0, kl_horizon = 10000.0;
  std::string kl_estimator = "k1";
  double cliprange = 0.2, cliprange_value = 0.2;
  double gamma = 1.0, lam = 0.95;

  static const std::vector<KeySpec<PpoSettings>>& keys() {
    using S = PpoSettings;
    static const std::vector<KeySpec<S>> table = {
        count_key("num_ppo_epochs", &S::num_ppo_epochs, "passes over each rollout", 1, 1e6),
        real_key("kl_coef", &S::kl_coef, "KL coefficient in the reward (the start, when adaptive)", 0, 1e6),
        flag_key("adaptive_kl", &S::adaptive_kl, "steer kl_coef towards kl_target"),
        real_key("kl_target", &S::kl_target, "the adaptive controller's KL target (nats)", 1e-12, 1e6),
        real_key("kl_horizon", &S::kl_horizon, "the adaptive controller's horizon", 1, 1e12),
        choice_key("kl_estimator", &S::kl_estimator, "per-token KL estimator", {"k1", "k3"}),
        real_key("cliprange", &S::cliprange, "PPO's policy clip", 1e-12, 10),
        real_key("cliprange_value", &S::cliprange_value, "value clip; 0: none", 0, 1e6),
        real_key("gamma", &S::gamma, "discount", 0, 1),
        real_key("lam", &S::lam, "GAE lambda", 0, 1),
    };
    return table;
  }
};

class Ppo final : public Method {
 public:
  static constexpr const char* method_name = "ppo";
  const char* name() const override { return method_name; }
  DataNeed data() const override { return prompt_data(); }
  bool samples() const override { return true; }
  std::size_t response_length() const override { return settings_.online.response_length; }
  std::vector<std::string> shown_metrics() const override { return {"objective/scores", "objective/kl"}; }
  std::vector<Key> keys() override {
    std::vector<Key> k;
    bind_keys(k, OnlineArguments::keys(), settings_.online);
    bind_keys(k, PpoSettings::keys(), settings_);
    return k;
  }
  double default_learning_rate() const override { return 3e-6; }
  void check(const TrainingArguments& a) const override {
    settings_.online.check(method_name);
    const std::size_t prompts = a.per_device_train_batch_size * a.gradient_accumulation_steps;
    if (settings_.online.num_mini_batches > prompts)
      throw Refusal("num_mini_batches: must be at most the prompts per step (per_device_train_batch_size x "
                    "gradient_accumulation_steps = " + std::to_string(prompts) + ")");
  }

  // The critic starts as the reward model (as TRL's), or with VADER from the policy's trunk and a fresh head.
  void load_models(Session& s) override {
    reference_.emplace(s.reference_model());
    reward_.load(s, settings_.online);
    if (reward_.is_model())
      value_.emplace(s.with_precision(load_model(settings_.online.reward_model_path, true, s.args.seed)));
    else
      value_.emplace(s.initial_model(true, s.args.seed + 1));
    value_optimizer_.emplace(s.make_optimizer());
    kl_coef_ = settings_.kl_coef;
  }

  // One iteration on the prompts of `rows`: rollout, update, KL controller.
  StepOutcome train_step(Session& s, Rows rows, const rlhf::StepOptions& options) override {
    auto reward = [&](const rlhf::TokenBatch& b) { return reward_.scores(s, b); };
    rlhf::PpoModels<Model, Model, Model, decltype(reward)&> models{
        .policy = *s.policy, .reference = *reference_, .value_model = *value_, .reward = reward};
    rlhf::PpoOptimizers<Optimizer, Optimizer> optimizers{.policy = *s.optimizer, .value = *value_optimizer_};
    value_optimizer_->set_learning_rate(s.optimizer->learning_rate());
    const auto prompts = rlhf::io::collate_prompts(s.train.rows, rows);
    const auto config = step_config(s);
    StepOutcome out;
    rlhf::StepResult& r = out.result;  // loss: the policy loss
    if (settings_.adaptive_kl) {
      rlhf::AdaptiveKlController kl{.coef = kl_coef_, .target = settings_.kl_target, .horizon = settings_.kl_horizon};
      r = rlhf::ppo_step(models, optimizers, kl, prompts, s.rng, config, options);
      kl_coef_ = kl.value();
    } else {
      rlhf::FixedKlController kl{.coef = kl_coef_};
      r = rlhf::ppo_step(models, optimizers, kl, prompts, s.rng, config, options);
    }
    r.grad_norm = r.metrics[rlhf::metric::grad_norm];
    for (const auto i : rows) out.tokens += double(s.train.rows[i].prompt.size());
    out.tokens += r.metrics[rlhf::metric::tokens_response_mean] * double(rows.size());
    return out;
  }

  // A rollout of the eval prompts; eval_loss is − the KL-penalised reward.
  Evaluation evaluate(Session& s, Rows rows, std::size_t step) override {
    auto reward = [&](const rlhf::TokenBatch& b) { return reward_.scores(s, b); };
    rlhf::PpoModels<Model, Model, Model, decltype(reward)&> models{
        .policy = *s.policy, .reference = *reference_, .value_model = *value_, .reward = reward};
    rlhf::Rng rng = evaluation_rng(s, step, rows);
    const auto rollout = rlhf::ppo_rollout(models, rlhf::io::collate_prompts(s.eval.rows, rows), rng, kl_coef_,
                                           step_config(s), {.communicator = s.comm});
    return {rollout.metrics, -rollout.metrics[rlhf::metric::objective_rlhf_reward]};
  }

  // The critic and its AdamW, and the KL coefficient the controller has reached.
  void save(const Session&, const fs::path& folder, json& state) const override {
    save_model(*value_, TextCodec{}, folder / "value_model");
    value_optimizer_->save(folder / "value_optimizer.safetensors");
    state["kl_coef"] = kl_coef_;
  }
  void restore(Session&, const fs::path& folder, const json& state) override {
    restore_model(*value_, folder / "value_model");
    value_optimizer_->load(folder / "value_optimizer.safetensors", value_->parameters().size());
    const auto it = state.find("kl_coef");
    if (it == state.end() || !it->is_number())
      rlhf::fail<rlhf::io_error>("'", (folder / "trainer_state.json").string(), "': missing or non-numeric 'kl_coef'");
    kl_coef_ = it->get<double>();
  }

 private:
  rlhf::PpoStepConfig step_config(const Session& s) const {
    rlhf::PpoStepConfig p;
    p.epochs = settings_.num_ppo_epochs;
    p.minibatches = settings_.online.num_mini_batches;
    p.policy.clip = settings_.cliprange;
    p.value.clip = settings_.cliprange_value;
    p.gae = {.gamma = settings_.gamma, .lambda = settings_.lam};
    p.kl.estimator = settings_.kl_estimator == "k3" ? rlhf::KlEstimator::k3 : rlhf::KlEstimator::k1;
    p.sample = settings_.online.sample_options(s);
    return p;
  }

  PpoSettings settings_;
  RewardSource reward_;
  std::optional<Model> reference_, value_;
  std::optional<Optimizer> value_optimizer_;
  double kl_coef_ = 0;
};

}  // namespace trainer
