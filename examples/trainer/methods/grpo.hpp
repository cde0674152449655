#pragma once
// rlhf-train grpo: Group Relative Policy Optimization (TRL's GRPOTrainer and GRPOConfig): each completion's
// advantage is its reward against its group's, β·k3 to the reference as a loss term.
#include "critic_free.hpp"

namespace trainer {

struct GrpoSettings {
  double beta = 0.04;  // the KL coefficient (DeepSeekMath's 0.04; current TRL's 0)
  std::string loss_type = "grpo";
  bool scale_rewards = true;

  static const std::vector<KeySpec<GrpoSettings>>& keys() {
    using S = GrpoSettings;
    static const std::vector<KeySpec<S>> table = {
        real_key("beta", &S::beta, "the KL coefficient (a beta k3 loss term; 0: no reference)", 0, 1e6),
        choice_key("loss_type", &S::loss_type,
                   "grpo: each completion's token mean; bnpo: the batch's token mean; dr_grpo: token sums over "
                   "response_length",
                   {"grpo", "bnpo", "dr_grpo"}),
        flag_key("scale_rewards", &S::scale_rewards, "divide advantages by the group's std"),
    };
    return table;
  }
};

class Grpo final : public CriticFreeMethod<Grpo, GrpoSettings> {
 public:
  static constexpr const char* method_name = "grpo";
  const char* name() const override { return method_name; }
  void check(const TrainingArguments& a) const override {
    CriticFreeMethod::check(a);
    if (group_.num_generations < 2)
      throw Refusal("num_generations: grpo's group baseline needs at least 2 completions per prompt (with 1 every "
                    "advantage is 0)");
  }
  bool uses_reference() const { return settings_.beta > 0; }
  rlhf::CriticFreeConfig estimator() const {
    rlhf::CriticFreeConfig f{.advantage = rlhf::AdvantageEstimator::group,
                             .scale_rewards = settings_.scale_rewards,
                             .beta = settings_.beta};
    f.policy.aggregation = settings_.loss_type == "bnpo"      ? rlhf::Aggregation::token_mean
                           : settings_.loss_type == "dr_grpo" ? rlhf::Aggregation::sequence_sum
                                                              : rlhf::Aggregation::sequence_mean;
    f.policy.max_tokens = double(online_.response_length);
    return f;
  }
};

}  // namespace trainer
