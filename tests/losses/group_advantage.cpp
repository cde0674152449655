// group_advantages: values against a direct computation, the edge groups, bad input, and by Monte Carlo the bias
// of each baseline on the policy gradient of a softmax bandit (leave-one-out: none; the group mean: 1 − 1/G).
#include "rlhf/losses/group_advantage.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "rlhf/core/rng.hpp"
#include "support/text.hpp"

using namespace rlhf;
using rlhf::test::error_message;
using rlhf::test::has;

TEST_CASE("group_advantages: GRPO's scaled, Dr. GRPO's unscaled and RLOO's leave-one-out values") {
  const std::vector<double> r{1.0, 2.0, 4.0, 0.5, 0.5, 2.0};  // two groups of 3
  const auto stats = [](const double* x) {
    const double m = (x[0] + x[1] + x[2]) / 3;
    const double v = ((x[0] - m) * (x[0] - m) + (x[1] - m) * (x[1] - m) + (x[2] - m) * (x[2] - m)) / 2;
    return std::pair{m, std::sqrt(v)};
  };
  const auto grpo = group_advantages(r, {.group_size = 3});
  const auto dr = group_advantages(r, {.group_size = 3, .scale_rewards = false});
  const auto rloo = group_advantages(r, {.group_size = 3, .baseline = GroupBaseline::leave_one_out, .scale_rewards = false});
  for (std::size_t g = 0; g < 2; ++g) {
    const auto [m, s] = stats(r.data() + 3 * g);
    for (std::size_t i = 0; i < 3; ++i) {
      const double x = r[3 * g + i];
      const double others = (r[3 * g] + r[3 * g + 1] + r[3 * g + 2] - x) / 2;
      CHECK(grpo.advantages[3 * g + i] == doctest::Approx((x - m) / (s + 1e-4)).epsilon(1e-12));
      CHECK(dr.advantages[3 * g + i] == doctest::Approx(x - m).epsilon(1e-12));
      CHECK(rloo.advantages[3 * g + i] == doctest::Approx(x - others).epsilon(1e-12));
    }
  }
  // RLOO's advantage is the mean-baseline one scaled by G / (G − 1).
  for (std::size_t i = 0; i < r.size(); ++i) CHECK(rloo.advantages[i] == doctest::Approx(dr.advantages[i] * 1.5));
  CHECK(grpo.metrics["reward"] == doctest::Approx(10.0 / 6));
  CHECK(grpo.metrics["frac_reward_zero_std"] == 0.0);
}

TEST_CASE("group_advantages: a group of equal rewards is flagged and gets zeros; a group of one has no spread") {
  const auto a = group_advantages(std::vector<double>{3, 3, 3, 1, 2, 3}, {.group_size = 3});
  CHECK(a.uniform == std::vector<std::uint8_t>{1, 0});
  for (std::size_t i = 0; i < 3; ++i) CHECK(a.advantages[i] == 0.0);
  CHECK(a.advantages[3] < 0);
  CHECK(a.metrics["frac_reward_zero_std"] == 0.5);
  const auto single = group_advantages(std::vector<double>{5, -1}, {.group_size = 1});
  CHECK(single.advantages == std::vector<double>{0, 0});
  CHECK(single.uniform == std::vector<std::uint8_t>{1, 1});
}

TEST_CASE("group_advantages: bad input names the problem") {
  const std::vector<double> r{1, 2, 3};
  CHECK(has(error_message<shape_error>([&] { group_advantages(r, {.group_size = 2}); }), "not a positive multiple"));
  CHECK(has(error_message<config_error>([&] { group_advantages(r, {.group_size = 0}); }), "group_size"));
  CHECK(has(error_message<config_error>([&] {
              group_advantages(r, {.group_size = 1, .baseline = GroupBaseline::leave_one_out});
            }),
            "leave-one-out"));
  CHECK(has(error_message<value_error>([&] {
              group_advantages(std::vector<double>{1, std::numeric_limits<double>::quiet_NaN()}, {.group_size = 2});
            }),
            "rewards[1]"));
}

TEST_CASE("group_advantages: leave-one-out is an unbiased policy gradient; the group mean shrinks it by 1 - 1/G") {
  // One prompt, four responses, π = softmax(z), reward r. The true gradient of E_π[r] in z is π_k (r_k − r̄);
  // the estimate from a group is (1/G) Σ_i A_i (e_{y_i} − π).
  const std::vector<double> z{0.3, -0.2, 0.8, 0.0}, reward{1.0, -0.5, 0.25, 2.0};
  std::vector<double> pi(4);
  double zsum = 0;
  for (std::size_t k = 0; k < 4; ++k) zsum += std::exp(z[k]);
  for (std::size_t k = 0; k < 4; ++k) pi[k] = std::exp(z[k]) / zsum;
  double mean_r = 0;
  for (std::size_t k = 0; k < 4; ++k) mean_r += pi[k] * reward[k];
  std::vector<double> truth(4);
  for (std::size_t k = 0; k < 4; ++k) truth[k] = pi[k] * (reward[k] - mean_r);

  const std::size_t G = 4, draws = 200000;
  for (const auto baseline : {GroupBaseline::leave_one_out, GroupBaseline::mean}) {
    Rng rng(baseline == GroupBaseline::mean ? 11 : 12);
    std::vector<double> sum(4, 0.0), sum_sq(4, 0.0);
    std::vector<double> r(G);
    std::vector<std::size_t> y(G);
    for (std::size_t d = 0; d < draws; ++d) {
      for (std::size_t i = 0; i < G; ++i) y[i] = rng.categorical(pi.data(), 4), r[i] = reward[y[i]];
      const auto a = group_advantages(r, {.group_size = G, .baseline = baseline, .scale_rewards = false});
      for (std::size_t k = 0; k < 4; ++k) {
        double g = 0;
        for (std::size_t i = 0; i < G; ++i) g += a.advantages[i] * ((y[i] == k ? 1.0 : 0.0) - pi[k]) / double(G);
        sum[k] += g, sum_sq[k] += g * g;
      }
    }
    const double factor = baseline == GroupBaseline::mean ? 1.0 - 1.0 / double(G) : 1.0;
    for (std::size_t k = 0; k < 4; ++k) {
      const double mean = sum[k] / draws, se = std::sqrt((sum_sq[k] / draws - mean * mean) / draws);
      CAPTURE(k);
      CHECK(std::abs(mean - factor * truth[k]) < 5 * se);
      if (baseline == GroupBaseline::mean) CHECK(std::abs(mean - truth[k]) > 5 * se);  // the bias is visible
    }
  }
}
