#pragma once
// The settings every method shares, under the names of transformers' TrainingArguments and TRL's tokenisation
// keys: the model, the data, the output, the optimisation, logging and checkpoints. A method's own settings
// live in its file under methods/. docs/trainer.md has the table side by side with TRL's.
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "settings.hpp"

namespace trainer {

static_assert(std::is_same_v<std::uint64_t, std::size_t>, "seed keys are stored as std::size_t");

struct TrainingArguments {
  // ---- model, tokenizer, data, output ----
  std::string model_name_or_path;       // a folder: config.json + model.safetensors (+ tokenizer files)
  std::string model_config;             // or a GPT-2 config.json, to train from scratch
  std::string tokenizer_name_or_path;   // a folder (tokenizer.json | vocab.json + merges.txt | encoder.json +
                                        // vocab.bpe) or a SentencePiece .model; default: model_name_or_path
  std::string train_file, eval_file;    // JSON Lines in TRL's formats (docs/io/datasets.md)
  std::string output_dir = "trainer_output";
  bool overwrite_output_dir = false;    // a fresh run into a folder holding a run moves that run aside
  std::string resume_from_checkpoint;   // a checkpoint folder, or "latest": the newest under output_dir
  std::string chat_template;            // one message's template for conversational rows; "": the tokenizer's own
                                        // (tokenizer_config.json), else the default (io/chat_template.hpp)

  // ---- optimisation ----
  std::string optim = "adamw_torch";    // adamw_torch | rmsprop
  double learning_rate = 0;             // 0 here: the method's default
  std::size_t per_device_train_batch_size = 8;
  std::size_t per_device_eval_batch_size = 8;
  std::size_t gradient_accumulation_steps = 1;
  double num_train_epochs = 3.0;
  long long max_steps = -1;             // > 0: overrides num_train_epochs
  double max_grad_norm = 1.0;           // 0: no clipping
  double warmup_ratio = 0.0;
  std::size_t warmup_steps = 0;         // > 0: overrides warmup_ratio
  std::string lr_scheduler_type = "linear";  // linear | cosine | constant | constant_with_warmup
  double weight_decay = 0.0;
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_epsilon = 1e-8;
  std::uint64_t seed = 42;

  // ---- logging, evaluation, checkpoints ----
  std::size_t logging_steps = 10;
  std::size_t eval_steps = 0;           // 0: evaluate once, at the end (when there is an eval_file)
  std::size_t save_steps = 500;         // 0: no checkpoints but the last
  std::size_t save_total_limit = 0;     // 0: keep every checkpoint
  bool disable_tqdm = false;            // true: plain lines even on a terminal
  bool bf16 = false;                    // the models' matrix products in bf16 with float32 sums

  // ---- LoRA (TRL's ModelConfig; PEFT's LoraConfig, docs/models/lora.md) ----
  bool use_peft = false;                // train LoRA adapters on a frozen base; the reference is the base
  std::size_t lora_r = 16;
  double lora_alpha = 32;
  double lora_dropout = 0.05;
  std::string lora_target_modules;      // comma-joined names; "": PEFT's default for the family
  std::string lora_modules_to_save;     // comma-joined; a reward model adds "score"
  bool use_rslora = false;

  // ---- tokenisation (TRL's truncation) ----
  std::size_t max_length = 1024;
  std::size_t max_prompt_length = 512;  // 0: no limit
  std::size_t max_completion_length = 0;
  std::string truncation_mode = "keep_end";  // of the prompt: keep_end | keep_start

  std::vector<std::string> set_keys;    // the keys the file or the command line gave, any owner, in order
  bool was_set(const std::string& key) const {
    for (const auto& k : set_keys)
      if (k == key) return true;
    return false;
  }

