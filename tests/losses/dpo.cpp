#include "rlhf/losses/dpo.hpp"

#include <doctest/doctest.h>

#include <cmath>

#include "support/gradcheck.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

PreferencePairs<vec> random_pairs(std::size_t n, std::uint64_t seed) {
  return {random_vector(n, -30, -5, seed), random_vector(n, -30, -5, seed + 1), random_vector(n, -30, -5, seed + 2),
          random_vector(n, -30, -5, seed + 3), random_vector(n, 1, 12, seed + 4).array().round(),
          random_vector(n, 1, 12, seed + 5).array().round()};
}

// Textbook formulas, written independently of the kernel: one pair's loss.
double reference_loss(const DpoConfig& c, double pc, double pr, double rc, double rr, double lc, double lr) {
  if (c.reference_free) rc = rr = 0;
  const double uw = c.length_normalize ? (pc - rc) / lc : pc - rc;
  const double ul = c.length_normalize ? (pr - rr) / lr : pr - rr;
  const double h = c.beta * (uw - ul) - c.margin, e = c.label_smoothing;
  const auto softplus = [](double x) { return std::log1p(std::exp(x)); };  // −log σ(−x)
  double loss = 0;
  switch (c.variant) {
    case DpoVariant::sigmoid: loss = (1 - e) * softplus(-h) + e * softplus(h); break;
    case DpoVariant::robust: loss = ((1 - e) * softplus(-h) - e * softplus(h)) / (1 - 2 * e); break;
    case DpoVariant::hinge: loss = std::max(0.0, 1 - h); break;
    case DpoVariant::ipo: loss = std::pow(uw - ul - 1 / (2.0 * c.beta), 2); break;
  }
  return loss - c.nll_weight * pc / lc;
}

const DpoConfig configs[] = {
    {},
    {.beta = 0.5f, .label_smoothing = 0.2f},
    {.variant = DpoVariant::robust, .beta = 0.3f, .label_smoothing = 0.1f},
    {.variant = DpoVariant::hinge, .beta = 0.05f},
    {.variant = DpoVariant::ipo, .beta = 0.1f},
    {.variant = DpoVariant::ipo, .beta = 0.1f, .length_normalize = true},
    {.beta = 1.0f, .length_normalize = true},
    DpoConfig::simpo(2.0f, 0.5f),
    {.beta = 0.2f, .reference_free = true},
    {.variant = DpoVariant::hinge, .beta = 0.2f, .reference_free = true},
    {.beta = 0.1f, .nll_weight = 0.7f},
};

}  // namespace

TEST_CASE("dpo: every variant matches the textbook formula") {
  for (const auto& c : configs) {
    const auto in = random_pairs(9, 11);
    const auto r = dpo_loss(in, c);
    double mean = 0;
    for (Eigen::Index i = 0; i < 9; ++i) {
      const double want = reference_loss(c, in.policy_chosen[i], in.policy_rejected[i], in.reference_chosen[i],
                                         in.reference_rejected[i], in.chosen_length[i], in.rejected_length[i]);
      CHECK(r.losses[i] == doctest::Approx(want).epsilon(1e-12));
      mean += want / 9;
    }
    CHECK(r.loss == doctest::Approx(mean).epsilon(1e-12));
  }
}

TEST_CASE("dpo: the sigmoid loss at a hand-computed point") {
  // β = 0.1, log-ratios 2 and −3: h = 0.5, loss = log(1 + e^{−0.5}) = 0.474076984...
  PreferencePairs<vec> in{vec::Constant(1, -8), vec::Constant(1, -13), vec::Constant(1, -10), vec::Constant(1, -10)};
  const auto r = dpo_loss(in);
  CHECK(r.loss == doctest::Approx(0.4740769841801067).epsilon(1e-7));  // β is a float
  CHECK(r.metrics["rewards/chosen"] == doctest::Approx(0.2));
  CHECK(r.metrics["rewards/rejected"] == doctest::Approx(-0.3));
  CHECK(r.metrics["rewards/margins"] == doctest::Approx(0.5));
  CHECK(r.metrics["rewards/accuracies"] == 1.0);
  CHECK(r.metrics["logps/chosen"] == -8.0);
  CHECK(r.metrics["logps/rejected"] == -13.0);
}

