// Model-level parity of the CUDA GPT with the CPU GPT: one set of parameters on both gives the same logits,
// per-token log-probs, values and scores, every parameter gradient, and the same checkpoints; bad input is named.
// GEMMs in fp32 for the tight checks, tf32 (the default) with its own tolerance. Needs a GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <vector>

#include "model_support.cuh"
#include "rlhf/models/gpt/checkpoint.hpp"
#include "rlhf/models/gpt_cuda/checkpoint.cuh"

using namespace rlhf;
using namespace rlhf::gpu_testing;

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

TEST_CASE("gpt_cuda model: checkpoints move between the CPU and the CUDA model unchanged") {
  const auto c = configs(true)[1];
  Pair m(c, GemmPrecision::tf32, 23);
  const auto dir = std::filesystem::temp_directory_path();
  const auto from_gpu = dir / "rlhf_gpt_cuda_from_gpu.safetensors";
  const auto from_cpu = dir / "rlhf_gpt_cuda_from_cpu.safetensors";
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
