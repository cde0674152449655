#pragma once
// What rlhf-train asks of a method. Each method is one file under methods/ that implements this: its typed
// settings and their keys, the data it trains on, the models it needs beside the policy (a reference, a critic,
// a reward), its step and its evaluation, and what its checkpoints hold beyond the common state. registry.hpp
// lists the methods; nothing else in the trainer names one.
#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "rlhf/algorithms/step.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/io/dataset_formats.hpp"
#include "settings.hpp"
#include "training_args.hpp"

namespace trainer {

namespace fs = std::filesystem;

struct Session;
using Rows = std::span<const std::size_t>;  // indices of dataset rows

// What a step did, for the log.
struct StepOutcome {
  rlhf::StepResult result;
  double tokens = 0;  // sequence tokens processed (prompts and responses, every row)
};

// One evaluation batch's metrics and its eval_loss.
struct Evaluation {
  rlhf::Metrics metrics;
  double loss = 0;
};

// The dataset types a method trains on, and how to say so when a file is of another type.
struct DataNeed {
  std::vector<rlhf::io::DatasetType> types;
  const char* description;
};

class Method {
 public:
  virtual ~Method() = default;

  // ---- what it is ----
  virtual const char* name() const = 0;
  virtual DataNeed data() const = 0;
  virtual bool samples() const { return false; }      // trains on prompts, sampling its responses
  virtual std::size_t response_length() const { return 0; }  // the tokens it samples after each prompt
  virtual bool scalar_head() const { return false; }  // the policy is a reward model
  // The fewest rows a step or an evaluation batch may hold (KTO pairs each row with another's completion).
  virtual std::size_t min_rows() const { return 1; }
  // TRL's assistant_only_loss: of conversational rows, only the assistant's turns are scored.
  virtual bool assistant_only_loss() const { return false; }
  // Whether completions rendered by the model's own chat template get the end-of-sequence token appended
  // (TRL's DPOTrainer appends it; its SFTTrainer leaves the template's end-of-turn text as the end).
  virtual bool eos_after_template_turns() const { return true; }
  // The metrics the progress line shows after loss and lr.
  virtual std::vector<std::string> shown_metrics() const { return {}; }

  // ---- its settings ----
  // Its own keys, bound to this object (the shared ones are TrainingArguments').
  virtual std::vector<Key> keys() = 0;
  virtual double default_learning_rate() const = 0;
  // Where the user left a shared key at its default, the method's value.
  virtual void apply_defaults(TrainingArguments& args) const {
    if (!args.was_set("learning_rate")) args.learning_rate = default_learning_rate();
  }
  // The combinations that no single key's range can say; throws Refusal naming the key.
  virtual void check(const TrainingArguments&) const {}

  // ---- its run ----
  virtual void load_models(Session&) {}  // beside the policy: reference, critic, reward
  virtual void prepare(Session&) {}      // after a resume, before the first step
  virtual StepOutcome train_step(Session&, Rows rows, const rlhf::StepOptions& options) = 0;
  // The eval rows' metrics and loss, with no update; `step`: the training step it follows.
  virtual Evaluation evaluate(Session&, Rows rows, std::size_t step) = 0;
  // What a checkpoint holds beyond the policy, its optimizer, the schedule and the RNGs: files in `folder`
  // and keys of trainer_state.json.
  virtual void save(const Session&, const fs::path& /*folder*/, json& /*state*/) const {}
  virtual void restore(Session&, const fs::path& /*folder*/, const json& /*state*/) {}
};

}  // namespace trainer
