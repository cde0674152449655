// The GPT with bf16 products (Gpt::set_matmul_precision) against the same model in float32: one forward and
// backward side by side, and SFT then DPO for a few hundred steps from the same start on the same data, whose
// losses must stay within the spread that a change of data order alone gives float32. Runs on any CPU (the
// portable path rounds as the AVX-512 BF16 one does).
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/algorithms/sft.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/models/gpt/model.hpp"
#include "rlhf/optim/adamw.hpp"

namespace {

using rlhf::Gpt;
using rlhf::TokenBatch;
using Precision = rlhf::gpt::MatmulPrecision;

constexpr std::size_t V = 32, T = 24, prompt = 8;

rlhf::GptConfig config() { return {.vocab_size = V, .max_seq_len = T, .channels = 32, .layers = 2, .heads = 4}; }

// A sequence of the toy language: next = (a·previous + c) mod V, nine times in ten; otherwise any token.
std::vector<rlhf::token_id> sequence(rlhf::Rng& rng, std::size_t length, std::size_t a = 3, std::size_t c = 1,
                                     const std::vector<rlhf::token_id>& start = {}) {
  std::vector<rlhf::token_id> s = start;
  if (s.empty()) s.push_back(rlhf::token_id(rng.below(V)));
  while (s.size() < length)
    s.push_back(rng.uniform() < 0.9 ? rlhf::token_id((a * std::size_t(s.back()) + c) % V) : rlhf::token_id(rng.below(V)));
  return s;
}

TokenBatch sft_batch(rlhf::Rng& rng, std::size_t rows) {
  TokenBatch b = TokenBatch::zeros(rows, T);
  for (std::size_t r = 0; r < rows; ++r) {
    const auto s = sequence(rng, T);
    for (std::size_t t = 0; t < T; ++t) b.token(r, t) = s[t], b.mask(r, t) = t > 0;
  }
  return b;
}

// Chosen: the prompt continued by the language; rejected: continued by another rule.
rlhf::PreferenceBatch pair_batch(rlhf::Rng& rng, std::size_t rows) {
  rlhf::PreferenceBatch p{TokenBatch::zeros(rows, 2 * prompt), TokenBatch::zeros(rows, 2 * prompt), {}, {}, {}};
  for (std::size_t r = 0; r < rows; ++r) {
    const auto head = sequence(rng, prompt);
    const auto chosen = sequence(rng, 2 * prompt, 3, 1, head), rejected = sequence(rng, 2 * prompt, 5, 2, head);
    for (std::size_t t = 0; t < 2 * prompt; ++t) {
      p.chosen.token(r, t) = chosen[t], p.rejected.token(r, t) = rejected[t];
      p.chosen.mask(r, t) = p.rejected.mask(r, t) = t >= prompt;
    }
  }
  return p;
}

double mean_of_last(const std::vector<double>& v, std::size_t n) {
  double s = 0;
  for (std::size_t i = v.size() - n; i < v.size(); ++i) s += v[i];
  return s / double(n);
}

struct Curves {
  std::vector<double> sft, dpo;
};

// SFT for 200 steps, then DPO for 100 against the SFT model, from the model seed 1, data in the order of data_seed.
Curves train(Precision precision, std::uint64_t data_seed) {
  Gpt<float> policy(config(), 1);
  policy.set_matmul_precision(precision);
  rlhf::AdamW<float> sft_opt(rlhf::AdamWConfig{.learning_rate = 3e-3f, .weight_decay = 0.0f});
  rlhf::Rng rng(data_seed);
  Curves c;
  for (int step = 0; step < 200; ++step) c.sft.push_back(rlhf::sft_step(policy, sft_opt, sft_batch(rng, 8)).loss);
  Gpt<float> reference = policy;
  rlhf::AdamW<float> dpo_opt(rlhf::AdamWConfig{.learning_rate = 2e-4f, .weight_decay = 0.0f});
  for (int step = 0; step < 100; ++step)
    c.dpo.push_back(rlhf::dpo_step(policy, reference, dpo_opt, pair_batch(rng, 8), {.beta = 0.1f}).loss);
  return c;
}

}  // namespace