TEST_CASE("dpo: rewards/accuracies counts a tie as wrong (chosen reward strictly above rejected, as TRL)") {
  // Equal log-probs and references: both implicit rewards are exactly 0, in every setting.
  const PreferencePairs<vec> tie{vec::Constant(2, -7), vec::Constant(2, -7), vec::Constant(2, -9),
                                 vec::Constant(2, -9), vec::Constant(2, 3), vec::Constant(2, 3)};
  for (const auto& c : configs) CHECK(dpo_loss(tie, c).metrics["rewards/accuracies"] == 0.0);
  // A tie, a win and a loss: implicit rewards (0, 0), (0.2, −0.2), (−0.2, 0.2).
  const PreferencePairs<vec> mixed{(vec(3) << -10, -8, -12).finished(), (vec(3) << -10, -12, -8).finished(),
                                   vec::Constant(3, -10), vec::Constant(3, -10)};
  const auto r = dpo_loss(mixed);
  CHECK(r.metrics["rewards/accuracies"] == doctest::Approx(1.0 / 3).epsilon(1e-15));
  CHECK(r.losses[0] == doctest::Approx(std::log(2.0)).epsilon(1e-15));  // the tie: h = 0
}

TEST_CASE("dpo: gradients of every variant match finite differences") {
  for (const auto& c : configs) {
    auto in = random_pairs(7, 23);
    const auto r = dpo_loss(in, c);
    const auto loss = [&] { return dpo_loss(in, c).loss; };
    CHECK(max_relative_error(r.d_policy_chosen, numeric_gradient(loss, in.policy_chosen)) < 1e-6);
    CHECK(max_relative_error(r.d_policy_rejected, numeric_gradient(loss, in.policy_rejected)) < 1e-6);
    CHECK(max_relative_error(r.d_reference_chosen, numeric_gradient(loss, in.reference_chosen)) < 1e-6);
    CHECK(max_relative_error(r.d_reference_rejected, numeric_gradient(loss, in.reference_rejected)) < 1e-6);
  }
}

TEST_CASE("dpo: finite values and gradients at extreme inputs, in float") {
  using fv = eigen<float>::vector;
  for (const float gap : {1e4f, -1e4f}) {
    fv pc = fv::Constant(3, -1e4f + gap), pr = fv::Constant(3, -1e4f), rc = fv::Constant(3, -1e4f),
       rr = fv::Constant(3, -1e4f), len = fv::Constant(3, 200.f);
    for (const auto& c : configs) {
      const auto r = dpo_loss(PreferencePairs<fv>{pc, pr, rc, rr, len, len}, c);
      CHECK(std::isfinite(r.loss));
      CHECK(all_finite(r.d_policy_chosen));
      CHECK(all_finite(r.d_policy_rejected));
      CHECK(all_finite(r.d_reference_chosen));
    }
  }
  // A huge positive margin: the sigmoid loss is ~0 with a ~0 gradient, not NaN.
  fv big = fv::Constant(1, 0.f), small = fv::Constant(1, -1e4f), zero = fv::Constant(1, 0.f);
  const auto r = dpo_loss(PreferencePairs<fv>{big, small, zero, zero}, {.beta = 1.0f});
  CHECK(r.loss == doctest::Approx(0.0));
  CHECK(r.d_policy_chosen[0] == doctest::Approx(0.0));
}

TEST_CASE("dpo: log-probs of ±3e38 in float give finite values, or a named error where the loss exceeds float") {
  using fv = eigen<float>::vector;
  const float H = 3e38f;  // each log-ratio (±6e38) overflows float; the kernel takes the difference in double
  const fv pc = fv::Constant(2, -H), pr = fv::Constant(2, H), rc = fv::Constant(2, H), rr = fv::Constant(2, -H);
  for (const auto variant : {DpoVariant::sigmoid, DpoVariant::robust, DpoVariant::hinge}) {
    for (const float sign : {1.f, -1.f}) {
      const PreferencePairs<fv> in{sign * pc, sign * pr, sign * rc, sign * rr};
      const auto r = dpo_loss(in, {.variant = variant, .beta = 0.1f});  // |h| = 0.1 · 1.2e39 = 1.2e38
      INFO("variant ", int(variant), " sign ", sign);
      CHECK(std::isfinite(r.loss));
      CHECK(r.loss == doctest::Approx(sign > 0 ? 1.2e38 + (variant == DpoVariant::hinge ? 1 : 0) : 0.0).epsilon(1e-6));
      CHECK(all_finite(r.losses));
      CHECK(all_finite(r.d_policy_chosen));
      CHECK(all_finite(r.d_reference_rejected));
      CHECK(std::isfinite(r.metrics["rewards/margins"]));
      CHECK(r.metrics["rewards/margins"] == doctest::Approx(-sign * 1.2e38).epsilon(1e-6));
    }
  }
  // IPO's square (1.2e39² ≈ 1.4e78) and a β that lifts |h| past 3.4e38 have no float value: a named error.
  const PreferencePairs<fv> in{pc, pr, rc, rr};
  CHECK_THROWS_WITH_AS(dpo_loss(in, {.variant = DpoVariant::ipo}), doctest::Contains("'policy_chosen'"), value_error);
  CHECK_THROWS_WITH_AS(dpo_loss(in, {.beta = 1.0f}), doctest::Contains("would exceed the range"), value_error);
  // IPO of a gap that fits: (1e18)² = 1e36 is a float.
  const fv gap = fv::Constant(1, 1e18f), z = fv::Constant(1, 0.f);
  const auto ipo = dpo_loss(PreferencePairs<fv>{gap, z, z, z}, {.variant = DpoVariant::ipo, .beta = 0.1f});
  CHECK(ipo.loss == doctest::Approx(1e36).epsilon(1e-5));
}

