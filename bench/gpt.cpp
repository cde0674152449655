// How fast is the CPU GPT? The PyTorch peer's configs and steps (../shared/peers/torch_gpt_dpo.py):
//   fwd_bwd  : log_probs + backward on B sequences of T tokens (every token after the first scored)
//   sft_step : fwd_bwd with the mean token NLL, then AdamW
//   dpo_step : policy fwd_bwd on 2B sequences (prompt T/2, response of T/4 … T/2 tokens), reference forward,
//              sigmoid DPO loss, AdamW
//   sample   : 32 new tokens for B prompts of T − 32 tokens (KV cache), temperature 1
// Every benchmark runs its step once untimed first, so that growing the buffers (and page-faulting them in, a
// tenth of a small DPO step's time when it has only a few timed iterations) is not counted.
// The *_bf16 rows: the same steps with the model's matrix products in bf16 with float32 sums (set_matmul_precision).
// GFLOP/s uses the peer's FLOP model (matmuls only; attention over the full T×T), so the two are comparable:
//   N_mm = L·12·C² + C·V,  forward per token = 2·N_mm + 4·L·T·C,  training = 3 × forward.
// For sampling the FLOPs are what a KV cache needs: per new token at position t, 2·N_mm + 4·L·t·C.
#include <benchmark/benchmark.h>

#include <vector>

#include "rlhf/core/rng.hpp"
#include "rlhf/losses/dpo.hpp"
#include "rlhf/models/cpu/isa.hpp"
#include "rlhf/models/gpt/model.hpp"
#include "rlhf/optim/adamw.hpp"

