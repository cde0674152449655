// Model-level parity of the CUDA GPT with the CPU GPT: one set of parameters on both gives the same logits,
// per-token log-probs, values and scores, every parameter gradient, the same DPO and PPO steps (through the
// unchanged rlhf::dpo_step / ppo_rollout / ppo_update), the same samples for a seed, and the same checkpoints.
// GEMMs in fp32 for the tight checks, tf32 (the default) with its own tolerance. Needs a GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <vector>

#include "models/gpt_support.hpp"
#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/algorithms/kl_control.hpp"
#include "rlhf/algorithms/ppo.hpp"
#include "rlhf/algorithms/sft.hpp"
#include "rlhf/models/gpt/checkpoint.hpp"
#include "rlhf/models/gpt/model.hpp"
#include "rlhf/models/gpt_cuda/checkpoint.cuh"
#include "rlhf/models/gpt_cuda/model.cuh"
#include "rlhf/optim/adamw.hpp"
#include "support.cuh"

namespace {

using namespace rlhf;
using namespace rlhf::gpu_testing;
using rlhf::testing::Pad;

double model_tolerance(GemmPrecision p) { return p == GemmPrecision::tf32 ? tol_model_tf32 : tol_model_fp32; }
const char* name(GemmPrecision p) { return p == GemmPrecision::tf32 ? "tf32" : "fp32"; }

// tiny; a wider one (16-wide heads, 16-byte aligned tensors: the cuBLASLt path); one whose C = 6 puts parameter
// tensors off 16-byte alignment (the cublasGemmEx + bias kernel fallback).
std::vector<GptConfig> configs(bool head = false) {
  return {{.vocab_size = 13, .max_seq_len = 12, .channels = 8, .layers = 2, .heads = 2, .scalar_head = head},
          {.vocab_size = 97, .max_seq_len = 24, .channels = 64, .layers = 2, .heads = 4, .scalar_head = head},
          {.vocab_size = 11, .max_seq_len = 10, .channels = 6, .layers = 1, .heads = 2, .scalar_head = head}};
}

// A CPU model with parameters far from initialisation (every path carries signal) and the CUDA copy of it.
struct Pair {
  Gpt<float> cpu;
  GptCuda gpu;
  Pair(const GptConfig& c, GemmPrecision p, std::uint64_t seed) : cpu(c, seed), gpu(c, 0, {.precision = p}) {
    rlhf::testing::randomize(cpu, seed + 100, 0.5);
    gpu.set_parameters(cpu.parameters());
  }
};

TokenBatch batch_for(const GptConfig& c, Pad side, std::uint64_t seed) {
  return rlhf::testing::pad_rows(rlhf::testing::random_rows(4, 3, std::min<std::size_t>(c.max_seq_len, 9),
                                                            c.vocab_size, seed),
                                 side);
}

std::vector<float> host(const GptCuda::matrix& m) { return GptCuda::backend::to_host(m); }
std::vector<float> host(const GptCuda::vector& v) { return GptCuda::backend::to_host(v); }
template <class M>
std::vector<float> host_eigen(const M& m) {
  return {m.data(), m.data() + m.size()};
}

// d loss / d log p: random on response tokens, 0 elsewhere, as a matrix of each backend.
std::vector<float> upstream(const TokenBatch& b, std::uint64_t seed) {
  auto g = uniform(b.batch * b.time, -1, 1, seed);
  for (std::size_t i = 0; i < g.size(); ++i)
    if (!b.response_mask[i]) g[i] = 0.0f;
  return g;
}

// Per tensor of the layout: rel_err of the GPU slice against the CPU slice (each against its own scale).
void check_per_tensor(const GptConfig& c, const std::vector<float>& gpu, std::span<const float> cpu, double tol) {
  for (const auto& t : gpt_param_layout(c)) {
    CAPTURE(t.name);
    const std::vector<float> a(gpu.begin() + t.offset, gpu.begin() + t.offset + t.size);
    const std::vector<float> b(cpu.begin() + t.offset, cpu.begin() + t.offset + t.size);
    CHECK(rel_err(a, b) <= tol);
  }
}

// ‖Δ_gpu − Δ_cpu‖ / ‖Δ_cpu‖ for the parameter updates of one step.
double update_error(const std::vector<float>& before, const std::vector<float>& gpu_after,
                    std::span<const float> cpu_after) {
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < before.size(); ++i) {
    const double dg = double(gpu_after[i]) - before[i], dc = double(cpu_after[i]) - before[i];
    diff += (dg - dc) * (dg - dc);
    norm += dc * dc;
  }
  return std::sqrt(diff / norm);
}

}  // namespace

