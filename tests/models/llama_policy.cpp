// The Llama as a policy: padding never matters, a batch scores as its rows one by one, the KV-cache sampler agrees
// with the training forward, the checks on a backward, and bf16 products stay near float32.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "models/gpt_support.hpp"
#include "models/llama_support.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/models/llama/model.hpp"

namespace {

using rlhf::Llama;
using rlhf::testing::Pad;
using rlhf::testing::Row;

const std::vector<Row> rows = {{{3, 1, 4, 1, 5, 9, 2}, 3}, {{2, 7, 1, 8}, 2}, {{6, 6, 0, 10, 7}, 4}};

// log p of each row's response tokens, in order, whatever the padding
std::vector<double> response_logps(Llama<float>& model, const rlhf::TokenBatch& b) {
  const auto lp = model.log_probs(b);
  std::vector<double> out;
  for (std::size_t i = 0; i < b.batch * b.time; ++i)
    if (b.response_mask[i]) out.push_back(lp.data()[i]);
  return out;
}

double max_difference(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

}  // namespace

static_assert(rlhf::TrainablePolicy<Llama<float>> && rlhf::SamplingPolicy<Llama<float>>);
static_assert(rlhf::ValueModel<Llama<float>> && rlhf::RewardModel<Llama<float>>);

TEST_CASE("llama policy: left, right and masked-right padding give the same log-probs and gradients") {
  Llama<float> model(rlhf::testing::tiny_llama_config(false), 1);
  rlhf::testing::randomize(model, 2);
  std::vector<double> ref_grads;
  std::vector<double> ref;
  for (Pad side : {Pad::right, Pad::left, Pad::right_masked}) {
    const auto b = rlhf::testing::pad_rows(rows, side, 9, 5);
    const auto lp = response_logps(model, b);
    model.zero_grad();
    model.backward(b, Llama<float>::backend::matrix_of(b.batch, b.time).array() + 1.0f);
    const auto g = model.gradients();
    if (ref.empty()) {
      ref = lp, ref_grads.assign(g.begin(), g.end());
      continue;
    }
    CHECK(max_difference(lp, ref) < 2e-6);
    double worst = 0, largest = 0;
    for (std::size_t i = 0; i < g.size(); ++i)
      worst = std::max(worst, std::abs(double(g[i]) - ref_grads[i])), largest = std::max(largest, std::abs(ref_grads[i]));
    CHECK(largest > 1e-2);
    CHECK(worst < 1e-5 * largest);
  }
}

TEST_CASE("llama policy: a batch scores as its rows one by one") {
  Llama<float> model(rlhf::testing::tiny_llama_config(false), 3);
  rlhf::testing::randomize(model, 4);
  const auto all = response_logps(model, rlhf::testing::pad_rows(rows, Pad::left));
  std::vector<double> one_by_one;
  for (const auto& r : rows) {
    const auto lp = response_logps(model, rlhf::testing::pad_rows({r}, Pad::right));
    one_by_one.insert(one_by_one.end(), lp.begin(), lp.end());
  }
  CHECK(max_difference(all, one_by_one) < 2e-6);
}

TEST_CASE("llama policy: the KV-cache sampler's log-probs are the training forward's on what it drew") {
  Llama<float> model(rlhf::testing::tiny_llama_config(false), 5);
  rlhf::testing::randomize(model, 6);
  rlhf::PromptBatch prompts{3, 4, {1, 2, 3, 4, 5, 6, 0, 0, 7, 0, 0, 0}, {4, 2, 1}};
  // in bf16 the sampler multiplies as training does (packed bf16 weights where the CPU has AVX-512 BF16); a
  // float32 sampler misses the bf16 forward by far more than the tolerance (the bf16 test below: ~1e-3)
  for (const auto precision : {rlhf::gpt::MatmulPrecision::fp32, rlhf::gpt::MatmulPrecision::bf16}) {
    model.set_matmul_precision(precision);
    CAPTURE(precision == rlhf::gpt::MatmulPrecision::bf16);
    for (const rlhf::SampleOptions o : {rlhf::SampleOptions{.max_new_tokens = 9},
                                        rlhf::SampleOptions{.max_new_tokens = 6, .temperature = 0.7f, .top_k = 4},
                                        rlhf::SampleOptions{.max_new_tokens = 6, .top_p = 0.8f, .stop_token = 3}}) {
      rlhf::Rng rng(7);
      const auto drawn = model.sample(prompts, o, rng);
      const auto sampled = model.sampled_log_probs();
      const auto lp = model.log_probs(drawn);
      REQUIRE(lp.rows() == sampled.rows());
      REQUIRE(lp.cols() == sampled.cols());
      std::size_t responses = 0;
      for (Eigen::Index i = 0; i < lp.size(); ++i) {
        CHECK(std::abs(lp.data()[i] - sampled.data()[i]) < 2e-5);
        responses += drawn.response_mask[std::size_t(i)];
      }
      CHECK(responses >= 3);
      rlhf::Rng again(7);
      CHECK(model.sample(prompts, o, again).tokens == drawn.tokens);  // a seed draws the same tokens
    }
  }
}

TEST_CASE("llama policy: greedy sampling continues with the argmax of the full forward") {
  Llama<float> model(rlhf::testing::tiny_llama_config(false), 8);
  rlhf::testing::randomize(model, 9);
  rlhf::PromptBatch prompts{1, 3, {4, 2, 9}, {3}};
  rlhf::Rng rng(1);
  const auto drawn = model.sample(prompts, {.max_new_tokens = 5, .temperature = 0.0f}, rng);
  const auto logits = model.logits(drawn);  // [T, V]
  for (std::size_t t = 3; t < drawn.time; ++t) {
    Eigen::Index best = 0;
    logits.row(Eigen::Index(t - 1)).maxCoeff(&best);
    CHECK(drawn.tokens[t] == best);
  }
}

TEST_CASE("llama policy: a backward checks it follows a log_probs on the same batch") {
  Llama<float> model(rlhf::testing::tiny_llama_config(false), 1);
  const auto b = rlhf::testing::pad_rows(rows, Pad::right);
  const auto d = Llama<float>::backend::matrix_of(b.batch, b.time);
  CHECK_THROWS_AS(model.backward(b, d), rlhf::value_error);  // no forward yet
  model.log_probs(b);
  auto other = b;
  other.tokens[0] = 2;
  CHECK_THROWS_AS(model.backward(other, d), rlhf::value_error);
  model.backward(b, d);
  CHECK_THROWS_AS(model.backward(b, d), rlhf::value_error);  // consumed
  CHECK_THROWS_AS(model.values(b), rlhf::config_error);      // no scalar head
}

TEST_CASE("llama policy: bf16 products stay near float32 and double refuses them") {
  Llama<float> model(rlhf::testing::tiny_llama_config(false), 10);
  rlhf::testing::randomize(model, 11);
  const auto b = rlhf::testing::pad_rows(rows, Pad::left);
  using matrix = Llama<float>::backend::matrix;
  const matrix ones = matrix::Ones(Eigen::Index(b.batch), Eigen::Index(b.time));  // a value, not an expression of a temporary
  const auto gradients_of = [&] {  // of Σ log p over the response
    model.zero_grad();
    model.log_probs(b);
    model.backward(b, ones);
    return std::vector<double>(model.gradients().begin(), model.gradients().end());
  };
  const auto fp32 = response_logps(model, b);
  const auto fp32_grads = gradients_of();
  model.set_matmul_precision(rlhf::gpt::MatmulPrecision::bf16);
  const auto bf16 = response_logps(model, b);
  const auto bf16_grads = gradients_of();
  const double d = max_difference(fp32, bf16);
  double largest = 0;
  for (const double g : fp32_grads) largest = std::max(largest, std::abs(g));
  const double dg = max_difference(fp32_grads, bf16_grads) / largest;
  MESSAGE("bf16 vs float32: log-probs " << d << ", gradients " << dg << " of the largest");
  // without AVX-512 BF16 (or with RLHF_CPU_ISA below it) bf16 runs float32 products (gpt/bf16_matmul.hpp)
  const bool rounds = rlhf::gpt::bf16::hardware_available();
  CHECK((d > 0) == rounds);  // the products did change, where they round
  CHECK(d < 5e-2);   // bf16 keeps 8 bits: ~0.4% per operand
  CHECK((dg > 0) == rounds);
  CHECK(dg < 5e-2);
  Llama<double> dbl(rlhf::testing::tiny_llama_config(false));
  CHECK_THROWS_AS(dbl.set_matmul_precision(rlhf::gpt::MatmulPrecision::bf16), rlhf::value_error);
}
