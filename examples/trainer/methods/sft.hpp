#pragma once
// rlhf-train sft: supervised fine-tuning on each row's (best) completion after its prompt (TRL's SFTTrainer).
#include "offline.hpp"
#include "rlhf/algorithms/sft.hpp"

namespace trainer {

struct SftSettings {
  bool assistant_only_loss = false;

  static const std::vector<KeySpec<SftSettings>>& keys() {
    using S = SftSettings;
    static const std::vector<KeySpec<S>> table = {
        flag_key("assistant_only_loss", &S::assistant_only_loss,
                 "score only the assistant's turns of conversational rows (as the chat template marks them)"),
    };
    return table;
  }
};

class Sft final : public OfflineMethod<Sft, SftSettings> {
 public:
  static constexpr const char* method_name = "sft";
  const char* name() const override { return method_name; }
  DataNeed data() const override {  // every type with a sequence to learn (the chosen one, the best one)
    using T = DatasetType;
    return {{T::language_modeling, T::prompt_completion, T::preference, T::implicit_preference,
             T::unpaired_preference, T::ranked},
            "rows with a completion (a prompt-only file has nothing to learn)"};
  }
  double default_learning_rate() const override { return 2e-5; }
  bool assistant_only_loss() const override { return settings_.assistant_only_loss; }
  bool eos_after_template_turns() const override { return false; }  // TRL: the template ends each turn
  void apply_defaults(TrainingArguments& a) const override {
    Method::apply_defaults(a);
    if (!a.was_set("max_prompt_length")) a.max_prompt_length = 0;  // the whole row is learned, prompt included
  }

  template <class M, class O>
  StepOutcome step(Session&, M& model, O& optimizer, const TokenizedDataset& data, Rows rows, Split,
                   const rlhf::StepOptions& options) {
    StepOutcome out;
    for (const auto i : rows) out.tokens += double(data.rows[i].prompt.size() + data.rows[i].completions[0].size());
    out.result = rlhf::sft_step(model, optimizer, rlhf::io::collate_sft(data.rows, rows),
                                {.aggregation = rlhf::Aggregation::token_mean}, options);
    return out;
  }
};

}  // namespace trainer