namespace {

using Model = rlhf::Gpt<float>;
using Mat = Model::matrix;
using Vec = Model::vector;

struct Shape {
  std::size_t V, C, L, NH, T, B;
  rlhf::gpt::MatmulPrecision precision = rlhf::gpt::MatmulPrecision::fp32;
};
constexpr Shape tiny{256, 128, 2, 4, 64, 16};
constexpr Shape small{2048, 256, 4, 4, 128, 16};
constexpr Shape tiny_bf16{256, 128, 2, 4, 64, 16, rlhf::gpt::MatmulPrecision::bf16};
constexpr Shape small_bf16{2048, 256, 4, 4, 128, 16, rlhf::gpt::MatmulPrecision::bf16};

Model make_model(const Shape& s) {
  Model m(rlhf::GptConfig{.vocab_size = s.V, .max_seq_len = s.T, .channels = s.C, .layers = s.L, .heads = s.NH}, 1);
  m.set_matmul_precision(s.precision);
  return m;
}

double forward_flop_per_token(const Shape& s) {
  const double n_mm = double(s.L) * 12 * s.C * s.C + double(s.C) * s.V;
  return 2 * n_mm + 4.0 * s.L * s.T * s.C;
}

rlhf::TokenBatch random_batch(const Shape& s, std::size_t rows, std::uint64_t seed) {
  rlhf::Rng rng(seed);
  auto b = rlhf::TokenBatch::zeros(rows, s.T);
  for (auto& t : b.tokens) t = static_cast<rlhf::token_id>(rng.below(s.V));
  return b;
}

void set_rate(benchmark::State& state, double flop) {
  state.counters["GFLOP/s"] = benchmark::Counter(flop * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_gpt_fwd_bwd(benchmark::State& state, Shape s) {
  Model model = make_model(s);
  auto batch = random_batch(s, s.B, 2);
  for (std::size_t b = 0; b < s.B; ++b)
    for (std::size_t t = 1; t < s.T; ++t) batch.mask(b, t) = 1;
  const Mat d = Mat::Constant(s.B, s.T, -1.0f / float(s.B * (s.T - 1)));
  const auto step = [&] {
    model.zero_grad();
    benchmark::DoNotOptimize(model.log_probs(batch).data());
    model.backward(batch, d);
  };
  step();  // untimed: the first pass sizes (and page-faults in) the activation buffers
  for (auto _ : state) step();
  set_rate(state, 3 * forward_flop_per_token(s) * s.B * s.T);
}

void BM_gpt_forward(benchmark::State& state, Shape s) {
  Model model = make_model(s);
  auto batch = random_batch(s, s.B, 3);
  for (std::size_t b = 0; b < s.B; ++b)
    for (std::size_t t = 1; t < s.T; ++t) batch.mask(b, t) = 1;
  benchmark::DoNotOptimize(model.log_probs(batch).data());  // untimed: sizes the buffers
  for (auto _ : state) benchmark::DoNotOptimize(model.log_probs(batch).data());
  set_rate(state, forward_flop_per_token(s) * s.B * s.T);
}

void BM_gpt_sft_step(benchmark::State& state, Shape s) {
  Model model = make_model(s);
  rlhf::AdamW<float> opt(rlhf::AdamWConfig{.learning_rate = 1e-4f, .weight_decay = 0.0f});
  auto batch = random_batch(s, s.B, 4);
  for (std::size_t b = 0; b < s.B; ++b)
    for (std::size_t t = 1; t < s.T; ++t) batch.mask(b, t) = 1;
  Mat d = Mat::Zero(s.B, s.T);
  const auto step = [&] {
    const Mat lp = model.log_probs(batch);
    benchmark::DoNotOptimize(lp.sum());  // the mean NLL; its gradient is −1/(tokens) on every scored token
    const float g = -1.0f / float(s.B * (s.T - 1));
    for (std::size_t i = 0; i < s.B * s.T; ++i) d.data()[i] = batch.response_mask[i] ? g : 0.0f;
    model.zero_grad();
    model.backward(batch, d);
    opt.step(model.parameters(), model.gradients());
  };
  step();  // untimed: the first step sizes the buffers and the optimizer's moments
  for (auto _ : state) step();
  set_rate(state, 3 * forward_flop_per_token(s) * s.B * s.T);
}

void BM_gpt_dpo_step(benchmark::State& state, Shape s) {
  Model policy = make_model(s);
  Model reference = policy;
  rlhf::AdamW<float> opt(rlhf::AdamWConfig{.learning_rate = 1e-4f, .weight_decay = 0.0f});
  // rows 0 … B−1 chosen, B … 2B−1 rejected; shared prompt of T/2 tokens
  auto batch = random_batch(s, 2 * s.B, 5);
  rlhf::Rng rng(6);
  const std::size_t P = s.T / 2;
  for (std::size_t b = 0; b < 2 * s.B; ++b) {
    for (std::size_t t = 0; t < P; ++t) batch.token(b, t) = batch.token(b % s.B, t);
    const std::size_t len = s.T / 4 + rng.below(s.T - P - s.T / 4 + 1);
    for (std::size_t t = P; t < P + len && t < s.T; ++t) batch.mask(b, t) = 1;
  }
  Mat d = Mat::Zero(2 * s.B, s.T);
  Vec pc(s.B), pr(s.B), rc(s.B), rr(s.B);
  const auto step = [&] {
    const Mat ref = reference.log_probs(batch);
    const Mat lp = policy.log_probs(batch);
    for (std::size_t b = 0; b < s.B; ++b) {
      pc[b] = lp.row(b).sum(), pr[b] = lp.row(b + s.B).sum();
      rc[b] = ref.row(b).sum(), rr[b] = ref.row(b + s.B).sum();
    }
    const auto r = rlhf::dpo_loss(rlhf::PreferencePairs<Vec>{pc, pr, rc, rr, {}, {}});
    benchmark::DoNotOptimize(r.loss);
    for (std::size_t b = 0; b < 2 * s.B; ++b) {
      const float g = b < s.B ? r.d_policy_chosen[b] : r.d_policy_rejected[b - s.B];
      for (std::size_t t = 0; t < s.T; ++t) d(b, t) = batch.mask(b, t) ? g : 0.0f;
    }
    policy.zero_grad();
    policy.backward(batch, d);
    opt.step(policy.parameters(), policy.gradients());
  };
  step();  // untimed: the first step sizes both models' buffers and the optimizer's moments
  for (auto _ : state) step();
  set_rate(state, 4 * forward_flop_per_token(s) * 2 * s.B * s.T);
}

void BM_gpt_sample(benchmark::State& state, Shape s) {
  Model model = make_model(s);
  const std::size_t new_tokens = 32, P = s.T - new_tokens;
  rlhf::PromptBatch prompts{s.B, P, {}, std::vector<std::size_t>(s.B, P)};
  rlhf::Rng data(7);
  for (std::size_t i = 0; i < s.B * P; ++i) prompts.tokens.push_back(static_cast<rlhf::token_id>(data.below(s.V)));
  rlhf::Rng rng(8);
  const rlhf::SampleOptions options{.max_new_tokens = new_tokens};
  benchmark::DoNotOptimize(model.sample(prompts, options, rng).tokens.data());  // untimed: sizes the KV cache
  for (auto _ : state) benchmark::DoNotOptimize(model.sample(prompts, options, rng).tokens.data());
  const double n_mm = double(s.L) * 12 * s.C * s.C + double(s.C) * s.V;
  double flop = 0;
  for (std::size_t t = P; t < s.T; ++t) flop += s.B * (2 * n_mm + 4.0 * s.L * t * s.C);
  flop += s.B * P * (2 * (n_mm - double(s.C) * s.V) + 2.0 * s.L * P * s.C);  // prefill (causal half)
  set_rate(state, flop);
  state.counters["tokens/s"] =
      benchmark::Counter(double(s.B * new_tokens), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK_CAPTURE(BM_gpt_forward, tiny, tiny)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_fwd_bwd, tiny, tiny)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_sft_step, tiny, tiny)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_dpo_step, tiny, tiny)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_sample, tiny, tiny)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_forward, small, small)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_fwd_bwd, small, small)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_sft_step, small, small)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_dpo_step, small, small)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_sample, small, small)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_forward, tiny_bf16, tiny_bf16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_fwd_bwd, tiny_bf16, tiny_bf16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_sft_step, tiny_bf16, tiny_bf16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_dpo_step, tiny_bf16, tiny_bf16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_sample, tiny_bf16, tiny_bf16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_forward, small_bf16, small_bf16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_fwd_bwd, small_bf16, small_bf16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_sft_step, small_bf16, small_bf16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_dpo_step, small_bf16, small_bf16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_gpt_sample, small_bf16, small_bf16)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // the *_bf16 rows: which bf16 product ran (the portable one multiplies at float32 speed)
  benchmark::AddCustomContext("cpu_kernels", rlhf::cpu::isa_summary());  // RLHF_CPU_ISA lowers it
  benchmark::AddCustomContext("bf16_products", rlhf::gpt::bf16::hardware_available()
                                                   ? "AVX-512 BF16"
                                                   : "float32 products (no AVX-512 BF16 in use)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
