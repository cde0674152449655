// How fast does the CUDA Llama train? SFT and DPO steps (rlhf::sft_step / rlhf::dpo_step with CudaAdamW, the same
// calls as on the CPU) at the SmolLM2-135M shape and the Qwen2.5-0.5B shape, T = 512. Prints the markdown table of
// bench_gpt_cuda (bench/gpu/gpt_cuda.cu): ms per step, tokens per second, achieved TFLOP/s and MFU against an H100
// SXM's dense TF32 and BF16 peaks.
//
// Model FLOPs per trained token (forward + backward): 6·N + 12·L·(NH·hd)·T (N: parameters, the tied LM head counted
// once; the second term: the two attention products over the full T×T scores, forward and backward). A forward
// alone is a third of that.
//
// Status: compiled with nvcc for sm_90; not yet run on a device (docs/models/llama.md, "The CUDA twin").
//
//   bench_llama_cuda [--quick] [--steps N] [--fp32 | --bf16] [--flash]      (--quick: the SmolLM2 shape only)
//     --bf16: GemmPrecision::bf16; --flash: AttentionKernel::flash (both issue 31's, not yet run on a device)
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/algorithms/sft.hpp"
#include "rlhf/models/gpt_cuda/device.cuh"
#include "rlhf/models/llama_cuda/model.cuh"

namespace {

using namespace rlhf;

constexpr double peak_tf32 = 494.7e12, peak_bf16 = 989.4e12;  // H100 SXM, dense

struct Setup {
  const char* name;
  LlamaConfig config;
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

double train_flops_per_token(const LlamaConfig& c, std::size_t T) {
  return 6 * double(llama_param_count(c)) + 12 * double(c.layers) * double(c.q_size()) * double(T);
}

template <class F>
double time_it(F&& f, int warmup, int steps) {
  for (int i = 0; i < warmup; ++i) f();
  RLHF_CUDA_CHECK(cudaDeviceSynchronize());
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) f();
  RLHF_CUDA_CHECK(cudaDeviceSynchronize());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;
}

void row(const char* config, const char* step, double seconds, double tokens, double flops) {
  const double tflops = flops / seconds / 1e12;
  std::printf("| %-13s | %-4s | %9.2f | %11.0f | %7.1f | %8.1f%% | %8.1f%% |\n", config, step, seconds * 1e3,
              tokens / seconds, tflops, 100 * tflops * 1e12 / peak_tf32, 100 * tflops * 1e12 / peak_bf16);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int steps = 5;
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
    std::printf("bench_llama_cuda: %s (%s); nothing measured\n", absent ? "no CUDA device" : "CUDA error",
                probe.message.c_str());
    return absent ? 77 : 1;
  }
  cudaDeviceProp prop{};
  RLHF_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("bench_llama_cuda: %s (%d SMs), GEMMs in %s, %s attention, %d timed steps after 2 warm-up steps\n",
              prop.name, prop.multiProcessorCount,
              precision == GemmPrecision::tf32 ? "TF32" : precision == GemmPrecision::bf16 ? "BF16" : "FP32",
              attention == AttentionKernel::flash ? "flash" : "materialized", steps);
  std::printf("MFU vs H100 SXM dense peaks: TF32 %.1f, BF16 %.1f TFLOP/s\n\n", peak_tf32 / 1e12, peak_bf16 / 1e12);

  // the published configs (docs/models/llama.md): SmolLM2-135M and Qwen2.5-0.5B; 8 sequences of 512 per SFT step,
  // 4 pairs per DPO step
  std::vector<Setup> setups = {
      {"SmolLM2-135M",
       {.vocab_size = 49152, .hidden_size = 576, .intermediate_size = 1536, .layers = 30, .heads = 9, .kv_heads = 3,
        .max_seq_len = 8192, .rope_theta = 100000.0, .tie_word_embeddings = true},
       8, 4, 512}};
  if (!quick)
    setups.push_back({"Qwen2.5-0.5B",
                      {.vocab_size = 151936, .hidden_size = 896, .intermediate_size = 4864, .layers = 24, .heads = 14,
                       .kv_heads = 2, .max_seq_len = 32768, .rms_norm_eps = 1e-6f, .rope_theta = 1000000.0,
                       .qkv_bias = true, .tie_word_embeddings = true, .model_type = "qwen2"},
                      8, 4, 512});
  std::printf("| config        | step | ms / step | tokens / s  | TFLOP/s | MFU tf32 | MFU bf16 |\n");
  std::printf("|---------------|------|-----------|-------------|---------|----------|----------|\n");
  for (const auto& s : setups) {
    const LlamaConfig& c = s.config;
    const std::size_t B = s.batch, T = s.time;
    const double per_token = train_flops_per_token(c, T);
    {  // SFT: forward + backward + AdamW on B sequences
      LlamaCuda policy(c, 1, {.precision = precision, .attention = attention});
      CudaAdamW opt({.learning_rate = 1e-5f});
      const TokenBatch batch = random_batch(B, T, c.vocab_size, 2);
      const double sec = time_it([&] { sft_step(policy, opt, batch); }, 2, steps);
      row(s.name, "SFT", sec, double(B * T), double(B * T) * per_token);
    }
    {  // DPO: policy forward + backward on 2P sequences, reference forward on the same, AdamW
      const std::size_t P = s.pairs;
      LlamaCuda policy(c, 1, {.precision = precision, .attention = attention}), reference(c, 1, {.precision = precision, .attention = attention});
      CudaAdamW opt({.learning_rate = 1e-5f});
      const PreferenceBatch batch{random_batch(P, T, c.vocab_size, 3), random_batch(P, T, c.vocab_size, 4), {}, {}};
      const double sec = time_it([&] { dpo_step(policy, reference, opt, batch); }, 2, steps);
      row(s.name, "DPO", sec, double(2 * P * T), double(2 * P * T) * per_token * (1.0 + 1.0 / 3.0));
    }
  }
  std::size_t free_bytes = 0, total_bytes = 0;
  RLHF_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  std::printf("\ntokens/s: SFT B·T, DPO 2P·T (policy tokens). Device memory at the end: %.1f of %.1f GiB in use\n",
              double(total_bytes - free_bytes) / (1 << 30), double(total_bytes) / (1 << 30));
  return 0;
}
