#pragma once
// rlhf-train rloo: REINFORCE Leave-One-Out (TRL's RLOOTrainer): each completion's baseline is the mean reward of
// the others of its prompt; the KL to the reference (k1) is in the reward.
#include "critic_free.hpp"

namespace trainer {

struct KlInRewardSettings {
  double kl_coef = 0.05;

  static const std::vector<KeySpec<KlInRewardSettings>>& keys() {
    static const std::vector<KeySpec<KlInRewardSettings>> table = {
        real_key("kl_coef", &KlInRewardSettings::kl_coef, "KL coefficient in the reward (k1); 0: no reference", 0, 1e6),
    };
    return table;
  }
};

class Rloo final : public CriticFreeMethod<Rloo> {
 public:
  static constexpr const char* method_name = "rloo";
  Rloo() { group_.num_generations = 4; }
  const char* name() const override { return method_name; }
  std::vector<Key> keys() override {
    std::vector<Key> k;
    bind_shared_keys(k);
    bind_keys(k, KlInRewardSettings::keys(), settings_);
    return k;
  }
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

 private:
  KlInRewardSettings settings_;
};

}  // namespace trainer
