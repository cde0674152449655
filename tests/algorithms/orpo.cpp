#include "rlhf/algorithms/orpo.hpp"

#include <doctest/doctest.h>

#include <cmath>

#include "algorithms/bandit_fixture.hpp"
#include "rlhf/algorithms/evaluate.hpp"
#include "rlhf/optim/adamw.hpp"
#include "support/max_abs_difference.hpp"

using namespace rlhf;
using namespace rlhf::testing;
using rlhf::test::max_abs_difference;

namespace {

PreferenceBatch random_batch(const BanditProblem& problem, std::size_t n, std::uint64_t seed) {
  Rng rng(seed);
  return preference_batch(toy::sample_comparisons(problem.reward, problem.N, n, rng));
}

// The root in (0, 1) of (p − q) + 2λ (p² / (p² + (1 − p)²) − q), increasing in p: docs/algorithms/orpo.md.
double orpo_fixed_point(double q, double lambda) {
  double lo = 0, hi = 1;
  for (int i = 0; i < 200; ++i) {
    const double p = (lo + hi) / 2;
    const double f = (p - q) + 2 * lambda * (p * p / (p * p + (1 - p) * (1 - p)) - q);
    (f < 0 ? lo : hi) = p;
  }
  return (lo + hi) / 2;
}

}  // namespace

TEST_CASE("orpo_step: on a two-response bandit the policy converges to the fixed point derived in the docs") {
  // Prompt x: q_x of its pairs prefer response 0 over 1, the rest 1 over 0 (exact counts, no sampling error).
  // The fixed point p*(q, λ) lies between q (the NLL's optimum) and √q / (√q + √(1 − q)) (the odds term's).
  const std::vector<double> q = {0.8, 0.6, 0.3};
  const int per_prompt = 10;
  for (const double lambda : {0.5, 2.0}) {
    std::vector<toy::Comparison> data;
    for (std::size_t x = 0; x < q.size(); ++x)
      for (int k = 0; k < per_prompt; ++k) {
        const bool zero_wins = k < int(std::lround(q[x] * per_prompt));
        data.push_back({token_id(x), token_id(zero_wins ? 0 : 1), token_id(zero_wins ? 1 : 0)});
      }
    const auto batch = preference_batch(data);
    toy::BanditPolicy<double> policy(3, 2, moved_logits(3, 2, 5));
    AdamW<double> opt({.learning_rate = 0.05f, .weight_decay = 0.0f});
    const int steps = 2000;
    for (int step = 0; step < steps; ++step) {
      opt.set_learning_rate(0.05 * (1.0 - 0.9 * step / steps));
      orpo_step(policy, opt, batch, {.lambda = lambda}, {.micro_batches = 3});
    }
    const auto pi = policy.probabilities();
    for (std::size_t x = 0; x < q.size(); ++x) {
      const double want = orpo_fixed_point(q[x], lambda);
      const double odds_optimum = std::sqrt(q[x]) / (std::sqrt(q[x]) + std::sqrt(1 - q[x]));
      INFO("prompt ", x, " q = ", q[x], " lambda = ", lambda, " p* = ", want);
      CHECK(pi[x * 2] == doctest::Approx(want).epsilon(1e-6));
      CHECK(std::min(q[x], odds_optimum) < want);
      CHECK(want < std::max(q[x], odds_optimum));
      CHECK(std::abs(want - q[x]) > 0.01);  // the odds term moves the policy off the NLL's optimum
    }
  }
}

TEST_CASE("orpo_step: one step over micro-batches equals one step on the whole batch") {
  // Responses of several tokens and of different lengths, so that the NLL's token mean is not a row mean.
  const std::size_t P = 2, N = 3, B = 9, T = 5;
  Rng rng(4);
  const auto rows = [&] {
    TokenBatch b = TokenBatch::zeros(B, T);
    for (std::size_t i = 0; i < B; ++i) {
      b.token(i, 0) = token_id(rng.below(P));
      const std::size_t L = 1 + rng.below(4);
      for (std::size_t t = 1; t <= L; ++t) b.token(i, t) = token_id(rng.below(N)), b.mask(i, t) = 1;
    }
    return b;
  };
  PreferenceBatch batch{rows(), rows(), {}, {}};
  for (std::size_t i = 0; i < B; ++i) batch.rejected.token(i, 0) = batch.chosen.token(i, 0);
  for (const double lambda : {0.1, 1.5}) {
    MultiTokenBandit whole(P, N, moved_logits(P, N, 3)), split(P, N, moved_logits(P, N, 3));
    Sgd sgd{0.5};
    const auto a = orpo_step(whole, sgd, batch, {.lambda = lambda});
    const auto b = orpo_step(split, sgd, batch, {.lambda = lambda}, {.micro_batches = 4});
    CHECK(max_abs_difference(whole.gradients(), split.gradients()) <= 1e-12);
    CHECK(max_abs_difference(whole.parameters(), split.parameters()) <= 1e-12);
    CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-12));
    for (const auto& [name, value] : a.metrics.items()) CHECK(b.metrics[name] == doctest::Approx(value).epsilon(1e-12));
  }
}

