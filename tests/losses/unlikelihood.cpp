#include "rlhf/losses/unlikelihood.hpp"

#include <doctest/doctest.h>

#include <cmath>

#include "support/gradcheck.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

// A 0/1 mask [B, T] with a random number (≥ 1) of tokens per row, after a random-length prompt.
mat random_mask(std::size_t B, std::size_t T, std::uint64_t seed) {
  Rng rng(seed);
  mat m = mat::Zero(static_cast<Eigen::Index>(B), static_cast<Eigen::Index>(T));
  for (Eigen::Index b = 0; b < m.rows(); ++b) {
    const auto first = static_cast<Eigen::Index>(rng.below(T / 2));
    const auto len = 1 + static_cast<Eigen::Index>(rng.below(T - static_cast<std::size_t>(first)));
    for (Eigen::Index t = first; t < first + len; ++t) m(b, t) = 1;
  }
  return m;
}

// Independent of the kernel: plain loops, −log(1 − p) with p = exp(log p) (fine away from p = 1).
double reference_loss(const mat& cl, const mat& cm, const mat& rl, const mat& rm, const UnlikelihoodConfig& c) {
  const auto mean_over_rows = [&](const mat& logps, const mat& mask, bool rejected) {
    double total = 0;
    for (Eigen::Index b = 0; b < logps.rows(); ++b) {
      double row = 0, count = 0;
      for (Eigen::Index t = 0; t < logps.cols(); ++t)
        if (mask(b, t) == 1) {
          row += rejected ? -std::log(1 - std::exp(logps(b, t))) : -logps(b, t);
          ++count;
        }
      total += c.aggregation == Aggregation::sequence_mean ? row / count : row;
    }
    return total / static_cast<double>(logps.rows());
  };
  return mean_over_rows(cl, cm, false) + c.alpha * mean_over_rows(rl, rm, true);
}

const UnlikelihoodConfig configs[] = {
    {},
    {.alpha = 0.5f},
    {.alpha = 2.0f, .aggregation = Aggregation::sequence_mean},
    {.alpha = 0.0f},
};

}  // namespace

TEST_CASE("unlikelihood: the loss at a hand-computed point") {
  // chosen: one token, log p = −1. rejected: one token with p = 1/2 and one with p = 3/4.
  mat cl(1, 2), cm(1, 2), rl(1, 3), rm(1, 3);
  cl << -1, -9;
  cm << 1, 0;
  rl << std::log(0.5), std::log(0.75), -3;
  rm << 1, 1, 0;
  const auto r = unlikelihood_loss(cl, cm, rl, rm, {.alpha = 2.0f});
  const double ul = std::log(2.0) + std::log(4.0);  // −log(1/2) − log(1/4)
  CHECK(r.metrics["nll/chosen"] == doctest::Approx(1.0));
  CHECK(r.metrics["unlikelihood/rejected"] == doctest::Approx(ul).epsilon(1e-14));
  CHECK(r.loss == doctest::Approx(1.0 + 2 * ul).epsilon(1e-14));
  // d/dx −log(1 − e^x) = p / (1 − p): 1 at p = 1/2, 3 at p = 3/4; times α.
  CHECK(r.d_rejected(0, 0) == doctest::Approx(2.0).epsilon(1e-14));
  CHECK(r.d_rejected(0, 1) == doctest::Approx(6.0).epsilon(1e-14));
  CHECK(r.d_rejected(0, 2) == 0.0);
  CHECK(r.d_chosen(0, 0) == -1.0);
  CHECK(r.d_chosen(0, 1) == 0.0);
}

TEST_CASE("unlikelihood: matches a plain-loop formula, with batches of different shapes") {
  const mat cl = random_matrix(5, 7, -8, -0.01, 1), cm = random_mask(5, 7, 2);
  const mat rl = random_matrix(3, 10, -8, -0.05, 3), rm = random_mask(3, 10, 4);
  for (const auto& c : configs) {
    const auto r = unlikelihood_loss(cl, cm, rl, rm, c);
    CHECK(r.loss == doctest::Approx(reference_loss(cl, cm, rl, rm, c)).epsilon(1e-13));
    CHECK(r.loss == doctest::Approx(r.metrics["nll/chosen"] + c.alpha * r.metrics["unlikelihood/rejected"]));
  }
}

