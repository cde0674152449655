#include "rlhf/losses/bradley_terry.hpp"

#include <doctest/doctest.h>

#include <cmath>

#include "support/gradcheck.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

RewardPairs<vec> random_rewards(std::size_t n, std::uint64_t seed) {
  return {random_vector(n, -4, 4, seed), random_vector(n, -4, 4, seed + 1)};
}

// The textbook formula, written independently of the kernel: one pair's loss.
double reference_loss(const BradleyTerryConfig& c, double chosen, double rejected) {
  const double h = chosen - rejected - c.margin, e = c.label_smoothing;
  const double p = 1 / (1 + std::exp(-h));  // P(chosen ≻ rejected)
  return -(1 - e) * std::log(p) - e * std::log(1 - p) + c.center_coefficient * std::pow(chosen + rejected, 2);
}

const BradleyTerryConfig configs[] = {
    {},
    {.margin = 0.5f},
    {.margin = -1.0f, .label_smoothing = 0.2f},
    {.label_smoothing = 0.05f, .center_coefficient = 0.01f},
    {.margin = 1.0f, .label_smoothing = 0.1f, .center_coefficient = 0.3f},
};

}  // namespace

TEST_CASE("bradley_terry: every setting matches the textbook formula") {
  for (const auto& c : configs) {
    const auto in = random_rewards(9, 7);
    const auto r = bradley_terry_loss(in, c);
    double mean = 0;
    for (Eigen::Index i = 0; i < 9; ++i) {
      const double want = reference_loss(c, in.chosen[i], in.rejected[i]);
      CHECK(r.losses[i] == doctest::Approx(want).epsilon(1e-12));
      mean += want / 9;
    }
    CHECK(r.loss == doctest::Approx(mean).epsilon(1e-12));
  }
}

TEST_CASE("bradley_terry: a hand-computed point and its metrics") {
  // r_w = 1.5, r_l = −0.5, m = 0.5: h = 1.5; ε = 0.1, c = 0.01, (r_w + r_l)² = 1:
  // 0.9 log(1 + e^{−1.5}) + 0.1 log(1 + e^{1.5}) + 0.01 = 0.361413277982...
  const RewardPairs<vec> in{vec::Constant(1, 1.5), vec::Constant(1, -0.5)};
  const auto r = bradley_terry_loss(in, {.margin = 0.5f, .label_smoothing = 0.1f, .center_coefficient = 0.01f});
  CHECK(r.loss == doctest::Approx(0.36141327798275247).epsilon(1e-7));  // the settings are floats
  CHECK(r.metrics[metric::rewards_accuracies] == 1.0);
  CHECK(r.metrics["rewards/chosen"] == 1.5);
  CHECK(r.metrics["rewards/rejected"] == -0.5);
  CHECK(r.metrics["rewards/margins"] == 2.0);

  const RewardPairs<vec> two{(vec(4) << 1, 2, 3, 4).finished(), (vec(4) << 0, 5, 1, 4).finished()};
  const auto m = bradley_terry_loss(two);
  CHECK(m.metrics[metric::rewards_accuracies] == 0.5);  // a tie is not a correct order
  CHECK(m.metrics["rewards/margins"] == doctest::Approx(0.0));
}

TEST_CASE("bradley_terry: gradients match finite differences") {
  for (const auto& c : configs) {
    auto in = random_rewards(7, 31);
    const auto r = bradley_terry_loss(in, c);
    const auto loss = [&] { return bradley_terry_loss(in, c).loss; };
    CHECK(max_relative_error(r.d_chosen, numeric_gradient(loss, in.chosen)) < 1e-6);
    CHECK(max_relative_error(r.d_rejected, numeric_gradient(loss, in.rejected)) < 1e-6);
  }
}

