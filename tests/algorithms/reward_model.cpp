#include "rlhf/algorithms/reward_model.hpp"

#include <doctest/doctest.h>

#include <cmath>

#include "algorithms/bandit_fixture.hpp"
#include "rlhf/optim/adamw.hpp"
#include "support/max_abs_difference.hpp"

using namespace rlhf;
using namespace rlhf::testing;
using rlhf::test::max_abs_difference;

namespace {

toy::BanditRewardModel<double> random_model(std::size_t P, std::size_t N, std::uint64_t seed) {
  toy::BanditRewardModel<double> model(P, N);
  Rng rng(seed);
  for (auto& p : model.parameters()) p = rng.normal();
  return model;
}

}  // namespace

static_assert(RewardModel<toy::BanditRewardModel<double>>);

TEST_CASE("reward_model_step: Bradley-Terry on pairs drawn from r recovers r up to a per-prompt constant") {
  const BanditProblem problem(4, 5, 1.0, 21);
  Rng rng(5);
  const auto batch = preference_batch(toy::sample_comparisons(problem.reward, problem.N, 16000, rng));
  toy::BanditRewardModel<double> model(problem.P, problem.N);
  AdamW<double> opt({.learning_rate = 0.1f, .weight_decay = 0.0f});
  StepResult last;
  for (int step = 0; step < 100; ++step) {
    opt.set_learning_rate(0.1f * float(100 - step) / 100);
    last = reward_model_step(model, opt, batch, {}, {.micro_batches = 2});
  }
  CHECK(centered_correlation(model.parameters(), problem.reward, problem.N) >= 0.99);
  CHECK(last.metrics[metric::rewards_accuracies] > 0.6);
}

TEST_CASE("reward_model_step: Plackett-Luce on K = 3 rankings drawn from r recovers r up to a per-prompt constant") {
  const BanditProblem problem(4, 5, 1.0, 22);
  Rng rng(6);
  const auto batch = ranked_batch(toy::sample_rankings(problem.reward, problem.N, 3, 6000, rng));
  toy::BanditRewardModel<double> model(problem.P, problem.N);
  AdamW<double> opt({.learning_rate = 0.1f, .weight_decay = 0.0f});
  for (int step = 0; step < 100; ++step) {
    opt.set_learning_rate(0.1f * float(100 - step) / 100);
    reward_model_step(model, opt, batch);
  }
  CHECK(centered_correlation(model.parameters(), problem.reward, problem.N) >= 0.99);
}

TEST_CASE("reward_model_step: micro-batches equal the whole batch; the gradient is the loss's") {
  const BanditProblem problem(3, 4, 1.0, 3);
  Rng rng(7);
  const auto pairs = preference_batch(toy::sample_comparisons(problem.reward, problem.N, 41, rng));
  auto ranked = ranked_batch(toy::sample_rankings(problem.reward, problem.N, 4, 23, rng));
  ranked.lengths.assign(23, 4);
  ranked.lengths[5] = 2;
  ranked.lengths[6] = 3;
  Sgd sgd{0.5};
  const Sgd frozen{0.0};
  {
    const BradleyTerryConfig config{.margin = 0.2f, .label_smoothing = 0.1f, .center_coefficient = 0.05f};
    auto whole = random_model(3, 4, 1), split = random_model(3, 4, 1);
    const auto a = reward_model_step(whole, sgd, pairs, config);
    const auto b = reward_model_step(split, sgd, pairs, config, {.micro_batches = 4});
    CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-12));
    CHECK(max_abs_difference(whole.parameters(), split.parameters()) <= 1e-12);
    for (const auto& [name, value] : a.metrics.items()) CHECK(b.metrics[name] == doctest::Approx(value).epsilon(1e-12));
    reward_model_step(split, frozen, pairs, config, {.micro_batches = 3});
    const std::vector<double> analytic(split.gradients().begin(), split.gradients().end());
    Eigen::Map<Eigen::VectorXd> phi(split.parameters().data(), split.parameters().size());
    const auto numeric = numeric_gradient([&] { return reward_model_step(split, frozen, pairs, config).loss; }, phi);
    CHECK(max_relative_error(analytic, numeric) < 1e-6);
  }
  for (const PlackettLuceConfig config : {PlackettLuceConfig{}, PlackettLuceConfig{.top_k = 1}}) {
    auto whole = random_model(3, 4, 2), split = random_model(3, 4, 2);
    const auto a = reward_model_step(whole, sgd, ranked, config);
    const auto b = reward_model_step(split, sgd, ranked, config, {.micro_batches = 4});
    CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-12));
    CHECK(max_abs_difference(whole.parameters(), split.parameters()) <= 1e-12);
    reward_model_step(split, frozen, ranked, config, {.micro_batches = 2});
    const std::vector<double> analytic(split.gradients().begin(), split.gradients().end());
    Eigen::Map<Eigen::VectorXd> phi(split.parameters().data(), split.parameters().size());
    const auto numeric = numeric_gradient([&] { return reward_model_step(split, frozen, ranked, config).loss; }, phi);
    CHECK(max_relative_error(analytic, numeric) < 1e-6);
  }
}

