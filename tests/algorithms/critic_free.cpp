// GRPO, RLOO and REINFORCE++ (algorithms/critic_free.hpp) on the toy bandit, against closed-form fixed points:
// with the KL in the reward each converges to π* ∝ π_ref · exp(r / β); GRPO with β · k3 as a loss term converges to
// the optimum of E[r] − β KL(π_ref ‖ π) (derived in docs/algorithms/critic_free.md); GRPO without a KL puts its mass
// on the best response. Plus the gradient the update steps with, dynamic sampling, and bad input.
#include "rlhf/algorithms/critic_free.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "algorithms/bandit_fixture.hpp"
#include "rlhf/optim/adamw.hpp"
#include "support/text.hpp"

using namespace rlhf;
using namespace rlhf::testing;
using rlhf::test::error_message;
using rlhf::test::has;

namespace {

// Trains `steps` iterations on every prompt (`copies` prompts each, G samples per prompt), learning rate decaying
// linearly to 0; returns the policy.
toy::BanditPolicy<double> train(const BanditProblem& problem, const CriticFreeConfig& config, std::uint64_t seed,
                                int steps = 300, std::size_t copies = 32, float lr = 0.02f) {
  auto policy = problem.reference(), reference = problem.reference();
  AdamW<double> opt({.learning_rate = lr, .weight_decay = 0.0f});
  const auto prompts = all_prompts(problem.P, copies);
  Rng rng(seed);
  for (int step = 0; step < steps; ++step) {
    opt.set_learning_rate(lr * float(steps - step) / float(steps));
    critic_free_step(CriticFreeModels{.policy = policy, .reference = reference, .reward = TableReward{&problem}}, opt,
                     prompts, rng, config);
  }
  return policy;
}

// The stationary point of E_π[r] − β KL(π_ref ‖ π) when the reward term's gradient is scaled by c (the group-mean
// baseline's 1 − 1/G): c π_y (r_y − m) = β (π_y − π_ref,y), so π_y = β π_ref,y / (β − c (r_y − m)) with m = E_π r,
// the one m at which these sum to 1 (bisection; the sum falls as m grows).
std::vector<double> reverse_kl_optimum(const BanditProblem& problem, double c) {
  const auto ref = problem.reference().probabilities();
  std::vector<double> out(problem.P * problem.N);
  for (std::size_t x = 0; x < problem.P; ++x) {
    const double* r = problem.reward.data() + x * problem.N;
    const double r_max = *std::max_element(r, r + problem.N);
    double lo = r_max - problem.beta / c + 1e-12, hi = r_max + 100 * problem.beta;
    const auto total = [&](double m) {
      double s = 0;
      for (std::size_t y = 0; y < problem.N; ++y) s += problem.beta * ref[x * problem.N + y] / (problem.beta - c * (r[y] - m));
      return s;
    };
    for (int i = 0; i < 200; ++i) {
      const double mid = 0.5 * (lo + hi);
      (total(mid) > 1 ? lo : hi) = mid;
    }
    for (std::size_t y = 0; y < problem.N; ++y)
      out[x * problem.N + y] = problem.beta * ref[x * problem.N + y] / (problem.beta - c * (r[y] - lo));
  }
  return out;
}

double max_tv(const std::vector<double>& p, const std::vector<double>& q, std::size_t N) {
  const auto tv = toy::total_variation(p, q, N);
  return *std::max_element(tv.begin(), tv.end());
}

}  // namespace

TEST_CASE("critic_free: RLOO, Dr. GRPO and REINFORCE++ with the KL in the reward converge to pi*") {
  const BanditProblem problem(3, 4, 1.0, 7);
  CHECK(problem.max_tv(problem.reference()) > 0.1);
  auto dr_grpo = CriticFreeConfig::dr_grpo({.group_size = 4, .max_tokens = 1.0, .beta = problem.beta});
  dr_grpo.kl_in_reward = true;
  const struct {
    const char* name;
    CriticFreeConfig config;
  } methods[] = {{"rloo", CriticFreeConfig::rloo({.group_size = 4, .beta = problem.beta})},
                 {"dr_grpo, kl in reward", dr_grpo},
                 {"reinforce++", CriticFreeConfig::reinforce_pp({.group_size = 1, .beta = problem.beta})}};
  for (const auto& m : methods)
    for (const std::uint64_t seed : {1, 2}) {
      CAPTURE(m.name);
      CAPTURE(seed);
      CHECK(problem.max_tv(train(problem, m.config, seed)) <= 0.02);
    }
}

TEST_CASE("critic_free: GRPO with beta * k3 as a loss term converges to the optimum of E[r] - beta KL(pi_ref || pi)") {
  const BanditProblem problem(3, 4, 1.0, 7);
  auto config = CriticFreeConfig::grpo({.group_size = 4, .beta = problem.beta});
  config.scale_rewards = false;  // with the std division the reward's scale is random; the fixed point is for c = 1 − 1/G
  const auto target = reverse_kl_optimum(problem, 1.0 - 1.0 / 4);
  CHECK(max_tv(target, problem.optimum(), problem.N) > 0.03);  // a different point from pi*, visibly
  for (const std::uint64_t seed : {1, 2}) {
    CAPTURE(seed);
    CHECK(max_tv(train(problem, config, seed).probabilities(), target, problem.N) <= 0.02);
  }
}