TEST_CASE("bradley_terry: reward centering adds the same pull to both rewards") {
  const RewardPairs<vec> in{vec::Constant(2, 3.0), vec::Constant(2, 1.0)};
  const auto plain = bradley_terry_loss(in);
  const auto centred = bradley_terry_loss(in, {.center_coefficient = 0.25f});
  // + 0.25 · 4² per pair, and d/dr = 2 · 0.25 · 4 / B on each reward
  CHECK(centred.loss - plain.loss == doctest::Approx(4.0));
  CHECK(centred.d_chosen[0] - plain.d_chosen[0] == doctest::Approx(1.0));
  CHECK(centred.d_rejected[0] - plain.d_rejected[0] == doctest::Approx(1.0));
}

TEST_CASE("bradley_terry: finite values and gradients at extreme rewards, in float") {
  using fv = eigen<float>::vector;
  for (const float gap : {1e4f, -1e4f}) {
    const RewardPairs<fv> in{fv::Constant(3, gap / 2), fv::Constant(3, -gap / 2)};
    for (const auto& c : configs) {
      const auto r = bradley_terry_loss(in, c);
      CHECK(std::isfinite(r.loss));
      CHECK(all_finite(r.losses));
      CHECK(all_finite(r.d_chosen));
      CHECK(all_finite(r.d_rejected));
    }
    const auto r = bradley_terry_loss(in);
    CHECK(r.loss == doctest::Approx(gap > 0 ? 0.0 : 1e4));  // −log σ(−1e4) = 1e4
    CHECK(r.d_chosen[0] == doctest::Approx(gap > 0 ? 0.0 : -1.0 / 3));
  }
  // Large rewards of one sign: the centering term is huge but finite.
  const RewardPairs<fv> far{fv::Constant(2, -1e4f), fv::Constant(2, -1e4f)};
  const auto r = bradley_terry_loss(far, {.center_coefficient = 0.1f});
  CHECK(std::isfinite(r.loss));
  CHECK(r.loss == doctest::Approx(std::log(2.0) + 0.1 * 4e8).epsilon(1e-5));
}

TEST_CASE("bradley_terry: rewards of ±3e38 in float give finite values, or a named error where the loss exceeds float") {
  using fv = eigen<float>::vector;
  const float H = 3e38f;  // r_w − r_l and r_w + r_l (±6e38) overflow float; the kernel works in double
  for (const auto& c : configs) {
    // an easy pair far apart: loss ~0, no NaN from 0 · ∞ when centering is off
    const auto r = bradley_terry_loss(RewardPairs<fv>{fv::Constant(2, H), fv::Constant(2, -H)}, c);
    CHECK(std::isfinite(r.loss));
    CHECK(all_finite(r.d_chosen));
    CHECK(all_finite(r.d_rejected));
    CHECK(std::isfinite(r.metrics["rewards/margins"]));
  }
  // Centering two equal huge rewards: c · (r_w + r_l)² = 1e-40 · 3.6e77 = 3.6e37 fits a float.
  const RewardPairs<fv> same{fv::Constant(1, H), fv::Constant(1, H)};
  const auto centered = bradley_terry_loss(same, {.center_coefficient = 1e-40f});
  CHECK(centered.loss == doctest::Approx(std::log(2.0) + double(1e-40f) * 3.6e77).epsilon(1e-5));
  CHECK(all_finite(centered.d_chosen));
  // ... but with c = 0.1 (3.6e76), or a hard pair 6e38 apart, the loss has no float value: a named error.
  CHECK_THROWS_WITH_AS(bradley_terry_loss(same, {.center_coefficient = 0.1f}), doctest::Contains("'chosen'"),
                       value_error);
  CHECK_THROWS_WITH_AS(bradley_terry_loss(RewardPairs<fv>{fv::Constant(1, -H), fv::Constant(1, H)}),
                       doctest::Contains("would exceed the range"), value_error);
}