TEST_CASE("orpo_step: the loss and gradient are the formula written out, on multi-token responses") {
  const std::vector<TokenPair> pairs = {{0, {1}, {2, 2, 0}}, {1, {0, 2, 2, 1}, {1, 1}}, {0, {2, 0}, {1, 0, 1, 1}},
                                   {1, {1, 1, 1}, {0}}};
  const std::size_t P = 2, N = 3, B = pairs.size(), T = 5;
  const PreferenceBatch batch = token_pairs(pairs, T);
  MultiTokenBandit policy(P, N, moved_logits(P, N, 32));
  const auto table = policy.log_table();
  const double lambda = 0.7;
  double tokens = 0;
  for (const auto& p : pairs) tokens += double(p.chosen.size());
  double loss = 0;
  std::vector<double> grad(P * N, 0.0);
  const auto add_grad = [&](token_id x, const std::vector<token_id>& y, double d) {  // d / d Σ log π of (x, y)
    for (const token_id t : y)
      for (std::size_t k = 0; k < N; ++k)
        grad[std::size_t(x) * N + k] += d * ((k == std::size_t(t) ? 1.0 : 0.0) - std::exp(table[std::size_t(x) * N + k]));
  };
  for (const auto& [x, yw, yl] : pairs) {
    double sw = 0, sl = 0;
    for (const token_id t : yw) sw += table[std::size_t(x) * N + std::size_t(t)];
    for (const token_id t : yl) sl += table[std::size_t(x) * N + std::size_t(t)];
    const double lw = sw / double(yw.size()), ll = sl / double(yl.size());
    const double delta = (lw - std::log1p(-std::exp(lw))) - (ll - std::log1p(-std::exp(ll)));
    loss += -sw / tokens - lambda * std::log(math::sigmoid(delta)) / double(B);
    const double d_delta = -lambda * math::sigmoid(-delta) / double(B);
    add_grad(x, yw, -1 / tokens + d_delta / (1 - std::exp(lw)) / double(yw.size()));
    add_grad(x, yl, -d_delta / (1 - std::exp(ll)) / double(yl.size()));
  }
  const Sgd frozen{0.0};
  const auto r = orpo_step(policy, frozen, batch, {.lambda = lambda}, {.micro_batches = 3});
  CHECK(r.loss == doctest::Approx(loss).epsilon(1e-12));
  CHECK(max_abs_difference(policy.gradients(), grad) <= 1e-12);
  // And the gradient of the returned loss, by finite differences through the policy.
  const std::vector<double> analytic(policy.gradients().begin(), policy.gradients().end());
  Eigen::Map<Eigen::VectorXd> theta(policy.parameters().data(), policy.parameters().size());
  const auto numeric = numeric_gradient([&] { return orpo_step(policy, frozen, batch, {.lambda = lambda}).loss; }, theta);
  CHECK(max_relative_error(analytic, numeric) < 1e-7);
}

TEST_CASE("orpo_step: rlhf::evaluate gives the step's loss and changes nothing; a float policy trains") {
  const BanditProblem problem(2, 3, 0.5, 7);
  const auto batch = random_batch(problem, 16, 3);
  auto policy = moved_policy(problem, 2);
  const std::vector<double> before(policy.parameters().begin(), policy.parameters().end());
  const auto e = evaluate(policy, [&](auto& frozen, auto& no_update) { return orpo_step(frozen, no_update, batch); });
  CHECK(max_abs_difference(policy.parameters(), before) == 0.0);
  Sgd sgd{0.1};
  CHECK(e.loss == doctest::Approx(orpo_step(policy, sgd, batch, {}, {.max_grad_norm = 1.0}).loss).epsilon(1e-14));

  toy::BanditPolicy<float> f(2, 3);
  AdamW<float> opt({.learning_rate = 0.1f});
  const std::vector<token_id> x = {0, 1, 0, 1}, w = {2, 0, 2, 0}, l = {0, 2, 1, 1};
  const PreferenceBatch fb{toy::bandit_batch(x, w), toy::bandit_batch(x, l), {}, {}};
  const double first = orpo_step(f, opt, fb).loss;
  double last = first;
  for (int i = 0; i < 20; ++i) last = orpo_step(f, opt, fb).loss;
  CHECK(first == doctest::Approx(std::log(3.0) + 0.1 * std::log(2.0)).epsilon(1e-6));  // uniform over 3
  CHECK(last < first - 0.1);
}

TEST_CASE("orpo_step: bad input names the problem") {
  const BanditProblem problem(2, 3, 0.5, 3);
  const auto batch = random_batch(problem, 8, 1);
  auto policy = problem.reference();
  Sgd sgd;
  auto short_rejected = batch;
  short_rejected.rejected = slice_rows(batch.rejected, 0, 7);
  CHECK_THROWS_WITH_AS(orpo_step(policy, sgd, short_rejected), doctest::Contains("'rejected' has 7 elements"),
                       shape_error);
  auto no_response = batch;
  no_response.chosen.mask(3, 1) = 0;
  CHECK_THROWS_WITH_AS(orpo_step(policy, sgd, no_response), doctest::Contains("'chosen' row 3 of 8 has no response"),
                       value_error);
  CHECK_THROWS_WITH_AS(orpo_step(policy, sgd, batch, {}, {.micro_batches = 0}), doctest::Contains("micro_batches"),
                       config_error);
  CHECK_THROWS_WITH_AS(orpo_step(policy, sgd, batch, {.lambda = -1}), doctest::Contains("lambda"), config_error);
  CHECK_THROWS_WITH_AS(orpo_step(policy, sgd, PreferenceBatch{}), doctest::Contains("empty batch"), shape_error);
}