TEST_CASE("unlikelihood: gradients match finite differences and vanish where masked") {
  mat cl = random_matrix(4, 6, -8, -0.01, 11), rl = random_matrix(6, 5, -8, -0.05, 12);
  const mat cm = random_mask(4, 6, 13), rm = random_mask(6, 5, 14);
  for (const auto& c : configs) {
    const auto r = unlikelihood_loss(cl, cm, rl, rm, c);
    const auto loss = [&] { return unlikelihood_loss(cl, cm, rl, rm, c).loss; };
    CHECK(max_relative_error(r.d_chosen, numeric_gradient(loss, cl)) < 1e-7);
    CHECK(max_relative_error(r.d_rejected, numeric_gradient(loss, rl)) < 1e-7);
    for (Eigen::Index i = 0; i < rm.size(); ++i)
      if (rm.data()[i] == 0) CHECK(r.d_rejected.data()[i] == 0.0);
  }
}

TEST_CASE("unlikelihood: a rejected log-prob at or near 0 is read as -epsilon, with a finite push down") {
  const double at_cap = -std::log(-std::expm1(-unlikelihood_epsilon));  // ≈ 13.8155
  const double grad_at_cap = 1 / std::expm1(unlikelihood_epsilon);      // ≈ 1e6
  mat cl = mat::Constant(1, 1, -1), cm = mat::Ones(1, 1), rm = mat::Ones(1, 1);
  for (const double x : {0.0, -1e-7, -1e-9, -1e-300, 1e-7, -unlikelihood_epsilon}) {
    const auto r = unlikelihood_loss(cl, cm, mat(mat::Constant(1, 1, x)), rm);
    CHECK(r.metrics["unlikelihood/rejected"] == doctest::Approx(at_cap).epsilon(1e-12));
    CHECK(r.d_rejected(0, 0) == doctest::Approx(grad_at_cap).epsilon(1e-9));
  }
  // Just below the cap the exact formula applies again.
  const auto below = unlikelihood_loss(cl, cm, mat(mat::Constant(1, 1, -2e-6)), rm);
  CHECK(below.metrics["unlikelihood/rejected"] == doctest::Approx(-std::log(-std::expm1(-2e-6))).epsilon(1e-12));
  CHECK(below.metrics["unlikelihood/rejected"] < at_cap - 0.5);

  using fmat = eigen<float>::matrix;
  for (const float x : {0.0f, -1e-7f, -1e-30f, -1e-45f, 1e-7f}) {
    const auto r = unlikelihood_loss(fmat(fmat::Constant(1, 1, -1.f)), fmat(fmat::Ones(1, 1)),
                                     fmat(fmat::Constant(1, 1, x)), fmat(fmat::Ones(1, 1)));
    CHECK(std::isfinite(r.loss));
    CHECK(r.metrics["unlikelihood/rejected"] == doctest::Approx(at_cap).epsilon(1e-5));
    CHECK(std::isfinite(r.d_rejected(0, 0)));
    CHECK(r.d_rejected(0, 0) == doctest::Approx(grad_at_cap).epsilon(1e-4));
  }
}

TEST_CASE("unlikelihood: finite values and gradients at extreme inputs, in float") {
  using fmat = eigen<float>::matrix;
  const fmat ones = fmat::Ones(2, 300);
  for (const float x : {-1e4f, 0.0f, -1e-3f}) {
    fmat cl = fmat::Constant(2, 300, -1e4f), rl = fmat::Constant(2, 300, x);
    cl(0, 3) = 0.0f;
    rl(1, 0) = -1e4f;
    for (const auto& c : configs) {
      const auto r = unlikelihood_loss(cl, ones, rl, ones, c);
      CHECK(std::isfinite(r.loss));
      CHECK(all_finite(r.d_chosen));
      CHECK(all_finite(r.d_rejected));
    }
  }
  // A rejected token the model already rules out costs nothing and is left alone.
  const auto r = unlikelihood_loss(fmat(fmat::Constant(1, 1, -1.f)), fmat(fmat::Ones(1, 1)),
                                   fmat(fmat::Constant(1, 1, -1e4f)), fmat(fmat::Ones(1, 1)));
  CHECK(r.metrics["unlikelihood/rejected"] == 0.0);
  CHECK(r.d_rejected(0, 0) == 0.0f);
}

