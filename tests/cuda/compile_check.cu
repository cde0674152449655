// Compile-and-link check for the CUDA Thrust backend: every loss and the fused log-prob, instantiated on
// rlhf::thrust_cuda<float> and <double> by nvcc. Nothing here runs on a GPU; the ctest cuda_compile
// only builds this file (sm_90 code + PTX), which is what proves the kernels are device-clean.
// It also includes the CUDA GPT with its checkpoints: this target links rlhf::cuda alone, with no Eigen on the
// include path, so it proves that the CUDA model shares the CPU model's host code (models/gpt_host/) without
// needing any of its Eigen headers. The same holds for the CUDA Llama (models/llama_cuda/), which takes only the
// CPU Llama's config, parameter layout and RoPE table (models/llama/config.hpp, params.hpp, rope.hpp).
#include <cstdio>

#include "rlhf/backends/thrust.hpp"
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
#include "rlhf/models/gpt_cuda/checkpoint.cuh"
#include "rlhf/models/llama_cuda/model.cuh"

namespace {

// Calls every entry point once with tensors of the backend; returns a number so nothing is dropped.
template <class Be>
double every_loss() {
  using V = typename Be::vector;
  using M = typename Be::matrix;
  const std::size_t B = 4, T = 8, K = 4, Vocab = 32;
  const V v = Be::vector_of(B);
  const M m = Be::matrix_of(B, T), ranked = Be::matrix_of(B, K), logits = Be::matrix_of(B * T, Vocab);
  M d_logits = Be::matrix_of(B * T, Vocab);
  const auto targets = Be::indices_from_host(std::vector<std::int32_t>(B * T, 0));
  const V row_mask = Be::vector_of(B * T), empty{};
  double total = 0;
  total += rlhf::dpo_loss(rlhf::PreferencePairs<V>{v, v, v, v, v, v}).loss;
  total += rlhf::bradley_terry_loss(rlhf::RewardPairs<V>{v, v}).loss;
  total += rlhf::plackett_luce_loss(ranked, empty).loss;
  total += rlhf::listwise_dpo_loss(ranked, ranked, empty).loss;
  total += rlhf::sft_loss(m, m).loss;
  total += rlhf::unlikelihood_loss(m, m, m, m).loss;
  total += rlhf::kl_estimate(m, m, m, rlhf::KlEstimator::k3).mean;
  total += rlhf::exact_kl_from_logits(logits, logits, row_mask).mean;
  const M rewards = rlhf::kl_penalized_rewards(v, m, m, m, 0.1f);
  const auto advantages = rlhf::gae(rewards, m, m);
  total += Be::size(rlhf::whiten(advantages.advantages, m).values);
  total += rlhf::ppo_policy_loss(m, m, m, m).loss;
  total += rlhf::ppo_value_loss(m, m, m, m).loss;
  const auto fwd = rlhf::sequence_logprob(logits, targets, row_mask, B);
  rlhf::sequence_logprob_backward(d_logits, logits, targets, row_mask, fwd, v);
  rlhf::sequence_logprob_backward(d_logits, logits, targets, row_mask, fwd, m);
  total += rlhf::sequence_logprob_with_grad(d_logits, logits, targets, row_mask, B, v).metrics["logps/sequence"];
  total += rlhf::sequence_logprob_with_grad(d_logits, logits, targets, row_mask, B, m,
                                            {.reduction = rlhf::Reduction::per_token})
               .metrics["logps/sequence"];
  return total;
}

}  // namespace

int main(int argc, char**) {
  if (argc > 1000) {  // never true: the point is that this builds
    std::printf("%f\n", every_loss<rlhf::thrust_cuda<float>>() + every_loss<rlhf::thrust_cuda<double>>());
  }
  std::printf("rlhf: every loss and the fused log-prob compiled for rlhf::thrust_cuda\n");
  return 0;
}
