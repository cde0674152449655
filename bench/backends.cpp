// How fast is each loss on each backend? Every loss of the family at B = 4096 pairs (K = 4 for the
// ranking losses, T = 128 tokens for the per-token ones) and the fused sequence log-prob forward+backward
// at B = 32, T = 256, V = 8192, all float32, beside a plain copy of the logits bytes.
//   bench_backends                                     console output, then one markdown table (ratios to Eigen)
//   bench_backends --benchmark_repetitions=5 --benchmark_report_aggregates_only=true    medians in the table
// Each loss runs on every backend before the next loss starts, so that a busy machine skews rows, not columns.
// Under nvcc (bench_backends_cuda, built on request) the same rows run on rlhf::thrust_cuda.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "rlhf/core/rng.hpp"
#include "rlhf/losses/bradley_terry.hpp"
#include "rlhf/losses/dpo.hpp"
#include "rlhf/losses/gae.hpp"
#include "rlhf/losses/kl.hpp"
#include "rlhf/losses/listwise_dpo.hpp"
#include "rlhf/models/logprob.hpp"
#include "rlhf/losses/plackett_luce.hpp"
#include "rlhf/losses/ppo.hpp"
#include "rlhf/losses/sft.hpp"
#include "rlhf/losses/unlikelihood.hpp"
#if defined(__CUDACC__)
#include <cuda_runtime.h>

#include "rlhf/backends/thrust.hpp"
#else
#include "rlhf/backends/eigen.hpp"
#if RLHF_BENCH_XTENSOR
#include "rlhf/backends/xtensor.hpp"
#endif
#if RLHF_BENCH_THRUST
#include "rlhf/backends/thrust.hpp"
#endif
#endif

namespace {

constexpr std::size_t B = 4096, K = 4, T = 128;                    // the loss rows
constexpr std::size_t LB = 32, LT = 256, LV = 8192, LN = LB * LT;  // the fused log-prob row
constexpr std::size_t KL_V = 1024;                                 // exact KL: [B, KL_V] logits

std::vector<float> uniform(std::size_t n, double lo, double hi, std::uint64_t seed) {
  rlhf::Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(lo + (hi - lo) * rng.uniform());
  return v;
}
std::vector<float> response_mask(std::size_t rows, std::size_t cols, std::uint64_t seed) {  // one run per row
  rlhf::Rng rng(seed);
  std::vector<float> m(rows * cols, 0.f);
  for (std::size_t r = 0; r < rows; ++r) {
    const std::size_t start = rng.below(cols / 4), length = cols / 2 + rng.below(cols / 2 - start);
    std::fill(m.begin() + static_cast<std::ptrdiff_t>(r * cols + start),
              m.begin() + static_cast<std::ptrdiff_t>(r * cols + start + length), 1.f);
  }
  return m;
}

// Every input, built once per backend on first use.
template <class Be>
struct Inputs {
  using V = typename Be::vector;
  using M = typename Be::matrix;
  V pc, pr, rc, rr, lengths_c, lengths_r, empty;
  M ranked, ranked_ref, logp, old_logp, ref_logp, advantages, values, old_values, returns, mask;
  M kl_p, kl_q;
  V kl_mask;
  M logits, d_logits;
  typename Be::index_vector targets;
  V row_mask, d_sequence;