TEST_CASE("unlikelihood: masked entries never contribute, whatever they hold") {
  const mat cl = random_matrix(3, 5, -6, -0.1, 31), rl = random_matrix(3, 5, -6, -0.1, 32);
  const mat cm = random_mask(3, 5, 33), rm = random_mask(3, 5, 34);
  mat noisy_c = cl, noisy_r = rl;
  for (Eigen::Index i = 0; i < cm.size(); ++i) {
    if (cm.data()[i] == 0) noisy_c.data()[i] = std::nan("");
    if (rm.data()[i] == 0) noisy_r.data()[i] = i % 2 ? 0.0 : INFINITY;
  }
  const auto clean = unlikelihood_loss(cl, cm, rl, rm), dirty = unlikelihood_loss(noisy_c, cm, noisy_r, rm);
  CHECK(clean.loss == dirty.loss);
  CHECK(clean.d_chosen == dirty.d_chosen);
  CHECK(clean.d_rejected == dirty.d_rejected);
}

TEST_CASE("unlikelihood: bad input names the argument") {
  const mat cl = random_matrix(3, 4, -5, -0.1, 41), rl = random_matrix(2, 6, -5, -0.1, 42);
  const mat cm = mat::Ones(3, 4), rm = mat::Ones(2, 6);
  CHECK_THROWS_WITH_AS(unlikelihood_loss(cl, cm, rl, rm, {.alpha = -0.1f}),
                       doctest::Contains("alpha must be finite and >= 0"), config_error);
  CHECK_THROWS_AS(unlikelihood_loss(cl, cm, rl, rm, {.alpha = NAN}), config_error);
  CHECK_THROWS_AS(unlikelihood_loss(cl, cm, rl, rm, {.aggregation = static_cast<Aggregation>(9)}), config_error);
  const UnlikelihoodConfig nonempty{.aggregation = Aggregation::nonempty_sequence_mean};
  CHECK_THROWS_AS(unlikelihood_loss(cl, cm, rl, rm, nonempty), config_error);
  CHECK_THROWS_WITH_AS(unlikelihood_loss(cl, cm, rl, mat(mat::Ones(2, 5))),
                       doctest::Contains("'rejected_mask' is [2, 5] but 'rejected_logps' is [2, 6]"), shape_error);
  CHECK_THROWS_WITH_AS(unlikelihood_loss(cl, mat(mat::Ones(4, 4)), rl, rm),
                       doctest::Contains("'chosen_mask' is [4, 4]"), shape_error);
  CHECK_THROWS_WITH_AS(unlikelihood_loss(cl, cm, mat(0, 6), mat(0, 6)),
                       doctest::Contains("'rejected_logps' is an empty batch"), shape_error);
  mat nan = rl;
  nan(1, 3) = std::nan("");
  CHECK_THROWS_WITH_AS(unlikelihood_loss(cl, cm, nan, rm), doctest::Contains("'rejected_logps' holds 1 NaN or Inf"),
                       value_error);
  mat inf = cl;
  inf(2, 0) = INFINITY;
  CHECK_THROWS_WITH_AS(unlikelihood_loss(inf, cm, rl, rm), doctest::Contains("'chosen_logps' holds 1 NaN or Inf"),
                       value_error);
  mat empty = rm;
  empty.row(0).setZero();
  CHECK_THROWS_WITH_AS(unlikelihood_loss(cl, cm, rl, empty),
                       doctest::Contains("'rejected_mask' has 1 row(s) of 2 with no token"), value_error);
  mat two = cm;
  two(0, 0) = 2;
  CHECK_THROWS_WITH_AS(unlikelihood_loss(cl, two, rl, rm),
                       doctest::Contains("'chosen_mask' holds 1 value(s) other than 0 or 1"), value_error);
}

TEST_CASE("unlikelihood: chosen log-probs of −3e38 in float give a finite loss (a double)") {
  using fm = eigen<float>::matrix;
  const fm chosen = fm::Constant(1, 2, -3e38f), rejected = fm::Constant(1, 1, -3e38f), ones2 = fm::Ones(1, 2),
           ones1 = fm::Ones(1, 1);
  const auto r = unlikelihood_loss(chosen, ones2, rejected, ones1);
  CHECK(r.loss == doctest::Approx(6e38).epsilon(1e-6));
  CHECK(all_finite(r.d_chosen));
  CHECK(all_finite(r.d_rejected));
}

