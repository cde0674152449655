#pragma once
// Every setting of the sentiment-frontier sweep, and the three sizes it comes in:
//   tiny    : seconds; the tests' configuration (a few dozen texts, a toy GPT, 2 steps per method)
//   reduced : scripts/demo.sh; minutes on 2 CPU cores (docs/experiments/sentiment.md has the timings)
//   full    : scripts/demo.sh --full; the lecture's whole sweep (every β and α, more PPO settings, 3 seeds)
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "rlhf/models/gpt_host/config.hpp"

namespace sentiment {

struct DataConfig {
  std::filesystem::path fortunes_dir = "/usr/share/games/fortunes";
  std::filesystem::path reviews_dir;  // npm sentiment@5.0.2's test/fixtures
  std::filesystem::path lexicon;      // npm vader-sentiment@1.1.3's vader_lexicon.txt
  std::size_t max_fortunes = 0;       // 0: all of them
  std::size_t max_reviews = 0;        // 0: all of them (after the split, per side)
  double held_out_fraction = 0.3;     // reviews kept out of SFT: the prompts come from them
};

struct SftSettings {
  std::size_t vocab_size = 2000;  // SentencePiece BPE pieces
  std::size_t channels = 128, layers = 2, heads = 4, max_seq_len = 48;
  std::size_t fortune_steps = 400, review_steps = 200, batch = 16;
  float learning_rate = 2e-3f;
};

struct PairSettings {
  std::size_t train_prompts = 256;  // N prompts, 4 completions each, 6 pairs each
  std::size_t eval_prompts = 64;    // held-out prompts of the evaluation
  std::size_t completions = 4;
  std::size_t min_prompt_tokens = 2, max_prompt_tokens = 8;
  std::size_t max_new_tokens = 24;
  float temperature = 1.0f;
};

struct TrainSettings {
  std::size_t steps = 120, batch = 16, checkpoint_every = 30;
  float learning_rate = 2.5e-4f;  // DPO, unlikelihood, preferred-FT (several passes over one fixed set of pairs)
  std::vector<float> dpo_betas{0.05f, 0.1f, 1.0f, 5.0f};
  std::vector<float> unlikelihood_alphas{0.05f, 0.1f, 0.5f, 1.0f};
  bool preferred_ft = true;
  // PPO: a fixed KL coefficient κ per run (the reward is in [0, 1]; the learned one is standardised).
  std::vector<float> ppo_rm_kl_coefs{0.05f, 0.2f};
  std::vector<float> ppo_gt_kl_coefs{0.05f, 0.2f};
  // GRPO (β·k3 as a loss term) and RLOO (KL in the reward) with the ground-truth reward, G samples per prompt
  // (pairs.completions) and ppo_batch / G prompts per step: the same samples per step as PPO, no critic.
  std::vector<float> grpo_gt_betas{0.05f, 0.2f};
  std::vector<float> rloo_gt_kl_coefs{0.05f, 0.2f};
  std::size_t ppo_steps = 48, ppo_batch = 16, ppo_epochs = 2, ppo_checkpoint_every = 12;
  float ppo_learning_rate = 5e-4f;
  std::size_t reward_model_steps = 150;
  float reward_model_learning_rate = 5e-4f;
};

struct EvalSettings {
  std::size_t samples_per_prompt = 2;
  std::size_t bootstrap_resamples = 2000;  // for the 95% intervals over prompts (milliseconds per checkpoint)
};

struct SweepConfig {
  std::string name = "reduced";
  DataConfig data;
  SftSettings sft;
  PairSettings pairs;
  TrainSettings train;
  EvalSettings eval;
  std::vector<std::uint64_t> seeds{1};  // one training run per method, setting and seed
  bool bf16 = false;  // SFT, the reward model and every training run with bf16 products (evaluation stays float32)
  std::uint64_t data_seed = 0;          // SFT, sampling the pairs, the evaluation prompts

  rlhf::GptConfig gpt(std::size_t vocab) const {
    return {.vocab_size = vocab, .max_seq_len = sft.max_seq_len, .channels = sft.channels, .layers = sft.layers,
            .heads = sft.heads};
  }
};

inline SweepConfig reduced_config() { return {}; }

inline SweepConfig full_config() {
  SweepConfig c;
  c.name = "full";
  c.sft.channels = 192;
  c.sft.layers = 3;
  c.sft.heads = 6;
  c.sft.fortune_steps = 3000;
  c.sft.review_steps = 1000;
  c.pairs.train_prompts = 700;
  c.pairs.eval_prompts = 128;
  c.train.steps = 400;
  c.train.checkpoint_every = 50;
  c.train.dpo_betas = {0.05f, 0.1f, 0.3f, 1.0f, 2.0f, 5.0f};
  c.train.ppo_rm_kl_coefs = {0.02f, 0.05f, 0.1f, 0.2f, 0.5f};
  c.train.ppo_gt_kl_coefs = {0.02f, 0.05f, 0.1f, 0.2f, 0.5f};
  c.train.grpo_gt_betas = {0.02f, 0.05f, 0.1f, 0.2f, 0.5f};
  c.train.rloo_gt_kl_coefs = {0.02f, 0.05f, 0.1f, 0.2f, 0.5f};
  c.train.ppo_steps = 150;
  c.train.ppo_checkpoint_every = 25;
  c.train.reward_model_steps = 600;
  c.eval.samples_per_prompt = 4;
  c.seeds = {1, 2, 3};
  return c;
}

// The tests' configuration: every phase and method runs, on a handful of texts and a toy GPT.
inline SweepConfig tiny_config() {
  SweepConfig c;
  c.name = "tiny";
  c.data.max_fortunes = 40;
  c.data.max_reviews = 30;
  // enough review steps at a high rate that the toy model repeats review words, so VADER's scores differ
  c.sft = {.vocab_size = 200, .channels = 16, .layers = 1, .heads = 2, .max_seq_len = 32,
           .fortune_steps = 4, .review_steps = 40, .batch = 8, .learning_rate = 1e-2f};
  c.pairs = {.train_prompts = 8, .eval_prompts = 4, .completions = 4, .min_prompt_tokens = 2, .max_prompt_tokens = 4,
             .max_new_tokens = 10, .temperature = 1.0f};
  c.train.steps = 2;
  c.train.batch = 4;
  c.train.checkpoint_every = 1;
  c.train.dpo_betas = {0.1f, 1.0f};
  c.train.unlikelihood_alphas = {0.5f};
  c.train.ppo_rm_kl_coefs = {0.1f};
  c.train.ppo_gt_kl_coefs = {0.1f};
  c.train.grpo_gt_betas = {0.1f};
  c.train.rloo_gt_kl_coefs = {0.1f};
  c.train.ppo_steps = 2;
  c.train.ppo_batch = 3;
  c.train.ppo_epochs = 1;
  c.train.ppo_checkpoint_every = 1;
  c.train.reward_model_steps = 2;
  c.eval.samples_per_prompt = 1;
  return c;
}

inline SweepConfig config_named(const std::string& name) {
  if (name == "reduced") return reduced_config();
  if (name == "full") return full_config();
  if (name == "tiny") return tiny_config();
  throw std::invalid_argument("unknown sweep '" + name + "' (reduced, full or tiny)");
}

}  // namespace sentiment