  static const std::vector<KeySpec<TrainingArguments>>& keys() {
    using A = TrainingArguments;
    static const std::vector<KeySpec<A>> table = {
        text_key("model_name_or_path", &A::model_name_or_path, "model folder: config.json + model.safetensors"),
        text_key("model_config", &A::model_config, "a GPT-2 config.json, to train a fresh model instead"),
        text_key("tokenizer_name_or_path", &A::tokenizer_name_or_path,
                 "tokenizer folder or SentencePiece .model (default: the model folder)"),
        text_key("train_file", &A::train_file, "training data, JSON Lines in a TRL format"),
        text_key("eval_file", &A::eval_file, "evaluation data, same format (optional)"),
        text_key("output_dir", &A::output_dir, "where the model, checkpoints and metrics go"),
        flag_key("overwrite_output_dir", &A::overwrite_output_dir,
                 "a fresh run into an output_dir that holds a run moves that run aside (else it is refused)"),
        text_key("resume_from_checkpoint", &A::resume_from_checkpoint,
                 "a checkpoint folder, or 'latest' (the newest under output_dir)"),
        text_key("chat_template", &A::chat_template,
                 "one message's template for conversational rows, {role} {content} (default: the tokenizer's own)"),
        choice_key("optim", &A::optim, "the optimizer: AdamW, or RMSprop (torch's defaults; the DPO paper's)",
                   {"adamw_torch", "rmsprop"}),
        float_key("learning_rate", &A::learning_rate, "peak learning rate (default: the method's)", 1e-30, 10),
        count_key("per_device_train_batch_size", &A::per_device_train_batch_size, "rows per micro-batch", 1, 1 << 20),
        count_key("per_device_eval_batch_size", &A::per_device_eval_batch_size, "rows per evaluation batch", 1, 1 << 20),
        count_key("gradient_accumulation_steps", &A::gradient_accumulation_steps, "micro-batches per optimizer step", 1,
                  1 << 20),
        real_key("num_train_epochs", &A::num_train_epochs, "passes over train_file (fractions allowed)", 0, 1e6),
        signed_key("max_steps", &A::max_steps, "> 0: this many optimizer steps, overriding num_train_epochs", -1, 1e12),
        real_key("max_grad_norm", &A::max_grad_norm, "clip the gradient's global norm to this; 0: no clipping", 0, 1e12),
        real_key("warmup_ratio", &A::warmup_ratio, "share of the steps spent warming up", 0, 1),
        count_key("warmup_steps", &A::warmup_steps, "> 0: warm-up steps, overriding warmup_ratio", 0, 1e12),
        choice_key("lr_scheduler_type", &A::lr_scheduler_type, "learning-rate schedule",
                   {"linear", "cosine", "constant", "constant_with_warmup"}),
        float_key("weight_decay", &A::weight_decay, "AdamW's decoupled weight decay", 0, 10),
        float_key("adam_beta1", &A::adam_beta1, "AdamW beta1", 0, 0.999999),
        float_key("adam_beta2", &A::adam_beta2, "AdamW beta2", 0, 0.999999999),
        float_key("adam_epsilon", &A::adam_epsilon, "AdamW epsilon", 1e-30, 1),
        seed_key("seed", &A::seed, "seed of the model's initialisation, the data order and sampling"),
        flag_key("bf16", &A::bf16,
                 "matrix products in bf16 with float32 sums and float32 weights (AVX-512 BF16, else float32 speed)"),
        count_key("logging_steps", &A::logging_steps, "a metrics line every N steps", 1, 1e12),
        count_key("eval_steps", &A::eval_steps, "an evaluation every N steps; 0: only at the end", 0, 1e12),
        count_key("save_steps", &A::save_steps, "a checkpoint every N steps; 0: only the last", 0, 1e12),
        count_key("save_total_limit", &A::save_total_limit, "keep at most N checkpoints (the newest); 0: all", 0, 1e12),
        flag_key("disable_tqdm", &A::disable_tqdm, "plain progress lines even on a terminal"),
        flag_key("use_peft", &A::use_peft, "train LoRA adapters on the frozen model; the reference is it without them"),
        count_key("lora_r", &A::lora_r, "LoRA rank", 1, 4096),
        real_key("lora_alpha", &A::lora_alpha, "LoRA scale numerator (scale alpha/r, or alpha/sqrt(r) with use_rslora)",
                 1e-12, 1e12),
        real_key("lora_dropout", &A::lora_dropout, "dropout on the adapters' input while training", 0, 0.999999),
        names_key("lora_target_modules", &A::lora_target_modules,
                  "PEFT module names to adapt, or all-linear (default: q_proj,v_proj; GPT-2: c_attn)"),
        names_key("lora_modules_to_save", &A::lora_modules_to_save,
                  "modules trained in full beside the adapters (a reward model's score is added)"),
        flag_key("use_rslora", &A::use_rslora, "scale alpha/sqrt(r) (rank-stabilised LoRA)"),
        count_key("max_length", &A::max_length, "tokens per sequence, prompt included", 2, 1 << 20),
        count_key("max_prompt_length", &A::max_prompt_length, "prompt tokens kept; 0: no limit", 0, 1 << 20),
        count_key("max_completion_length", &A::max_completion_length, "completion tokens kept; 0: no limit", 0, 1 << 20),
        choice_key("truncation_mode", &A::truncation_mode, "which end of a long prompt is kept",
                   {"keep_end", "keep_start"}),
    };
    return table;
  }
};

// The combinations of shared keys that no single key's range can say. `samples`: the method samples its
// responses (prompts only in the data).
inline void check_training_arguments(const TrainingArguments& a, bool samples) {
  const auto refuse = [](const std::string& key, const std::string& why) { throw Refusal(key + ": " + why); };
  if (a.train_file.empty()) refuse("train_file", "is required");
  if (a.model_name_or_path.empty() == a.model_config.empty())
    refuse("model_name_or_path", "give exactly one of model_name_or_path (a model folder) and model_config (a fresh model)");
  if (!a.model_config.empty() && a.tokenizer_name_or_path.empty())
    refuse("tokenizer_name_or_path", "is required with model_config (a fresh model has no tokenizer files)");
  if (a.output_dir.empty()) refuse("output_dir", "must not be empty");
  if (a.max_steps == 0) refuse("max_steps", "must be > 0, or -1 to use num_train_epochs");
  if (a.max_steps < 0 && !(a.num_train_epochs > 0)) refuse("num_train_epochs", "must be > 0 when max_steps is -1");
  if (a.optim == "rmsprop")
    for (const char* key : {"adam_beta1", "adam_beta2", "adam_epsilon"})
      if (a.was_set(key)) refuse(key, "is an AdamW setting, but optim is rmsprop");
  if (!a.use_peft)
    for (const char* key : {"lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_modules_to_save",
                            "use_rslora"})
      if (a.was_set(key)) refuse(key, "is a LoRA setting, but use_peft is false");
  if (a.max_prompt_length >= a.max_length && a.max_prompt_length != 0 && !samples)
    refuse("max_prompt_length", "must be below max_length (" + std::to_string(a.max_length) + ") to leave room for a completion");
}

}  // namespace trainer
