// How fast does the CUDA GPT train? SFT and DPO steps (rlhf::sft_step / rlhf::dpo_step with CudaAdamW, the
// same calls as on the CPU) at the PyTorch peer's two small configs and at GPT-2 small (124M, T = 1024), plus
// KV-cache sampling at the small configs. Prints a markdown table: ms per step, tokens per second, achieved
// TFLOP/s and model FLOPs utilisation (MFU).
//
// Model FLOPs per trained token (forward + backward): 6·N + 12·L·C·T (N: parameters without the position
// table; the tied LM head counted once; 12·L·C·T: the two attention products of the full T×T scores, forward and
// backward; PaLM's convention). A forward alone is a third of that. MFU is against the dense (non-sparse) peak of
// an H100 SXM: 494.7 TFLOP/s for TF32 (what the default GEMMs run) and, for comparison with BF16 trainers such as
// llm.c, 989.4 TFLOP/s for BF16. Other GPUs: read the TFLOP/s column.
//
// The last column is the device memory in use while the row's models exist (their parameters, optimizer state and
// activation buffers, which grow to the largest batch and never shrink: the row's peak, up to Thrust's temporaries).
//
//   bench_gpt_cuda [--quick] [--steps N] [--fp32 | --bf16] [--flash]
//     --bf16   GemmPrecision::bf16: bf16 operands, float32 sums and parameters (gpt_cuda/matmul.cuh)
//     --flash  attention = flash (gpt_cuda/flash_attention.cuh) instead of the materialized T×T probabilities
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/algorithms/sft.hpp"
#include "rlhf/models/gpt_cuda/device.cuh"
#include "rlhf/models/gpt_cuda/model.cuh"

namespace {

using namespace rlhf;

constexpr double peak_tf32 = 494.7e12, peak_bf16 = 989.4e12;  // H100 SXM, dense

struct Setup {
  const char* name;
  GptConfig config;
  std::size_t batch;  // B sequences for SFT
  std::size_t pairs;  // P pairs (2P sequences) for DPO
  std::size_t time;   // T
};

TokenBatch random_batch(std::size_t B, std::size_t T, std::size_t V, std::uint64_t seed) {
  Rng rng(seed);
  TokenBatch b = TokenBatch::zeros(B, T);
  for (auto& t : b.tokens) t = token_id(rng.below(V));
  for (std::size_t r = 0; r < B; ++r)
    for (std::size_t t = 1; t < T; ++t) b.mask(r, t) = 1;  // every token after the first is scored
  return b;
}

double train_flops_per_token(const GptConfig& c, std::size_t T) {
  const double N = double(gpt_param_count(c) - c.max_seq_len * c.channels);
  return 6 * N + 12 * double(c.layers) * double(c.channels) * double(T);
}

// Seconds per call of f, after `warmup` calls, averaged over `steps`.
template <class F>
double time_it(F&& f, int warmup, int steps) {
  for (int i = 0; i < warmup; ++i) f();
  RLHF_CUDA_CHECK(cudaDeviceSynchronize());
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) f();
  RLHF_CUDA_CHECK(cudaDeviceSynchronize());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;
}

double gib_in_use() {
  std::size_t free_bytes = 0, total_bytes = 0;
  RLHF_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return double(total_bytes - free_bytes) / (1 << 30);
}

