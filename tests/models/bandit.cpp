#include "rlhf/models/toy/bandit.hpp"

#include <doctest/doctest.h>

#include <cmath>

#include "rlhf/core/concepts.hpp"
#include "rlhf/optim/adamw.hpp"
#include "support/gradcheck.hpp"

using namespace rlhf;
using namespace rlhf::testing;
using toy::BanditPolicy;

static_assert(TrainablePolicy<BanditPolicy<double>> && TrainablePolicy<BanditPolicy<float>>);
static_assert(SamplingPolicy<BanditPolicy<double>>);
static_assert(RewardModel<toy::BanditRewardModel<double>>);
static_assert(ValueModel<toy::BanditValueModel<double>>);
static_assert(OptimizerFor<AdamW<double>, BanditPolicy<double>>);
static_assert(!OptimizerFor<AdamW<float>, BanditPolicy<double>>);

namespace {
const std::vector<double> logits = {0.5, -1.0, 2.0, 0.0, 0.3, 0.3, -0.7, 1.1};  // P = 2, N = 4
}

TEST_CASE("bandit policy: log_probs is the log-softmax of its row, at the response token only") {
  BanditPolicy<double> policy(2, 4, logits);
  const std::vector<token_id> x = {0, 1, 1}, y = {2, 0, 3};
  const auto lp = policy.log_probs(toy::bandit_batch(x, y));
  for (std::size_t b = 0; b < 3; ++b) {
    double z = 0;
    for (std::size_t j = 0; j < 4; ++j) z += std::exp(logits[x[b] * 4 + j]);
    CHECK(lp(b, 1) == doctest::Approx(logits[x[b] * 4 + y[b]] - std::log(z)).epsilon(1e-12));
    CHECK(lp(b, 0) == 0.0);
  }
  double total = 0;
  for (const double p : policy.probabilities()) total += p;
  CHECK(total == doctest::Approx(2.0));
}

TEST_CASE("bandit policy: backward accumulates the gradient of sum(d * log_probs)") {
  BanditPolicy<double> policy(2, 4, logits);
  const std::vector<token_id> x = {0, 1, 1, 0}, y = {2, 0, 3, 2};
  const auto batch = toy::bandit_batch(x, y);
  const mat d = random_matrix(4, 2, -1, 1, 3);
  policy.zero_grad();
  policy.backward(batch, d);
  policy.backward(batch, d);  // accumulates
  const std::vector<double> analytic(policy.gradients().begin(), policy.gradients().end());
  Eigen::Map<Eigen::VectorXd> theta(policy.parameters().data(), 8);
  const auto numeric = numeric_gradient([&] { return 2 * (policy.log_probs(batch).array() * d.array()).sum(); }, theta);
  CHECK(max_relative_error(analytic, numeric) < 1e-8);
  policy.zero_grad();
  for (const double g : policy.gradients()) CHECK(g == 0.0);
}

TEST_CASE("bandit policy: sample draws from softmax(theta / temperature)") {
  BanditPolicy<double> policy(2, 4, logits);
  Rng rng(11);
  const std::size_t n = 40000;
  const auto prompts = toy::bandit_prompts(std::vector<token_id>(n, 1));
  for (const float temperature : {1.0f, 0.5f}) {
    const auto batch = policy.sample(prompts, {.temperature = temperature}, rng);
    REQUIRE(batch.time == 2);
    std::vector<double> counts(4, 0.0);
    std::size_t malformed = 0;
    for (std::size_t b = 0; b < n; ++b) {
      malformed += batch.token(b, 0) != 1 || batch.mask(b, 0) != 0 || batch.mask(b, 1) != 1;
      counts[batch.token(b, 1)] += 1.0 / n;
    }
    CHECK(malformed == 0);
    double z = 0;
    for (std::size_t j = 0; j < 4; ++j) z += std::exp(logits[4 + j] / temperature);
    for (std::size_t j = 0; j < 4; ++j)
      CHECK(counts[j] == doctest::Approx(std::exp(logits[4 + j] / temperature) / z).epsilon(0.03));
  }
  CHECK_THROWS_AS(policy.sample(prompts, {.temperature = 0.0f}, rng), config_error);
  CHECK_THROWS_AS(policy.sample(toy::bandit_prompts(std::vector<token_id>{2}), {}, rng), value_error);
}

