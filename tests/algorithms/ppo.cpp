#include "rlhf/algorithms/ppo.hpp"

#include <doctest/doctest.h>

#include <cmath>

#include "algorithms/bandit_fixture.hpp"
#include "rlhf/algorithms/kl_control.hpp"
#include "rlhf/optim/adamw.hpp"
#include "support/max_abs_difference.hpp"

using namespace rlhf;
using namespace rlhf::testing;
using rlhf::test::max_abs_difference;


TEST_CASE("ppo_step: with the true reward and KL coefficient beta, the policy converges to pi*") {
  // 384 rollouts per step, 200 steps, 4 epochs x 4 minibatches; the learning rate decays linearly to 0.
  const BanditProblem problem(3, 4, 2.0, 7);
  auto policy = problem.reference(), reference = problem.reference();
  toy::BanditValueModel<double> critic(problem.P, problem.N);
  AdamW<double> policy_opt({.learning_rate = 0.01f, .weight_decay = 0.0f});
  AdamW<double> value_opt({.learning_rate = 0.1f, .weight_decay = 0.0f});
  FixedKlController kl{.coef = float(problem.beta)};
  const auto prompts = all_prompts(problem.P, 128);
  Rng rng(1);
  const PpoStepConfig config{.epochs = 4, .minibatches = 4};
  CHECK(problem.max_tv(policy) > 0.1);
  const int steps = 200;
  for (int step = 0; step < steps; ++step) {
    policy_opt.set_learning_rate(0.01f * float(steps - step) / steps);
    ppo_step(PpoModels{.policy = policy, .reference = reference, .value_model = critic, .reward = TableReward{&problem}},
             PpoOptimizers{.policy = policy_opt, .value = value_opt}, kl, prompts, rng, config);
  }
  CHECK(problem.max_tv(policy) <= 0.02);  // max over the 3 prompts
  // The critic learned E_pi[r - beta log(pi/pi_ref)] = beta log Z(x) at the optimum.
  const auto ref = problem.reference().probabilities();
  for (std::size_t x = 0; x < problem.P; ++x) {
    double z = 0;
    for (std::size_t y = 0; y < problem.N; ++y)
      z += ref[x * problem.N + y] * std::exp(problem.reward[x * problem.N + y] / problem.beta);
    CHECK(critic.parameters()[x] == doctest::Approx(problem.beta * std::log(z)).epsilon(0.05));
  }
}

TEST_CASE("ppo_rollout: KL-penalised reward on the response token, GAE advantages and returns") {
  const BanditProblem problem(2, 3, 0.5, 3);
  Rng init(2);
  std::vector<double> logits;
  for (int i = 0; i < 6; ++i) logits.push_back(init.normal());
  toy::BanditPolicy<double> policy(2, 3, logits);
  auto reference = problem.reference();
  toy::BanditValueModel<double> critic(2, 3);
  critic.parameters()[0] = 0.3;
  critic.parameters()[1] = -0.2;
  Rng rng(4);
  const float kappa = 0.25f;
  const auto r = ppo_rollout(PpoModels{policy, reference, critic, TableReward{&problem}}, all_prompts(2, 5), rng, kappa,
                             {.whiten_advantages = false});
  REQUIRE(r.batch.batch == 10);
  const auto pi = policy.probabilities(), ref = reference.probabilities();
  double kl = 0;
  for (std::size_t b = 0; b < 10; ++b) {
    const std::size_t x = r.batch.token(b, 0), y = r.batch.token(b, 1);
    const double log_ratio = std::log(pi[x * 3 + y]) - std::log(ref[x * 3 + y]);
    const double total = problem.reward[x * 3 + y] - kappa * log_ratio;
    kl += log_ratio / 10;
    CHECK(r.rewards(b, 1) == doctest::Approx(total).epsilon(1e-6));
    CHECK(r.returns(b, 1) == doctest::Approx(total).epsilon(1e-6));  // one step: R = r
    CHECK(r.advantages(b, 1) == doctest::Approx(total - critic.parameters()[x]).epsilon(1e-6));
    CHECK(r.rewards(b, 0) == 0.0);
    CHECK(r.advantages(b, 0) == 0.0);
  }
  CHECK(r.metrics["objective/kl"] == doctest::Approx(kl).epsilon(1e-9));
  CHECK(r.metrics["objective/kl_coef"] == doctest::Approx(0.25));
}

TEST_CASE("ppo_update: the gradients it steps with are those of the PPO losses") {
  const BanditProblem problem(2, 3, 0.5, 5);
  auto policy = problem.reference(), reference = problem.reference();
  toy::BanditValueModel<double> critic(2, 3);
  Rng rng(6);
  const PpoStepConfig config{
      .epochs = 1, .minibatches = 1, .shuffle = false, .policy = {.clip = 0.2f}, .value = {.clip = 0.2f}};
  const auto rollout =
      ppo_rollout(PpoModels{policy, reference, critic, TableReward{&problem}}, all_prompts(2, 8), rng, 0.1f, config);
  // Move both models away from the rollout's, so that ratios differ from 1 and some values are clipped.
  Rng move(7);
  for (auto& p : policy.parameters()) p += 0.1 * move.normal();
  for (auto& p : critic.parameters()) p += 0.4 * move.normal();
  const Sgd frozen{0.0};
  ppo_update(PpoModels{policy, reference, critic, TableReward{&problem}}, PpoOptimizers{frozen, frozen}, rollout, rng,
             config);
  const std::vector<double> d_theta(policy.gradients().begin(), policy.gradients().end());
  const std::vector<double> d_psi(critic.gradients().begin(), critic.gradients().end());
  Eigen::Map<Eigen::VectorXd> theta(policy.parameters().data(), 6), psi(critic.parameters().data(), 2);
  const auto policy_loss = [&] {
    return ppo_policy_loss(policy.log_probs(rollout.batch), rollout.logp, rollout.advantages, rollout.mask,
                           config.policy)
        .loss;
  };
  const auto value_loss = [&] {
    return ppo_value_loss(critic.values(rollout.batch), rollout.values, rollout.returns, rollout.mask, config.value)
        .loss;
  };
  CHECK(max_relative_error(d_theta, numeric_gradient(policy_loss, theta)) < 1e-6);
  CHECK(max_relative_error(d_psi, numeric_gradient(value_loss, psi)) < 1e-6);
  CHECK(max_abs_difference(d_psi, std::vector<double>(2, 0.0)) > 0);  // not a vacuous comparison
}

