// What does LoRA save at SmolLM2-135M's shape (V 49152, C 576, L 30, NH 9 / KVH 3, F 1536, tied)? One DPO step
// (rlhf::dpo_step: chosen and rejected in one forward, backward, AdamW) on B pairs of T tokens (the second half of
// each row the response), in one of two modes, one mode per process so that the peak RSS is the mode's own:
//
//   bench_lora full    every weight trained; the reference is a second copy of the model (as without LoRA)
//   bench_lora lora    r = 16, lora_alpha = 32 on q_proj k_proj v_proj o_proj; the reference is the base with the
//                      adapters off (Lora::reference()), no second copy
//
// Prints trainable parameters, AdamW's state (two moments per trainable parameter), the mean step time over
// `steps` steps after one untimed step, and the process's peak RSS (getrusage). Options: B T steps (default 2 128 3).
// Random weights: speed and memory do not depend on their values.
#include <sys/resource.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/models/llama/model.hpp"
#include "rlhf/models/lora/model.hpp"
#include "rlhf/optim/adamw.hpp"

namespace {

rlhf::LlamaConfig smollm2_135m() {
  return {.vocab_size = 49152, .hidden_size = 576, .intermediate_size = 1536, .layers = 30, .heads = 9,
          .kv_heads = 3, .max_seq_len = 8192, .rope_theta = 100000.0, .tie_word_embeddings = true};
}

rlhf::TokenBatch rows(std::size_t B, std::size_t T, rlhf::Rng& rng) {
  auto b = rlhf::TokenBatch::zeros(B, T);
  for (auto& t : b.tokens) t = rlhf::token_id(rng.below(49152));
  for (std::size_t i = 0; i < B; ++i)
    for (std::size_t t = T / 2; t < T; ++t) b.mask(i, t) = 1;
  return b;
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // Linux: KiB
}

template <class Step>
double mean_seconds(int steps, Step step) {
  step();  // buffers grow
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "full" && mode != "lora") {
    std::fprintf(stderr, "usage: bench_lora full|lora [B T steps]\n");
    return 2;
  }
  const std::size_t B = argc > 2 ? std::size_t(std::atoi(argv[2])) : 2, T = argc > 3 ? std::size_t(std::atoi(argv[3])) : 128;
  const int steps = argc > 4 ? std::atoi(argv[4]) : 3;
  rlhf::Rng rng(1);
  rlhf::PreferenceBatch batch{rows(B, T, rng), rows(B, T, rng), {}, {}};
  const rlhf::DpoConfig dpo{.beta = 0.1f};
  rlhf::AdamW<float> opt({.learning_rate = 1e-5f, .weight_decay = 0.0f});
  std::size_t trainable = 0;
  double seconds = 0;
  if (mode == "full") {
    rlhf::Llama<float> policy(smollm2_135m(), 1);
    rlhf::Llama<float> reference = policy;
    trainable = policy.parameters().size();
    seconds = mean_seconds(steps, [&] { rlhf::dpo_step(policy, reference, opt, batch, dpo); });
  } else {
    auto policy = rlhf::attach_lora(rlhf::Llama<float>(smollm2_135m(), 1),
                                    {.r = 16, .lora_alpha = 32, .target_modules = {"q_proj", "k_proj", "v_proj", "o_proj"}},
                                    rng);
    auto reference = policy.reference();
    trainable = policy.parameters().size();
    seconds = mean_seconds(steps, [&] { rlhf::dpo_step(policy, reference, opt, batch, dpo); });
  }
  std::printf("mode %s  B %zu pairs  T %zu  trainable %zu (%.2f M)  AdamW state %.1f MiB  step %.3f s  peak RSS %.0f MiB\n",
              mode.c_str(), B, T, trainable, double(trainable) / 1e6, 2.0 * double(trainable) * 4 / (1 << 20), seconds,
              peak_rss_mib());
  return 0;
}
