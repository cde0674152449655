#pragma once
// What the methods that sample share (PPO and the critic-free ones): their common keys, the reward that scores a
// sampled response (a reward-model folder, or VADER's sentiment of the decoded text), and the RNG an evaluation
// samples with (seeded by the step and the batch, so that the training RNG's stream is untouched).
#include <optional>
#include <string>
#include <vector>

#include "../method.hpp"
#include "../session.hpp"
#include "rlhf/eval/vader.hpp"

#ifndef RLHF_SOURCE_DIR
#define RLHF_SOURCE_DIR "."
#endif

namespace trainer {

struct OnlineArguments {
  std::string reward_model_path;  // a reward-model folder (rlhf-train reward's output), or "vader"
  std::string vader_lexicon;      // VADER's vader_lexicon.txt (npm vader-sentiment); default: third_party/npm
  std::size_t num_mini_batches = 1;
  std::size_t response_length = 53;
  double temperature = 0.7;

  static const std::vector<KeySpec<OnlineArguments>>& keys() {
    using A = OnlineArguments;
    static const std::vector<KeySpec<A>> table = {
        text_key("reward_model_path", &A::reward_model_path, "reward-model folder, or 'vader'"),
        text_key("vader_lexicon", &A::vader_lexicon, "VADER's vader_lexicon.txt"),
        count_key("num_mini_batches", &A::num_mini_batches, "optimizer steps per pass", 1, 1e6),
        count_key("response_length", &A::response_length, "tokens sampled per prompt", 1, 1 << 20),
        real_key("temperature", &A::temperature, "sampling temperature", 1e-6, 1e3),
    };
    return table;
  }
  void check(const char* method) const {
    if (reward_model_path.empty())
      throw Refusal(std::string("reward_model_path: is required for ") + method + ": a reward-model folder or 'vader'");
  }
  rlhf::SampleOptions sample_options(const Session& s) const {
    return {.max_new_tokens = response_length, .temperature = float(temperature), .stop_token = s.stop_token};
  }
};

// The score of each sampled response: the reward model's, or VADER's sentiment of the decoded response in [0, 1].
class RewardSource {
 public:
  void load(const Session& s, const OnlineArguments& a) {
    if (a.reward_model_path == "vader") {
      const std::string lexicon =
          a.vader_lexicon.empty()
              ? std::string(RLHF_SOURCE_DIR) + "/third_party/npm/node_modules/vader-sentiment/vader_lexicon.txt"
              : a.vader_lexicon;
      vader_ = rlhf::eval::Vader::load(lexicon);
      return;
    }
    if (!is_reward_model_folder(a.reward_model_path))
      rlhf::fail<rlhf::io_error>("reward_model_path '", a.reward_model_path,
                                 "' is a language model; train one with rlhf-train reward, or use 'vader'");
    model_.emplace(s.with_precision(load_model(a.reward_model_path, true, s.args.seed)));
    if (model_->vocab_size() != s.policy->vocab_size())
      rlhf::fail<rlhf::config_error>("reward_model_path '", a.reward_model_path, "' has vocab_size ",
                                     model_->vocab_size(), ", the policy ", s.policy->vocab_size());
  }
  bool is_model() const { return model_.has_value(); }

  std::vector<double> scores(const Session& s, const rlhf::TokenBatch& batch) {
    std::vector<double> out;
    if (model_) {
      for (const float v : Model::backend::to_host(model_->scores(batch))) out.push_back(v);
      return out;
    }
    for (std::size_t r = 0; r < batch.batch; ++r) {
      std::vector<rlhf::token_id> response;
      for (std::size_t t = 0; t < batch.time; ++t)
        if (batch.response_mask[r * batch.time + t]) response.push_back(batch.tokens[r * batch.time + t]);
      out.push_back(rlhf::eval::sentiment_reward(vader_->compound(s.codec.decode(response))));
    }
    return out;
  }

 private:
  std::optional<Model> model_;
  std::optional<rlhf::eval::Vader> vader_;
};

// The RNG an evaluation batch samples with: a function of the seed, the step and the batch's first row.
inline rlhf::Rng evaluation_rng(const Session& s, std::size_t step, Rows rows) {
  const std::size_t first = rows.empty() ? 0 : rows.front();
  return rlhf::Rng(s.args.seed ^ (0xd1b54a32d192ed03ULL * (step + 1)) ^ (0x9e3779b97f4a7c15ULL * (first + 1)));
}

inline DataNeed prompt_data() {
  using T = DatasetType;
  return {{T::prompt_only, T::prompt_completion, T::preference, T::ranked}, "rows with a prompt"};
}

}  // namespace trainer
