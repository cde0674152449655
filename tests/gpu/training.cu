// The training steps on the CUDA GPT through the unchanged algorithms (rlhf::dpo_step, sft_step, ppo_rollout,
// ppo_update) give the CPU GPT's losses and parameter updates, and sampling draws the CPU model's tokens for a
// seed. GEMMs in fp32 (so the two models' logits order tokens alike), tf32 where said. Needs a GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "model_support.cuh"
#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/algorithms/kl_control.hpp"
#include "rlhf/algorithms/ppo.hpp"
#include "rlhf/algorithms/sft.hpp"
#include "rlhf/optim/adamw.hpp"

using namespace rlhf;
using namespace rlhf::gpu_testing;

namespace {

// AdamW with ε = 1e-5 rather than 1e-8 for the step comparisons: some gradients are zero in exact arithmetic (the
// key bias: softmax ignores a shift common to a row's scores) and rounding noise (~1e-9) elsewhere; Adam's first
// step turns g / (|g| + ε) of such noise into a ±lr update of arbitrary sign on each model. Measured on the CPU,
// float against double: ‖Δ_f − Δ_d‖ / ‖Δ_d‖ is 1.4e-2 for DPO at ε = 1e-8 and 7e-5 at ε = 1e-5 (PPO: 1.5e-2 and
// 1.7e-4). The tolerance below allows a few times the latter.
constexpr float adam_epsilon = 1e-5f;
constexpr double step_tolerance = 2e-3;

}  // namespace

TEST_CASE("gpt_cuda training: one DPO step (rlhf::dpo_step, CudaAdamW) updates the parameters as on the CPU") {
  const auto c = configs()[1];
  Pair policy(c, GemmPrecision::fp32, 12), reference(c, GemmPrecision::fp32, 13);
  PreferenceBatch batch{batch_for(c, Pad::right, 14), batch_for(c, Pad::left, 15), {}, {}};
  const AdamWConfig opt{.learning_rate = 1e-3f, .epsilon = adam_epsilon, .weight_decay = 0.01f};
  AdamW<float> cpu_opt(opt);
  CudaAdamW gpu_opt(opt);
  const std::vector<float> before(policy.cpu.parameters().begin(), policy.cpu.parameters().end());
  const auto a = dpo_step(policy.cpu, reference.cpu, cpu_opt, batch, {.beta = 0.5f});
  const auto b = dpo_step(policy.gpu, reference.gpu, gpu_opt, batch, {.beta = 0.5f});
  CHECK(b.loss == doctest::Approx(a.loss).epsilon(1e-4));
  CHECK(update_error(before, policy.gpu.parameters_to_host(), policy.cpu.parameters()) <= step_tolerance);

  // the same step over 2 micro-batches, on both models: each against the CPU's whole-batch step (the reference),
  // and the two micro-batched steps against each other
  Pair split(c, GemmPrecision::fp32, 12);
  AdamW<float> cpu_split_opt(opt);
  CudaAdamW gpu_split_opt(opt);
  const auto sc = dpo_step(split.cpu, reference.cpu, cpu_split_opt, batch, {.beta = 0.5f}, {.micro_batches = 2});
  const auto sg = dpo_step(split.gpu, reference.gpu, gpu_split_opt, batch, {.beta = 0.5f}, {.micro_batches = 2});
  CHECK(sc.loss == doctest::Approx(a.loss).epsilon(1e-4));
  CHECK(sg.loss == doctest::Approx(a.loss).epsilon(1e-4));
  CHECK(sg.loss == doctest::Approx(sc.loss).epsilon(1e-4));
  const auto split_gpu = split.gpu.parameters_to_host();
  CHECK(update_error(before, split_gpu, policy.cpu.parameters()) <= step_tolerance);
  CHECK(update_error(before, split_gpu, split.cpu.parameters()) <= step_tolerance);
  CHECK(update_error(before, split.cpu.parameters(), policy.cpu.parameters()) <= step_tolerance);
}

