#include "rlhf/algorithms/sft.hpp"

#include <doctest/doctest.h>

#include <cmath>

#include "algorithms/bandit_fixture.hpp"
#include "rlhf/optim/adamw.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

// n rows [x, y] with x uniform and y ~ target(· | x); also returns the empirical frequencies [P, N].
std::pair<TokenBatch, std::vector<double>> demonstrations(const std::vector<double>& target, std::size_t P,
                                                          std::size_t N, std::size_t n, Rng& rng) {
  std::vector<token_id> x, y;
  std::vector<double> counts(P * N, 0.0), per_prompt(P, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t p = rng.below(P);
    const std::size_t r = rng.categorical(target.data() + p * N, N);
    x.push_back(static_cast<token_id>(p));
    y.push_back(static_cast<token_id>(r));
    counts[p * N + r] += 1;
    per_prompt[p] += 1;
  }
  for (std::size_t i = 0; i < P * N; ++i) counts[i] /= per_prompt[i / N];
  return {toy::bandit_batch(x, y), counts};
}

}  // namespace

TEST_CASE("sft_step: maximum likelihood on demonstrations reaches their empirical distribution") {
  const BanditProblem problem(3, 4, 1.0, 2);
  const auto target = problem.optimum();
  Rng rng(3);
  const auto [batch, empirical] = demonstrations(target, 3, 4, 3000, rng);
  toy::BanditPolicy<double> policy(3, 4);
  AdamW<double> opt({.learning_rate = 0.1f, .weight_decay = 0.0f});
  for (int step = 0; step < 200; ++step) {
    opt.set_learning_rate(0.1f * float(200 - step) / 200);
    sft_step(policy, opt, batch);
  }
  const auto tv = toy::total_variation(policy.probabilities(), empirical, 4);
  CHECK(*std::max_element(tv.begin(), tv.end()) <= 1e-3);
}

TEST_CASE("sft_step: micro-batches equal the whole batch; the gradient is the loss's") {
  Rng rng(5);
  const std::vector<double> target(2 * 5, 0.2);
  const auto batch = demonstrations(target, 2, 5, 29, rng).first;
  for (const auto how : {Aggregation::sequence_sum, Aggregation::sequence_mean}) {
    auto whole = moved_policy(2, 5, 1), split = moved_policy(2, 5, 1);
    Sgd sgd{0.5};
    const auto a = sft_step(whole, sgd, batch, {how});
    const auto b = sft_step(split, sgd, batch, {how}, {.micro_batches = 4});
    CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-12));
    CHECK(b.metrics["nll/token"] == doctest::Approx(a.metrics["nll/token"]).epsilon(1e-12));
    CHECK(b.metrics["tokens"] == 29.0);
    for (std::size_t i = 0; i < 10; ++i)
      CHECK(whole.parameters()[i] == doctest::Approx(split.parameters()[i]).epsilon(1e-12));

    const Sgd frozen{0.0};
    sft_step(split, frozen, batch, {how}, {.micro_batches = 3});
    const std::vector<double> analytic(split.gradients().begin(), split.gradients().end());
    Eigen::Map<Eigen::VectorXd> theta(split.parameters().data(), 10);
    const auto numeric =
        numeric_gradient([&] { return sft_step(split, frozen, batch, {how}).loss; }, theta);
    CHECK(max_relative_error(analytic, numeric) < 1e-6);
  }
}

TEST_CASE("sft_step: with a token mean over the batch, micro-batches of unequal token counts equal the whole batch") {
  // Responses of 1 to 4 tokens: a row-share weighting of the micro-batches would not give the batch's token mean.
  const auto batch = token_pairs({{0, {1}, {0}}, {1, {0, 2, 2, 1}, {0}}, {0, {2, 0}, {0}}, {1, {1, 1, 1}, {0}},
                                  {0, {2, 2, 2, 2}, {0}}},
                                 5)
                         .chosen;
  const SftConfig config{Aggregation::token_mean};
  MultiTokenBandit whole(2, 3, moved_logits(2, 3, 4)), split = whole;
  Sgd sgd{0.5};
  const auto a = sft_step(whole, sgd, batch, config);
  const auto b = sft_step(split, sgd, batch, config, {.micro_batches = 3});
  CHECK(b.loss == doctest::Approx(a.loss).epsilon(1e-12));
  CHECK(b.metrics["nll/token"] == doctest::Approx(a.metrics["nll/token"]).epsilon(1e-12));
  for (std::size_t i = 0; i < 6; ++i) CHECK(split.theta[i] == doctest::Approx(whole.theta[i]).epsilon(1e-12));
  // and the loss is the token mean: Σ −log π over every response token / their count (14)
  MultiTokenBandit fresh(2, 3, moved_logits(2, 3, 4));
  const auto table = fresh.log_table();
  double total = 0, tokens = 0;
  for (std::size_t r = 0; r < batch.batch; ++r)
    for (std::size_t t = 1; t < batch.time; ++t)
      if (batch.mask(r, t)) total -= table[std::size_t(batch.token(r, 0)) * 3 + std::size_t(batch.token(r, t))], ++tokens;
  CHECK(tokens == 14);
  CHECK(a.loss == doctest::Approx(total / tokens).epsilon(1e-12));
}

TEST_CASE("sft_step: bad input names the problem") {
  toy::BanditPolicy<double> policy(2, 3);
  Sgd sgd;
  const std::vector<token_id> x = {0, 1, 1}, y = {2, 0, 1};
  auto batch = toy::bandit_batch(x, y);
  CHECK_THROWS_WITH_AS(sft_step(policy, sgd, TokenBatch{}), doctest::Contains("empty batch"), shape_error);
  CHECK_THROWS_AS(sft_step(policy, sgd, batch, {}, {.micro_batches = 4}), config_error);
  CHECK_THROWS_AS(sft_step(policy, sgd, batch, {static_cast<Aggregation>(7)}), config_error);
  batch.mask(1, 1) = 0;
  CHECK_THROWS_WITH_AS(sft_step(policy, sgd, batch), doctest::Contains("row 1 of 3 has no response"), value_error);
  batch.mask(1, 1) = 1;
  batch.tokens.pop_back();
  CHECK_THROWS_WITH_AS(sft_step(policy, sgd, batch), doctest::Contains("'batch.tokens' has 5 elements"), shape_error);
}
