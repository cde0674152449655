#include "rlhf/losses/orpo.hpp"

#include <doctest/doctest.h>

#include <cmath>

#include "support/gradcheck.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

OrpoPairs<vec> random_pairs(std::size_t n, std::uint64_t seed) {
  return {random_vector(n, -30, -1, seed), random_vector(n, -30, -1, seed + 1),
          random_vector(n, 1, 12, seed + 2).array().round(), random_vector(n, 1, 12, seed + 3).array().round()};
}

// The paper's loss with TRL's token-mean NLL, written independently of the kernel (lengths ≥ 1, ℓ < 0).
struct Reference {
  double loss, nll, log_odds_ratio, log_odds;
};
Reference reference_loss(double lambda, const OrpoPairs<vec>& in) {
  const Eigen::Index n = in.policy_chosen.size();
  double nll = 0, tokens = 0, ratio = 0, odds = 0;
  const auto log_odds = [](double mean_logp) { return mean_logp - std::log1p(-std::exp(mean_logp)); };
  for (Eigen::Index i = 0; i < n; ++i) {
    nll -= in.policy_chosen[i];
    tokens += in.chosen_length[i];
    const double d = log_odds(in.policy_chosen[i] / std::max(1.0, in.chosen_length[i])) -
                     log_odds(in.policy_rejected[i] / std::max(1.0, in.rejected_length[i]));
    ratio += std::log(1 / (1 + std::exp(-d))) / double(n);
    odds += d / double(n);
  }
  nll /= std::max(1.0, tokens);
  return {nll - lambda * ratio, nll, ratio, odds};
}

}  // namespace

TEST_CASE("orpo: the loss and metrics match the formula written out") {
  for (const double lambda : {0.1, 0.5, 2.0, 0.0}) {
    const auto in = random_pairs(9, 7);
    const auto r = orpo_loss(in, {.lambda = lambda});
    const auto want = reference_loss(lambda, in);
    CHECK(r.loss == doctest::Approx(want.loss).epsilon(1e-12));
    CHECK(r.losses.mean() == doctest::Approx(want.loss).epsilon(1e-12));
    CHECK(r.metrics["nll_loss"] == doctest::Approx(want.nll).epsilon(1e-12));
    CHECK(r.metrics["log_odds_ratio"] == doctest::Approx(want.log_odds_ratio).epsilon(1e-12));
    CHECK(r.metrics["log_odds_chosen"] == doctest::Approx(want.log_odds).epsilon(1e-12));
    double chosen = 0, rejected = 0, accuracy = 0;
    for (Eigen::Index i = 0; i < 9; ++i) {
      const double lw = in.policy_chosen[i] / in.chosen_length[i], ll = in.policy_rejected[i] / in.rejected_length[i];
      chosen += lw / 9, rejected += ll / 9;
      accuracy += (lambda * lw > lambda * ll ? 1.0 : 0.0) / 9;
    }
    CHECK(r.metrics["rewards/chosen"] == doctest::Approx(lambda * chosen).epsilon(1e-12));
    CHECK(r.metrics["rewards/rejected"] == doctest::Approx(lambda * rejected).epsilon(1e-12));
    CHECK(r.metrics["rewards/margins"] == doctest::Approx(lambda * (chosen - rejected)).epsilon(1e-12));
    CHECK(r.metrics["rewards/accuracies"] == doctest::Approx(accuracy).epsilon(1e-12));
    CHECK(r.metrics["logps/chosen"] == doctest::Approx(chosen).epsilon(1e-12));
    CHECK(r.metrics["logps/rejected"] == doctest::Approx(rejected).epsilon(1e-12));
  }
}

TEST_CASE("orpo: a hand-computed point") {
  // One-token responses of probability 1/2 and 1/3: odds 1 and 1/2, Δ = log 2, σ(Δ) = 2/3;
  // loss = log 2 − λ log(2/3).
  const OrpoPairs<vec> in{vec::Constant(1, std::log(0.5)), vec::Constant(1, std::log(1.0 / 3)), vec::Ones(1),
                          vec::Ones(1)};
  const auto r = orpo_loss(in, {.lambda = 0.5});
  CHECK(r.loss == doctest::Approx(std::log(2.0) - 0.5 * std::log(2.0 / 3)).epsilon(1e-14));
  CHECK(r.metrics["log_odds_chosen"] == doctest::Approx(std::log(2.0)).epsilon(1e-14));
  CHECK(r.metrics["rewards/accuracies"] == 1.0);
}