TEST_CASE("gpt_cuda training: an SFT step in tf32 gives the CPU loss and update within the tf32 tolerance") {
  const auto c = configs()[1];
  Pair policy(c, GemmPrecision::tf32, 16);
  const auto batch = batch_for(c, Pad::right, 17);
  // ε = 1, above the gradients here, and no weight decay: Adam's first step is then lr · g / (|g| + 1), a smooth
  // function of the gradient with slope ≤ 1, so the update's error follows the gradient's tf32 error, which the
  // model test bounds per tensor by 2 · tol_model_tf32. (At a small ε the first step is ±lr · sign(g), and tf32
  // rounding flips the sign of the gradients near zero: noise, not an error of the GPU code.) lr = 0.1 keeps the
  // update, read back as after − before in float, far above the parameters' own rounding (~1e-7).
  // The tolerance is the model test's, an estimate; it held on an H200 (docs/models/gpt_cuda.md).
  const AdamWConfig opt{.learning_rate = 0.1f, .epsilon = 1.0f, .weight_decay = 0.0f};
  AdamW<float> cpu_opt(opt);
  CudaAdamW gpu_opt(opt);
  const std::vector<float> before(policy.cpu.parameters().begin(), policy.cpu.parameters().end());
  const auto a = sft_step(policy.cpu, cpu_opt, batch);
  const auto b = sft_step(policy.gpu, gpu_opt, batch);
  CHECK(b.loss == doctest::Approx(a.loss).epsilon(tol_model_tf32));
  const auto after = policy.gpu.parameters_to_host();
  std::vector<float> gpu_step(before.size()), cpu_step(before.size());
  for (std::size_t i = 0; i < before.size(); ++i) {
    gpu_step[i] = after[i] - before[i];
    cpu_step[i] = policy.cpu.parameters()[i] - before[i];
  }
  CHECK(update_error(before, after, policy.cpu.parameters()) <= 2 * tol_model_tf32);
  check_per_tensor(c, gpu_step, cpu_step, 2 * tol_model_tf32);  // each tensor against its own scale
}

TEST_CASE("gpt_cuda training: one PPO iteration (rollout + update) gives the CPU rollout and updates") {
  auto c = configs()[1];
  auto with_head = c;
  with_head.scalar_head = true;
  Pair policy(c, GemmPrecision::fp32, 18), reference(c, GemmPrecision::fp32, 18);
  Pair critic(with_head, GemmPrecision::fp32, 19);
  const AdamWConfig opt{.learning_rate = 1e-3f, .epsilon = adam_epsilon};
  AdamW<float> cpu_popt(opt), cpu_vopt(opt);
  CudaAdamW gpu_popt(opt), gpu_vopt(opt);
  const auto reward = [](const TokenBatch& b) {  // +1 per response token equal to 3
    std::vector<float> r(b.batch, 0.0f);
    for (std::size_t i = 0; i < b.batch; ++i)
      for (std::size_t t = 0; t < b.time; ++t) r[i] += b.mask(i, t) && b.token(i, t) == 3;
    return r;
  };
  const PromptBatch prompts{4, 3, {1, 2, 5, 2, 2, 0, 3, 9, 9, 4, 0, 0}, {3, 2, 3, 1}};
  const PpoStepConfig config{.epochs = 2, .minibatches = 2, .sample = {.max_new_tokens = 5, .temperature = 1.0f}};
  Rng cpu_rng(20), gpu_rng(20);
  const PpoModels cpu_models{policy.cpu, reference.cpu, critic.cpu, reward};
  const PpoModels gpu_models{policy.gpu, reference.gpu, critic.gpu, reward};
  const auto cpu_rollout = ppo_rollout(cpu_models, prompts, cpu_rng, 0.1f, config);
  const auto gpu_rollout = ppo_rollout(gpu_models, prompts, gpu_rng, 0.1f, config);
  REQUIRE(gpu_rollout.batch.tokens == cpu_rollout.batch.tokens);  // the same draws (fp32 logits, same uniforms)
  CHECK(rel_err(host(gpu_rollout.advantages), host_eigen(cpu_rollout.advantages)) <= tol_model_fp32 * 10);
  const std::vector<float> p0(policy.cpu.parameters().begin(), policy.cpu.parameters().end());
  const std::vector<float> v0(critic.cpu.parameters().begin(), critic.cpu.parameters().end());
  const auto a = ppo_update(cpu_models, PpoOptimizers{cpu_popt, cpu_vopt}, cpu_rollout, cpu_rng, config);
  const auto b = ppo_update(gpu_models, PpoOptimizers{gpu_popt, gpu_vopt}, gpu_rollout, gpu_rng, config);
  CHECK(b.loss == doctest::Approx(a.loss).epsilon(1e-4).scale(1e-3));
  CHECK(b.metrics[metric::loss_value_avg] == doctest::Approx(a.metrics[metric::loss_value_avg]).epsilon(1e-4));
  CHECK(update_error(p0, policy.gpu.parameters_to_host(), policy.cpu.parameters()) <= step_tolerance);
  CHECK(update_error(v0, critic.gpu.parameters_to_host(), critic.cpu.parameters()) <= step_tolerance);
}

