#pragma once
// rlhf-train orpo: Odds Ratio Preference Optimization on preference pairs, with no reference model (TRL's
// ORPOTrainer; its `beta` is the weight λ of the odds-ratio term).
#include "offline.hpp"
#include "rlhf/algorithms/orpo.hpp"

namespace trainer {

struct OrpoSettings {
  double beta = 0.1;  // λ

  static const std::vector<KeySpec<OrpoSettings>>& keys() {
    static const std::vector<KeySpec<OrpoSettings>> table = {
        real_key("beta", &OrpoSettings::beta, "the weight lambda of the odds-ratio term", 0, 1e6),
    };
    return table;
  }
};

class Orpo final : public OfflineMethod<Orpo, OrpoSettings> {
 public:
  static constexpr const char* method_name = "orpo";
  const char* name() const override { return method_name; }
  DataNeed data() const override {
    return {{DatasetType::preference, DatasetType::implicit_preference}, "preference pairs"};
  }
  double default_learning_rate() const override { return 1e-6; }

  template <class M, class O>
  StepOutcome step(Session&, M& model, O& optimizer, const TokenizedDataset& data, Rows rows, Split,
                   const rlhf::StepOptions& options) {
    StepOutcome out;
    out.tokens = sequence_tokens(data, rows);
    out.result = rlhf::orpo_step(model, optimizer, rlhf::io::collate_preferences(data.rows, rows),
                                 {.lambda = settings_.beta}, options);
    return out;
  }

};

}  // namespace trainer
