#include <doctest/doctest.h>

#include <cmath>

#include "algorithms/bandit_fixture.hpp"
#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/optim/adamw.hpp"
#include "support/max_abs_difference.hpp"

using namespace rlhf;
using namespace rlhf::testing;
using rlhf::test::max_abs_difference;

TEST_CASE("listwise_dpo_step: on K = 3 rankings drawn from Plackett-Luce(r), the policy converges to pi*") {
  const BanditProblem problem(3, 4, 2.0, 7);
  Rng rng(3);
  auto batch = ranked_batch(toy::sample_rankings(problem.reward, problem.N, 3, 10000, rng));  // 30000 rows
  auto reference = problem.reference();
  precompute_reference_logps(reference, batch);
  auto policy = problem.reference();
  CHECK(problem.max_tv(policy) > 0.1);
  AdamW<double> opt({.learning_rate = 0.1f, .weight_decay = 0.0f});
  const int steps = 100;
  for (int step = 0; step < steps; ++step) {
    opt.set_learning_rate(0.1f * float(steps - step) / steps);
    listwise_dpo_step(policy, opt, batch, {.beta = float(problem.beta)}, {.micro_batches = 2});
  }
  CHECK(problem.max_tv(policy) <= 0.02);  // max over the 3 prompts
}

TEST_CASE("listwise_dpo_step: with K = 2 it is the DPO step") {
  const BanditProblem problem(3, 4, 0.5, 5);
  Rng rng(2);
  auto ranked = ranked_batch(toy::sample_rankings(problem.reward, problem.N, 2, 50, rng));
  auto reference = problem.reference();
  precompute_reference_logps(reference, ranked);
  std::vector<token_id> x, w, l;
  for (std::size_t b = 0; b < 50; ++b) {
    x.push_back(ranked.responses.token(2 * b, 0));
    w.push_back(ranked.responses.token(2 * b, 1));
    l.push_back(ranked.responses.token(2 * b + 1, 1));
  }
  PreferenceBatch pairs{toy::bandit_batch(x, w), toy::bandit_batch(x, l), {}, {}};
  auto listwise = moved_policy(problem, 1), pairwise = moved_policy(problem, 1);
  Sgd sgd{0.5};
  const auto a = listwise_dpo_step(listwise, reference, sgd, ranked, {.beta = 0.5f});
  const auto b = dpo_step(pairwise, reference, sgd, pairs, {.beta = 0.5f});
  CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-10));
  CHECK(max_abs_difference(listwise.parameters(), pairwise.parameters()) <= 1e-10);
  CHECK(a.metrics["rewards/margins"] == doctest::Approx(b.metrics["rewards/margins"]).epsilon(1e-10));
}

TEST_CASE("listwise_dpo_step: 4 micro-batches equal the whole batch, and the gradient is the loss's") {
  const BanditProblem problem(2, 5, 0.5, 9);
  Rng rng(4);
  auto batch = ranked_batch(toy::sample_rankings(problem.reward, problem.N, 4, 37, rng));
  batch.lengths.assign(37, 4);
  for (std::size_t b = 0; b < 37; b += 3) batch.lengths[b] = 2 + b % 3;  // some shorter lists
  auto reference = problem.reference();
  precompute_reference_logps(reference, batch, {.micro_batches = 5});
  for (const ListwiseDpoConfig config : {ListwiseDpoConfig{.beta = 0.5f}, ListwiseDpoConfig{.beta = 0.3f, .top_k = 1},
                                         ListwiseDpoConfig{.beta = 0.5f, .reference_free = true}}) {
    auto whole = moved_policy(problem, 2), split = moved_policy(problem, 2);
    Sgd sgd{0.5};
    const auto a = listwise_dpo_step(whole, sgd, batch, config);
    const auto b = listwise_dpo_step(split, sgd, batch, config, {.micro_batches = 4});
    CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-12));
    CHECK(max_abs_difference(whole.gradients(), split.gradients()) <= 1e-12);
    CHECK(max_abs_difference(whole.parameters(), split.parameters()) <= 1e-12);

    const Sgd frozen{0.0};
    listwise_dpo_step(split, frozen, batch, config, {.micro_batches = 3});
    const std::vector<double> analytic(split.gradients().begin(), split.gradients().end());
    Eigen::Map<Eigen::VectorXd> theta(split.parameters().data(), split.parameters().size());
    const auto numeric = numeric_gradient([&] { return listwise_dpo_step(split, frozen, batch, config).loss; }, theta);
    CHECK(max_relative_error(analytic, numeric) < 1e-6);
  }
}

TEST_CASE("listwise_dpo_step: bad input names the problem") {
  const BanditProblem problem(2, 3, 0.5, 3);
  Rng rng(1);
  auto batch = ranked_batch(toy::sample_rankings(problem.reward, problem.N, 3, 6, rng));
  auto policy = problem.reference();
  Sgd sgd;
  CHECK_THROWS_WITH_AS(listwise_dpo_step(policy, sgd, batch), doctest::Contains("no reference log-probs"), value_error);
  auto reference = problem.reference();
  precompute_reference_logps(reference, batch);
  auto k1 = batch;
  k1.k = 1;
  CHECK_THROWS_WITH_AS(listwise_dpo_step(policy, sgd, k1), doctest::Contains("at least 2 responses"), shape_error);
  auto ragged = batch;
  ragged.k = 4;
  CHECK_THROWS_WITH_AS(listwise_dpo_step(policy, sgd, ragged), doctest::Contains("not a multiple of k = 4"),
                       shape_error);
  auto lengths = batch;
  lengths.lengths = {3, 3};
  CHECK_THROWS_WITH_AS(listwise_dpo_step(policy, sgd, lengths), doctest::Contains("'lengths' has 2 elements"),
                       shape_error);
  lengths.lengths = {3, 3, 1, 3, 3, 3};
  CHECK_THROWS_WITH_AS(listwise_dpo_step(policy, sgd, lengths), doctest::Contains("at least 2 items"), value_error);
  auto reference_size = batch;
  reference_size.reference.pop_back();
  CHECK_THROWS_WITH_AS(listwise_dpo_step(policy, sgd, reference_size), doctest::Contains("'reference' has 17"),
                       shape_error);
  CHECK_THROWS_AS(listwise_dpo_step(policy, sgd, batch, {}, {.micro_batches = 7}), config_error);
}
