#pragma once
// rlhf-train reinforce_pp: REINFORCE++ (OpenRLHF): discounted token returns of the KL-penalised reward (k1 in the
// reward), whitened over the batch, no critic.
#include "critic_free.hpp"

namespace trainer {

struct ReinforcePpSettings {
  double kl_coef = 0.01;
  double gamma = 1.0;

  static const std::vector<KeySpec<ReinforcePpSettings>>& keys() {
    using S = ReinforcePpSettings;
    static const std::vector<KeySpec<S>> table = {
        real_key("kl_coef", &S::kl_coef, "KL coefficient in the reward (k1); 0: no reference", 0, 1e6),
        real_key("gamma", &S::gamma, "discount of the token returns", 0, 1),
    };
    return table;
  }
};

class ReinforcePp final : public CriticFreeMethod<ReinforcePp, ReinforcePpSettings> {
 public:
  static constexpr const char* method_name = "reinforce_pp";
  ReinforcePp() { group_.num_generations = 1; }
  const char* name() const override { return method_name; }
  bool uses_reference() const { return settings_.kl_coef > 0; }
  rlhf::CriticFreeConfig estimator() const {
    return {.advantage = rlhf::AdvantageEstimator::token_whitened,
            .scale_rewards = false,
            .beta = settings_.kl_coef,
            .kl_in_reward = true,
            .gamma = settings_.gamma};
  }
};

}  // namespace trainer