TEST_CASE("dpo: a NaN or infinite float setting is refused, naming it") {
  const auto in = random_pairs(4, 5);
  for (const float bad : {NAN, INFINITY, -INFINITY}) {
    CHECK_THROWS_WITH_AS(dpo_loss(in, {.margin = bad}), doctest::Contains("margin"), config_error);
    CHECK_THROWS_WITH_AS(dpo_loss(in, {.nll_weight = bad}), doctest::Contains("nll_weight"), config_error);
    CHECK_THROWS_WITH_AS(dpo_loss(in, {.beta = bad}), doctest::Contains("beta"), config_error);
    CHECK_THROWS_WITH_AS(dpo_loss(in, {.label_smoothing = bad}), doctest::Contains("label_smoothing"), config_error);
  }
  CHECK_THROWS_WITH_AS(dpo_loss(in, {.nll_weight = -0.5f}), doctest::Contains("nll_weight"), config_error);
}

TEST_CASE("dpo: reference_free ignores the reference and may omit it") {
  auto in = random_pairs(5, 3);
  const auto with = dpo_loss(in, {.reference_free = true});
  in.reference_chosen = vec();
  in.reference_rejected = vec();
  const auto without = dpo_loss(in, {.reference_free = true});
  CHECK(with.loss == without.loss);
  CHECK(without.d_reference_chosen.cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("dpo: bad input names the argument") {
  const auto in = random_pairs(4, 5);
  auto short_rejected = in;
  short_rejected.policy_rejected = vec::Zero(3);
  CHECK_THROWS_WITH_AS(dpo_loss(short_rejected), doctest::Contains("'policy_rejected' has 3 elements"), shape_error);
  auto nan = in;
  nan.reference_chosen[2] = std::nan("");
  CHECK_THROWS_WITH_AS(dpo_loss(nan), doctest::Contains("'reference_chosen' holds 1 NaN or Inf"), value_error);
  auto inf = in;
  inf.policy_chosen[0] = INFINITY;
  CHECK_THROWS_AS(dpo_loss(inf), value_error);
  CHECK_THROWS_WITH_AS(dpo_loss(PreferencePairs<vec>{}), doctest::Contains("empty batch"), shape_error);
  CHECK_THROWS_WITH_AS(dpo_loss(in, {.beta = 0.0f}), doctest::Contains("beta must be > 0 (got 0)"), config_error);
  CHECK_THROWS_WITH_AS(dpo_loss(in, {.beta = -1.0f}), doctest::Contains("beta"), config_error);
  CHECK_THROWS_WITH_AS(dpo_loss(in, {.label_smoothing = 0.5f}), doctest::Contains("label_smoothing"), config_error);
  auto no_lengths = in;
  no_lengths.chosen_length = vec();
  CHECK_THROWS_WITH_AS(dpo_loss(no_lengths, {.length_normalize = true}), doctest::Contains("chosen_length"), shape_error);
  auto negative_length = in;
  negative_length.rejected_length[1] = -1;
  CHECK_THROWS_WITH_AS(dpo_loss(negative_length, {.length_normalize = true}),
                       doctest::Contains("'rejected_length' holds 1 value(s) < 0"), value_error);
}

TEST_CASE("dpo: an empty completion is valid input; its length is read as 1 (TRL's clamp)") {
  // Row 1's rejected response is empty: Σ log π = Σ log π_ref = 0 over no tokens.
  auto in = random_pairs(3, 5);
  in.policy_rejected[1] = in.reference_rejected[1] = 0;
  in.rejected_length[1] = 0;
  auto as_one = in;
  as_one.rejected_length[1] = 1;
  for (const DpoConfig& c : {DpoConfig{.variant = DpoVariant::ipo, .length_normalize = true},
                             DpoConfig{.nll_weight = 0.5, .nll_aggregation = Aggregation::token_mean},
                             DpoConfig::simpo()}) {
    const auto r = dpo_loss(in, c), want = dpo_loss(as_one, c);
    CHECK(std::isfinite(r.loss));
    for (Eigen::Index i = 0; i < 3; ++i) CHECK(r.d_policy_rejected[i] == want.d_policy_rejected[i]);
    if (c.nll_aggregation == Aggregation::sequence_mean) CHECK(r.loss == want.loss);
  }
  auto empty_chosen = in;
  empty_chosen.policy_chosen[0] = empty_chosen.reference_chosen[0] = 0;
  empty_chosen.chosen_length[0] = 0;
  CHECK(std::isfinite(dpo_loss(empty_chosen, {.nll_weight = 1.0}).loss));
}

TEST_CASE("dpo: the NLL term per sequence (RPO paper, OpenRLHF) or over the batch's tokens (TRL rpo_alpha)") {
  const auto in = random_pairs(5, 21);
  double per_sequence = 0, sum = 0, tokens = 0;
  for (Eigen::Index i = 0; i < 5; ++i) {
    per_sequence += -in.policy_chosen[i] / in.chosen_length[i] / 5;
    sum += -in.policy_chosen[i];
    tokens += in.chosen_length[i];
  }
  const double dpo = dpo_loss(in).loss;
  CHECK(dpo_loss(in, {.nll_weight = 0.3}).loss == doctest::Approx(dpo + 0.3 * per_sequence).epsilon(1e-13));
  const auto batch = dpo_loss(in, {.nll_weight = 0.3, .nll_aggregation = Aggregation::token_mean});
  CHECK(batch.loss == doctest::Approx(dpo + 0.3 * sum / tokens).epsilon(1e-13));
  const auto plain = dpo_loss(in);
  for (Eigen::Index i = 0; i < 5; ++i)
    CHECK(batch.d_policy_chosen[i] == doctest::Approx(plain.d_policy_chosen[i] - 0.3 / tokens).epsilon(1e-13));
  auto p = in;
  const auto loss = [&] {
    return dpo_loss(p, {.nll_weight = 0.3, .nll_aggregation = Aggregation::token_mean}).loss;
  };
  CHECK(max_relative_error(batch.d_policy_chosen, numeric_gradient(loss, p.policy_chosen)) < 1e-6);
}

TEST_CASE("dpo: reward metrics as the loss sees them, or from the raw log-ratios") {
  const auto in = random_pairs(6, 31);
  const DpoConfig c{.variant = DpoVariant::ipo, .beta = 0.2, .length_normalize = true};
  const auto normalised = dpo_loss(in, c);
  auto raw_config = c;
  raw_config.reward_metrics = DpoRewardMetrics::raw;
  const auto raw = dpo_loss(in, raw_config);
  CHECK(raw.loss == normalised.loss);
  double chosen = 0, chosen_normalised = 0;
  for (Eigen::Index i = 0; i < 6; ++i) {
    chosen += 0.2 * (in.policy_chosen[i] - in.reference_chosen[i]) / 6;
    chosen_normalised += 0.2 * (in.policy_chosen[i] - in.reference_chosen[i]) / in.chosen_length[i] / 6;
  }
  CHECK(raw.metrics[metric::rewards_chosen] == doctest::Approx(chosen).epsilon(1e-14));
  CHECK(normalised.metrics[metric::rewards_chosen] == doctest::Approx(chosen_normalised).epsilon(1e-14));
  // reference_free: raw rewards still use the reference when it is given (DPO repo), 0 when it is not
  const auto free_raw = dpo_loss(in, {.reference_free = true, .reward_metrics = DpoRewardMetrics::raw});
  CHECK(free_raw.metrics[metric::rewards_chosen] == doctest::Approx(chosen / 0.2 * 0.1).epsilon(1e-14));
  auto no_reference = in;
  no_reference.reference_chosen = no_reference.reference_rejected = vec();
  const auto free_none = dpo_loss(no_reference, {.reference_free = true, .reward_metrics = DpoRewardMetrics::raw});
  CHECK(free_none.metrics[metric::rewards_chosen] ==
        doctest::Approx(0.1 * in.policy_chosen.mean()).epsilon(1e-14));
  auto bad = in;
  bad.reference_rejected[2] = std::nan("");
  CHECK_THROWS_AS(dpo_loss(bad, {.reference_free = true, .reward_metrics = DpoRewardMetrics::raw}), value_error);
  CHECK_NOTHROW(dpo_loss(bad, {.reference_free = true}));
}
