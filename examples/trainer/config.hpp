#pragma once
// The settings of one rlhf-train run, under the names TRL's configs give them (TrainingArguments, SFTConfig,
// DPOConfig, RewardConfig, PPOConfig), read from a JSON file and `--key value` overrides. docs/trainer.md has the
// table side by side with TRL's.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace trainer {

enum class Method { sft, dpo, reward, ppo, unlikelihood, grpo, rloo, reinforce_pp, kto, orpo };
inline constexpr const char* method_names[] = {"sft",  "dpo",  "reward",       "ppo", "unlikelihood",
                                               "grpo", "rloo", "reinforce_pp", "kto", "orpo"};
inline constexpr const char* method_list = "sft, dpo, reward, ppo, unlikelihood, grpo, rloo, reinforce_pp, kto or orpo";
inline const char* name_of(Method m) { return method_names[static_cast<int>(m)]; }
// The methods that sample from the policy and score with a reward (PPO and the critic-free ones).
inline bool is_online(Method m) { return m == Method::ppo || m == Method::grpo || m == Method::rloo || m == Method::reinforce_pp; }
inline bool is_critic_free(Method m) { return m == Method::grpo || m == Method::rloo || m == Method::reinforce_pp; }

struct Config {
  Method method = Method::sft;

  // ---- model, tokenizer, data, output ----
  std::string model_name_or_path;       // a folder: config.json + model.safetensors (+ tokenizer files)
  std::string model_config;             // or a GPT-2 config.json, to train from scratch
  std::string tokenizer_name_or_path;   // a folder (tokenizer.json | vocab.json + merges.txt | encoder.json +
                                        // vocab.bpe) or a SentencePiece .model; default: model_name_or_path
  std::string train_file, eval_file;    // JSON Lines in TRL's formats (docs/io/datasets.md)
  std::string output_dir = "trainer_output";
  std::string resume_from_checkpoint;   // a checkpoint folder, or "latest": the newest under output_dir
  std::string chat_template;            // for conversational rows; "" = the default template (io/chat_template.hpp)

  // ---- optimisation ----
  double learning_rate = 0;             // 0 here: the method's default (method_defaults)
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

  // ---- tokenisation (TRL's truncation) ----
  std::size_t max_length = 1024;
  std::size_t max_prompt_length = 512;  // 0: no limit
  std::size_t max_completion_length = 0;
  std::string truncation_mode = "keep_end";  // of the prompt: keep_end | keep_start

  // ---- DPO ----
  double beta = 0.1;
  std::string loss_type = "sigmoid";    // dpo: sigmoid | robust | hinge | ipo; grpo: grpo | bnpo | dr_grpo
  double label_smoothing = 0.0;
  bool precompute_ref_log_probs = false;
  bool reference_free = false;
  double rpo_alpha = 0.0;               // weight of the NLL of the chosen response (0: off)

  // ---- KTO (beta above is KTO's too; ORPO's beta is its λ) ----
  double desirable_weight = 1.0, undesirable_weight = 1.0;

  // ---- reward model ----
  double center_rewards_coefficient = 0.0;

  // ---- unlikelihood ----
  double alpha = 1.0;                   // weight of the rejected (unlikelihood) term

  // ---- PPO ----
  std::string reward_model_path;        // a reward-model folder (rlhf-train reward's output), or "vader"
  std::string vader_lexicon;            // VADER's vader_lexicon.txt (npm vader-sentiment); default: third_party/npm
  std::size_t num_ppo_epochs = 4;
  std::size_t num_mini_batches = 1;
  double kl_coef = 0.05;
  bool adaptive_kl = false;             // the adaptive controller of Ziegler et al. (kl_target, kl_horizon)
  double kl_target = 6.0, kl_horizon = 10000.0;
  std::string kl_estimator = "k1";      // k1 | k3
  double cliprange = 0.2, cliprange_value = 0.2;
  double gamma = 1.0, lam = 0.95;
  std::size_t response_length = 53;
  double temperature = 0.7;

  // ---- GRPO, RLOO, REINFORCE++ (algorithms/critic_free.hpp) ----
  std::size_t num_generations = 8;      // G completions per prompt
  bool scale_rewards = true;            // GRPO: divide by the group's std
  double epsilon = 0.2, epsilon_high = 0.0;  // the ratio's clip below / above 1 (0: epsilon)
  std::size_t num_iterations = 1;       // μ: passes over each rollout
  bool drop_uniform_groups = false;     // DAPO's dynamic sampling

  std::vector<std::string> set_keys;    // the keys the file or the command line gave, in order
  bool was_set(const std::string& key) const;
};

// Fills in what depends on the method (learning_rate, DPO's max_length ...) where the user left the default.
void apply_method_defaults(Config& c);

// What parse_arguments decided.
struct Parsed {
  int exit_code = -1;  // -1: go on and train; else exit now with it (0 after --help, 2 on a refused argument)
  Config config;
};

// argv: rlhf-train <method> [--config FILE.json] [--key value ...]. Every key is checked (name, type, range and
// the combinations) before any work; a refusal prints one line naming the key and returns exit code 2.
Parsed parse_arguments(int argc, char** argv);

// The settings as a JSON object (every key), for trainer_config.json in the output folder.
std::string to_json(const Config& c);

}  // namespace trainer