TEST_CASE("critic_free: GRPO (std-scaled, clip-higher) without a KL puts its mass on the best response") {
  const BanditProblem problem(3, 4, 1.0, 9);
  auto config = CriticFreeConfig::grpo({.group_size = 8, .beta = 0.0});
  config.policy.clip_low = 0.2, config.policy.clip_high = 0.28;
  const auto p = train(problem, config, 3, 200, 16, 0.05f).probabilities();
  for (std::size_t x = 0; x < problem.P; ++x) {
    const double* r = problem.reward.data() + x * problem.N;
    const auto best = std::size_t(std::max_element(r, r + problem.N) - r);
    CAPTURE(x);
    CHECK(p[x * problem.N + best] >= 0.95);
  }
}

TEST_CASE("critic_free_update: the gradient it steps with is that of the clipped surrogate plus beta times the KL") {
  const BanditProblem problem(2, 3, 0.5, 4);
  auto policy = moved_policy(problem, 8), reference = problem.reference();
  auto config = CriticFreeConfig::grpo({.group_size = 3, .beta = 0.3});
  config.shuffle = false;
  CriticFreeModels models{.policy = policy, .reference = reference, .reward = TableReward{&problem}};
  Rng rng(5);
  const auto rollout = critic_free_rollout(models, all_prompts(problem.P, 2), rng, config);
  // One more step of the policy makes the ratio differ from 1, so the clip and the KL both matter.
  RecordingOptimizer recorder;
  for (auto& z : policy.parameters()) z *= 1.3;
  critic_free_update(models, recorder, rollout, rng, config);

  const auto loss_at = [&](const std::vector<double>& theta) {
    auto p = toy::BanditPolicy<double>(problem.P, problem.N, theta);
    const auto logp = p.log_probs(rollout.batch);
    const double surrogate = ppo_policy_loss(logp, rollout.logp, rollout.advantages, rollout.mask, config.policy).loss;
    const double kl = kl_estimate(logp, rollout.ref_logp, rollout.mask, {.estimator = KlEstimator::k3}).mean;
    return surrogate + config.beta * kl;
  };
  std::vector<double> theta(policy.parameters().begin(), policy.parameters().end());
  REQUIRE(recorder.seen.size() == theta.size());
  for (std::size_t i = 0; i < theta.size(); ++i) {
    auto up = theta, down = theta;
    up[i] += 1e-6, down[i] -= 1e-6;
    CAPTURE(i);
    CHECK(recorder.seen[i] == doctest::Approx((loss_at(up) - loss_at(down)) / 2e-6).epsilon(1e-6).scale(1e-6));
  }
}

TEST_CASE("critic_free: dynamic sampling drops the groups whose rewards are all equal") {
  BanditProblem problem(2, 3, 1.0, 4);
  for (std::size_t y = 0; y < problem.N; ++y) problem.reward[y] = 0.25;  // prompt 0: every response alike
  auto policy = problem.reference(), reference = problem.reference();
  auto config = CriticFreeConfig::grpo({.group_size = 4, .beta = 0.0});
  config.drop_uniform_groups = true;
  Rng rng(3);
  const auto rollout = critic_free_rollout(CriticFreeModels{.policy = policy, .reference = reference,
                                                            .reward = TableReward{&problem}},
                                           all_prompts(problem.P, 3), rng, config);
  CHECK(rollout.metrics["frac_reward_zero_std"] >= 0.5);  // the 3 groups of prompt 0, perhaps some of prompt 1
  for (std::size_t b = 0; b < rollout.batch.batch; ++b) CHECK(rollout.batch.token(b, 0) == 1);
}

TEST_CASE("critic_free: bad settings name the problem") {
  const BanditProblem problem(2, 3, 1.0, 4);
  auto policy = problem.reference(), reference = problem.reference();
  AdamW<double> opt;
  Rng rng(1);
  const auto run = [&](CriticFreeConfig c) {
    critic_free_step(CriticFreeModels{.policy = policy, .reference = reference, .reward = TableReward{&problem}}, opt,
                     all_prompts(2, 1), rng, c);
  };
  auto c = CriticFreeConfig::rloo({.group_size = 1});
  CHECK(has(error_message<config_error>([&] { run(c); }), "leave_one_out needs group_size >= 2"));
  c = CriticFreeConfig::grpo({.group_size = 4, .beta = -1.0});
  CHECK(has(error_message<config_error>([&] { run(c); }), "beta"));
  c = CriticFreeConfig::grpo({.group_size = 0});
  CHECK(has(error_message<config_error>([&] { run(c); }), "group_size"));
}
