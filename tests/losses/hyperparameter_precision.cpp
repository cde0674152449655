// Hyper-parameters are doubles: a double computation with β = 0.1 or γ = 0.99 uses those numbers, not their
// nearest floats, so it reproduces a float64 formula to rounding (it was off by ~1e-8 to 1e-6 relative when
// they were stored as float).
#include <doctest/doctest.h>

#include <cmath>

#include "rlhf/backends/eigen.hpp"
#include "rlhf/losses/bradley_terry.hpp"
#include "rlhf/losses/dpo.hpp"
#include "rlhf/losses/gae.hpp"

using namespace rlhf;
using vec = Eigen::VectorXd;
using mat = eigen<double>::matrix;

namespace {
double relative(double got, double want) { return std::abs(got - want) / std::max(std::abs(want), 1e-300); }
}  // namespace

TEST_CASE("hyper-parameter precision: DPO's implicit rewards use β = 0.1 exactly") {
  vec pc(2), pr(2), rc(2), rr(2);
  pc << -3.25, -10.5;
  pr << -4.75, -9.0;
  rc << -3.5, -10.0;
  rr << -4.0, -9.25;
  const auto r = dpo_loss(PreferencePairs<vec>{pc, pr, rc, rr, vec(), vec()}, {.beta = 0.1});
  const double chosen = 0.1 * ((-3.25 + 3.5) + (-10.5 + 10.0)) / 2;  // β·mean(log π − log π_ref), float64
  const double rejected = 0.1 * ((-4.75 + 4.0) + (-9.0 + 9.25)) / 2;
  CHECK(relative(r.metrics["rewards/chosen"], chosen) <= 1e-15);
  CHECK(relative(r.metrics["rewards/rejected"], rejected) <= 1e-15);
  // The loss: −log σ(β (u_w − u_l)) for each pair, averaged.
  const double h0 = 0.1 * ((-3.25 + 3.5) - (-4.75 + 4.0)), h1 = 0.1 * ((-10.5 + 10.0) - (-9.0 + 9.25));
  const double loss = (std::log1p(std::exp(-h0)) + std::log1p(std::exp(-h1))) / 2;
  CHECK(relative(r.loss, loss) <= 1e-14);
}

TEST_CASE("hyper-parameter precision: GAE's returns use γ = 0.99 and λ = 0.95 exactly") {
  const double gamma = 0.99, lambda = 0.95;
  mat rewards(1, 4), values(1, 4), mask = mat::Ones(1, 4);
  rewards << 0.5, -1.25, 2.0, 3.0;
  values << 0.1, 0.7, -0.3, 1.9;
  const auto g = gae(rewards, values, mask, {.gamma = gamma, .lambda = lambda});
  double advantage = 0;  // the float64 recursion, back to front; V after the last token is 0
  for (int t = 3; t >= 0; --t) {
    const double next = t == 3 ? 0.0 : values(0, t + 1);
    advantage = rewards(0, t) + gamma * next - values(0, t) + gamma * lambda * advantage;
    CHECK(relative(g.advantages(0, t), advantage) <= 1e-13);
    CHECK(relative(g.returns(0, t), advantage + values(0, t)) <= 1e-13);
  }
}

TEST_CASE("hyper-parameter precision: Bradley–Terry's margin 0.1 is 0.1") {
  vec chosen(1), rejected(1);
  chosen << 0.3;
  rejected << 0.1;
  const auto r = bradley_terry_loss(RewardPairs<vec>{chosen, rejected}, {.margin = 0.1});
  const double h = 0.3 - 0.1 - 0.1;
  CHECK(relative(r.loss, std::log1p(std::exp(-h))) <= 1e-14);
}