TEST_CASE("gpt bf16: the default is float32, and a double model refuses bf16") {
  Gpt<float> f(config(), 1);
  CHECK(f.matmul_precision() == Precision::fp32);
  Gpt<double> d(config(), 1);
  CHECK_THROWS_AS(d.set_matmul_precision(Precision::bf16), rlhf::value_error);
  CHECK(d.matmul_precision() == Precision::fp32);
}

TEST_CASE("gpt bf16: log-probs and gradients of one batch within bf16 rounding of float32") {
  Gpt<float> fp32(config(), 3), bf16(config(), 3);
  bf16.set_matmul_precision(Precision::bf16);
  rlhf::Rng rng(4);
  const TokenBatch batch = sft_batch(rng, 6);
  const auto a = fp32.log_probs(batch), b = bf16.log_probs(batch);
  const double max_diff = (a - b).cwiseAbs().maxCoeff();
  MESSAGE("max |Δ log p| = " << max_diff << " at log p ≈ " << a.minCoeff());
  // the products did run in bf16; without AVX-512 BF16 (or below it by RLHF_CPU_ISA) they are float32's
  CHECK((max_diff > 0) == rlhf::gpt::bf16::hardware_available());
  CHECK(max_diff < 2e-2);   // against log-probs of about −log 32 ≈ −3.5: well under 1 %
  const auto d = rlhf::eigen<float>::matrix::Constant(6, T, -1.0f / 6);
  fp32.zero_grad(), bf16.zero_grad();
  fp32.backward(batch, d), bf16.backward(batch, d);
  double dot = 0, na = 0, nb = 0, diff = 0;
  for (std::size_t i = 0; i < fp32.gradients().size(); ++i) {
    const double x = fp32.gradients()[i], y = bf16.gradients()[i];
    dot += x * y, na += x * x, nb += y * y, diff += (x - y) * (x - y);
  }
  const double cosine = dot / std::sqrt(na * nb), relative = std::sqrt(diff / na);
  MESSAGE("gradient cosine " << cosine << ", relative difference " << relative);
  CHECK(cosine > 0.999);
  CHECK(relative < 0.03);
}

TEST_CASE("gpt bf16: SFT and DPO curves within the float32 seed-to-seed spread") {
#ifdef _OPENMP
  // 1,350 small steps: one thread, so that a shared machine's other load does not stall every parallel region
  omp_set_num_threads(1);
#endif
  const Curves fp32 = train(Precision::fp32, 10), other_order = train(Precision::fp32, 11),
               bf16 = train(Precision::bf16, 10);
  const std::size_t tail = 30;
  const double sft32 = mean_of_last(fp32.sft, tail), sft_other = mean_of_last(other_order.sft, tail),
               sft16 = mean_of_last(bf16.sft, tail);
  const double dpo32 = mean_of_last(fp32.dpo, tail), dpo_other = mean_of_last(other_order.dpo, tail),
               dpo16 = mean_of_last(bf16.dpo, tail);
  MESSAGE("SFT loss (last " << tail << " steps): fp32 " << sft32 << ", fp32 other data order " << sft_other
                            << ", bf16 " << sft16 << " (start " << fp32.sft.front() << ")");
  MESSAGE("DPO loss (last " << tail << " steps): fp32 " << dpo32 << ", fp32 other data order " << dpo_other
                            << ", bf16 " << dpo16 << " (start " << fp32.dpo.front() << ")");
  // both precisions learned: the language's entropy is far below log V, and DPO leaves log 2
  CHECK(sft32 < 0.6 * fp32.sft.front());
  CHECK(sft16 < 0.6 * bf16.sft.front());
  CHECK(dpo32 < 0.5);
  CHECK(dpo16 < 0.5);
  // bf16 against float32 on the same data, within the spread a different data order makes (or 2 % of the loss)
  CHECK(std::abs(sft16 - sft32) <= std::max(2 * std::abs(sft_other - sft32), 0.02 * sft32));
  CHECK(std::abs(dpo16 - dpo32) <= std::max(2 * std::abs(dpo_other - dpo32), 0.02 * dpo32));
}
