// How fast is the CPU Llama at SmolLM2-135M's shape (V 49152, C 576, L 30, NH 9 / KVH 3, F 1536, tied)?
//   sft_step : log_probs + backward on B sequences of T = 512 tokens (every token after the first scored, the
//              mean NLL's gradient), then AdamW
//   dpo_step : rlhf::dpo_step (sigmoid loss, β 0.1) on B pairs of T = 512 tokens, a prompt of 256 shared by the
//              pair and a response over the other 256 (response_mask): the policy's log_probs on the 2·B sequences,
//              a reference Llama<float> (same config, its own weights) log_probs only, backward, AdamW
//   sample   : 32 new tokens (the /32 rows) for 16 prompts of 64 tokens (KV cache), temperature 1; the /1 rows
//              draw one, so (time/32 − time/1) ÷ 31 is one step after the prefill: 16 rows through every weight,
//              bounded by the bytes of weights it reads ÷ the memory's rate (bench_stream)
//   head_logits : the sampler's LM head in one such step, logits [16, V] = rows [16, C] · head [V, C]ᵀ in float32,
//              through cpu::dot_rows on the level in use and through Eigen's packed product; GB/s counts the head's
//              bytes (the rows stay in cache)
// The PyTorch peer of these rows: bench/torch_llama.py (--bench sft,dpo,sample_kv).
// The *_bf16 rows: the projections' products in bf16 with float32 sums (set_matmul_precision; in dpo_step on the
// policy and the reference). Each benchmark runs its step once untimed first (buffer growth). GFLOP/s counts the
// matrix products only, the LM head on every token (ours runs it on the scored tokens only, so for dpo_step the
// figure is nominal):
//   N_mm = L·(2·C·(NH + KVH)·hd + 3·C·F) + C·V,  forward per token = 2·N_mm + 4·L·T·NH·hd,  training = 3 × forward,
//   DPO = (3 + 1) × forward over 2·B·T tokens (the policy's training, the reference's forward).
// Random weights: the speed of a step does not depend on their values. Pass --benchmark_filter to pick rows.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <vector>

#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/models/cpu/dot_rows.hpp"
#include "rlhf/models/llama/model.hpp"
#include "rlhf/optim/adamw.hpp"

