// The library's training steps on a tiny Llama, unchanged from the GPT's: micro-batches accumulate exactly, DPO
// and SFT lower their losses, a reward model (score head) learns the pairs, and PPO runs with a Llama policy,
// reference, critic and reward model.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/algorithms/kl_control.hpp"
#include "rlhf/algorithms/ppo.hpp"
#include "rlhf/algorithms/reward_model.hpp"
#include "rlhf/algorithms/sft.hpp"
#include "rlhf/models/llama/model.hpp"
#include "rlhf/optim/adamw.hpp"
#include "support/max_abs_difference.hpp"
#include "support/tiny_gpt.hpp"

using namespace rlhf;
using rlhf::test::max_abs_difference;

namespace {

// GQA 2:1, Qwen2-style biases, tied; vocabulary 8 as tests/support/tiny_gpt.hpp's batches need
const LlamaConfig tiny{.vocab_size = 8, .hidden_size = 16, .intermediate_size = 24, .layers = 1, .heads = 2,
                       .kv_heads = 1, .max_seq_len = 8, .qkv_bias = true};
LlamaConfig with_head() {
  LlamaConfig c = tiny;
  c.scalar_head = true;
  return c;
}

PreferenceBatch pairs(std::size_t B) { return {rlhf::test::short_responses(B, 1), rlhf::test::short_responses(B, 2), {}, {}}; }

struct Frozen {  // leaves the parameters alone, so that the gradients can be compared
  void step(std::span<float>, std::span<const float>) {}
};

}  // namespace

TEST_CASE("llama training: one DPO step over 4 micro-batches equals one step on the whole batch") {
  const auto batch = pairs(10);
  Llama<float> reference(tiny, 1), whole(tiny, 2), split(tiny, 2);
  Frozen frozen;
  const auto a = dpo_step(whole, reference, frozen, batch, {.beta = 0.5f});
  const auto b = dpo_step(split, reference, frozen, batch, {.beta = 0.5f}, {.micro_batches = 4});
  CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-6));
  double scale = 0;
  for (const float g : whole.gradients()) scale = std::max(scale, double(std::abs(g)));
  CHECK(scale > 0);
  CHECK(max_abs_difference(whole.gradients(), split.gradients()) <= 1e-5 * std::max(1.0, scale));
}

TEST_CASE("llama training: DPO and SFT steps lower their losses") {
  auto batch = pairs(6);
  Llama<float> reference(tiny, 1);
  precompute_reference_logps(reference, batch);
  {
    Llama<float> policy(tiny, 1);
    AdamW<float> opt({.learning_rate = 1e-2f, .weight_decay = 0.0f});
    const double first = dpo_step(policy, opt, batch, {.beta = 0.5f}).loss;
    double last = first;
    for (int i = 0; i < 15; ++i) last = dpo_step(policy, opt, batch, {.beta = 0.5f}, {.micro_batches = 2}).loss;
    CHECK(first == doctest::Approx(std::log(2.0)).epsilon(1e-4));  // policy = reference
    CHECK(last < first - 0.1);
  }
  {
    Llama<float> policy(tiny, 1);
    AdamW<float> opt({.learning_rate = 1e-2f, .weight_decay = 0.0f});
    const double first = sft_step(policy, opt, batch.chosen).loss;
    double last = first;
    for (int i = 0; i < 15; ++i) last = sft_step(policy, opt, batch.chosen, {}, {.micro_batches = 3}).loss;
    CHECK(last < first - 0.5);
  }
}

TEST_CASE("llama training: a reward model (score head) learns the pairs; PPO runs against it") {
  const auto batch = pairs(6);
  Llama<float> reward_model(with_head(), 3);
  AdamW<float> opt({.learning_rate = 1e-2f, .weight_decay = 0.0f});
  StepResult r;
  for (int i = 0; i < 30; ++i) r = reward_model_step(reward_model, opt, batch, {}, {.micro_batches = 2});
  CHECK(r.metrics["rewards/accuracies"] == 1.0);

  Llama<float> policy(tiny, 1), reference(tiny, 1), critic(with_head(), 4);
  AdamW<float> policy_opt({.learning_rate = 1e-3f}), value_opt({.learning_rate = 1e-3f});
  FixedKlController kl{.coef = 0.05f};
  Rng rng(5);
  PromptBatch prompts{4, 2, {1, 2, 2, 2, 3, 2, 1, 2}, {2, 2, 2, 2}};
  const std::vector<float> before(policy.parameters().begin(), policy.parameters().end());
  const auto out = ppo_step(PpoModels{policy, reference, critic, reward_model}, PpoOptimizers{policy_opt, value_opt}, kl,
                            prompts, rng, {.epochs = 2, .minibatches = 2, .sample = {.max_new_tokens = 3}});
  CHECK(std::isfinite(out.loss));
  CHECK(out.metrics["objective/kl"] == doctest::Approx(0.0).epsilon(1e-4));  // policy = reference at the rollout
  CHECK(max_abs_difference(before, policy.parameters()) > 0);
}
