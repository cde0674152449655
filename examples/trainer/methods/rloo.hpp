#pragma once
// rlhf-train rloo: REINFORCE Leave-One-Out (TRL's RLOOTrainer): each completion's baseline is the mean reward of
// the others of its prompt; the KL to the reference (k1) is in the reward.
#include "critic_free.hpp"

namespace trainer {

struct RlooSettings {
  double kl_coef = 0.05;

  static const std::vector<KeySpec<RlooSettings>>& keys() {
    static const std::vector<KeySpec<RlooSettings>> table = {
        real_key("kl_coef", &RlooSettings::kl_coef, "KL coefficient in the reward (k1); 0: no reference", 0, 1e6),
    };
    return table;
  }
};

class Rloo final : public CriticFreeMethod<Rloo, RlooSettings> {
 public:
  static constexpr const char* method_name = "rloo";
  Rloo() { group_.num_generations = 4; }
  const char* name() const override { return method_name; }
  void check(const TrainingArguments& a) const override {
    CriticFreeMethod::check(a);
    if (group_.num_generations < 2)
      throw Refusal("num_generations: rloo's leave-one-out baseline needs at least 2 completions per prompt");
  }
  bool uses_reference() const { return settings_.kl_coef > 0; }
  rlhf::CriticFreeConfig estimator() const {
    return {.advantage = rlhf::AdvantageEstimator::leave_one_out,
            .scale_rewards = false,
            .beta = settings_.kl_coef,
            .kl_in_reward = true};
  }
};

}  // namespace trainer