void row(const char* config, const char* step, double seconds, double tokens, double flops) {
  const double tflops = flops / seconds / 1e12;
  std::printf("| %-10s | %-12s | %9.2f | %11.0f | %7.1f | %8.1f%% | %8.1f%% | %7.2f |\n", config, step,
              seconds * 1e3, tokens / seconds, tflops, 100 * tflops * 1e12 / peak_tf32,
              100 * tflops * 1e12 / peak_bf16, gib_in_use());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int steps = 10;
  GemmPrecision precision = GemmPrecision::tf32;
  AttentionKernel attention = AttentionKernel::materialized;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--fp32")) precision = GemmPrecision::fp32;
    else if (!std::strcmp(argv[i], "--bf16")) precision = GemmPrecision::bf16;
    else if (!std::strcmp(argv[i], "--flash")) attention = AttentionKernel::flash;
    else if (!std::strcmp(argv[i], "--steps") && i + 1 < argc) steps = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--steps N] [--fp32 | --bf16] [--flash]\n", argv[0]);
      return 2;
    }
  }
  // 77 only without a GPU (no driver, or no device); a GPU that fails is an error (docs/models/gpt_cuda.md)
  if (const auto probe = gpt_cuda::probe_device(); probe.kind != gpt_cuda::DeviceProbe::ready) {
    const bool absent = probe.kind == gpt_cuda::DeviceProbe::absent;
    std::printf("bench_gpt_cuda: %s (%s); nothing measured\n", absent ? "no CUDA device" : "CUDA error",
                probe.message.c_str());
    return absent ? 77 : 1;
  }
  cudaDeviceProp prop{};
  RLHF_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("bench_gpt_cuda: %s (%d SMs), GEMMs in %s, %s attention, %d timed steps after 2 warm-up steps\n",
              prop.name, prop.multiProcessorCount,
              precision == GemmPrecision::tf32 ? "TF32" : precision == GemmPrecision::bf16 ? "BF16" : "FP32",
              attention == AttentionKernel::flash ? "flash" : "materialized", steps);
  std::printf("MFU vs H100 SXM dense peaks: TF32 %.1f, BF16 %.1f TFLOP/s\n\n", peak_tf32 / 1e12, peak_bf16 / 1e12);

  // B, P: the peer's B = 16 at the small configs; GPT-2 small: 8 sequences of 1024 in both steps
  const std::vector<Setup> setups = {
      {"tiny", {.vocab_size = 256, .max_seq_len = 64, .channels = 128, .layers = 2, .heads = 4}, 16, 16, 64},
      {"small", {.vocab_size = 2048, .max_seq_len = 128, .channels = 256, .layers = 4, .heads = 4}, 16, 16, 128},
      {"gpt2-124M",
       {.vocab_size = 50257, .max_seq_len = 1024, .channels = 768, .layers = 12, .heads = 12},
       8, 4, 1024}};
  std::printf("| config     | step         | ms / step | tokens / s  | TFLOP/s | MFU tf32 | MFU bf16 | GiB used |\n");
  std::printf("|------------|--------------|-----------|-------------|---------|----------|----------|----------|\n");
  for (const auto& s : setups) {
    if (quick && s.config.channels == 768 && steps > 3) steps = 3;
    const GptConfig& c = s.config;
    const std::size_t B = s.batch, T = s.time;
    const double per_token = train_flops_per_token(c, T);
    {  // SFT: forward + backward + AdamW on B sequences
      GptCuda policy(c, 1, {.precision = precision, .attention = attention});
      CudaAdamW opt({.learning_rate = 1e-4f});
      const TokenBatch batch = random_batch(B, T, c.vocab_size, 2);
      const double sec = time_it([&] { sft_step(policy, opt, batch); }, 2, steps);
      row(s.name, "SFT", sec, double(B * T), double(B * T) * per_token);
    }
    {  // DPO: policy forward + backward on 2P sequences, reference forward on the same, AdamW
      const std::size_t P = s.pairs;
      GptCuda policy(c, 1, {.precision = precision, .attention = attention}), reference(c, 1, {.precision = precision, .attention = attention});
      CudaAdamW opt({.learning_rate = 1e-4f});
      const PreferenceBatch batch{random_batch(P, T, c.vocab_size, 3), random_batch(P, T, c.vocab_size, 4), {}, {}};
      const double sec = time_it([&] { dpo_step(policy, reference, opt, batch); }, 2, steps);
      row(s.name, "DPO", sec, double(2 * P * T), double(2 * P * T) * per_token * (1.0 + 1.0 / 3.0));
    }
    if (c.channels < 768) {  // sampling: 32 new tokens after a 16-token prompt, B rows
      GptCuda policy(c, 1, {.precision = precision, .attention = attention});
      PromptBatch prompts{B, 16, std::vector<token_id>(B * 16, 1), std::vector<std::size_t>(B, 16)};
      const SampleOptions o{.max_new_tokens = 32, .temperature = 1.0f, .top_k = 50};
      Rng rng(5);
      const double sec = time_it([&] { policy.sample(prompts, o, rng); }, 1, steps);
      const double fwd = per_token / 3;  // a rough count: prompt + new tokens through the model
      row(s.name, "sample 32", sec, double(B * 32), double(B * (16 + 32)) * fwd);
    }
  }
  std::size_t free_bytes = 0, total_bytes = 0;
  RLHF_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  std::printf("\ntokens/s: SFT B·T, DPO 2P·T (policy tokens), sampling B·32 new tokens. Device memory at the end: "
              "%.1f of %.1f GiB in use\n",
              double(total_bytes - free_bytes) / (1 << 30), double(total_bytes) / (1 << 30));
  return 0;
}