TEST_CASE("orpo: gradients match finite differences") {
  for (const double lambda : {0.1, 1.0, 3.0}) {
    auto in = random_pairs(8, 21);
    const auto r = orpo_loss(in, {.lambda = lambda});
    const auto loss = [&] { return orpo_loss(in, {.lambda = lambda}).loss; };
    CHECK(max_relative_error(r.d_policy_chosen, numeric_gradient(loss, in.policy_chosen)) < 1e-7);
    CHECK(max_relative_error(r.d_policy_rejected, numeric_gradient(loss, in.policy_rejected)) < 1e-7);
  }
  // Responses of probability near 1 (ℓ = −1e-3, d log odds / d ℓ ≈ 1000), below the clamp: a finer step.
  OrpoPairs<vec> near{(vec(3) << -1e-3, -2.0, -3e-3).finished(), (vec(3) << -3.0, -1e-3, -2e-3).finished(),
                      (vec(3) << 1, 1, 3).finished(), (vec(3) << 1, 1, 2).finished()};
  const auto r = orpo_loss(near, {.lambda = 0.7});
  const auto loss = [&] { return orpo_loss(near, {.lambda = 0.7}).loss; };
  CHECK(max_relative_error(r.d_policy_chosen, numeric_gradient(loss, near.policy_chosen, 1e-8)) < 1e-6);
  CHECK(max_relative_error(r.d_policy_rejected, numeric_gradient(loss, near.policy_rejected, 1e-8)) < 1e-6);
}

TEST_CASE("orpo: a response of probability 1 (ℓ = 0) or above the clamp gives finite values") {
  // ℓ ∈ {0, −1e-9} is read as max_mean_logp = −1e-6; the odds term gives it no gradient, the NLL term does.
  const double z = 0.0;
  for (const double top : {z, -1e-9}) {
    const OrpoPairs<vec> in{(vec(2) << top, -2.0).finished(), (vec(2) << -2.0, top).finished(), vec::Ones(2),
                            vec::Ones(2)};
    const auto r = orpo_loss(in, {.lambda = 0.5});
    CHECK(std::isfinite(r.loss));
    CHECK(all_finite(r.d_policy_chosen));
    CHECK(all_finite(r.d_policy_rejected));
    const OrpoPairs<vec> at_clamp{(vec(2) << -1e-6, -2.0).finished(), (vec(2) << -2.0, -1e-6).finished(),
                                  vec::Ones(2), vec::Ones(2)};
    CHECK(r.metrics["log_odds_chosen"] ==
          doctest::Approx(orpo_loss(at_clamp, {.lambda = 0.5}).metrics["log_odds_chosen"]).epsilon(1e-15));
    CHECK(r.d_policy_chosen[0] == doctest::Approx(-1.0 / 2).epsilon(1e-15));  // the NLL term's −1/Σ|y_w| only
    CHECK(r.d_policy_rejected[1] == 0.0);
  }
  // In float, a sum that rounds to 0 is the same.
  using fv = eigen<float>::vector;
  const OrpoPairs<fv> f{fv::Constant(2, 0.f), fv::Constant(2, 0.f), fv::Ones(2), fv::Ones(2)};
  const auto r = orpo_loss(f);
  CHECK(r.loss == doctest::Approx(0.1 * std::log(2.0)).epsilon(1e-6));
  CHECK(all_finite(r.d_policy_chosen));
}