TEST_CASE("gpt_cuda model: a seed initialises the parameters as the CPU model does") {
  for (const auto& c : configs(true)) {
    const Gpt<float> cpu(c, 7);
    const GptCuda gpu(c, 7);
    const auto p = gpu.parameters_to_host();
    CHECK(std::equal(p.begin(), p.end(), cpu.parameters().begin(), cpu.parameters().end()));
    CHECK(gpu.parameters().size() == gpt_param_count(c));
  }
}

TEST_CASE("gpt_cuda model: logits and per-token log-probs equal the CPU model's (any padding)") {
  for (const auto precision : {GemmPrecision::fp32, GemmPrecision::tf32})
    for (const auto& c : configs()) {
      CAPTURE(name(precision));
      CAPTURE(c.channels);
      Pair m(c, precision, 1);
      for (const auto side : {Pad::right, Pad::left, Pad::right_masked}) {
        CAPTURE(int(side));
        const auto batch = batch_for(c, side, 2);
        CHECK(rel_err(host(m.gpu.logits(batch)), host_eigen(m.cpu.logits(batch))) <= model_tolerance(precision));
        const auto gpu = host(m.gpu.log_probs(batch));
        const auto cpu = host_eigen(m.cpu.log_probs(batch));
        CHECK(rel_err(gpu, cpu) <= model_tolerance(precision));
        for (std::size_t i = 0; i < gpu.size(); ++i)
          if (!batch.response_mask[i]) CHECK(gpu[i] == 0.0f);
      }
    }
}

TEST_CASE("gpt_cuda model: a row scores the same whichever side it is padded on (fp32)") {
  const auto c = configs()[1];
  GptCuda gpu(c, 3, {.precision = GemmPrecision::fp32});
  const auto rows = rlhf::testing::random_rows(4, 3, 9, c.vocab_size, 4);
  const auto right = rlhf::testing::pad_rows(rows, Pad::right), left = rlhf::testing::pad_rows(rows, Pad::left);
  const auto a = host(gpu.log_probs(right)), b = host(gpu.log_probs(left));
  for (std::size_t r = 0; r < 4; ++r) {
    double sa = 0, sb = 0;
    for (std::size_t t = 0; t < right.time; ++t) sa += a[r * right.time + t], sb += b[r * left.time + t];
    CHECK(sa == doctest::Approx(sb).epsilon(1e-5));
  }
}

TEST_CASE("gpt_cuda model: every parameter gradient equals the CPU model's") {
  for (const auto precision : {GemmPrecision::fp32, GemmPrecision::tf32})
    for (const auto& c : configs()) {
      CAPTURE(name(precision));
      CAPTURE(c.channels);
      Pair m(c, precision, 5);
      const auto batch = batch_for(c, Pad::left, 6);
      const auto g = upstream(batch, 7);
      m.cpu.zero_grad();
      m.gpu.zero_grad();
      m.cpu.log_probs(batch);
      m.cpu.backward(batch, Gpt<float>::backend::matrix_from_host(batch.batch, batch.time, g));
      m.gpu.log_probs(batch);
      m.gpu.backward(batch, GptCuda::backend::matrix_from_host(batch.batch, batch.time, g));
      // tf32: gradients pass through twice as many GEMMs as the forward
      check_per_tensor(c, m.gpu.gradients_to_host(), m.cpu.gradients(), 2 * model_tolerance(precision));
    }
}

TEST_CASE("gpt_cuda model: values, scores and their backward equal the CPU model's (scalar head)") {
  for (const auto& c : configs(true)) {
    CAPTURE(c.channels);
    Pair m(c, GemmPrecision::fp32, 8);
    const auto batch = batch_for(c, Pad::right_masked, 9);
    CHECK(rel_err(host(m.gpu.values(batch)), host_eigen(m.cpu.values(batch))) <= tol_model_fp32);
    const auto g = upstream(batch, 10);
    m.cpu.zero_grad(), m.gpu.zero_grad();
    m.cpu.backward_values(batch, Gpt<float>::backend::matrix_from_host(batch.batch, batch.time, g));
    m.gpu.backward_values(batch, GptCuda::backend::matrix_from_host(batch.batch, batch.time, g));
    check_per_tensor(c, m.gpu.gradients_to_host(), m.cpu.gradients(), tol_model_fp32);

    CHECK(rel_err(host(m.gpu.scores(batch)), host_eigen(m.cpu.scores(batch))) <= tol_model_fp32);
    const auto d = uniform(batch.batch, -1, 1, 11);
    m.cpu.zero_grad(), m.gpu.zero_grad();
    m.cpu.backward_scores(batch, Gpt<float>::backend::from_host(d));
    m.gpu.backward_scores(batch, GptCuda::backend::from_host(d));
    check_per_tensor(c, m.gpu.gradients_to_host(), m.cpu.gradients(), tol_model_fp32);
  }
}

