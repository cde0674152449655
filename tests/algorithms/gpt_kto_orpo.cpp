// The KTO and ORPO steps on the (tiny) CPU GPT, a model that keeps the activations of its last forward for its
// backward and checks that the backward is on the same batch: each step must keep that order (KTO scores its
// mismatched rows first, without a backward) and move the model the right way.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "rlhf/algorithms/kto.hpp"
#include "rlhf/algorithms/orpo.hpp"
#include "rlhf/models/gpt/model.hpp"
#include "rlhf/optim/adamw.hpp"
#include "support/max_abs_difference.hpp"
#include "support/tiny_gpt.hpp"

using namespace rlhf;
using rlhf::test::max_abs_difference;

namespace {

const GptConfig& tiny = rlhf::test::tiny_gpt;

struct Frozen {  // leaves the parameters alone, so that the gradients can be compared
  void step(std::span<float>, std::span<const float>) {}
};

UnpairedBatch unpaired(std::size_t B) {
  UnpairedBatch out{rlhf::test::short_responses(B, 1), {}, {}, {}, {}};
  for (std::size_t i = 0; i < B; ++i) out.desirable.push_back(i % 3 != 2 ? 1 : 0);
  out.mismatched = mismatched_rows(out.sequences);
  return out;
}

}  // namespace

TEST_CASE("gpt: KTO steps lower the loss; micro-batches give the step of one") {
  auto batch = unpaired(6);
  Gpt<float> reference(tiny, 1);
  {
    Gpt<float> whole(tiny, 2), split(tiny, 2);
    Frozen frozen;
    const auto a = kto_step(whole, reference, frozen, batch, {.beta = 0.5});
    const auto b = kto_step(split, reference, frozen, batch, {.beta = 0.5}, {.micro_batches = 3});
    CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-6));
    double scale = 0;
    for (const float g : whole.gradients()) scale = std::max(scale, double(std::abs(g)));
    CHECK(scale > 0);
    CHECK(max_abs_difference(whole.gradients(), split.gradients()) <= 1e-5 * std::max(1.0, scale));
  }
  precompute_reference_logps(reference, batch);
  Gpt<float> policy(tiny, 1);
  AdamW<float> opt({.learning_rate = 1e-2f, .weight_decay = 0.0f});
  const double first = kto_step(policy, opt, batch, {.beta = 0.5}).loss;
  double last = first;
  for (int i = 0; i < 15; ++i) last = kto_step(policy, opt, batch, {.beta = 0.5}, {.micro_batches = 2}).loss;
  CHECK(first == doctest::Approx(0.5).epsilon(1e-4));  // policy = reference: u = z0 = 0
  CHECK(std::isfinite(last));
  CHECK(last < first - 0.01);
}

TEST_CASE("gpt: ORPO steps lower the loss; micro-batches give the step of one") {
  const PreferenceBatch batch{rlhf::test::short_responses(6, 1), rlhf::test::short_responses(6, 2), {}, {}};
  {
    Gpt<float> whole(tiny, 2), split(tiny, 2);
    Frozen frozen;
    const auto a = orpo_step(whole, frozen, batch, {.lambda = 0.5});
    const auto b = orpo_step(split, frozen, batch, {.lambda = 0.5}, {.micro_batches = 3});
    CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-6));
    double scale = 0;
    for (const float g : whole.gradients()) scale = std::max(scale, double(std::abs(g)));
    CHECK(max_abs_difference(whole.gradients(), split.gradients()) <= 1e-5 * std::max(1.0, scale));
  }
  Gpt<float> policy(tiny, 1);
  AdamW<float> opt({.learning_rate = 1e-2f, .weight_decay = 0.0f});
  const double first = orpo_step(policy, opt, batch, {.lambda = 0.5}).loss;
  StepResult last;
  for (int i = 0; i < 15; ++i) last = orpo_step(policy, opt, batch, {.lambda = 0.5}, {.micro_batches = 2});
  CHECK(std::isfinite(last.loss));
  CHECK(last.loss < first - 0.5);
  CHECK(last.metrics["log_odds_chosen"] > 0);  // the chosen responses' odds have overtaken the rejected ones'
}