TEST_CASE("orpo: an empty response counts as one token where ℓ divides, and adds none to the NLL's count") {
  auto in = random_pairs(4, 5);
  in.policy_rejected[1] = 0, in.rejected_length[1] = 0;
  in.policy_chosen[2] = 0, in.chosen_length[2] = 0;
  const auto r = orpo_loss(in, {.lambda = 0.5});
  CHECK(std::isfinite(r.loss));
  CHECK(all_finite(r.d_policy_chosen));
  CHECK(all_finite(r.d_policy_rejected));
  auto as_one = in;
  as_one.rejected_length[1] = 1;
  CHECK(orpo_loss(as_one, {.lambda = 0.5}).loss == r.loss);
  // ℓ = 0 for both empty rows is read at the clamp: compare with the formula there.
  auto clamped = in;
  clamped.policy_rejected[1] = -1e-6, clamped.rejected_length[1] = 1;
  clamped.policy_chosen[2] = -1e-6, clamped.chosen_length[2] = 1;
  const auto want = reference_loss(0.5, clamped);
  double tokens = 0, nll = 0;
  for (Eigen::Index i = 0; i < 4; ++i) tokens += in.chosen_length[i], nll -= in.policy_chosen[i];
  CHECK(r.metrics["nll_loss"] == doctest::Approx(nll / tokens).epsilon(1e-14));
  CHECK(r.metrics["log_odds_ratio"] == doctest::Approx(want.log_odds_ratio).epsilon(1e-12));
}

TEST_CASE("orpo: blocks given the whole batch's chosen tokens per pair add up to the whole batch") {
  const auto in = random_pairs(10, 31);
  const auto whole = orpo_loss(in, {.lambda = 0.3});
  const double per_pair = in.chosen_length.sum() / 10;
  double total = 0;
  for (const auto& [lo, n] : {std::pair<Eigen::Index, Eigen::Index>{0, 3}, {3, 7}}) {
    const OrpoPairs<vec> part{in.policy_chosen.segment(lo, n), in.policy_rejected.segment(lo, n),
                              in.chosen_length.segment(lo, n), in.rejected_length.segment(lo, n)};
    const auto r = orpo_loss(part, {.lambda = 0.3}, per_pair);
    total += r.loss * double(n) / 10;
    for (Eigen::Index i = 0; i < n; ++i) {
      CHECK(r.d_policy_chosen[i] * double(n) / 10 == doctest::Approx(whole.d_policy_chosen[lo + i]).epsilon(1e-13));
      CHECK(r.d_policy_rejected[i] * double(n) / 10 ==
            doctest::Approx(whole.d_policy_rejected[lo + i]).epsilon(1e-13));
    }
  }
  CHECK(total == doctest::Approx(whole.loss).epsilon(1e-13));
}

TEST_CASE("orpo: bad input names the problem") {
  const auto in = random_pairs(4, 5);
  auto short_rejected = in;
  short_rejected.policy_rejected = vec::Constant(3, -1);
  CHECK_THROWS_WITH_AS(orpo_loss(short_rejected), doctest::Contains("'policy_rejected' has 3 elements"), shape_error);
  auto no_lengths = in;
  no_lengths.chosen_length = vec();
  CHECK_THROWS_WITH_AS(orpo_loss(no_lengths), doctest::Contains("'chosen_length' has 0 elements"), shape_error);
  auto negative = in;
  negative.rejected_length[2] = -1;
  CHECK_THROWS_WITH_AS(orpo_loss(negative), doctest::Contains("'rejected_length' holds 1 value(s) < 0"), value_error);
  auto nan = in;
  nan.policy_chosen[1] = NAN;
  CHECK_THROWS_WITH_AS(orpo_loss(nan), doctest::Contains("'policy_chosen' holds 1 NaN or Inf"), value_error);
  CHECK_THROWS_WITH_AS(orpo_loss(OrpoPairs<vec>{}), doctest::Contains("empty batch"), shape_error);
  CHECK_THROWS_WITH_AS(orpo_loss(in, {.lambda = -0.1}), doctest::Contains("lambda"), config_error);
  CHECK_THROWS_WITH_AS(orpo_loss(in, {.lambda = NAN}), doctest::Contains("lambda"), config_error);
  CHECK_THROWS_WITH_AS(orpo_loss(in, {.max_mean_logp = 0}), doctest::Contains("max_mean_logp must be < 0"),
                       config_error);
  CHECK_THROWS_WITH_AS(orpo_loss(in, {}, -1.0), doctest::Contains("'chosen_tokens_per_pair'"), value_error);
}