TEST_CASE("gpt_cuda model: one DPO step (rlhf::dpo_step, CudaAdamW) updates the parameters as on the CPU") {
  const auto c = configs()[1];
  Pair policy(c, GemmPrecision::fp32, 12), reference(c, GemmPrecision::fp32, 13);
  PreferenceBatch batch{batch_for(c, Pad::right, 14), batch_for(c, Pad::left, 15), {}, {}};
  const AdamWConfig opt{.learning_rate = 1e-3f, .weight_decay = 0.01f};
  AdamW<float> cpu_opt(opt);
  CudaAdamW gpu_opt(opt);
  const std::vector<float> before(policy.cpu.parameters().begin(), policy.cpu.parameters().end());
  const auto a = dpo_step(policy.cpu, reference.cpu, cpu_opt, batch, {.beta = 0.5f});
  const auto b = dpo_step(policy.gpu, reference.gpu, gpu_opt, batch, {.beta = 0.5f});
  CHECK(b.loss == doctest::Approx(a.loss).epsilon(1e-5));
  CHECK(update_error(before, policy.gpu.parameters_to_host(), policy.cpu.parameters()) <= 1e-3);

  // the same step over 2 micro-batches on the GPU
  Pair split(c, GemmPrecision::fp32, 12);
  CudaAdamW split_opt(opt);
  const auto s = dpo_step(split.gpu, reference.gpu, split_opt, batch, {.beta = 0.5f}, {.micro_batches = 2});
  CHECK(s.loss == doctest::Approx(b.loss).epsilon(1e-5));
  CHECK(update_error(before, split.gpu.parameters_to_host(), policy.gpu.parameters_to_host()) <= 1e-3);
}

TEST_CASE("gpt_cuda model: an SFT step in tf32 gives the CPU loss within the tf32 tolerance") {
  const auto c = configs()[1];
  Pair policy(c, GemmPrecision::tf32, 16);
  const auto batch = batch_for(c, Pad::right, 17);
  AdamW<float> cpu_opt;
  CudaAdamW gpu_opt;
  const auto a = sft_step(policy.cpu, cpu_opt, batch);
  const auto b = sft_step(policy.gpu, gpu_opt, batch);
  CHECK(b.loss == doctest::Approx(a.loss).epsilon(tol_model_tf32));
}

TEST_CASE("gpt_cuda model: one PPO iteration (rollout + update) gives the CPU rollout and updates") {
  auto c = configs()[1];
  auto with_head = c;
  with_head.scalar_head = true;
  Pair policy(c, GemmPrecision::fp32, 18), reference(c, GemmPrecision::fp32, 18), critic(with_head, GemmPrecision::fp32, 19);
  const AdamWConfig opt{.learning_rate = 1e-3f};
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
  const auto cpu_rollout = ppo_rollout(policy.cpu, reference.cpu, critic.cpu, reward, prompts, cpu_rng, 0.1f, config);
  const auto gpu_rollout = ppo_rollout(policy.gpu, reference.gpu, critic.gpu, reward, prompts, gpu_rng, 0.1f, config);
  REQUIRE(gpu_rollout.batch.tokens == cpu_rollout.batch.tokens);  // the same draws (fp32 logits, same uniforms)
  CHECK(rel_err(host(gpu_rollout.advantages), host_eigen(cpu_rollout.advantages)) <= tol_model_fp32 * 10);
  const std::vector<float> p0(policy.cpu.parameters().begin(), policy.cpu.parameters().end());
  const std::vector<float> v0(critic.cpu.parameters().begin(), critic.cpu.parameters().end());
  const auto a = ppo_update(policy.cpu, critic.cpu, cpu_popt, cpu_vopt, cpu_rollout, cpu_rng, config);
  const auto b = ppo_update(policy.gpu, critic.gpu, gpu_popt, gpu_vopt, gpu_rollout, gpu_rng, config);
  CHECK(b.policy_loss == doctest::Approx(a.policy_loss).epsilon(1e-4).scale(1e-3));
  CHECK(b.value_loss == doctest::Approx(a.value_loss).epsilon(1e-4));
  CHECK(update_error(p0, policy.gpu.parameters_to_host(), policy.cpu.parameters()) <= 1e-3);
  CHECK(update_error(v0, critic.gpu.parameters_to_host(), critic.cpu.parameters()) <= 1e-3);
}

