// Data-parallel throughput on this machine, run under mpirun (scripts or by hand):
//   OMP_NUM_THREADS=1 mpirun -np 1 build/bench/mpi/bench_data_parallel
//   OMP_NUM_THREADS=1 mpirun -np 2 --oversubscribe build/bench/mpi/bench_data_parallel
// prints, for its rank count R, the DPO steps per second of a small GPT with `local` pairs per rank (R·local
// pairs per step: weak scaling) and the time of one all-reduce of GPT-2 small's gradient buffer (124M floats).
// The efficiency is steps/s at R ranks over steps/s at 1 rank (docs/distributed.md has a measured table).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/distributed/mpi.hpp"
#include "rlhf/models/gpt/model.hpp"
#include "rlhf/models/gpt_host/params.hpp"
#include "rlhf/optim/adamw.hpp"

namespace {

using Clock = std::chrono::steady_clock;
double seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

rlhf::TokenBatch random_rows(std::size_t rows, std::size_t T, std::size_t vocab, std::uint64_t seed) {
  rlhf::Rng rng(seed);
  auto b = rlhf::TokenBatch::zeros(rows, T);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t t = 0; t < T; ++t) {
      b.token(r, t) = rlhf::token_id(rng.below(vocab));
      b.mask(r, t) = t >= T / 2;
    }
  return b;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  rlhf::MpiSession mpi(argc, argv);
  rlhf::MpiCommunicator world;
  const int R = world.size(), rank = world.rank();

  // DPO steps: a GPT of C 128, L 2, V 2000, T 32, 8 pairs per rank.
  const rlhf::GptConfig config{.vocab_size = 2000, .max_seq_len = 32, .channels = 128, .layers = 2, .heads = 4};
  const std::size_t local = 8, warmup = 3, steps = 20;
  rlhf::Gpt<float> policy(config, 1), reference(config, 1);
  rlhf::AdamW<float> opt({.learning_rate = 1e-4f});
  rlhf::PreferenceBatch batch;
  batch.chosen = random_rows(local, config.max_seq_len, config.vocab_size, 10 + 2 * std::uint64_t(rank));
  batch.rejected = random_rows(local, config.max_seq_len, config.vocab_size, 11 + 2 * std::uint64_t(rank));
  rlhf::precompute_reference_logps(reference, batch);
  const rlhf::StepOptions options{.communicator = &world};
  for (std::size_t s = 0; s < warmup; ++s) rlhf::dpo_step(policy, opt, batch, {}, options);
  world.barrier();
  const auto t0 = Clock::now();
  for (std::size_t s = 0; s < steps; ++s) rlhf::dpo_step(policy, opt, batch, {}, options);
  world.barrier();
  const double step_time = seconds(t0) / double(steps);

  // One all-reduce (sum) of a GPT-2 small gradient: 124M floats, 498 MB per rank.
  const std::size_t n = rlhf::gpt_param_count(rlhf::GptConfig{});
  std::vector<float> grads(n, 1e-3f);
  std::vector<double> times;
  for (int rep = 0; rep < 5; ++rep) {
    world.barrier();
    const auto t1 = Clock::now();
    world.all_reduce_sum(std::span<float>(grads));
    times.push_back(seconds(t1));
  }
  if (rank == 0) {
    std::printf("ranks %d: DPO step (C 128, L 2, V 2000, T 32, %zu pairs per rank, %zu per step) %.1f ms, %.2f steps/s, "
                "%.1f pairs/s\n",
                R, local, local * std::size_t(R), 1e3 * step_time, 1.0 / step_time, double(local * std::size_t(R)) / step_time);
    if (R == 1)
      std::printf("ranks 1: no all-reduce to time (one rank: MPI returns at once)\n");
    else
      std::printf("ranks %d: all-reduce of %zu floats (%.0f MB): median of 5 %.3f s, %.2f GB/s of buffer\n", R, n,
                  double(n) * 4 / 1e6, median(times), double(n) * 4 / 1e9 / median(times));
  }
  return 0;
}
