#pragma once
// rlhf-train kto: Kahneman–Tversky Optimization on unpaired rows {prompt, completion, label} (TRL's KTOTrainer).
// Its reference point pairs each prompt with another row's completion, so a step needs at least 2 rows.
#include "offline.hpp"
#include "rlhf/algorithms/kto.hpp"

namespace trainer {

struct KtoSettings {
  double beta = 0.1;
  double desirable_weight = 1.0, undesirable_weight = 1.0;

  static const std::vector<KeySpec<KtoSettings>>& keys() {
    using S = KtoSettings;
    static const std::vector<KeySpec<S>> table = {
        real_key("beta", &S::beta, "beta: the strength of the implicit KL constraint", 0, 1e6),
        real_key("desirable_weight", &S::desirable_weight, "KTO's lambda_D", 0, 1e6),
        real_key("undesirable_weight", &S::undesirable_weight, "KTO's lambda_U", 0, 1e6),
    };
    return table;
  }
};

class Kto final : public OfflineMethod<Kto, KtoSettings> {
 public:
  static constexpr const char* method_name = "kto";
  const char* name() const override { return method_name; }
  DataNeed data() const override {
    return {{DatasetType::unpaired_preference}, "unpaired preference rows ({prompt, completion, label})"};
  }
  std::size_t min_rows() const override { return 2; }
  double default_learning_rate() const override { return 1e-6; }
  void check(const TrainingArguments& a) const override {
    if (a.per_device_eval_batch_size < 2)
      throw Refusal("per_device_eval_batch_size: kto needs at least 2 rows per evaluation batch (its reference point "
                    "pairs each prompt with another row's completion)");
    if (settings_.beta <= 0) throw Refusal("beta: must be > 0 for kto");
    if (a.per_device_train_batch_size * a.gradient_accumulation_steps < 2)
      throw Refusal("per_device_train_batch_size: kto needs at least 2 rows per step (its reference point pairs each "
                    "prompt with another row's completion)");
  }
  void load_models(Session& s) override { reference_.emplace(s.reference_model()); }

  template <class M, class O>
  StepOutcome step(Session& s, M& model, O& optimizer, const TokenizedDataset& data, Rows rows, Split,
                   const rlhf::StepOptions& options) {
    StepOutcome out;
    out.tokens = sequence_tokens(data, rows);
    const rlhf::KtoConfig kc{.beta = settings_.beta,
                             .desirable_weight = settings_.desirable_weight,
                             .undesirable_weight = settings_.undesirable_weight};
    const auto batch = rlhf::io::collate_unpaired(data.rows, rows, s.policy->max_seq_len());
    out.result = rlhf::kto_step(model, *reference_, optimizer, batch, kc, options);
    return out;
  }

 private:
  std::optional<Model> reference_;
};

}  // namespace trainer
