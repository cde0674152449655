#pragma once
// Shared by the model-level CUDA GPT tests (model.cu, training.cu): CPU/GPU model pairs with one set of
// parameters, batches, and per-tensor comparisons.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "models/gpt_support.hpp"
#include "rlhf/models/gpt/model.hpp"
#include "rlhf/models/gpt_cuda/model.cuh"
#include "support.cuh"

namespace rlhf::gpu_testing {

using rlhf::testing::Pad;

inline double model_tolerance(GemmPrecision p) { return p == GemmPrecision::tf32 ? tol_model_tf32 : tol_model_fp32; }
inline const char* name(GemmPrecision p) { return p == GemmPrecision::tf32 ? "tf32" : "fp32"; }

// tiny; a wider one (16-wide heads, 16-byte aligned tensors: the cuBLASLt path); one whose C = 6 puts parameter
// tensors off 16-byte alignment (the cublasGemmEx + bias kernel fallback).
inline std::vector<GptConfig> configs(bool head = false) {
  return {{.vocab_size = 13, .max_seq_len = 12, .channels = 8, .layers = 2, .heads = 2, .scalar_head = head},
          {.vocab_size = 97, .max_seq_len = 24, .channels = 64, .layers = 2, .heads = 4, .scalar_head = head},
          {.vocab_size = 11, .max_seq_len = 10, .channels = 6, .layers = 1, .heads = 2, .scalar_head = head}};
}

// A CPU model with parameters far from initialisation (every path carries signal) and the CUDA copy of it.
struct Pair {
  Gpt<float> cpu;
  GptCuda gpu;
  Pair(const GptConfig& c, GemmPrecision p, std::uint64_t seed) : cpu(c, seed), gpu(c, 0, {.precision = p}) {
    rlhf::testing::randomize(cpu, seed + 100, 0.5);
    gpu.set_parameters(cpu.parameters());
  }
};

inline TokenBatch batch_for(const GptConfig& c, Pad side, std::uint64_t seed) {
  return rlhf::testing::pad_rows(rlhf::testing::random_rows(4, 3, std::min<std::size_t>(c.max_seq_len, 9),
                                                            c.vocab_size, seed),
                                 side);
}

inline std::vector<float> host(const GptCuda::matrix& m) { return GptCuda::backend::to_host(m); }
inline std::vector<float> host(const GptCuda::vector& v) { return GptCuda::backend::to_host(v); }
template <class M>
std::vector<float> host_eigen(const M& m) {
  return {m.data(), m.data() + m.size()};
}

// d loss / d log p: random on response tokens, 0 elsewhere, as a matrix of each backend.
inline std::vector<float> upstream(const TokenBatch& b, std::uint64_t seed) {
  auto g = uniform(b.batch * b.time, -1, 1, seed);
  for (std::size_t i = 0; i < g.size(); ++i)
    if (!b.response_mask[i]) g[i] = 0.0f;
  return g;
}

// Per tensor of the layout: rel_err of the GPU slice against the CPU slice (each against its own scale).
inline void check_per_tensor(const GptConfig& c, const std::vector<float>& gpu, std::span<const float> cpu,
                             double tol) {
  for (const auto& t : gpt_param_layout(c)) {
    CAPTURE(t.name);
    const std::vector<float> a(gpu.begin() + t.offset, gpu.begin() + t.offset + t.size);
    const std::vector<float> b(cpu.begin() + t.offset, cpu.begin() + t.offset + t.size);
    CHECK(rel_err(a, b) <= tol);
  }
}

}  // namespace rlhf::gpu_testing
