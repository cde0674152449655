// What can this machine do at most? The two limits the models' speed is measured against:
//   stream_triad : bytes a second from memory. STREAM's triad, a[i] = b[i] + s·c[i], over three float arrays far
//                  larger than the caches; GB/s counts 12 bytes an element (two reads, one write) as STREAM does,
//                  not the write's cache-line fill. It bounds a step that reads every weight once for a few rows
//                  (KV-cache sampling): bytes of weights per step ÷ this rate.
//   fma_peak     : float32 FLOP/s of 12 independent chains of 256-bit FMAs per thread (AVX2; 2 FLOPs a lane).
//   bf16_peak    : FLOP/s of 12 independent chains of vdpbf16ps (AVX-512 BF16: 32 bf16 products summed in
//                  pairs into 16 floats, counted as 64 FLOPs), where the CPU has it; skipped elsewhere.
// Every row runs on OMP_NUM_THREADS threads.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

int threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

void BM_stream_triad(benchmark::State& state) {
  const std::ptrdiff_t n = std::ptrdiff_t(state.range(0)) << 20;
  std::vector<float> a(std::size_t(n), 0.0f), b(std::size_t(n), 1.0f), c(std::size_t(n), 2.0f);
  const float s = 3.0f;
  const auto triad = [&] {
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t i = 0; i < n; ++i) a[std::size_t(i)] = b[std::size_t(i)] + s * c[std::size_t(i)];
  };
  triad();  // untimed: pages faulted in
  for (auto _ : state) {
    triad();
    benchmark::DoNotOptimize(a.data());
    benchmark::ClobberMemory();
  }
  state.counters["GB/s"] = benchmark::Counter(12.0 * double(n) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

#if defined(__x86_64__)
constexpr int chains = 12;
constexpr long rounds = 1 << 24;

__attribute__((target("avx2,fma"))) float fma_chains() {
  __m256 acc[chains];
  for (int i = 0; i < chains; ++i) acc[i] = _mm256_set1_ps(float(i));
  const __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(1e-4f);
  for (long r = 0; r < rounds; ++r)
    for (int i = 0; i < chains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
  float out[8], total = 0;
  for (int i = 0; i < chains; ++i) {
    _mm256_storeu_ps(out, acc[i]);
    total += out[0];
  }
  return total;
}

// Runs chains() on every thread; flop: what one instruction of its chains counts.
void peak_rows(benchmark::State& state, float (*chains_of_thread)(), double flop) {
  float sink = 0;
  for (auto _ : state) {
#pragma omp parallel reduction(+ : sink)
    sink += chains_of_thread();
  }
  benchmark::DoNotOptimize(sink);
  state.counters["GFLOP/s"] = benchmark::Counter(double(threads()) * rounds * chains * flop * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void BM_fma_peak(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return state.SkipWithError("no AVX2 + FMA");
  peak_rows(state, fma_chains, 16);  // 8 lanes, a multiply and an add
}

__attribute__((target("avx512f,avx512bf16"))) float bf16_chains() {
  __m512 acc[chains];
  for (int i = 0; i < chains; ++i) acc[i] = _mm512_set1_ps(float(i));
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0x3800);  // 1, 2^-15
  for (long r = 0; r < rounds; ++r)
    for (int i = 0; i < chains; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], x, y);
  float total = 0;
  for (int i = 0; i < chains; ++i) total += _mm512_reduce_add_ps(acc[i]);
  return total;
}

void BM_bf16_peak(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx512bf16")) return state.SkipWithError("no AVX-512 BF16");
  peak_rows(state, bf16_chains, 64);  // 32 products and 32 sums
}
#endif

}  // namespace

BENCHMARK(BM_stream_triad)->Arg(48)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
#if defined(__x86_64__)
BENCHMARK(BM_fma_peak)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_bf16_peak)->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

BENCHMARK_MAIN();