TEST_CASE("ppo_step: a RewardModel scores like the equivalent callable, and the adaptive controller moves") {
  const BanditProblem problem(2, 3, 0.5, 9);
  toy::BanditRewardModel<double> reward_model(2, 3);
  std::copy(problem.reward.begin(), problem.reward.end(), reward_model.parameters().begin());
  auto run = [&](auto&& reward) {
    auto policy = problem.reference(), reference = problem.reference();
    toy::BanditValueModel<double> critic(2, 3);
    AdamW<double> po({.learning_rate = 0.05f}), vo({.learning_rate = 0.05f});
    AdaptiveKlController kl{.coef = 0.2f, .target = 0.001f, .horizon = 100.0f};
    Rng rng(3);
    StepResult last;
    for (int i = 0; i < 5; ++i)
      last = ppo_step(PpoModels{policy, reference, critic, reward}, PpoOptimizers{po, vo}, kl, all_prompts(2, 16), rng,
                      {.minibatches = 2});
    return std::pair{std::vector<double>(policy.parameters().begin(), policy.parameters().end()), kl.value()};
  };
  const auto [by_model, coef_model] = run(reward_model);
  const auto [by_callable, coef_callable] = run(TableReward{&problem});
  CHECK(max_abs_difference(by_model, by_callable) == 0.0);
  CHECK(coef_model == coef_callable);
  CHECK(coef_model > 0.2f);  // the observed KL is above the tiny target, so the coefficient grew
}

TEST_CASE("ppo_step: bad input names the problem") {
  const BanditProblem problem(2, 3, 0.5, 3);
  auto policy = problem.reference(), reference = problem.reference();
  toy::BanditValueModel<double> critic(2, 3);
  Sgd sgd;
  FixedKlController kl{.coef = 0.1f};
  Rng rng(1);
  const auto prompts = all_prompts(2, 2);
  const TableReward reward{&problem};
  const PpoModels models{policy, reference, critic, reward};
  const PpoOptimizers optimizers{sgd, sgd};
  CHECK_THROWS_WITH_AS(
      ppo_step(models, optimizers, kl, prompts, rng, {.epochs = 0}),
      doctest::Contains("epochs must be >= 1"), config_error);
  CHECK_THROWS_WITH_AS(
      ppo_step(models, optimizers, kl, prompts, rng, {.minibatches = 5}),
      doctest::Contains("minibatches must be in [1, 4]"), config_error);
  const auto short_reward = [](const TokenBatch&) { return std::vector<float>{1.0f}; };
  CHECK_THROWS_WITH_AS(ppo_step(PpoModels{policy, reference, critic, short_reward}, optimizers, kl, prompts, rng),
                       doctest::Contains("'reward(batch)' has 1 elements"), shape_error);
  CHECK_THROWS_WITH_AS(ppo_rollout(models, prompts, rng, -1.0f),
                       doctest::Contains("kl_coef must be finite and >= 0"), config_error);
  const auto nan_reward = [](const TokenBatch& b) { return std::vector<double>(b.batch, NAN); };
  CHECK_THROWS_AS(ppo_step(PpoModels{policy, reference, critic, nan_reward}, optimizers, kl, prompts, rng), value_error);
}

TEST_CASE("ppo_step: StepOptions' max_grad_norm gives the step the config's older field gives, and its result "
          "holds both losses") {
  const BanditProblem problem(2, 3, 0.5, 3);
  auto run = [&](const PpoStepConfig& config, const StepOptions& options) {
    auto policy = problem.reference(), reference = problem.reference();
    toy::BanditValueModel<double> critic(2, 3);
    AdamW<double> po({.learning_rate = 0.05f}), vo({.learning_rate = 0.05f});
    FixedKlController kl{.coef = 0.1f};
    Rng rng(5);
    const auto r = ppo_step(PpoModels{policy, reference, critic, TableReward{&problem}}, PpoOptimizers{po, vo}, kl,
                            all_prompts(2, 8), rng, config, options);
    CHECK(r.loss == r.metrics[metric::loss_policy_avg]);
    CHECK(r.grad_norm == r.metrics[metric::grad_norm]);
    CHECK(std::isfinite(r.metrics[metric::loss_value_avg]));
    return std::vector<double>(policy.parameters().begin(), policy.parameters().end());
  };
  PpoStepConfig old_style{.minibatches = 2};
  old_style.max_grad_norm = 0.01;
  const auto by_options = run({.minibatches = 2}, {.max_grad_norm = 0.01});
  CHECK(max_abs_difference(run(old_style, {}), by_options) == 0.0);
  CHECK(max_abs_difference(run({.minibatches = 2}, {}), by_options) > 0.0);  // the clip was active
}