TEST_CASE("bradley_terry: bad input names the argument") {
  const auto in = random_rewards(4, 5);
  auto short_rejected = in;
  short_rejected.rejected = vec::Zero(3);
  CHECK_THROWS_WITH_AS(bradley_terry_loss(short_rejected), doctest::Contains("'rejected' has 3 elements"),
                       shape_error);
  auto nan = in;
  nan.chosen[1] = std::nan("");
  CHECK_THROWS_WITH_AS(bradley_terry_loss(nan), doctest::Contains("'chosen' holds 1 NaN or Inf"), value_error);
  auto inf = in;
  inf.rejected[3] = -INFINITY;
  CHECK_THROWS_WITH_AS(bradley_terry_loss(inf), doctest::Contains("'rejected' holds 1 NaN or Inf"), value_error);
  CHECK_THROWS_WITH_AS(bradley_terry_loss(RewardPairs<vec>{}), doctest::Contains("empty batch"), shape_error);
  CHECK_THROWS_WITH_AS(bradley_terry_loss(in, {.label_smoothing = 0.5f}), doctest::Contains("label_smoothing"),
                       config_error);
  CHECK_THROWS_WITH_AS(bradley_terry_loss(in, {.label_smoothing = -0.1f}), doctest::Contains("label_smoothing"),
                       config_error);
  CHECK_THROWS_WITH_AS(bradley_terry_loss(in, {.center_coefficient = -1.0f}),
                       doctest::Contains("center_coefficient"), config_error);
  CHECK_THROWS_WITH_AS(bradley_terry_loss(in, {.margin = NAN}), doctest::Contains("margin"), config_error);
  CHECK_THROWS_WITH_AS(bradley_terry_loss(in, {.label_smoothing = NAN}), doctest::Contains("label_smoothing"),
                       config_error);
  CHECK_THROWS_WITH_AS(bradley_terry_loss(in, {.center_coefficient = NAN}), doctest::Contains("center_coefficient"),
                       config_error);
  CHECK_THROWS_WITH_AS(bradley_terry_loss(in, {.center_coefficient = INFINITY}),
                       doctest::Contains("center_coefficient"), config_error);
  CHECK_THROWS_WITH_AS(bradley_terry_loss(in, {.margin = INFINITY}), doctest::Contains("margin"), config_error);
}

TEST_CASE("bradley_terry: a margin per pair (TRL's margin column) adds to the batch's, centering ignores both") {
  auto in = random_rewards(7, 41);
  in.margin = random_vector(7, -1, 2, 42);
  const BradleyTerryConfig c{.margin = 0.25, .label_smoothing = 0.1, .center_coefficient = 0.02};
  const auto r = bradley_terry_loss(in, c);
  double mean = 0;
  for (Eigen::Index i = 0; i < 7; ++i) {
    BradleyTerryConfig own = c;
    own.margin = c.margin + in.margin[i];
    const double want = reference_loss(own, in.chosen[i], in.rejected[i]);
    CHECK(r.losses[i] == doctest::Approx(want).epsilon(1e-13));
    mean += want / 7;
  }
  CHECK(r.loss == doctest::Approx(mean).epsilon(1e-13));
  const auto loss = [&] { return bradley_terry_loss(in, c).loss; };
  CHECK(max_relative_error(r.d_chosen, numeric_gradient(loss, in.chosen)) < 1e-6);
  CHECK(max_relative_error(r.d_rejected, numeric_gradient(loss, in.rejected)) < 1e-6);
  // the metrics are of the rewards, margins aside
  const auto plain = bradley_terry_loss(RewardPairs<vec>{in.chosen, in.rejected, {}});
  for (const char* name : {metric::rewards_accuracies, metric::rewards_chosen, metric::rewards_margins})
    CHECK(r.metrics[name] == plain.metrics[name]);

  auto bad = in;
  bad.margin[3] = std::nan("");
  CHECK_THROWS_WITH_AS(bradley_terry_loss(bad), doctest::Contains("'margin' holds 1 NaN or Inf"), value_error);
  bad.margin = vec::Zero(6);
  CHECK_THROWS_WITH_AS(bradley_terry_loss(bad), doctest::Contains("'margin'"), shape_error);
}
