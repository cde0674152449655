#pragma once
// rlhf-train unlikelihood: the chosen response's likelihood up, the rejected one's tokens pushed down
// (docs/losses/unlikelihood.md).
#include "offline.hpp"
#include "rlhf/algorithms/unlikelihood.hpp"

namespace trainer {

struct UnlikelihoodSettings {
  double alpha = 1.0;  // weight of the rejected (unlikelihood) term

  static const std::vector<KeySpec<UnlikelihoodSettings>>& keys() {
    static const std::vector<KeySpec<UnlikelihoodSettings>> table = {
        real_key("alpha", &UnlikelihoodSettings::alpha, "weight of the unlikelihood term", 0, 1e6),
    };
    return table;
  }
};

class Unlikelihood final : public OfflineMethod<Unlikelihood, UnlikelihoodSettings> {
 public:
  static constexpr const char* method_name = "unlikelihood";
  const char* name() const override { return method_name; }
  DataNeed data() const override {
    return {{DatasetType::preference, DatasetType::implicit_preference}, "preference pairs"};
  }
  double default_learning_rate() const override { return 1e-5; }

  template <class M, class O>
  StepOutcome step(Session&, M& model, O& optimizer, const TokenizedDataset& data, Rows rows, Split,
                   const rlhf::StepOptions& options) {
    StepOutcome out;
    out.tokens = sequence_tokens(data, rows);
    out.result = rlhf::unlikelihood_step(model, optimizer, rlhf::io::collate_preferences(data.rows, rows),
                                         {.alpha = settings_.alpha}, options);
    return out;
  }

};

}  // namespace trainer
