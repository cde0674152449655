// How fast is the fused sequence log-prob (log-softmax + gather + masked sum) and its backward, next to
// a plain copy of the same logits bytes? GB/s = bytes of logits / time, for every row.
//   bench_logprob --benchmark_repetitions=9 --benchmark_enable_random_interleaving=true
//                 --benchmark_report_aggregates_only=true   (one command line)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "rlhf/backends/eigen.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/models/logprob.hpp"

namespace {

using Be = rlhf::eigen<float>;
constexpr std::size_t B = 32, T = 256, V = 8192, N = B * T;

// One batch, built once: logits ~ uniform(−4, 4) (a softmax spread like a trained LM's), random targets,
// and a mask with every row a response token (100) or about half of them (50, as the PyTorch peer).
struct Batch {
  Be::matrix logits, d_logits;
  Be::index_vector targets;
  Be::vector mask_all, mask_half, d_sequence;
  Batch() : logits(Be::matrix_of(N, V)), d_logits(Be::matrix_of(N, V)), targets(N), mask_all(N), mask_half(N) {
    rlhf::Rng rng(42);
    for (std::size_t i = 0; i < N * V; ++i) logits.data()[i] = static_cast<float>(8 * rng.uniform() - 4);
    for (std::size_t r = 0; r < N; ++r) {
      targets[r] = static_cast<std::int32_t>(rng.below(V));
      mask_all[r] = 1;
      mask_half[r] = rng.uniform() < 0.5 ? 1.f : 0.f;
    }
    for (std::size_t b = 0; b < B; ++b) mask_half[b * T] = 1;  // never an empty sequence
    d_sequence = Be::vector::Constant(B, -1.f / B);
  }
  const Be::vector& mask(const benchmark::State& s) const { return s.range(0) == 100 ? mask_all : mask_half; }
};

Batch& batch() {
  static Batch b;
  return b;
}

void report(benchmark::State& state) {
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(N * V * sizeof(float)),
                                              benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}

// The baseline the targets are stated against: std::memcpy (one thread) of the logits bytes into a buffer.
void BM_copy(benchmark::State& state) {
  auto& b = batch();
  for (auto _ : state) {
    std::memcpy(b.d_logits.data(), b.logits.data(), N * V * sizeof(float));
    benchmark::ClobberMemory();
  }
  report(state);
}

// The same copy split over the OpenMP threads, row by row: the floor when both cores move memory.
struct CopyRow {
  const float* from;
  float* to;
  void operator()(std::size_t r) const { std::memcpy(to + r * V, from + r * V, V * sizeof(float)); }
};
void BM_copy_threads(benchmark::State& state) {
  auto& b = batch();
  for (auto _ : state) {
    Be::for_each(N, CopyRow{b.logits.data(), b.d_logits.data()}, V);
    benchmark::ClobberMemory();
  }
  report(state);
}

void BM_forward(benchmark::State& state) {
  auto& b = batch();
  for (auto _ : state) benchmark::DoNotOptimize(rlhf::sequence_logprob(b.logits, b.targets, b.mask(state), B));
  report(state);
}

void BM_backward(benchmark::State& state) {
  auto& b = batch();
  const auto fwd = rlhf::sequence_logprob(b.logits, b.targets, b.mask(state), B);
  for (auto _ : state) {
    rlhf::sequence_logprob_backward(b.d_logits, b.logits, b.targets, b.mask(state), fwd, b.d_sequence);
    benchmark::ClobberMemory();
  }
  report(state);
}

void BM_forward_backward(benchmark::State& state) {  // two calls, as when the upstream gradient needs the forward
  auto& b = batch();
  for (auto _ : state) {
    const auto fwd = rlhf::sequence_logprob(b.logits, b.targets, b.mask(state), B);
    rlhf::sequence_logprob_backward(b.d_logits, b.logits, b.targets, b.mask(state), fwd, b.d_sequence);
    benchmark::ClobberMemory();
  }
  report(state);
}

void BM_forward_backward_fused(benchmark::State& state) {  // one call, upstream gradient known (SFT)
  auto& b = batch();
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        rlhf::sequence_logprob_with_grad(b.d_logits, b.logits, b.targets, b.mask(state), B, b.d_sequence));
    benchmark::ClobberMemory();
  }
  report(state);
}

// The machine is shared: the fastest repetition is the least disturbed one, so report it next to the median
// (in that row the GB/s counter is the smallest rate, not the rate at the fastest time: use the median's).
// CPU time is that of all threads (with OMP_WAIT_POLICY=passive it excludes spinning at barriers): on a
// loaded machine, CPU time / threads estimates the wall time an idle machine would give.
double fastest(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

void setup(benchmark::internal::Benchmark* b) {
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime()->ComputeStatistics("min", fastest);
}

}  // namespace

// Arg: percent of rows that are response tokens (100: all; 50: about half, as the PyTorch peer's mask).
BENCHMARK(BM_copy)->Arg(100)->Apply(setup);
BENCHMARK(BM_copy_threads)->Arg(100)->Apply(setup);
BENCHMARK(BM_forward)->Arg(100)->Arg(50)->Apply(setup);
BENCHMARK(BM_backward)->Arg(100)->Arg(50)->Apply(setup);
BENCHMARK(BM_forward_backward)->Arg(100)->Arg(50)->Apply(setup);
BENCHMARK(BM_forward_backward_fused)->Arg(100)->Arg(50)->Apply(setup);
BENCHMARK_MAIN();
