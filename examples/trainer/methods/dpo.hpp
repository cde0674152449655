#pragma once
// rlhf-train dpo: Direct Preference Optimization on preference pairs (TRL's DPOTrainer and DPOConfig), or listwise
// DPO (Plackett–Luce over the implicit rewards) on ranked lists.
#include "offline.hpp"
#include "rlhf/algorithms/dpo.hpp"

namespace trainer {

struct DpoSettings {
  double beta = 0.1;
  std::string loss_type = "sigmoid";
  double label_smoothing = 0.0;
  bool precompute_ref_log_probs = false;
  bool reference_free = false;
  double rpo_alpha = 0.0;  // weight of the NLL of the chosen response (0: off)

  static const std::vector<KeySpec<DpoSettings>>& keys() {
    using S = DpoSettings;
    static const std::vector<KeySpec<S>> table = {
        real_key("beta", &S::beta, "beta: the strength of the implicit KL constraint", 0, 1e6),
        choice_key("loss_type", &S::loss_type, "the DPO loss", {"sigmoid", "robust", "hinge", "ipo"}),
        real_key("label_smoothing", &S::label_smoothing, "assumed label-flip probability", 0,
                 rlhf::max_label_smoothing),
        flag_key("precompute_ref_log_probs", &S::precompute_ref_log_probs,
                 "score the data with the reference once, before training"),
        flag_key("reference_free", &S::reference_free, "DPO without the reference (uniform)"),
        real_key("rpo_alpha", &S::rpo_alpha, "weight of the chosen response's NLL in DPO", 0, 1e6),
    };
    return table;
  }

  rlhf::DpoConfig loss_config() const {
    return {.variant = loss_type == "robust" ? rlhf::DpoVariant::robust
                       : loss_type == "hinge" ? rlhf::DpoVariant::hinge
                       : loss_type == "ipo"   ? rlhf::DpoVariant::ipo
                                              : rlhf::DpoVariant::sigmoid,
            .beta = beta,
            .label_smoothing = label_smoothing,
            .reference_free = reference_free,
            .nll_weight = rpo_alpha,
            .nll_aggregation = rlhf::Aggregation::token_mean,  // TRL's rpo_alpha
            .reward_metrics = rlhf::DpoRewardMetrics::raw};     // TRL DPOTrainer's rewards/*
  }
};

class Dpo final : public OfflineMethod<Dpo, DpoSettings> {
 public:
  static constexpr const char* method_name = "dpo";
  const char* name() const override { return method_name; }
  DataNeed data() const override {
    using T = DatasetType;
    return {{T::preference, T::implicit_preference, T::ranked}, "preference pairs or rankings"};
  }
  std::vector<std::string> shown_metrics() const override { return {"rewards/accuracies"}; }
  double default_learning_rate() const override { return 1e-6; }
  void check(const TrainingArguments&) const override {
    if (settings_.beta <= 0) throw Refusal("beta: must be > 0 for dpo");
    if (settings_.reference_free && settings_.precompute_ref_log_probs)
      throw Refusal("precompute_ref_log_probs: has nothing to compute with reference_free");
  }

  void load_models(Session& s) override {
    if (!settings_.reference_free) reference_.emplace(s.reference_model());
  }
  // precompute_ref_log_probs: the reference's Σ log π of every pair's two responses, in fixed batches; the
  // reference is then freed.
  void prepare(Session& s) override {
    if (!settings_.precompute_ref_log_probs || s.ranked()) return;
    precompute(s, s.train, train_reference_);
    if (s.eval.size()) precompute(s, s.eval, eval_reference_);
    reference_.reset();
  }

  template <class M, class O>
  StepOutcome step(Session& s, M& model, O& optimizer, const TokenizedDataset& data, Rows rows, Split split,
                   const rlhf::StepOptions& options) {
    StepOutcome out;
    out.tokens = sequence_tokens(data, rows);
    if (s.ranked()) {
      const auto batch = rlhf::io::collate_ranked(data.rows, rows);
      const rlhf::ListwiseDpoConfig lc{.beta = settings_.beta, .reference_free = settings_.reference_free};
      out.result = settings_.reference_free
                       ? rlhf::listwise_dpo_step(model, optimizer, batch, lc, options)
                       : rlhf::listwise_dpo_step(model, *reference_, optimizer, batch, lc, options);
      return out;
    }
    auto batch = rlhf::io::collate_preferences(data.rows, rows);
    const auto& precomputed = split == Split::eval ? eval_reference_ : train_reference_;
    if (!precomputed.chosen.empty())
      for (const auto i : rows)
        batch.reference_chosen.push_back(precomputed.chosen[i]),
            batch.reference_rejected.push_back(precomputed.rejected[i]);
    const auto dc = settings_.loss_config();
    out.result = !batch.reference_chosen.empty() || settings_.reference_free
                     ? rlhf::dpo_step(model, optimizer, batch, dc, options)
                     : rlhf::dpo_step(model, *reference_, optimizer, batch, dc, options);
    return out;
  }

 private:
  struct ReferenceSums {  // per dataset row
    std::vector<double> chosen, rejected;
  };
  void precompute(const Session& s, const TokenizedDataset& d, ReferenceSums& out) {
    out = {};
    const std::size_t bs = s.args.per_device_eval_batch_size;
    for (std::size_t lo = 0; lo < d.size(); lo += bs) {
      std::vector<std::size_t> rows;
      for (std::size_t i = lo; i < std::min(d.size(), lo + bs); ++i) rows.push_back(i);
      auto b = rlhf::io::collate_preferences(d.rows, rows);
      rlhf::precompute_reference_logps(*reference_, b);
      out.chosen.insert(out.chosen.end(), b.reference_chosen.begin(), b.reference_chosen.end());
      out.rejected.insert(out.rejected.end(), b.reference_rejected.begin(), b.reference_rejected.end());
    }
  }

  std::optional<Model> reference_;
  ReferenceSums train_reference_, eval_reference_;
};

}  // namespace trainer
