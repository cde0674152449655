// Model-level parity of the CUDA Llama (models/llama_cuda/model.cuh) with the CPU Llama (models/llama/model.hpp):
// one set of parameters on both gives the same logits, per-token log-probs, values and scores, every parameter's
// gradient, and the same DPO and SFT steps through the unchanged algorithms; bad input is named. Configs: GQA 2:1
// with head_dim ≠ C / NH, q/k/v and o biases, q/k norms, an untied head and llama3 rope scaling (tests/models/
// llama_support.hpp); GQA 3:1 tied without biases (SmolLM2's shape); GQA 4:1 tied with q/k/v biases and linear
// rope scaling, 16-byte aligned tensors (Qwen2.5's options). GEMMs in fp32 for the tight checks, tf32 (the
// default) with its own tolerance (support.cuh). Needs a GPU.
//
// Status: compiled with nvcc for sm_90; not yet run on a device (docs/models/llama.md, "The CUDA twin").
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "models/gpt_support.hpp"
#include "models/llama_support.hpp"
#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/algorithms/sft.hpp"
#include "rlhf/models/llama/model.hpp"
#include "rlhf/models/llama_cuda/model.cuh"
#include "rlhf/optim/adamw.hpp"
#include "support.cuh"

using namespace rlhf;
using namespace rlhf::gpu_testing;
using rlhf::testing::Pad;

namespace {

double model_tolerance(GemmPrecision p) { return p == GemmPrecision::tf32 ? tol_model_tf32 : tol_model_fp32; }
const char* name(GemmPrecision p) { return p == GemmPrecision::tf32 ? "tf32" : "fp32"; }

std::vector<LlamaConfig> configs(bool head = false) {
  LlamaConfig every_option = rlhf::testing::tiny_llama_config(head);
  LlamaConfig smol{.vocab_size = 17, .hidden_size = 24, .intermediate_size = 40, .layers = 2, .heads = 6,
                   .kv_heads = 2, .max_seq_len = 24, .rope_theta = 100000.0, .tie_word_embeddings = true,
                   .scalar_head = head};
  LlamaConfig qwen2{.vocab_size = 32, .hidden_size = 32, .intermediate_size = 48, .layers = 2, .heads = 4,
                    .kv_heads = 1, .max_seq_len = 24, .rms_norm_eps = 1e-6f, .rope_theta = 1000000.0,
                    .rope_scaling = RopeScaling::linear, .rope_factor = 2.0, .qkv_bias = true,
                    .tie_word_embeddings = true, .scalar_head = head};
  return {every_option, smol, qwen2};
}

// A CPU model with parameters far from initialisation (every path carries signal) and the CUDA copy of it.
struct Pair {
  Llama<float> cpu;
  LlamaCuda gpu;
  Pair(const LlamaConfig& c, GemmPrecision p, std::uint64_t seed) : cpu(randomized(c, seed)), gpu(LlamaCuda::copy_of(cpu, {.precision = p})) {}
  static Llama<float> randomized(const LlamaConfig& c, std::uint64_t seed) {
    Llama<float> m(c, seed);
    rlhf::testing::randomize(m, seed + 100, 0.5);
    return m;
  }
};

TokenBatch batch_for(const LlamaConfig& c, Pad side, std::uint64_t seed) {
  return rlhf::testing::pad_rows(
      rlhf::testing::random_rows(4, 3, std::min<std::size_t>(c.max_seq_len, 9), c.vocab_size, seed), side);
}

std::vector<float> host(const LlamaCuda::matrix& m) { return LlamaCuda::backend::to_host(m); }
std::vector<float> host(const LlamaCuda::vector& v) { return LlamaCuda::backend::to_host(v); }
template <class M>
std::vector<float> host_eigen(const M& m) {
  return {m.data(), m.data() + m.size()};
}

// d loss / d log p: random on response tokens, 0 elsewhere.
std::vector<float> upstream(const TokenBatch& b, std::uint64_t seed) {
  auto g = uniform(b.batch * b.time, -1, 1, seed);
  for (std::size_t i = 0; i < g.size(); ++i)
    if (!b.response_mask[i]) g[i] = 0.0f;
  return g;
}

// Per tensor of the layout: rel_err of the GPU slice against the CPU slice (each against its own scale).
void check_per_tensor(const LlamaConfig& c, const std::vector<float>& gpu, std::span<const float> cpu, double tol) {
  for (const auto& t : llama_param_layout(c)) {
    CAPTURE(t.slot);  // the order of LlamaTensors' members (llama::Slot)
    const std::vector<float> a(gpu.begin() + t.offset, gpu.begin() + t.offset + t.size);
    const std::vector<float> b(cpu.begin() + t.offset, cpu.begin() + t.offset + t.size);
    CHECK(rel_err(a, b) <= tol);
  }
}

// As tests/gpu/training.cu: Adam's ε at 1e-5 so rounding noise in near-zero gradients does not turn into ±lr updates.
constexpr float adam_epsilon = 1e-5f;
constexpr double step_tolerance = 2e-3;

}  // namespace

