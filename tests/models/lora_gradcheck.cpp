// LoRA's gradients by finite differences through whole models: A and B of every projection of a Llama and of
// GPT-2. Left out of the sanitizer run (scripts/check.sh) for its time there, like models_gpt_gradcheck; the same
// adapter forward and backward run under the sanitizers in models_lora_training and models_lora_parity.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "rlhf/models/lora/model.hpp"
#include "models/llama_support.hpp"
#include "models/lora_support.hpp"
#include "support/tiny_gpt.hpp"

namespace {

using rlhf::Gpt;
using rlhf::Llama;
using rlhf::testing::batch_of;
using rlhf::testing::randomize_adapters;

// Analytic d/dθ of Σ d · log_probs for the adapter parameters against central differences.
template <class L>
double worst_gradient_error(L& lora, const rlhf::TokenBatch& batch) {
  using M = typename L::matrix;
  rlhf::Rng rng(5);
  M d = L::backend::matrix_of(batch.batch, batch.time);
  for (std::size_t i = 0; i < batch.batch * batch.time; ++i) d.data()[i] = batch.response_mask[i] ? rng.uniform() + 0.5 : 0;
  const auto objective = [&] {
    const M lp = lora.log_probs(batch);
    double s = 0;
    for (std::size_t i = 0; i < batch.batch * batch.time; ++i) s += d.data()[i] * lp.data()[i];
    return s;
  };
  lora.zero_grad();
  lora.log_probs(batch);
  lora.backward(batch, d);
  const std::vector<double> analytic(lora.gradients().begin(), lora.gradients().end());
  auto params = lora.parameters();
  double worst = 0;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const double saved = params[i], h = 1e-6;
    params[i] = saved + h;
    const double up = objective();
    params[i] = saved - h;
    const double down = objective();
    params[i] = saved;
    const double numeric = (up - down) / (2 * h);
    worst = std::max(worst, std::abs(analytic[i] - numeric) / std::max(1.0, std::abs(numeric)));
  }
  return worst;
}

}  // namespace

TEST_CASE("lora gradcheck: A and B of every projection of a Llama (GQA, biases, q/k norms), with and without rsLoRA") {
  for (const bool rs : {false, true}) {
    CAPTURE(rs);
    Llama<double> base(rlhf::testing::tiny_llama_config(false), 1);
    rlhf::testing::randomize(base, 2);
    rlhf::Rng rng(3);
    auto lora = rlhf::attach_lora(std::move(base),
                                  {.r = 3, .lora_alpha = 5, .use_rslora = rs, .target_modules = {"all-linear"}}, rng);
    CHECK(lora.adapters().size() == 14);
    randomize_adapters(lora, 4);
    const double worst = worst_gradient_error(lora, batch_of(11, 6));
    MESSAGE("Llama, rsLoRA " << rs << ": worst relative error " << worst);
    CHECK(worst < 1e-6);
  }
}

TEST_CASE("lora gradcheck: GPT-2's c_attn, attn.c_proj, c_fc and mlp.c_proj") {
  rlhf::GptConfig c = rlhf::test::tiny_gpt;
  c.layers = 2;
  Gpt<double> base(c, 1);
  rlhf::Rng rng(3);
  auto lora = rlhf::attach_lora(std::move(base), {.r = 2, .lora_alpha = 3, .target_modules = {"c_attn", "c_proj", "c_fc"}},
                                rng);
  CHECK(lora.adapters().size() == 8);  // c_proj names both attn.c_proj and mlp.c_proj
  randomize_adapters(lora, 4);
  const double worst = worst_gradient_error(lora, batch_of(c.vocab_size, 6));
  MESSAGE("GPT-2: worst relative error " << worst);
  CHECK(worst < 1e-6);
}