TEST_CASE("reward_model_step: the batch's margin per pair (TRL's margin column) reaches the loss") {
  const BanditProblem problem(3, 4, 1.0, 9);
  Rng rng(9);
  auto pairs = preference_batch(toy::sample_comparisons(problem.reward, problem.N, 17, rng));
  for (std::size_t i = 0; i < 17; ++i) pairs.margin.push_back(0.1 * double(i % 5) - 0.2);
  const Sgd frozen{0.0};
  auto model = random_model(3, 4, 5);
  const BradleyTerryConfig config{.margin = 0.3, .center_coefficient = 0.01};
  const auto r = reward_model_step(model, frozen, pairs, config, {.micro_batches = 3});
  using V = toy::BanditRewardModel<double>::backend::vector;
  const V scores = model.scores(pair_rows(pairs, 0, 17));
  const V margin = Eigen::Map<const V>(pairs.margin.data(), 17);
  const auto want = bradley_terry_loss(RewardPairs<V>{scores.head(17), scores.tail(17), margin}, config);
  CHECK(r.loss == doctest::Approx(want.loss).epsilon(1e-12));
  const std::vector<double> analytic(model.gradients().begin(), model.gradients().end());
  Eigen::Map<Eigen::VectorXd> phi(model.parameters().data(), model.parameters().size());
  const auto numeric = numeric_gradient([&] { return reward_model_step(model, frozen, pairs, config).loss; }, phi);
  CHECK(max_relative_error(analytic, numeric) < 1e-6);
  pairs.margin.pop_back();
  CHECK_THROWS_WITH_AS(reward_model_step(model, frozen, pairs, config), doctest::Contains("batch.margin"), shape_error);
}

TEST_CASE("reward_model_step: Plackett-Luce with K = 2 is Bradley-Terry") {
  const BanditProblem problem(3, 4, 1.0, 4);
  Rng rng(8);
  const auto ranked = ranked_batch(toy::sample_rankings(problem.reward, problem.N, 2, 30, rng));
  std::vector<token_id> x, w, l;
  for (std::size_t b = 0; b < 30; ++b) {
    x.push_back(ranked.responses.token(2 * b, 0));
    w.push_back(ranked.responses.token(2 * b, 1));
    l.push_back(ranked.responses.token(2 * b + 1, 1));
  }
  const PreferenceBatch pairs{toy::bandit_batch(x, w), toy::bandit_batch(x, l), {}, {}};
  auto a = random_model(3, 4, 3), b = random_model(3, 4, 3);
  Sgd sgd{0.5};
  CHECK(reward_model_step(a, sgd, ranked, PlackettLuceConfig{}).loss ==
        doctest::Approx(reward_model_step(b, sgd, pairs, BradleyTerryConfig{}).loss).epsilon(1e-12));
  CHECK(max_abs_difference(a.parameters(), b.parameters()) <= 1e-12);
}

TEST_CASE("reward_model_step: bad input names the problem") {
  const BanditProblem problem(2, 3, 1.0, 3);
  Rng rng(1);
  auto pairs = preference_batch(toy::sample_comparisons(problem.reward, problem.N, 6, rng));
  auto ranked = ranked_batch(toy::sample_rankings(problem.reward, problem.N, 3, 4, rng));
  toy::BanditRewardModel<double> model(2, 3);
  Sgd sgd;
  auto short_rejected = pairs;
  short_rejected.rejected = slice_rows(pairs.rejected, 0, 5);
  CHECK_THROWS_WITH_AS(reward_model_step(model, sgd, short_rejected), doctest::Contains("'rejected' has 5 elements"),
                       shape_error);
  CHECK_THROWS_AS(reward_model_step(model, sgd, pairs, {.label_smoothing = 0.5f}), config_error);
  CHECK_THROWS_AS(reward_model_step(model, sgd, pairs, {}, {.micro_batches = 7}), config_error);
  auto bad_id = pairs;
  bad_id.chosen.token(2, 1) = 3;
  CHECK_THROWS_WITH_AS(reward_model_step(model, sgd, bad_id), doctest::Contains("response id 3 outside [0, 3)"),
                       value_error);
  auto ragged = ranked;
  ragged.k = 5;
  CHECK_THROWS_WITH_AS(reward_model_step(model, sgd, ragged, PlackettLuceConfig{}),
                       doctest::Contains("not a multiple of k = 5"), shape_error);
  auto long_list = ranked;
  long_list.lengths = {3, 4, 3, 3};
  CHECK_THROWS_WITH_AS(reward_model_step(model, sgd, long_list, PlackettLuceConfig{}),
                       doctest::Contains("'lengths' row 1 is 4"), value_error);
}
