#pragma once
// rlhf-train reinforce_pp: REINFORCE++ (OpenRLHF): discounted token returns of the KL-penalised reward (k1 in the
// reward), whitened over the batch, no critic.
#include "rloo.hpp"  // KlInRewardSettings

namespace trainer {

struct ReinforcePpSettings {
  KlInRewardSettings kl{.kl_coef = 0.01};
  double gamma = 1.0;

  static const std::vector<KeySpec<ReinforcePpSettings>>& keys() {
    static const std::vector<KeySpec<ReinforcePpSettings>> table = {
        real_key("gamma", &ReinforcePpSettings::gamma, "discount of the token returns", 0, 1),
    };
    return table;
  }
};

class ReinforcePp final : public CriticFreeMethod<ReinforcePp> {
 public:
  static constexpr const char* method_name = "reinforce_pp";
  ReinforcePp() { group_.num_generations = 1; }
  const char* name() const override { return method_name; }
  std::vector<Key> keys() override {
    std::vector<Key> k;
    bind_shared_keys(k);
    bind_keys(k, KlInRewardSettings::keys(), settings_.kl);
    bind_keys(k, ReinforcePpSettings::keys(), settings_);
    return k;
  }
  bool uses_reference() const { return settings_.kl.kl_coef > 0; }
  rlhf::CriticFreeConfig estimator() const {
    return {.advantage = rlhf::AdvantageEstimator::token_whitened,
            .scale_rewards = false,
            .beta = settings_.kl.kl_coef,
            .kl_in_reward = true,
            .gamma = settings_.gamma};
  }

 private:
  ReinforcePpSettings settings_;
};

}  // namespace trainer
