#pragma once
// DPO on a GPT with synthetic preference pairs, written once for any model and optimizer: the CPU GPT
// (rlhf::Gpt + rlhf::AdamW) and the CUDA GPT (rlhf::GptCuda + rlhf::CudaAdamW) run this same function.
//
//   sequence = prompt (P random tokens) + response (P tokens); only the response is scored
//   chosen   = the prompt reversed            rejected = P random tokens
//
// The reference is a second model with the policy's initial parameters; its log-probs are computed once per
// batch with rlhf::precompute_reference_logps, then rlhf::dpo_step trains the policy. Host C++ only.
#include <chrono>
#include <cstdio>
#include <vector>

#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/distributed/communicator.hpp"
#include "options.hpp"

namespace gpt_dpo {

// B pairs: chosen = prompt + reverse(prompt), rejected = prompt + random tokens. Token 0 is never drawn.
inline rlhf::PreferenceBatch make_pairs(const Options& o, rlhf::Rng& rng) {
  const std::size_t B = o.batch, P = o.prompt_len, T = 2 * P;
  rlhf::PreferenceBatch out{rlhf::TokenBatch::zeros(B, T), rlhf::TokenBatch::zeros(B, T), {}, {}};
  const auto draw = [&] { return static_cast<rlhf::token_id>(1 + rng.below(o.vocab - 1)); };
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t t = 0; t < P; ++t) out.chosen.token(b, t) = out.rejected.token(b, t) = draw();
    for (std::size_t t = 0; t < P; ++t) {
      out.chosen.token(b, P + t) = out.chosen.token(b, P - 1 - t);
      out.rejected.token(b, P + t) = draw();
      out.chosen.mask(b, P + t) = out.rejected.mask(b, P + t) = 1;
    }
  }
  return out;
}

struct NoSync {
  void operator()() const {}
};

// Trains `policy` for o.steps DPO steps against `reference` (a model with the policy's initial parameters).
// `sync` waits for queued device work, so that step times are wall-clock times of finished work. With a
// communicator of several ranks (mpirun), each rank draws its own B pairs and the steps are data-parallel over
// them; rank 0 prints. Returns the mean rewards/accuracies of the last min(10, steps) steps.
template <class Model, class Optimizer, class Sync = NoSync>
double train(Model& policy, Model& reference, Optimizer& optimizer, const Options& o, Sync sync = {},
             rlhf::Communicator* comm = nullptr) {
  using clock = std::chrono::steady_clock;
  const int rank = comm ? comm->rank() : 0, ranks = comm ? comm->size() : 1;
  rlhf::Rng rng(o.seed + 1000 + 7919 * std::uint64_t(rank));
  const rlhf::DpoConfig dpo{.beta = o.beta};
  double window_ms = 0, total_ms = 0, last_acc = 0;
  int window = 0, tail = 0;
  if (rank == 0) std::printf("%6s  %8s  %9s  %9s  %9s  %9s\n", "step", "loss", "accuracy", "margin", "chosen", "ms/step");
  for (int step = 1; step <= o.steps; ++step) {
    auto batch = make_pairs(o, rng);
    sync();
    const auto t0 = clock::now();
    rlhf::precompute_reference_logps(reference, batch);
    const auto r = rlhf::dpo_step(policy, optimizer, batch, dpo, {.communicator = comm});
    sync();
    const double ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
    window_ms += ms, total_ms += ms, ++window;
    if (step > o.steps - 10) last_acc += r.metrics["rewards/accuracies"], ++tail;
    if (rank == 0 && (step % o.log_every == 0 || step == 1 || step == o.steps)) {
      std::printf("%6d  %8.4f  %9.3f  %9.4f  %9.4f  %9.2f\n", step, r.loss, r.metrics["rewards/accuracies"],
                  r.metrics["rewards/margins"], r.metrics["rewards/chosen"], window_ms / window);
      std::fflush(stdout);
      window_ms = 0, window = 0;
    }
  }
  if (rank == 0)
    std::printf("done: %d steps on %s, %d rank(s), %.2f ms/step on average (reference forward + DPO step + AdamW)\n",
                o.steps, o.device.c_str(), ranks, total_ms / o.steps);
  return last_acc / tail;
}

// The CPU run: rlhf::Gpt<float> + rlhf::AdamW<float>. Defined here so both mains share it.
template <class Gpt, class AdamW>
double train_on_cpu(const Options& o, rlhf::Communicator* comm = nullptr) {
  Gpt policy(o.gpt(), o.seed), reference(o.gpt(), o.seed);
  AdamW optimizer({.learning_rate = o.learning_rate});
  return train(policy, reference, optimizer, o, NoSync{}, comm);
}

inline void print_header(const Options& o) {
  std::printf("gpt_dpo on %s: V %zu, C %zu, L %zu, NH %zu, T %zu, B %zu pairs, lr %g, beta %g\n", o.device.c_str(),
              o.vocab, o.channels, o.layers, o.heads, 2 * o.prompt_len, o.batch, o.learning_rate, o.beta);
  std::printf("chosen = the prompt reversed, rejected = random tokens\n");
}

}  // namespace gpt_dpo