  Inputs() {
    const auto vec = [](const std::vector<float>& h) { return Be::from_host(h); };
    const auto mat = [](std::size_t r, std::size_t c, const std::vector<float>& h) {
      return Be::matrix_from_host(r, c, h);
    };
    pc = vec(uniform(B, -300, -5, 1));
    pr = vec(uniform(B, -300, -5, 2));
    rc = vec(uniform(B, -300, -5, 3));
    rr = vec(uniform(B, -300, -5, 4));
    lengths_c = vec(uniform(B, 1, 200, 5));
    lengths_r = vec(uniform(B, 1, 200, 6));
    ranked = mat(B, K, uniform(B * K, -300, -5, 7));
    ranked_ref = mat(B, K, uniform(B * K, -300, -5, 8));
    logp = mat(B, T, uniform(B * T, -8, -0.01, 9));
    old_logp = mat(B, T, uniform(B * T, -8, -0.01, 10));
    ref_logp = mat(B, T, uniform(B * T, -8, -0.01, 11));
    advantages = mat(B, T, uniform(B * T, -2, 2, 12));
    values = mat(B, T, uniform(B * T, -1, 1, 13));
    old_values = mat(B, T, uniform(B * T, -1, 1, 14));
    returns = mat(B, T, uniform(B * T, -2, 2, 15));
    mask = mat(B, T, response_mask(B, T, 16));
    kl_p = mat(B, KL_V, uniform(B * KL_V, -4, 4, 17));
    kl_q = mat(B, KL_V, uniform(B * KL_V, -4, 4, 18));
    kl_mask = vec(std::vector<float>(B, 1.f));
    logits = mat(LN, LV, uniform(LN * LV, -4, 4, 19));
    d_logits = Be::matrix_of(LN, LV);
    rlhf::Rng rng(20);
    std::vector<std::int32_t> t(LN);
    for (auto& x : t) x = static_cast<std::int32_t>(rng.below(LV));
    targets = Be::indices_from_host(t);
    row_mask = vec(std::vector<float>(LN, 1.f));
    d_sequence = vec(std::vector<float>(LB, -1.f / LB));
  }
  static Inputs& get() {
    static Inputs in;
    return in;
  }
};

template <class Be, class F>
void run(benchmark::State& state, F f) {
  auto& in = Inputs<Be>::get();
  for (auto _ : state) benchmark::DoNotOptimize(f(in));
}

const char* const losses[] = {
    "dpo",   "dpo_simpo", "bradley_terry", "plackett_luce", "listwise_dpo",          "sft",           "unlikelihood",
    "kl_k3", "kl_exact",  "ppo_policy",    "ppo_value",     "kl_rewards_gae_whiten", "logprob_fused", "logprob_copy"};

// Registers the benchmark of one loss (`only`) on backend Be, named "<loss>/<backend>".
template <class Be>
void register_loss(const std::string& name, const std::string& only) {
  using V = typename Be::vector;
  using In = Inputs<Be>;
  const auto add = [&](const std::string& loss, auto f) {
    if (loss != only) return;
    benchmark::RegisterBenchmark((loss + "/" + name).c_str(), [f](benchmark::State& s) { run<Be>(s, f); })
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  };
  add("dpo", [](In& in) { return rlhf::dpo_loss(rlhf::PreferencePairs<V>{in.pc, in.pr, in.rc, in.rr}).loss; });
  add("dpo_simpo", [](In& in) {
    return rlhf::dpo_loss(rlhf::PreferencePairs<V>{in.pc, in.pr, in.rc, in.rr, in.lengths_c, in.lengths_r},
                          rlhf::DpoConfig::simpo())
        .loss;
  });
  add("bradley_terry", [](In& in) { return rlhf::bradley_terry_loss(rlhf::RewardPairs<V>{in.pc, in.pr}).loss; });
  add("plackett_luce", [](In& in) { return rlhf::plackett_luce_loss(in.ranked, in.empty).loss; });
  add("listwise_dpo", [](In& in) { return rlhf::listwise_dpo_loss(in.ranked, in.ranked_ref, in.empty).loss; });
  add("sft", [](In& in) { return rlhf::sft_loss(in.logp, in.mask).loss; });
  add("unlikelihood", [](In& in) { return rlhf::unlikelihood_loss(in.logp, in.mask, in.ref_logp, in.mask).loss; });
  add("kl_k3", [](In& in) { return rlhf::kl_estimate(in.logp, in.ref_logp, in.mask, rlhf::KlEstimator::k3).mean; });
  add("kl_exact", [](In& in) { return rlhf::exact_kl_from_logits(in.kl_p, in.kl_q, in.kl_mask).mean; });
  add("ppo_policy", [](In& in) { return rlhf::ppo_policy_loss(in.logp, in.old_logp, in.advantages, in.mask).loss; });
  add("ppo_value", [](In& in) { return rlhf::ppo_value_loss(in.values, in.old_values, in.returns, in.mask).loss; });
  add("kl_rewards_gae_whiten", [](In& in) {
    const auto rewards = rlhf::kl_penalized_rewards(in.pc, in.logp, in.ref_logp, in.mask, 0.05f);
    return rlhf::whiten(rlhf::gae(rewards, in.values, in.mask).advantages, in.mask);
  });
  add("logprob_fused", [](In& in) {
    return rlhf::sequence_logprob_with_grad(in.d_logits, in.logits, in.targets, in.row_mask, LB, in.d_sequence)
        .metrics["logps/sequence"];
  });
  add("logprob_copy", [](In& in) {  // the memory floor of the row above: read the logits once, write once
#if defined(__CUDACC__)
    cudaMemcpy(Be::data(in.d_logits), Be::data(in.logits), LN * LV * sizeof(float), cudaMemcpyDeviceToDevice);
    cudaDeviceSynchronize();
#else
    std::memcpy(Be::data(in.d_logits), Be::data(in.logits), LN * LV * sizeof(float));
    benchmark::ClobberMemory();
#endif
    return 0;
  });
}

// Prints the console output as usual, then one markdown table: a row per loss, a column per backend,
// each time (median when repeated) and its ratio to the first backend's.
class TableReporter : public benchmark::ConsoleReporter {
 public:
  explicit TableReporter(std::vector<std::string> backends) : backends_(std::move(backends)) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& r : runs) {
      const bool repeated = r.repetitions > 1;
      if (r.error_occurred || (repeated ? r.aggregate_name != "median" : r.run_type != Run::RT_Iteration)) continue;
      const std::string name = r.run_name.function_name;
      const auto slash = name.find('/');
      times_[name.substr(0, slash)][name.substr(slash + 1)] = r.GetAdjustedRealTime();
      if (std::find(order_.begin(), order_.end(), name.substr(0, slash)) == order_.end())
        order_.push_back(name.substr(0, slash));
    }
  }
  void print_table() const {
    std::printf("\n| loss (µs) |");
    for (std::size_t i = 0; i < backends_.size(); ++i) std::printf(i ? " %s | × |" : " %s |", backends_[i].c_str());
    std::printf("\n|---|");
    for (std::size_t i = 0; i < backends_.size(); ++i) std::printf(i ? "---:|---:|" : "---:|");
    std::printf("\n");
    for (const auto& loss : order_) {
      const auto& row = times_.at(loss);
      std::printf("| %s |", loss.c_str());
      const auto first = row.find(backends_[0]);
      for (std::size_t i = 0; i < backends_.size(); ++i) {
        const auto it = row.find(backends_[i]);
        if (it == row.end()) {
          std::printf(i ? " – | – |" : " – |");
        } else if (i == 0) {
          std::printf(" %.1f |", it->second);
        } else if (first != row.end()) {
          std::printf(" %.1f | %.2f |", it->second, it->second / first->second);
        } else {
          std::printf(" %.1f | – |", it->second);
        }
      }
      std::printf("\n");
    }
  }

 private:
  std::vector<std::string> backends_;
  std::vector<std::string> order_;
  std::map<std::string, std::map<std::string, double>> times_;
};

}  // namespace

int main(int argc, char** argv) {
#if defined(__CUDACC__)
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("bench_backends_cuda: no CUDA device; nothing measured\n");
    return 77;
  }
#endif
  std::vector<std::string> backends;
  for (const std::string loss : losses) {
#if defined(__CUDACC__)
    register_loss<rlhf::thrust_cuda<float>>("thrust-cuda", loss);
#else
    register_loss<rlhf::eigen<float>>("eigen", loss);
#if RLHF_BENCH_XTENSOR
    register_loss<rlhf::xtensor<float>>("xtensor", loss);
#endif
#if RLHF_BENCH_THRUST
    register_loss<rlhf::thrust_host<float>>(rlhf::thrust_host<float>::name, loss);
#endif
#endif
  }
#if defined(__CUDACC__)
  backends = {"thrust-cuda"};
#else
  backends = {"eigen"};
#if RLHF_BENCH_XTENSOR
  backends.push_back("xtensor");
#endif
#if RLHF_BENCH_THRUST
  backends.push_back(rlhf::thrust_host<float>::name);
#endif
#endif
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  TableReporter reporter(backends);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_table();
  benchmark::Shutdown();
  return 0;
}