TEST_CASE("bandit reward and value models: tables read and written at the response token") {
  toy::BanditRewardModel<double> reward(2, 3);
  toy::BanditValueModel<double> value(2, 3);
  for (std::size_t i = 0; i < 6; ++i) reward.parameters()[i] = double(i);
  value.parameters()[0] = -1.5;
  value.parameters()[1] = 2.5;
  const std::vector<token_id> x = {1, 0, 1}, y = {2, 1, 2};
  const auto batch = toy::bandit_batch(x, y);
  const vec s = reward.scores(batch);
  CHECK(s[0] == 5.0);
  CHECK(s[1] == 1.0);
  const mat v = value.values(batch);
  CHECK(v(0, 1) == 2.5);
  CHECK(v(1, 1) == -1.5);
  CHECK(v(0, 0) == 0.0);
  reward.zero_grad();
  reward.backward_scores(batch, vec(vec::Constant(3, 0.5)));
  CHECK(reward.gradients()[5] == 1.0);  // (1, 2) appears twice
  CHECK(reward.gradients()[1] == 0.5);
  value.zero_grad();
  value.backward_values(batch, mat(mat::Constant(3, 2, 2.0)));
  CHECK(value.gradients()[1] == 4.0);
  CHECK(value.gradients()[0] == 2.0);
}

TEST_CASE("bandit: the KL-constrained optimum, total variation, and preference data") {
  const std::vector<double> ref = {0.5, 0.25, 0.25}, r = {0.0, std::log(2.0), std::log(4.0)};
  const auto opt = toy::kl_optimum(ref, r, 3, 1.0);  // ∝ {0.5, 0.5, 1.0}
  CHECK(opt[0] == doctest::Approx(0.25));
  CHECK(opt[1] == doctest::Approx(0.25));
  CHECK(opt[2] == doctest::Approx(0.5));
  CHECK(toy::total_variation(ref, opt, 3)[0] == doctest::Approx(0.25));

  // Bradley-Terry comparisons: the better of responses 0 and 2 wins with probability sigma(r2 - r0) = 0.8.
  Rng rng(4);
  const std::vector<double> reward = {0.0, 0.0, std::log(4.0)};
  double wins = 0, seen = 0, ties = 0;
  for (const auto& c : toy::sample_comparisons(reward, 3, 60000, rng)) {
    ties += c.chosen == c.rejected;
    if ((c.chosen == 2 && c.rejected == 0) || (c.chosen == 0 && c.rejected == 2)) {
      seen += 1;
      wins += c.chosen == 2;
    }
  }
  CHECK(ties == 0);
  CHECK(wins / seen == doctest::Approx(0.8).epsilon(0.02));

  // Plackett-Luce rankings of all 3: response 2 comes first with probability 4/6.
  double first = 0;
  const auto rankings = toy::sample_rankings(reward, 3, 3, 30000, rng);
  for (const auto& k : rankings) first += (k.ranked[0] == 2) / 30000.0;
  CHECK(first == doctest::Approx(4.0 / 6.0).epsilon(0.02));
  CHECK_THROWS_AS(toy::sample_rankings(reward, 3, 4, 1, rng), config_error);
}

TEST_CASE("bandit: bad rows name the row") {
  BanditPolicy<double> policy(2, 3);
  auto batch = toy::bandit_batch(std::vector<token_id>{0, 1}, std::vector<token_id>{1, 2});
  batch.mask(1, 0) = 1;
  CHECK_THROWS_WITH_AS(policy.log_probs(batch), doctest::Contains("row 1 has 2 response tokens"), value_error);
  batch.mask(1, 0) = 0;
  batch.token(0, 1) = 3;
  CHECK_THROWS_WITH_AS(policy.log_probs(batch), doctest::Contains("row 0 has response id 3 outside [0, 3)"),
                       value_error);
  batch.token(0, 1) = 1;
  batch.token(1, 0) = 2;
  CHECK_THROWS_WITH_AS(policy.log_probs(batch), doctest::Contains("prompt id 2 outside [0, 2)"), value_error);
  CHECK_THROWS_AS(
      policy.backward(toy::bandit_batch(std::vector<token_id>{0}, std::vector<token_id>{1}), mat::Zero(2, 2)),
      shape_error);
  CHECK_THROWS_AS(BanditPolicy<double>(2, 3, {1.0, 2.0}), shape_error);
  CHECK_THROWS_AS(BanditPolicy<double>(2, 1), config_error);
}
