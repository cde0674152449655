#include "rlhf/algorithms/unlikelihood.hpp"

#include <doctest/doctest.h>

#include <cmath>

#include "algorithms/bandit_fixture.hpp"
#include "rlhf/optim/adamw.hpp"

using namespace rlhf;
using namespace rlhf::testing;

TEST_CASE("unlikelihood_step: the rejected response loses its probability, the chosen one gains") {
  // Prompt 0: chosen 1, rejected 2. Prompt 1: chosen 0, rejected 3.
  const std::vector<token_id> x = {0, 1}, w = {1, 0}, l = {2, 3};
  const PreferenceBatch batch{toy::bandit_batch(x, w), toy::bandit_batch(x, l), {}, {}};
  toy::BanditPolicy<double> policy(2, 4);
  AdamW<double> opt({.learning_rate = 0.05f, .weight_decay = 0.0f});
  double first = 0, last = 0;
  for (int step = 0; step < 200; ++step) {
    last = unlikelihood_step(policy, opt, batch, {.alpha = 1.0f}).loss;
    if (step == 0) first = last;
  }
  const auto pi = policy.probabilities();
  CHECK(last < first);
  CHECK(pi[0 * 4 + 2] < 0.01);
  CHECK(pi[1 * 4 + 3] < 0.01);
  CHECK(pi[0 * 4 + 1] > 0.9);
  CHECK(pi[1 * 4 + 0] > 0.9);
}

TEST_CASE("unlikelihood_step: micro-batches equal the whole batch; the gradient is the loss's") {
  Rng rng(2);
  const auto comparisons = toy::sample_comparisons(std::vector<double>(2 * 4, 0.0), 4, 23, rng);
  const auto batch = preference_batch(comparisons);
  for (const UnlikelihoodConfig config :
       {UnlikelihoodConfig{}, UnlikelihoodConfig{.alpha = 0.3f, .aggregation = Aggregation::sequence_mean}}) {
    auto whole = moved_policy(2, 4, 1), split = moved_policy(2, 4, 1);
    Sgd sgd{0.5};
    const auto a = unlikelihood_step(whole, sgd, batch, config);
    const auto b = unlikelihood_step(split, sgd, batch, config, {.micro_batches = 4});
    CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-12));
    for (const auto& [name, value] : a.metrics.items()) CHECK(b.metrics[name] == doctest::Approx(value).epsilon(1e-12));
    for (std::size_t i = 0; i < 8; ++i)
      CHECK(whole.parameters()[i] == doctest::Approx(split.parameters()[i]).epsilon(1e-12));

    const Sgd frozen{0.0};
    unlikelihood_step(split, frozen, batch, config, {.micro_batches = 3});
    const std::vector<double> analytic(split.gradients().begin(), split.gradients().end());
    Eigen::Map<Eigen::VectorXd> theta(split.parameters().data(), 8);
    const auto numeric = numeric_gradient([&] { return unlikelihood_step(split, frozen, batch, config).loss; }, theta);
    CHECK(max_relative_error(analytic, numeric) < 1e-6);
  }
}

TEST_CASE("unlikelihood_step: bad input names the problem") {
  toy::BanditPolicy<double> policy(2, 3);
  Sgd sgd;
  const std::vector<token_id> x = {0, 1, 1}, w = {2, 0, 1}, l = {1, 1, 0};
  PreferenceBatch batch{toy::bandit_batch(x, w), toy::bandit_batch(x, l), {}, {}};
  CHECK_THROWS_AS(unlikelihood_step(policy, sgd, batch, {.alpha = -1.0f}), config_error);
  CHECK_THROWS_AS(unlikelihood_step(policy, sgd, batch, {}, {.micro_batches = 4}), config_error);
  auto short_rejected = batch;
  short_rejected.rejected = slice_rows(batch.rejected, 0, 2);
  CHECK_THROWS_WITH_AS(unlikelihood_step(policy, sgd, short_rejected), doctest::Contains("'rejected' has 2 elements"),
                       shape_error);
  batch.rejected.mask(0, 1) = 0;
  CHECK_THROWS_WITH_AS(unlikelihood_step(policy, sgd, batch),
                       doctest::Contains("'rejected' row 0 of 3 has no response"), value_error);
}
