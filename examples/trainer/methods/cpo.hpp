#pragma once
// rlhf-train cpo: Contrastive Preference Optimization and SimPO (TRL's CPOTrainer and CPOConfig): a DPO-style
// loss with no reference model, plus cpo_alpha times the chosen response's NLL. loss_type simpo is SimPO's
// length-normalised margin loss. Its losses are the library's DPO family (losses/dpo.hpp).
#include "offline.hpp"
#include "rlhf/algorithms/dpo.hpp"

namespace trainer {

struct CpoSettings {
  double beta = 0.1;
  std::string loss_type = "sigmoid";
  double label_smoothing = 0.0;
  double cpo_alpha = 1.0;    // weight of the chosen response's NLL (a token mean over the batch)
  double simpo_gamma = 0.5;  // SimPO's target reward margin

  static const std::vector<KeySpec<CpoSettings>>& keys() {
    using S = CpoSettings;
    static const std::vector<KeySpec<S>> table = {
        real_key("beta", &S::beta, "beta: the scale of the log-probability difference", 0, 1e6),
        choice_key("loss_type", &S::loss_type, "sigmoid and hinge on sums, ipo and simpo on token means",
                   {"sigmoid", "hinge", "ipo", "simpo"}),
        real_key("label_smoothing", &S::label_smoothing, "assumed label-flip probability (sigmoid, simpo)", 0,
                 rlhf::max_label_smoothing),
        real_key("cpo_alpha", &S::cpo_alpha, "weight of the chosen response's NLL; 0 with simpo: SimPO alone", 0, 1e6),
        real_key("simpo_gamma", &S::simpo_gamma, "SimPO's target reward margin (simpo only)", 0, 1e6),
    };
    return table;
  }

  // TRL's CPOTrainer: ipo and simpo take each response's mean log-probability, sigmoid and hinge its sum; the
  // margin is simpo_gamma (h = β (u_w − u_l) − γ); rewards/* are β u as the loss sees it.
  rlhf::DpoConfig loss_config() const {
    const bool simpo = loss_type == "simpo";
    return {.variant = loss_type == "hinge" ? rlhf::DpoVariant::hinge
                       : loss_type == "ipo" ? rlhf::DpoVariant::ipo
                                            : rlhf::DpoVariant::sigmoid,
            .beta = beta,
            .label_smoothing = label_smoothing,
            .margin = simpo ? simpo_gamma : 0.0,
            .length_normalize = simpo || loss_type == "ipo",
            .reference_free = true,
            .nll_weight = cpo_alpha,
            .nll_aggregation = rlhf::Aggregation::token_mean,
            .reward_metrics = rlhf::DpoRewardMetrics::as_loss};
  }
};

class Cpo final : public OfflineMethod<Cpo, CpoSettings> {
 public:
  static constexpr const char* method_name = "cpo";
  const char* name() const override { return method_name; }
  DataNeed data() const override {
    return {{DatasetType::preference, DatasetType::implicit_preference}, "preference pairs"};
  }
  std::vector<std::string> shown_metrics() const override { return {"rewards/accuracies"}; }
  double default_learning_rate() const override { return 1e-6; }
  void check(const TrainingArguments&) const override {
    if (settings_.beta <= 0) throw Refusal("beta: must be > 0 for cpo");
  }

  template <class M, class O>
  StepOutcome step(Session&, M& model, O& optimizer, const TokenizedDataset& data, Rows rows, Split,
                   const rlhf::StepOptions& options) {
    StepOutcome out;
    out.tokens = sequence_tokens(data, rows);
    out.result = rlhf::dpo_step(model, optimizer, rlhf::io::collate_preferences(data.rows, rows),
                                settings_.loss_config(), options);
    return out;
  }

};

}  // namespace trainer