TEST_CASE("unlikelihood: fairseq's clamp form, −log(max(1 − p, clamp_min)), with gradient 0 where it clamps") {
  const mat cl = mat::Constant(1, 1, -1), cm = mat::Ones(1, 1), rm = mat::Ones(1, 4);
  mat rl(1, 4);
  rl << -2.0, -1e-7, 0.0, std::log1p(-2e-5);  // clamped: p within 1e-5 of 1 (the 2nd and 3rd)
  const UnlikelihoodConfig c{.aggregation = Aggregation::token_sum, .form = UnlikelihoodForm::clamp};
  const auto r = unlikelihood_loss(cl, cm, rl, rm, c);
  const double free_term = -std::log(1 - std::exp(-2.0)) - std::log(1 - std::exp(rl(0, 3)));
  CHECK(r.rejected_losses[0] == doctest::Approx(free_term - 2 * std::log(1e-5)).epsilon(1e-12));
  CHECK(r.d_rejected(0, 1) == 0.0);
  CHECK(r.d_rejected(0, 2) == 0.0);
  CHECK(r.d_rejected(0, 0) == doctest::Approx(std::exp(-2.0) / (1 - std::exp(-2.0))).epsilon(1e-12));
  mat away = random_matrix(3, 5, -8, -0.01, 61);  // no token near the clamp: finite differences hold
  const mat am = random_mask(3, 5, 62);
  const auto a = unlikelihood_loss(cl, cm, away, am, c);
  const auto loss = [&] { return unlikelihood_loss(cl, cm, away, am, c).loss; };
  CHECK(max_relative_error(a.d_rejected, numeric_gradient(loss, away)) < 1e-7);
}

TEST_CASE("unlikelihood: the exact form's cut is a setting; per-row values; token sums and token means") {
  const mat cl = random_matrix(3, 4, -5, -0.1, 71), cm = random_mask(3, 4, 72);
  mat rl = random_matrix(4, 5, -5, -0.01, 73);
  const mat rm = mat::Ones(4, 5);
  rl(0, 0) = -1e-6;  // inside the cut of 1e-4
  const UnlikelihoodConfig c{.alpha = 0.5, .epsilon = 1e-4};
  const auto r = unlikelihood_loss(cl, cm, rl, rm, c);
  CHECK(r.d_rejected(0, 0) == doctest::Approx(0.5 / 4 / std::expm1(1e-4)).epsilon(1e-12));
  double chosen = 0, rejected = 0;
  for (std::size_t b = 0; b < 3; ++b) chosen += r.chosen_losses[b] / 3;
  for (std::size_t b = 0; b < 4; ++b) rejected += r.rejected_losses[b] / 4;
  CHECK(r.loss == doctest::Approx(chosen + 0.5 * rejected).epsilon(1e-14));
  const auto summed = unlikelihood_loss(cl, cm, rl, rm, {.alpha = 0.5, .aggregation = Aggregation::token_sum});
  CHECK(summed.metrics[metric::nll_chosen] == doctest::Approx(3 * chosen).epsilon(1e-14));
  const auto tokens = unlikelihood_loss(cl, cm, rl, rm, {.aggregation = Aggregation::token_mean});
  CHECK(tokens.metrics[metric::nll_chosen] == doctest::Approx(3 * chosen / cm.sum()).epsilon(1e-14));
  for (const Aggregation how : {Aggregation::token_sum, Aggregation::token_mean}) {
    mat x = random_matrix(4, 5, -5, -0.01, 74);
    const UnlikelihoodConfig b{.alpha = 0.7, .aggregation = how};
    const auto g = unlikelihood_loss(cl, cm, x, rm, b);
    const auto loss = [&] { return unlikelihood_loss(cl, cm, x, rm, b).loss; };
    CHECK(max_relative_error(g.d_rejected, numeric_gradient(loss, x)) < 1e-7);
  }
  CHECK_THROWS_WITH_AS(unlikelihood_loss(cl, cm, rl, rm, {.epsilon = 0.0}), doctest::Contains("epsilon"), config_error);
  CHECK_THROWS_WITH_AS(unlikelihood_loss(cl, cm, rl, rm, {.clamp_min = 1.0}), doctest::Contains("clamp_min"),
                       config_error);
}
