// training_step's gradient clipping and grad_norm, its refusal of a non-finite loss, and rlhf::evaluate.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "algorithms/bandit_fixture.hpp"
#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/algorithms/evaluate.hpp"
#include "rlhf/algorithms/sft.hpp"
#include "support/text.hpp"

using namespace rlhf;
using namespace rlhf::testing;
using rlhf::test::error_message;
using rlhf::test::has;

namespace {

double norm(const std::vector<double>& g) {
  double s = 0;
  for (double x : g) s += x * x;
  return std::sqrt(s);
}

TokenBatch rows(std::vector<token_id> prompts, std::vector<token_id> responses) {
  return toy::bandit_batch(prompts, responses);
}
TokenBatch demonstrations() { return rows({0, 1, 2, 0}, {1, 3, 0, 2}); }

}  // namespace

TEST_CASE("training_step: grad_norm is the norm of the gradient, and max_grad_norm scales it down to that norm") {
  auto policy = moved_policy(3, 4, 7);
  RecordingOptimizer plain, clipped, loose;
  const auto a = sft_step(policy, plain, demonstrations());
  const double full = norm(plain.seen);
  REQUIRE(full > 0.05);
  CHECK(a.grad_norm == doctest::Approx(full).epsilon(1e-12));

  const auto b = sft_step(policy, clipped, demonstrations(), {}, {.max_grad_norm = full / 4});
  CHECK(b.grad_norm == doctest::Approx(full).epsilon(1e-12));  // the norm before clipping, as TRL logs it
  CHECK(norm(clipped.seen) == doctest::Approx(full / 4).epsilon(1e-12));
  for (std::size_t i = 0; i < plain.seen.size(); ++i)
    CHECK(clipped.seen[i] == doctest::Approx(plain.seen[i] / 4).epsilon(1e-9));

  sft_step(policy, loose, demonstrations(), {}, {.max_grad_norm = full * 2});  // under the limit: untouched
  CHECK(loose.seen == plain.seen);
}

TEST_CASE("training_step: a negative or NaN max_grad_norm is refused naming it") {
  auto policy = moved_policy(3, 4, 7);
  RecordingOptimizer opt;
  for (double bad : {-1.0, std::numeric_limits<double>::quiet_NaN()}) {
    const auto message = error_message<config_error>([&] { sft_step(policy, opt, demonstrations(), {}, {.max_grad_norm = bad}); });
    CHECK(has(message, "max_grad_norm"));
    CHECK(opt.seen.empty());
  }
}

TEST_CASE("training_step: a non-finite loss is refused before the optimizer step; the parameters stay") {
  auto policy = moved_policy(3, 4, 7);
  const std::vector<double> before(policy.parameters().begin(), policy.parameters().end());
  RecordingOptimizer opt;
  const auto message = error_message<value_error>([&] {
    training_step("test", policy, opt, 2, {}, [&](std::size_t, std::size_t, double) {
      StepResult r;
      r.loss = std::numeric_limits<double>::infinity();
      return r;
    });
  });
  CHECK(has(message, "the loss is inf"));
  CHECK(opt.seen.empty());
  CHECK(std::vector<double>(policy.parameters().begin(), policy.parameters().end()) == before);
}

TEST_CASE("evaluate: the loss and metrics of the step, and nothing of the model changes") {
  const BanditProblem problem(3, 4, 0.5, 11);
  auto policy = moved_policy(problem, 5);
  auto reference = problem.reference();
  PreferenceBatch batch;
  batch.chosen = rows({0, 1, 2}, {1, 2, 3});
  batch.rejected = rows({0, 1, 2}, {0, 0, 1});
  const DpoConfig config{.beta = 0.5};
  const std::vector<double> before(policy.parameters().begin(), policy.parameters().end());

  const auto evaluated = evaluate(policy, [&](auto& frozen, auto& no_update) {
    return dpo_step(frozen, reference, no_update, batch, config);
  });
  CHECK(std::vector<double>(policy.parameters().begin(), policy.parameters().end()) == before);
  CHECK(std::isnan(evaluated.grad_norm));

  RecordingOptimizer opt;
  const auto trained = dpo_step(policy, reference, opt, batch, config);  // the same forward, with a gradient
  CHECK(evaluated.loss == trained.loss);
  CHECK(evaluated.metrics[metric::rewards_accuracies] == trained.metrics[metric::rewards_accuracies]);
  CHECK(evaluated.metrics[metric::rewards_margins] == trained.metrics[metric::rewards_margins]);
}