namespace {

using Model = rlhf::Llama<float>;

rlhf::LlamaConfig smollm2_135m() {
  return {.vocab_size = 49152, .hidden_size = 576, .intermediate_size = 1536, .layers = 30, .heads = 9,
          .kv_heads = 3, .max_seq_len = 8192, .rope_theta = 100000.0, .tie_word_embeddings = true};
}

double forward_flop_per_token(const rlhf::LlamaConfig& c, std::size_t T) {
  const double C = double(c.hidden_size), hd = double(c.head_size());
  const double n_mm = double(c.layers) * (2 * C * double(c.heads + c.kv_heads) * hd + 3 * C * double(c.intermediate_size)) +
                      C * double(c.vocab_size);
  return 2 * n_mm + 4.0 * double(c.layers) * double(T) * double(c.heads) * hd;
}

void BM_llama_sft_step(benchmark::State& state, rlhf::gpt::MatmulPrecision precision) {
  const std::size_t B = std::size_t(state.range(0)), T = 512;
  const auto config = smollm2_135m();
  Model model(config, 1);
  model.set_matmul_precision(precision);
  rlhf::AdamW<float> opt(rlhf::AdamWConfig{.learning_rate = 1e-4f, .weight_decay = 0.0f});
  rlhf::Rng rng(2);
  auto batch = rlhf::TokenBatch::zeros(B, T);
  for (auto& t : batch.tokens) t = rlhf::token_id(rng.below(config.vocab_size));
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t t = 1; t < T; ++t) batch.mask(b, t) = 1;
  Model::matrix d = Model::matrix::Zero(Eigen::Index(B), Eigen::Index(T));
  const auto step = [&] {
    benchmark::DoNotOptimize(model.log_probs(batch).sum());
    const float g = -1.0f / float(B * (T - 1));
    for (std::size_t i = 0; i < B * T; ++i) d.data()[i] = batch.response_mask[i] ? g : 0.0f;
    model.zero_grad();
    model.backward(batch, d);
    opt.step(model.parameters(), model.gradients());
  };
  step();
  for (auto _ : state) step();
  state.counters["tokens/s"] = benchmark::Counter(double(B * T), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] = benchmark::Counter(3 * forward_flop_per_token(config, T) * double(B * T) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void BM_llama_dpo_step(benchmark::State& state, rlhf::gpt::MatmulPrecision precision) {
  const std::size_t B = std::size_t(state.range(0)), T = 512, P = T / 2;
  const auto config = smollm2_135m();
  Model policy(config, 1), reference(config, 4);
  policy.set_matmul_precision(precision);
  reference.set_matmul_precision(precision);
  rlhf::AdamW<float> opt(rlhf::AdamWConfig{.learning_rate = 1e-4f, .weight_decay = 0.0f});
  rlhf::Rng rng(5);
  rlhf::PreferenceBatch batch{rlhf::TokenBatch::zeros(B, T), rlhf::TokenBatch::zeros(B, T), {}, {}, {}};
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t t = 0; t < T; ++t) {
      const bool response = t >= P;
      batch.chosen.token(b, t) = rlhf::token_id(rng.below(config.vocab_size));
      batch.rejected.token(b, t) = response ? rlhf::token_id(rng.below(config.vocab_size)) : batch.chosen.token(b, t);
      batch.chosen.mask(b, t) = batch.rejected.mask(b, t) = response ? 1 : 0;
    }
  const rlhf::DpoConfig dpo{.beta = 0.1};
  const auto step = [&] { benchmark::DoNotOptimize(rlhf::dpo_step(policy, reference, opt, batch, dpo).loss); };
  step();
  for (auto _ : state) step();
  state.counters["tokens/s"] = benchmark::Counter(double(2 * B * T), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] = benchmark::Counter(4 * forward_flop_per_token(config, T) * double(2 * B * T) * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void BM_llama_sample(benchmark::State& state, rlhf::gpt::MatmulPrecision precision) {
  const std::size_t B = 16, P = 64, new_tokens = std::size_t(state.range(0));
  const auto config = smollm2_135m();
  Model model(config, 1);
  model.set_matmul_precision(precision);
  rlhf::Rng rng(3);
  rlhf::PromptBatch prompts{B, P, std::vector<rlhf::token_id>(B * P), std::vector<std::size_t>(B, P)};
  for (auto& t : prompts.tokens) t = rlhf::token_id(rng.below(config.vocab_size));
  const rlhf::SampleOptions o{.max_new_tokens = new_tokens};
  benchmark::DoNotOptimize(model.sample(prompts, o, rng).tokens.data());
  for (auto _ : state) benchmark::DoNotOptimize(model.sample(prompts, o, rng).tokens.data());
  state.counters["new tokens/s"] = benchmark::Counter(double(B * new_tokens), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_llama_head_logits(benchmark::State& state, bool packed_product) {
  const auto config = smollm2_135m();
  const std::size_t M = 16, V = config.vocab_size, C = config.hidden_size;
  rlhf::Rng rng(5);
  std::vector<float> rows(M * C), head(V * C), logits(M * V);  // [M, C], [V, C], [M, V]
  for (auto& x : rows) x = float(rng.normal());
  for (auto& x : head) x = float(rng.normal());
  const auto run = [&] {
    using Rows = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const auto i = [](std::size_t n) { return Eigen::Index(n); };
    if (packed_product)
      Eigen::Map<Rows>(logits.data(), i(M), i(V)).noalias() =
          Eigen::Map<const Rows>(rows.data(), i(M), i(C)) * Eigen::Map<const Rows>(head.data(), i(V), i(C)).transpose();
    else
      rlhf::cpu::dot_rows(logits.data(), V, rows.data(), head.data(), M, V, C);
    benchmark::DoNotOptimize(logits.data());
  };
  run();
  for (auto _ : state) run();
  state.counters["GB/s"] = benchmark::Counter(double(V * C * sizeof(float)), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(M * V * C), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK_CAPTURE(BM_llama_sft_step, smollm2_135m_T512, rlhf::gpt::MatmulPrecision::fp32)
    ->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);
BENCHMARK_CAPTURE(BM_llama_sft_step, smollm2_135m_T512_bf16, rlhf::gpt::MatmulPrecision::bf16)
    ->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);
BENCHMARK_CAPTURE(BM_llama_dpo_step, smollm2_135m_T512, rlhf::gpt::MatmulPrecision::fp32)
    ->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);
BENCHMARK_CAPTURE(BM_llama_dpo_step, smollm2_135m_T512_bf16, rlhf::gpt::MatmulPrecision::bf16)
    ->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);
BENCHMARK_CAPTURE(BM_llama_sample, smollm2_135m_B16_P64, rlhf::gpt::MatmulPrecision::fp32)
    ->Arg(32)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);
BENCHMARK_CAPTURE(BM_llama_sample, smollm2_135m_B16_P64_bf16, rlhf::gpt::MatmulPrecision::bf16)
    ->Arg(32)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);
BENCHMARK_CAPTURE(BM_llama_head_logits, dot_rows, false)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_llama_head_logits, eigen, true)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
