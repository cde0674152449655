#pragma once
// rlhf-train reward: a reward model (a scalar head on the policy's trunk) trained with Bradley–Terry on pairs,
// with each row's margin where the file has one (TRL's RewardTrainer), or Plackett–Luce on ranked lists.
#include "offline.hpp"
#include "rlhf/algorithms/reward_model.hpp"

namespace trainer {

struct RewardSettings {
  double center_rewards_coefficient = 0.0;
  double label_smoothing = 0.0;

  static const std::vector<KeySpec<RewardSettings>>& keys() {
    using S = RewardSettings;
    static const std::vector<KeySpec<S>> table = {
        real_key("label_smoothing", &S::label_smoothing, "assumed label-flip probability", 0,
                 rlhf::max_label_smoothing),
        real_key("center_rewards_coefficient", &S::center_rewards_coefficient, "weight of (r_w + r_l)^2", 0, 1e6),
    };
    return table;
  }
};

class Reward final : public OfflineMethod<Reward, RewardSettings> {
 public:
  static constexpr const char* method_name = "reward";
  const char* name() const override { return method_name; }
  DataNeed data() const override {
    using T = DatasetType;
    return {{T::preference, T::implicit_preference, T::ranked}, "preference pairs or rankings"};
  }
  bool scalar_head() const override { return true; }
  std::vector<std::string> shown_metrics() const override { return {"rewards/accuracies"}; }
  double default_learning_rate() const override { return 1e-5; }

  template <class M, class O>
  StepOutcome step(Session& s, M& model, O& optimizer, const TokenizedDataset& data, Rows rows, Split,
                   const rlhf::StepOptions& options) {
    StepOutcome out;
    out.tokens = sequence_tokens(data, rows);
    if (s.ranked()) {
      out.result = rlhf::reward_model_step(model, optimizer, rlhf::io::collate_ranked(data.rows, rows), {}, options);
    } else {
      const rlhf::BradleyTerryConfig bc{.label_smoothing = settings_.label_smoothing,
                                        .center_coefficient = settings_.center_rewards_coefficient};
      const auto batch = rlhf::io::collate_preferences(data.rows, rows);
      out.result = rlhf::reward_model_step(model, optimizer, batch, bc, options);
    }
    return out;
  }

};

}  // namespace trainer