TEST_CASE("gpt_cuda training: sampling draws the CPU model's tokens for a seed (greedy, temperature, top-k/p)") {
  const auto c = configs()[1];
  Pair m(c, GemmPrecision::fp32, 21);
  const PromptBatch prompts{3, 4, {1, 2, 3, 4, 5, 6, 0, 0, 7, 0, 0, 0}, {4, 2, 1}};
  const SampleOptions options[] = {{.max_new_tokens = 8, .temperature = 0.0f},
                                   {.max_new_tokens = 8, .temperature = 1.0f},
                                   {.max_new_tokens = 8, .temperature = 0.8f, .top_k = 5},
                                   {.max_new_tokens = 8, .temperature = 1.2f, .top_p = 0.7f},
                                   {.max_new_tokens = 8, .temperature = 1.0f, .top_k = 10, .top_p = 0.9f,
                                    .stop_token = 3}};
  for (const auto& o : options)
    for (std::uint64_t seed = 0; seed < 5; ++seed) {
      CAPTURE(seed);
      Rng a(seed), b(seed);
      const auto cpu = m.cpu.sample(prompts, o, a);
      const auto gpu = m.gpu.sample(prompts, o, b);
      CHECK(gpu.tokens == cpu.tokens);
      CHECK(gpu.response_mask == cpu.response_mask);
      CHECK(gpu.attention_mask == cpu.attention_mask);
      if (gpu.tokens == cpu.tokens)
        CHECK(rel_err(host(m.gpu.sampled_log_probs()), host_eigen(m.cpu.sampled_log_probs())) <= tol_model_fp32);
      CHECK(a.next() == b.next());  // both consumed the same number of uniforms
    }
}

TEST_CASE("gpt_cuda training: sampling in tf32 is deterministic for a seed and differs across seeds") {
  const auto c = configs()[1];
  GptCuda gpu(c, 22);
  const PromptBatch prompts{2, 2, {1, 2, 3, 0}, {2, 1}};
  const SampleOptions o{.max_new_tokens = 12, .temperature = 1.0f, .top_k = 20};
  Rng a(1), b(1), other(2);
  const auto x = gpu.sample(prompts, o, a), y = gpu.sample(prompts, o, b), z = gpu.sample(prompts, o, other);
  CHECK(x.tokens == y.tokens);
  CHECK(x.tokens != z.tokens);
}

TEST_CASE("gpt_cuda training: sampling past 48 KiB of shared memory per block (the decode kernel opts in)") {
  // cap = prompt + new tokens = 12504 positions: the decode kernel's query and scores take (4 + 12504) floats =
  // 50032 bytes of dynamic shared memory, past the 48 KiB default, so the sampler must opt in (sampler.cuh).
  const GptConfig c{.vocab_size = 11, .max_seq_len = 12504, .channels = 8, .layers = 1, .heads = 2};
  GptCuda gpu(c, 30, {.precision = GemmPrecision::fp32});
  const std::size_t P = 12500;
  Rng tokens_rng(31);
  std::vector<token_id> prompt(P);
  for (auto& t : prompt) t = token_id(tokens_rng.below(c.vocab_size));
  const PromptBatch prompts{1, P, prompt, {P}};
  Rng rng(32);
  const auto drawn = gpu.sample(prompts, {.max_new_tokens = 4, .temperature = 0.0f}, rng);
  REQUIRE(drawn.time == c.max_seq_len);
  // the log-probs the sampler recorded equal the full forward's on the drawn tokens (full causal attention)
  const auto recorded = host(gpu.sampled_log_probs());
  const auto forward = host(gpu.log_probs(drawn));
  std::vector<float> a, b;
  for (std::size_t i = 0; i < forward.size(); ++i)
    if (drawn.response_mask[i]) a.push_back(recorded[i]), b.push_back(forward[i]);
  CHECK(a.size() == 4);
  CHECK(rel_err(a, b) <= tol_model_fp32 * 10);
}