TEST_CASE("llama_cuda model: a seed initialises the parameters as the CPU model does; copies go both ways") {
  for (const auto& c : configs(true)) {
    const Llama<float> cpu(c, 7);
    const LlamaCuda gpu(c, 7);
    const auto p = gpu.parameters_to_host();
    CHECK(gpu.parameters().size() == llama_param_count(c));
    CHECK(std::equal(p.begin(), p.end(), cpu.parameters().begin(), cpu.parameters().end()));
    Pair m(c, GemmPrecision::fp32, 3);
    Llama<float> back(c, 0);
    m.gpu.copy_parameters_to(back);
    CHECK(std::equal(back.parameters().begin(), back.parameters().end(), m.cpu.parameters().begin()));
  }
  auto other = configs()[0];
  other.layers = 1;
  Llama<float> wrong(other, 0);
  CHECK_THROWS_AS(LlamaCuda(configs()[0], 1).copy_parameters_to(wrong), config_error);
}

TEST_CASE("llama_cuda model: logits and per-token log-probs equal the CPU model's (any padding)") {
  for (const auto precision : {GemmPrecision::fp32, GemmPrecision::tf32})
    for (const auto& c : configs()) {
      CAPTURE(name(precision));
      CAPTURE(c.hidden_size);
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

TEST_CASE("llama_cuda model: a row scores the same whichever side it is padded on (fp32)") {
  const auto c = configs()[1];
  LlamaCuda gpu(c, 3, {.precision = GemmPrecision::fp32});
  const auto rows = rlhf::testing::random_rows(4, 3, 9, c.vocab_size, 4);
  const auto right = rlhf::testing::pad_rows(rows, Pad::right), left = rlhf::testing::pad_rows(rows, Pad::left);
  const auto a = host(gpu.log_probs(right)), b = host(gpu.log_probs(left));
  for (std::size_t r = 0; r < 4; ++r) {
    double sa = 0, sb = 0;
    for (std::size_t t = 0; t < right.time; ++t) sa += a[r * right.time + t], sb += b[r * left.time + t];
    CHECK(sa == doctest::Approx(sb).epsilon(1e-5));
  }
}

TEST_CASE("llama_cuda model: every parameter's gradient equals the CPU model's") {
  for (const auto precision : {GemmPrecision::fp32, GemmPrecision::tf32})
    for (const auto& c : configs()) {
      CAPTURE(name(precision));
      CAPTURE(c.hidden_size);
      Pair m(c, precision, 5);
      const auto batch = batch_for(c, Pad::left, 6);
      const auto g = upstream(batch, 7);
      m.cpu.zero_grad();
      m.gpu.zero_grad();
      m.cpu.log_probs(batch);
      m.cpu.backward(batch, Llama<float>::backend::matrix_from_host(batch.batch, batch.time, g));
      m.gpu.log_probs(batch);
      m.gpu.backward(batch, LlamaCuda::backend::matrix_from_host(batch.batch, batch.time, g));
      // tf32: gradients pass through twice as many GEMMs as the forward
      check_per_tensor(c, m.gpu.gradients_to_host(), m.cpu.gradients(), 2 * model_tolerance(precision));
    }
}

TEST_CASE("llama_cuda model: with attention = flash, log-probs and every gradient equal the CPU model's") {
  // gpt_cuda/flash_attention.cuh reading the rotated q, k, v rows in place (GQA 2:1, 3:1, 4:1 in these configs)
  for (const auto precision : {GemmPrecision::fp32, GemmPrecision::tf32})
    for (const auto& c : configs()) {
      CAPTURE(name(precision));
      CAPTURE(c.hidden_size);
      Llama<float> cpu = Pair::randomized(c, 41);
      LlamaCuda gpu = LlamaCuda::copy_of(cpu, {.precision = precision, .attention = AttentionKernel::flash});
      for (const auto side : {Pad::right, Pad::left, Pad::right_masked}) {
        CAPTURE(int(side));
        const auto batch = batch_for(c, side, 42);
        const auto g = upstream(batch, 43);
        cpu.zero_grad();
        gpu.zero_grad();
        CHECK(rel_err(host(gpu.log_probs(batch)), host_eigen(cpu.log_probs(batch))) <= model_tolerance(precision));
        cpu.backward(batch, Llama<float>::backend::matrix_from_host(batch.batch, batch.time, g));
        gpu.backward(batch, LlamaCuda::backend::matrix_from_host(batch.batch, batch.time, g));
        check_per_tensor(c, gpu.gradients_to_host(), cpu.gradients(), 2 * model_tolerance(precision));
      }
    }
}

TEST_CASE("llama_cuda model: values, scores and their backward equal the CPU model's (scalar head)") {
  for (const auto& c : configs(true)) {
    CAPTURE(c.hidden_size);
    Pair m(c, GemmPrecision::fp32, 8);
    const auto batch = batch_for(c, Pad::right_masked, 9);
    CHECK(rel_err(host(m.gpu.values(batch)), host_eigen(m.cpu.values(batch))) <= tol_model_fp32);
    const auto g = upstream(batch, 10);
    m.cpu.zero_grad(), m.gpu.zero_grad();
    m.cpu.backward_values(batch, Llama<float>::backend::matrix_from_host(batch.batch, batch.time, g));
    m.gpu.backward_values(batch, LlamaCuda::backend::matrix_from_host(batch.batch, batch.time, g));
    check_per_tensor(c, m.gpu.gradients_to_host(), m.cpu.gradients(), tol_model_fp32);

    CHECK(rel_err(host(m.gpu.scores(batch)), host_eigen(m.cpu.scores(batch))) <= tol_model_fp32);
    const auto d = uniform(batch.batch, -1, 1, 11);
    m.cpu.zero_grad(), m.gpu.zero_grad();
    m.cpu.backward_scores(batch, Llama<float>::backend::from_host(d));
    m.gpu.backward_scores(batch, LlamaCuda::backend::from_host(d));
    check_per_tensor(c, m.gpu.gradients_to_host(), m.cpu.gradients(), tol_model_fp32);
  }
}

TEST_CASE("llama_cuda model: one DPO step and one SFT step (CudaAdamW) update the parameters as on the CPU") {
  const AdamWConfig opt{.learning_rate = 1e-3f, .epsilon = adam_epsilon, .weight_decay = 0.01f};
  for (const auto& c : configs()) {
    CAPTURE(c.hidden_size);
    Pair policy(c, GemmPrecision::fp32, 12), reference(c, GemmPrecision::fp32, 13);
    const PreferenceBatch batch{batch_for(c, Pad::right, 14), batch_for(c, Pad::left, 15), {}, {}};
    AdamW<float> cpu_opt(opt);
    CudaAdamW gpu_opt(opt);
    const std::vector<float> before(policy.cpu.parameters().begin(), policy.cpu.parameters().end());
    const auto a = dpo_step(policy.cpu, reference.cpu, cpu_opt, batch, {.beta = 0.5f});
    const auto b = dpo_step(policy.gpu, reference.gpu, gpu_opt, batch, {.beta = 0.5f});
    CHECK(b.loss == doctest::Approx(a.loss).epsilon(1e-4));
    CHECK(update_error(before, policy.gpu.parameters_to_host(), policy.cpu.parameters()) <= step_tolerance);

    Pair sft(c, GemmPrecision::fp32, 16);
    AdamW<float> cpu_sft_opt(opt);
    CudaAdamW gpu_sft_opt(opt);
    const std::vector<float> start(sft.cpu.parameters().begin(), sft.cpu.parameters().end());
    const auto rows = batch_for(c, Pad::left, 17);
    const auto sc = sft_step(sft.cpu, cpu_sft_opt, rows);
    const auto sg = sft_step(sft.gpu, gpu_sft_opt, rows);
    CHECK(sg.loss == doctest::Approx(sc.loss).epsilon(1e-4));
    CHECK(update_error(start, sft.gpu.parameters_to_host(), sft.cpu.parameters()) <= step_tolerance);
  }
}

TEST_CASE("llama_cuda model: bad input is named as on the CPU model") {
  const auto c = configs()[0];
  LlamaCuda gpu(c, 24, {.precision = GemmPrecision::fp32});
  auto batch = batch_for(c, Pad::right, 25);
  const auto g = LlamaCuda::backend::matrix_from_host(batch.batch, batch.time, upstream(batch, 26));
  CHECK_THROWS_AS(gpu.backward(batch, g), value_error);  // no forward yet
  auto bad = batch;
  bad.tokens[1] = std::int32_t(c.vocab_size);
  CHECK_THROWS_AS(gpu.log_probs(bad), value_error);
  gpu.log_probs(batch);
  CHECK_THROWS_AS(gpu.backward(batch, LlamaCuda::backend::matrix_of(batch.batch, batch.time + 1)), shape_error);
  auto nan = upstream(batch, 27);
  for (std::size_t i = 0; i < nan.size(); ++i)
    if (batch.response_mask[i]) nan[i] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(gpu.backward(batch, LlamaCuda::backend::matrix_from_host(batch.batch, batch.time, nan)),
                  value_error);
  gpu.backward(batch, g);
  CHECK_THROWS_AS(gpu.backward(batch, g), value_error);  // the logits were consumed
  CHECK_THROWS_AS(gpu.values(batch), config_error);       // no scalar head
  gpu.set_parameters(std::vector<float>(gpu.parameters().size(), std::numeric_limits<float>::quiet_NaN()));
  CHECK_THROWS_AS(gpu.log_probs(batch), value_error);
  CHECK_THROWS_AS(gpu.set_parameters(std::vector<float>(3)), shape_error);
  auto too_long = c;
  too_long.max_seq_len = 4;
  LlamaCuda short_model(too_long, 1);
  CHECK_THROWS_AS(short_model.log_probs(batch), shape_error);  // rows longer than max_seq_len
}