TEST_CASE("gpt_cuda model: sampling draws the CPU model's tokens for a seed (greedy, temperature, top-k, top-p)") {
  const auto c = configs()[1];
  Pair m(c, GemmPrecision::fp32, 21);
  const PromptBatch prompts{3, 4, {1, 2, 3, 4, 5, 6, 0, 0, 7, 0, 0, 0}, {4, 2, 1}};
  const SampleOptions options[] = {{.max_new_tokens = 8, .temperature = 0.0f},
                                   {.max_new_tokens = 8, .temperature = 1.0f},
                                   {.max_new_tokens = 8, .temperature = 0.8f, .top_k = 5},
                                   {.max_new_tokens = 8, .temperature = 1.2f, .top_p = 0.7f},
                                   {.max_new_tokens = 8, .temperature = 1.0f, .top_k = 10, .top_p = 0.9f, .stop_token = 3}};
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

TEST_CASE("gpt_cuda model: sampling in tf32 is deterministic for a seed and differs across seeds") {
  const auto c = configs()[1];
  GptCuda gpu(c, 22);
  const PromptBatch prompts{2, 2, {1, 2, 3, 0}, {2, 1}};
  const SampleOptions o{.max_new_tokens = 12, .temperature = 1.0f, .top_k = 20};
  Rng a(1), b(1), other(2);
  const auto x = gpu.sample(prompts, o, a), y = gpu.sample(prompts, o, b), z = gpu.sample(prompts, o, other);
  CHECK(x.tokens == y.tokens);
  CHECK(x.tokens != z.tokens);
}

TEST_CASE("gpt_cuda model: checkpoints move between the CPU and the CUDA model unchanged") {
  const auto c = configs(true)[1];
  Pair m(c, GemmPrecision::tf32, 23);
  const auto dir = std::filesystem::temp_directory_path();
  const auto from_gpu = dir / "rlhf_gpt_cuda_from_gpu.safetensors", from_cpu = dir / "rlhf_gpt_cuda_from_cpu.safetensors";
  save_checkpoint(m.gpu, from_gpu);
  const auto cpu = load_checkpoint<float>(from_gpu);
  CHECK(cpu.config() == c);
  CHECK(std::equal(cpu.parameters().begin(), cpu.parameters().end(), m.cpu.parameters().begin()));
  save_checkpoint(m.cpu, from_cpu);
  const auto gpu = load_checkpoint_cuda(from_cpu);
  CHECK(gpu.config() == c);
  const auto p = gpu.parameters_to_host();
  CHECK(std::equal(p.begin(), p.end(), m.cpu.parameters().begin()));
  auto no_head = c;
  no_head.scalar_head = false;
  CHECK_THROWS_AS(load_checkpoint_cuda(from_cpu, no_head), config_error);
  std::filesystem::remove(from_gpu), std::filesystem::remove(from_cpu);
}

TEST_CASE("gpt_cuda model: bad input is named as on the CPU model") {
  const auto c = configs()[0];
  GptCuda gpu(c, 24, {.precision = GemmPrecision::fp32});
  auto batch = batch_for(c, Pad::right, 25);
  const auto g = GptCuda::backend::matrix_from_host(batch.batch, batch.time, upstream(batch, 26));
  CHECK_THROWS_AS(gpu.backward(batch, g), value_error);  // no forward yet
  auto bad = batch;
  bad.tokens[1] = std::int32_t(c.vocab_size);
  CHECK_THROWS_AS(gpu.log_probs(bad), value_error);
  gpu.log_probs(batch);
  CHECK_THROWS_AS(gpu.backward(batch, GptCuda::backend::matrix_of(batch.batch, batch.time + 1)), shape_error);
  auto nan = upstream(batch, 27);
  for (std::size_t i = 0; i < nan.size(); ++i)
    if (batch.response_mask[i]) nan[i] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(gpu.backward(batch, GptCuda::backend::matrix_from_host(batch.batch, batch.time, nan)), value_error);
  gpu.backward(batch, g);
  CHECK_THROWS_AS(gpu.backward(batch, g), value_error);  // the logits were consumed
  CHECK_THROWS_AS(gpu.values(batch), config_error);       // no scalar head
  gpu.set_parameters(std::vector<float>(gpu.parameters().size(), std::numeric_limits<float>::quiet_NaN()));
  CHECK_THROWS_AS(gpu.log_probs(batch), value_error);
  const PromptBatch prompts{1, 2, {1, 2}, {2}};
  Rng rng(1);
  CHECK_THROWS_AS(gpu.sample(prompts, {.top_p = 0.0f}, rng), config_error);
  CHECK_THROWS_AS(gpu.sample(prompts, {.max_new_tokens = c.max_seq_len}, rng), config_error);
  CHECK_THROWS_AS(gpu.set_parameters(std::vector<float>(3)), shape_error);
}
