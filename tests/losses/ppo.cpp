#include "rlhf/losses/ppo.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "support/gradcheck.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

using fmat = eigen<float>::matrix;
constexpr Eigen::Index B = 4, T = 9;

// Rows: right-padded, left-padded, full, one token.
mat test_mask() {
  mat m = mat::Zero(B, T);
  m.block(0, 2, 1, 5).setOnes();
  m.block(1, 5, 1, 4).setOnes();
  m.row(2).setOnes();
  m(3, 4) = 1;
  return m;
}

double clip_low(const PpoConfig& c) { return c.clip_low > 0 ? c.clip_low : c.clip; }
double clip_high(const PpoConfig& c) { return c.clip_high > 0 ? c.clip_high : c.clip; }

// Textbook per-token losses, written independently of the kernels (no clamp: inputs stay within ±20).
double surrogate(const PpoConfig& c, double logp, double old, double a) {
  const double ratio = std::exp(logp - old);
  const double clipped_ratio = std::min(std::max(ratio, 1.0 - clip_low(c)), 1.0 + clip_high(c));
  double loss = -std::min(a * ratio, a * clipped_ratio);
  if (c.dual_clip > 0 && a < 0) loss = std::min(loss, -double(c.dual_clip) * a);
  return loss;
}
double value_error_term(const ValueLossConfig& c, double v, double old, double ret) {
  const double plain = (v - ret) * (v - ret);
  if (c.clip == 0) return 0.5 * plain;
  const double vc = std::min(std::max(v, old - c.clip), old + c.clip);
  return 0.5 * std::max(plain, (vc - ret) * (vc - ret));
}

template <class F>
double masked_mean(const mat& mask, F f) {
  double s = 0, n = 0;
  for (Eigen::Index i = 0; i < mask.size(); ++i)
    if (mask.data()[i] == 1) s += f(i), n += 1;
  return s / n;
}

// Random per-token inputs whose ratios keep at least `gap` away from every kink of the surrogate.
struct PolicyInputs {
  mat logp, old_logp, advantages;
};
PolicyInputs policy_inputs(const PpoConfig& c, std::uint64_t seed, double gap = 1e-3) {
  PolicyInputs in{random_matrix(B, T, -4, -0.5, seed), mat(), random_matrix(B, T, -2, 2, seed + 1)};
  in.old_logp = in.logp + random_matrix(B, T, -0.6, 0.6, seed + 2);
  std::vector<double> kinks{1 - clip_low(c), 1 + clip_high(c)};
  if (c.dual_clip > 0) kinks.push_back(c.dual_clip);
  for (Eigen::Index i = 0; i < in.logp.size(); ++i)
    for (int tries = 0; tries < 100; ++tries) {
      const double r = std::exp(in.logp.data()[i] - in.old_logp.data()[i]);
      if (std::none_of(kinks.begin(), kinks.end(), [&](double k) { return std::abs(r - k) < gap; })) break;
      in.logp.data()[i] += 3 * gap;
    }
  return in;
}

const PpoConfig policy_configs[] = {{},
                                    {.clip = 0.1f},
                                    {.clip = 0.3f, .dual_clip = 1.5f},
                                    {.clip = 0.2f, .dual_clip = 1.3f},
                                    {.clip_low = 0.1, .clip_high = 0.28},  // DAPO's clip-higher
                                    {.clip_high = 0.35, .dual_clip = 1.3}};
const ValueLossConfig value_configs[] = {{}, {.clip = 0.0f}, {.clip = 0.5f}};

}  // namespace

TEST_CASE("ppo_policy_loss: matches the textbook surrogate and its metrics") {
  const mat mask = test_mask();
  for (const auto& c : policy_configs) {
    const auto in = policy_inputs(c, 21);
    const auto r = ppo_policy_loss(in.logp, in.old_logp, in.advantages, mask, c);
    const auto at = [&](const mat& m, Eigen::Index i) { return m.data()[i]; };
    CHECK(r.loss == doctest::Approx(masked_mean(mask, [&](Eigen::Index i) {
                      return surrogate(c, at(in.logp, i), at(in.old_logp, i), at(in.advantages, i));
                    })).epsilon(1e-12));
    const double clipfrac = masked_mean(mask, [&](Eigen::Index i) {
      const double ratio = std::exp(at(in.logp, i) - at(in.old_logp, i)), a = at(in.advantages, i);
      return (a > 0 && ratio > 1 + clip_high(c)) || (a < 0 && ratio < 1 - clip_low(c)) ? 1.0 : 0.0;
    });
    const double dual_clipfrac = masked_mean(mask, [&](Eigen::Index i) {
      const double ratio = std::exp(at(in.logp, i) - at(in.old_logp, i));
      return c.dual_clip > 0 && at(in.advantages, i) < 0 && ratio > c.dual_clip ? 1.0 : 0.0;
    });
    CHECK(r.metrics[metric::policy_clipfrac_avg] == doctest::Approx(clipfrac).epsilon(1e-12));
    CHECK(r.metrics[metric::policy_dual_clipfrac_avg] == doctest::Approx(dual_clipfrac).epsilon(1e-12));
    CHECK(r.metrics[metric::policy_approxkl_avg] == doctest::Approx(masked_mean(mask, [&](Eigen::Index i) {
                                                      const double d = at(in.logp, i) - at(in.old_logp, i);
                                                      return std::exp(d) - 1 - d;
                                                    })).epsilon(1e-12));
    CHECK(r.metrics[metric::policy_ppo_kl_avg] == doctest::Approx(masked_mean(mask, [&](Eigen::Index i) {
                                                    return at(in.old_logp, i) - at(in.logp, i);
                                                  })).epsilon(1e-12));
    CHECK(r.metrics[metric::val_ratio] == doctest::Approx(masked_mean(mask, [&](Eigen::Index i) {
                                            return std::exp(at(in.logp, i) - at(in.old_logp, i));
                                          })).epsilon(1e-12));
    // Both branches occur, so the checks above cover clipped and unclipped tokens.
    CHECK(clipfrac > 0.05);
    CHECK(clipfrac < 0.95);
    if (c.dual_clip > 0) CHECK(dual_clipfrac > 0);
  }
}

TEST_CASE("ppo_policy_loss: hand-computed tokens") {
  mat logp(1, 4), old = mat::Zero(1, 4), adv(1, 4), mask = mat::Ones(1, 4);
  logp << std::log(1.5), std::log(0.5), std::log(1.1), std::log(5.0);
  adv << 1.0, -1.0, 2.0, -1.0;
  // ε = 0.2, c = 3:  −min(1.5, 1.2) = −1.2 (clipped) | −min(−0.5, −0.8) = 0.8 (clipped)
  //                  −2.2 (inside)                   | min(5, 3) = 3 (dual clipped)
  const auto r = ppo_policy_loss(logp, old, adv, mask, {.clip = 0.2f, .dual_clip = 3.0f});
  CHECK(r.loss == doctest::Approx((-1.2 + 0.8 - 2.2 + 3.0) / 4).epsilon(1e-7));  // ε, c are floats
  CHECK(r.d_logp(0, 0) == 0.0);
  CHECK(r.d_logp(0, 1) == 0.0);
  CHECK(r.d_logp(0, 2) == doctest::Approx(-2.0 * 1.1 / 4));
  CHECK(r.d_logp(0, 3) == 0.0);
  CHECK(r.metrics[metric::policy_clipfrac_avg] == 0.5);
  CHECK(r.metrics[metric::policy_dual_clipfrac_avg] == 0.25);
  CHECK(r.metrics[metric::val_ratio] == doctest::Approx((1.5 + 0.5 + 1.1 + 5.0) / 4));
  // Without the dual clip the last token costs 5.
  CHECK(ppo_policy_loss(logp, old, adv, mask).loss == doctest::Approx((-1.2 + 0.8 - 2.2 + 5.0) / 4).epsilon(1e-7));
}

TEST_CASE("ppo_policy_loss: gradient matches finite differences away from the clip kinks") {
  const mat mask = test_mask();
  for (const auto& c : policy_configs) {
    auto in = policy_inputs(c, 37);
    const auto r = ppo_policy_loss(in.logp, in.old_logp, in.advantages, mask, c);
    const auto loss = [&] { return ppo_policy_loss(in.logp, in.old_logp, in.advantages, mask, c).loss; };
    CHECK(max_relative_error(r.d_logp, numeric_gradient(loss, in.logp)) < 1e-7);
    CHECK(r.metrics[metric::policy_clipfrac_avg] > 0);
    for (Eigen::Index i = 0; i < mask.size(); ++i)
      if (mask.data()[i] == 0) CHECK(r.d_logp.data()[i] == 0.0);
  }
}

TEST_CASE("ppo_value_loss: matches the textbook formula, its metrics and finite differences") {
  const mat mask = test_mask();
  for (const auto& c : value_configs) {
    mat v = random_matrix(B, T, -2, 2, 51), old = v + random_matrix(B, T, -1, 1, 52);
    const mat ret = random_matrix(B, T, -2, 2, 53);
    // Keep away from the kinks: |v − old| = ε, and ret midway between v and the clipped value.
    for (Eigen::Index i = 0; i < v.size(); ++i) {
      double& x = v.data()[i];
      const double o = old.data()[i], R = ret.data()[i];
      for (int tries = 0; tries < 100; ++tries) {
        const double vc = std::min(std::max(x, o - c.clip), o + c.clip);
        if (std::abs(std::abs(x - o) - c.clip) > 1e-3 && std::abs(std::abs(vc - R) - std::abs(x - R)) > 1e-3) break;
        x += 3e-3;
      }
    }
    const auto r = ppo_value_loss(v, old, ret, mask, c);
    const auto at = [](const mat& m, Eigen::Index i) { return m.data()[i]; };
    CHECK(r.loss == doctest::Approx(masked_mean(mask, [&](Eigen::Index i) {
                      return value_error_term(c, at(v, i), at(old, i), at(ret, i));
                    })).epsilon(1e-12));
    CHECK(r.metrics[metric::val_mse_avg] == doctest::Approx(masked_mean(mask, [&](Eigen::Index i) {
                                              return std::pow(at(v, i) - at(ret, i), 2);
                                            })).epsilon(1e-12));
    const double clipfrac = masked_mean(mask, [&](Eigen::Index i) {
      return 2 * value_error_term(c, at(v, i), at(old, i), at(ret, i)) > std::pow(at(v, i) - at(ret, i), 2) ? 1.0 : 0.0;
    });
    CHECK(r.metrics[metric::val_clipfrac_avg] == doctest::Approx(clipfrac).epsilon(1e-12));
    if (c.clip > 0) CHECK(clipfrac > 0.05);
    if (c.clip == 0) CHECK(clipfrac == 0);
    const auto loss = [&] { return ppo_value_loss(v, old, ret, mask, c).loss; };
    CHECK(max_relative_error(r.d_values, numeric_gradient(loss, v)) < 1e-7);
    for (Eigen::Index i = 0; i < mask.size(); ++i)
      if (mask.data()[i] == 0) CHECK(r.d_values.data()[i] == 0.0);
  }
}

// Σ_b w_b Σ_t ℓ[b, t] with each convention's row weight, written from the definitions (aggregation.hpp).
template <class F>
double aggregate(const mat& mask, Aggregation how, double max_tokens, F token_loss) {
  const double B = double(mask.rows()), n = mask.sum();
  double nonempty = 0;  // OpenRLHF's aggregate_loss averages over the rows that have a token
  for (Eigen::Index b = 0; b < mask.rows(); ++b) nonempty += mask.row(b).sum() > 0 ? 1 : 0;
  double total = 0;
  for (Eigen::Index b = 0; b < mask.rows(); ++b) {
    double row = 0;
    const double nb = mask.row(b).sum();
    for (Eigen::Index t = 0; t < mask.cols(); ++t)
      if (mask(b, t) == 1) row += token_loss(b * mask.cols() + t);  // row-major index of (b, t)
    if (how == Aggregation::token_mean) total += n > 0 ? row / n : 0;
    if (how == Aggregation::sequence_mean) total += nb > 0 ? row / (B * nb) : 0;
    if (how == Aggregation::sequence_sum) total += row / (B * max_tokens);
    if (how == Aggregation::nonempty_sequence_mean) total += nb > 0 ? row / (nb + 1e-8) / nonempty : 0;
  }
  return total;
}

TEST_CASE("ppo losses: token, sequence-mean and sequence-sum aggregation; rows with no response token add nothing") {
  mat mask = test_mask();
  mask.row(1).setZero();  // an empty completion
  const PpoConfig base{.clip = 0.2, .dual_clip = 1.5};
  const auto in = policy_inputs(base, 81);
  mat v = random_matrix(B, T, -2, 2, 82), old_v = v + random_matrix(B, T, -1, 1, 83);
  const mat ret = random_matrix(B, T, -2, 2, 84);
  for (const auto how : {Aggregation::token_mean, Aggregation::sequence_mean, Aggregation::sequence_sum,
                         Aggregation::nonempty_sequence_mean}) {
    CAPTURE(static_cast<int>(how));
    PpoConfig c = base;
    c.aggregation = how;
    c.max_tokens = 16;
    const auto r = ppo_policy_loss(in.logp, in.old_logp, in.advantages, mask, c);
    CHECK(r.loss == doctest::Approx(aggregate(mask, how, 16, [&](Eigen::Index i) {
                      return surrogate(c, in.logp.data()[i], in.old_logp.data()[i], in.advantages.data()[i]);
                    })).epsilon(1e-12));
    mat logp = in.logp;
    const auto loss = [&] { return ppo_policy_loss(logp, in.old_logp, in.advantages, mask, c).loss; };
    CHECK(max_relative_error(r.d_logp, numeric_gradient(loss, logp)) < 1e-7);
    CHECK(r.d_logp.row(1).isZero(0));
    // The metrics stay token means whatever the aggregation.
    CHECK(r.metrics[metric::val_ratio] == doctest::Approx(masked_mean(mask, [&](Eigen::Index i) {
                                            return std::exp(in.logp.data()[i] - in.old_logp.data()[i]);
                                          })).epsilon(1e-12));

    const ValueLossConfig vc{.clip = 0.3, .aggregation = how, .max_tokens = 16};
    const auto rv = ppo_value_loss(v, old_v, ret, mask, vc);
    CHECK(rv.loss == doctest::Approx(aggregate(mask, how, 16, [&](Eigen::Index i) {
                       return value_error_term(ValueLossConfig{.clip = 0.3}, v.data()[i], old_v.data()[i],
                                               ret.data()[i]);
                     })).epsilon(1e-12));
    const auto vloss = [&] { return ppo_value_loss(v, old_v, ret, mask, vc).loss; };
    CHECK(max_relative_error(rv.d_values, numeric_gradient(vloss, v)) < 1e-7);
  }
  // sequence_sum with L = 1 is the mean over rows of each row's sum.
  const auto sum_rows =
      ppo_policy_loss(in.logp, in.old_logp, in.advantages, mask, {.aggregation = Aggregation::sequence_sum});
  CHECK(sum_rows.loss == doctest::Approx(aggregate(mask, Aggregation::sequence_sum, 1, [&](Eigen::Index i) {
                           return surrogate({}, in.logp.data()[i], in.old_logp.data()[i], in.advantages.data()[i]);
                         })).epsilon(1e-12));
  // A batch of empty completions: loss 0, gradient 0, metrics 0 (no NaN).
  const mat none = mat::Zero(B, T);
  for (const auto how : {Aggregation::token_mean, Aggregation::sequence_mean, Aggregation::sequence_sum,
                         Aggregation::nonempty_sequence_mean}) {
    const auto r = ppo_policy_loss(in.logp, in.old_logp, in.advantages, none, {.aggregation = how});
    CHECK(r.loss == 0.0);
    CHECK(r.d_logp.isZero(0));
    for (const auto& [name, value] : r.metrics.items()) CHECK(value == 0.0);
    const auto rv = ppo_value_loss(v, old_v, ret, none, {.aggregation = how});
    CHECK(rv.loss == 0.0);
    CHECK(rv.d_values.isZero(0));
  }
}

TEST_CASE("ppo losses: OpenRLHF's sequence_mean leaves a row with no token out of the mean") {
  mat logp(3, 2), zero = mat::Zero(3, 2), adv(3, 2), mask(3, 2);
  logp.setZero();
  adv << 1.0, 3.0, 2.0, 0.0, 5.0, 5.0;
  mask << 1, 1, 1, 0, 0, 0;  // row 2 is an empty completion
  // At ρ = 1 each token costs −A: row means −2 and −2; OpenRLHF: (−4/(2+1e-8) − 2/(1+1e-8)) / 2 rows.
  const double want = (-4.0 / (2 + 1e-8) - 2.0 / (1 + 1e-8)) / 2;
  const auto r = ppo_policy_loss(logp, zero, adv, mask, {.aggregation = Aggregation::nonempty_sequence_mean});
  CHECK(r.loss == doctest::Approx(want).epsilon(1e-15));
  CHECK(ppo_policy_loss(logp, zero, adv, mask, {.aggregation = Aggregation::sequence_mean}).loss ==
        doctest::Approx(-4.0 / 3).epsilon(1e-15));  // TRL's grpo: the empty row counts in B
  CHECK(r.d_logp(0, 0) == doctest::Approx(-1.0 / (2 + 1e-8) / 2).epsilon(1e-15));
  CHECK(r.d_logp(2, 0) == 0.0);
}

TEST_CASE("ppo_value_loss: hand-computed tokens") {
  mat v(1, 3), old(1, 3), ret(1, 3), mask = mat::Ones(1, 3);
  v << 1.0, 0.0, 0.5;
  old << 0.0, 0.0, 0.0;
  ret << 2.0, 1.0, -1.0;
  // ε = 0.2: token 0 moved 1.0 toward R: max(1, (0.2 − 2)²) = 3.24, clipped, no gradient;
  // token 1 did not move: 1, gradient −1; token 2 moved 0.5 away from R: max(2.25, 1.44) = 2.25, gradient 1.5.
  const auto r = ppo_value_loss(v, old, ret, mask);
  CHECK(r.loss == doctest::Approx(0.5 * (3.24 + 1.0 + 2.25) / 3).epsilon(1e-7));
  CHECK(r.d_values(0, 0) == 0.0);
  CHECK(r.d_values(0, 1) == doctest::Approx(-1.0 / 3));
  CHECK(r.d_values(0, 2) == doctest::Approx(1.5 / 3));
  CHECK(r.metrics[metric::val_clipfrac_avg] == doctest::Approx(1.0 / 3));
  CHECK(r.metrics[metric::val_mse_avg] == doctest::Approx((1.0 + 1.0 + 2.25) / 3));
  CHECK(ppo_value_loss(v, old, ret, mask, {.clip = 0.0f}).loss == doctest::Approx(0.5 * (1.0 + 1.0 + 2.25) / 3));
}

// A value strictly inside V_old ± ε is its own clipped value: the token is never counted as clipped and its
// gradient is V − R, whatever the rounding of V − V_old (TRL clamps V itself, as here).
template <class T>
void check_in_range_tokens_are_not_clipped() {
  std::mt19937_64 gen(12);
  std::uniform_real_distribution<double> old_d(-3, 3), step(-0.199, 0.199), ret_d(-4, 4);
  const auto round6 = [](double x) { return std::round(x * 1e6) / 1e6; };
  const ValueLossConfig c{.clip = 0.2f};
  std::size_t clipped = 0, wrong_gradient = 0;
  for (int i = 0; i < 200000; ++i) {
    const T old = T(round6(old_d(gen))), v = T(round6(double(old) + step(gen))), ret = T(round6(ret_d(gen)));
    const auto token = value_token<T>(c, v, old, ret);
    clipped += token.clipped;
    wrong_gradient += token.d_value != math::wide_t<T>(v) - math::wide_t<T>(ret);
  }
  CHECK(clipped == 0);
  CHECK(wrong_gradient == 0);
}

TEST_CASE("ppo_value_loss: a token inside the clip range is never clipped (float and double)") {
  check_in_range_tokens_are_not_clipped<double>();
  check_in_range_tokens_are_not_clipped<float>();
}

TEST_CASE("ppo losses: padding side and micro-batching do not change the result") {
  // Row 0 holds the same 3 tokens right-padded (batch a) or left-padded (batch b).
  mat ma = mat::Zero(2, 6), mb = mat::Zero(2, 6);
  ma.block(0, 1, 1, 3).setOnes();
  mb.block(0, 3, 1, 3).setOnes();
  ma.row(1).setOnes();
  mb.row(1).setOnes();
  const mat tokens = random_matrix(2, 6, -3, -1, 61), old = random_matrix(2, 6, -3, -1, 62),
            adv = random_matrix(2, 6, -1, 1, 63);
  const auto shift = [](mat x) {  // moves row 0's entries 1..3 to 3..5 and fills the rest with junk
    x.block(0, 3, 1, 3) = mat(x.block(0, 1, 1, 3));
    x.block(0, 0, 1, 3).setConstant(NAN);
    return x;
  };
  const auto ra = ppo_policy_loss(tokens, old, adv, ma),
             rb = ppo_policy_loss(shift(tokens), shift(old), shift(adv), mb);
  CHECK(ra.loss == rb.loss);
  CHECK(mat(ra.d_logp.block(0, 1, 1, 3)) == mat(rb.d_logp.block(0, 3, 1, 3)));
  CHECK(ra.d_logp.row(1) == rb.d_logp.row(1));
  const auto va = ppo_value_loss(tokens, old, adv, ma), vb = ppo_value_loss(shift(tokens), shift(old), shift(adv), mb);
  CHECK(va.loss == vb.loss);
  CHECK(mat(va.d_values.block(0, 1, 1, 3)) == mat(vb.d_values.block(0, 3, 1, 3)));

  // Two micro-batches, each weighted by its share of the tokens, give the full batch's loss and gradient.
  const auto part = [&](Eigen::Index row) {
    return ppo_policy_loss(mat(tokens.row(row)), mat(old.row(row)), mat(adv.row(row)), mat(ma.row(row)));
  };
  const double n0 = 3, n1 = 6, n = n0 + n1;
  const auto p0 = part(0), p1 = part(1);
  CHECK(ra.loss == doctest::Approx(n0 / n * p0.loss + n1 / n * p1.loss).epsilon(1e-12));
  for (Eigen::Index t = 0; t < 6; ++t) {
    CHECK(ra.d_logp(0, t) == doctest::Approx(n0 / n * p0.d_logp(0, t)).epsilon(1e-12));
    CHECK(ra.d_logp(1, t) == doctest::Approx(n1 / n * p1.d_logp(0, t)).epsilon(1e-12));
  }
}

TEST_CASE("ppo losses: finite values and gradients at extreme inputs, in float") {
  fmat mask = test_mask().cast<float>();
  for (const float gap : {1e4f, -1e4f})
    for (const float a : {1.f, -1.f, 1e3f, -1e3f})
      for (const auto& c : policy_configs) {
        const fmat old = fmat::Constant(B, T, -1e4f), logp = fmat::Constant(B, T, -1e4f + gap);  // log-ratio ±1e4
        const auto r = ppo_policy_loss(logp, old, fmat(fmat::Constant(B, T, a)), mask, c);
        CHECK(std::isfinite(r.loss));
        CHECK(all_finite(r.d_logp));
        for (const auto& [name, value] : r.metrics.items()) CHECK(std::isfinite(value));
      }
  // The clamp at ±20: a token whose ratio exploded costs |A|·e^20 (finite) and has no gradient;
  // the dual clip bounds that cost by c·|A|.
  fmat one = fmat::Ones(1, 1), zero = fmat::Zero(1, 1), big = fmat::Constant(1, 1, 1e4f),
       neg = fmat::Constant(1, 1, -1.f);
  const auto exploded = ppo_policy_loss(big, zero, neg, one);
  CHECK(exploded.loss == doctest::Approx(std::exp(20.0)).epsilon(1e-6));
  CHECK(exploded.d_logp(0, 0) == 0.f);
  CHECK(ppo_policy_loss(big, zero, neg, one, {.dual_clip = 3.f}).loss == doctest::Approx(3.0));
  const auto vanished = ppo_policy_loss(fmat(-big), zero, one, one);
  CHECK(vanished.loss == doctest::Approx(-std::exp(-20.0)).epsilon(1e-6));
  CHECK(std::isfinite(vanished.metrics[metric::policy_approxkl_avg]));
  // Just inside the clamp the gradient is the ordinary −A·ρ.
  const fmat inside = fmat::Constant(1, 1, 19.f);
  CHECK(ppo_policy_loss(inside, zero, neg, one).d_logp(0, 0) == doctest::Approx(std::exp(19.0)).epsilon(1e-5));
  // Value loss at large magnitudes.
  for (const auto& c : value_configs) {
    const auto r = ppo_value_loss(fmat(fmat::Constant(B, T, 1e4f)), fmat(fmat::Constant(B, T, -1e4f)),
                                  fmat(fmat::Constant(B, T, -1e4f)), mask, c);
    CHECK(std::isfinite(r.loss));
    CHECK(all_finite(r.d_values));
    CHECK(std::isfinite(r.metrics[metric::val_mse_avg]));
  }
}

TEST_CASE("ppo losses: inputs of ±3e38 in float give finite values, or a named error where a gradient exceeds float") {
  const float H = 3e38f;  // log π − log π_old, V − R and −A·ρ overflow float; the kernels work in double
  const fmat one = fmat::Ones(1, 2), a = fmat::Constant(1, 2, 1.f);
  fmat lp(1, 2), old(1, 2);
  lp << H, -H;
  old << -H, H;
  for (const auto& c : policy_configs) {
    const auto r = ppo_policy_loss(lp, old, a, one, c);  // log-ratios ±6e38, clamped at ±20
    CHECK(std::isfinite(r.loss));
    CHECK(all_finite(r.d_logp));
    for (const auto& [name, value] : r.metrics.items()) CHECK(std::isfinite(value));
  }
  // A huge advantage at ratio 1: loss −A (finite in float), gradient −A / tokens.
  const fmat zero = fmat::Zero(1, 2), big_a = fmat::Constant(1, 2, H);
  for (const auto& c : policy_configs) {
    const auto r = ppo_policy_loss(zero, zero, big_a, one, c);
    CHECK(r.loss == doctest::Approx(-3e38).epsilon(1e-6));
    CHECK(r.d_logp(0, 0) == doctest::Approx(-1.5e38).epsilon(1e-6));
  }
  // The same advantage times a ratio of e^5: the gradient (−4.5e40) has no float value: a named error.
  const fmat up = fmat::Constant(1, 2, 5.f);
  CHECK_THROWS_WITH_AS(ppo_policy_loss(up, zero, fmat(-big_a), one, {.clip = 10.f}), doctest::Contains("'advantages'"),
                       value_error);
  // Value loss: V − R = 6e38. The loss ½(6e38)² is a double (the result's loss is); d/dV = 6e38 / 2 tokens fits float.
  fmat v(1, 2), ret(1, 2);
  v << H, H;
  ret << -H, -H;
  for (const auto& c : value_configs) {
    const auto r = ppo_value_loss(v, v, ret, one, c);
    CHECK(r.loss == doctest::Approx(0.5 * 3.6e77).epsilon(1e-5));
    CHECK(all_finite(r.d_values));
    CHECK(r.d_values(0, 0) == doctest::Approx(3e38).epsilon(1e-6));
    CHECK(std::isfinite(r.metrics[metric::val_mse_avg]));
  }
  // One token: d/dV = 6e38 is past float: a named error.
  CHECK_THROWS_WITH_AS(
      ppo_value_loss(fmat(v.leftCols(1)), fmat(v.leftCols(1)), fmat(ret.leftCols(1)), fmat(one.leftCols(1))),
      doctest::Contains("'values' − 'returns'"), value_error);
}

TEST_CASE("ppo losses: bad input names the argument") {
  const mat mask = test_mask();
  const mat x = random_matrix(B, T, -2, -1, 71);
  mat nan = x;
  nan(1, 6) = std::nan("");
  mat inf = x;
  inf(0, 3) = INFINITY;
  // policy
  CHECK_THROWS_WITH_AS(ppo_policy_loss(x, mat(mat::Zero(B, T - 1)), x, mask),
                       doctest::Contains("'old_logp' is [4, 8] but 'logp' is [4, 9]"), shape_error);
  CHECK_THROWS_WITH_AS(ppo_policy_loss(x, x, mat(mat::Zero(B + 1, T)), mask), doctest::Contains("'advantages' is [5, 9]"),
                       shape_error);
  CHECK_THROWS_WITH_AS(ppo_policy_loss(x, x, x, mat(mat::Ones(B, 2))), doctest::Contains("'mask' is [4, 2]"), shape_error);
  CHECK_THROWS_WITH_AS(ppo_policy_loss(nan, x, x, mask), doctest::Contains("'logp' holds 1 NaN or Inf"), value_error);
  CHECK_THROWS_WITH_AS(ppo_policy_loss(x, x, inf, mask), doctest::Contains("'advantages' holds 1 NaN or Inf"),
                       value_error);
  CHECK_THROWS_WITH_AS(ppo_policy_loss(mat(), mat(), mat(), mat()), doctest::Contains("empty batch"), shape_error);
  mat fuzzy = mask;
  fuzzy(2, 2) = 2;
  CHECK_THROWS_WITH_AS(ppo_policy_loss(x, x, x, fuzzy), doctest::Contains("other than 0 or 1"), value_error);
  CHECK_THROWS_WITH_AS(ppo_policy_loss(x, x, x, mask, {.clip = 0.f}), doctest::Contains("clip must be > 0 (got 0)"),
                       config_error);
  CHECK_THROWS_WITH_AS(ppo_policy_loss(x, x, x, mask, {.clip = -0.2f}), doctest::Contains("clip"), config_error);
  CHECK_THROWS_WITH_AS(ppo_policy_loss(x, x, x, mask, {.dual_clip = 1.f}),
                       doctest::Contains("dual_clip must be 0 (off) or > 1 (got 1)"), config_error);
  CHECK_THROWS_WITH_AS(ppo_policy_loss(x, x, x, mask, {.dual_clip = 0.5f}), doctest::Contains("dual_clip"),
                       config_error);
  CHECK_THROWS_WITH_AS(ppo_policy_loss(x, x, x, mask, {.dual_clip = -2.f}), doctest::Contains("dual_clip"),
                       config_error);
  CHECK_THROWS_AS(ppo_policy_loss(x, x, x, mask, {.dual_clip = NAN}), config_error);
  CHECK_THROWS_WITH_AS(ppo_policy_loss(x, x, x, mask, {.clip = NAN}), doctest::Contains("clip"), config_error);
  CHECK_THROWS_WITH_AS(ppo_policy_loss(x, x, x, mask, {.clip_low = -0.1}), doctest::Contains("clip_low must be >= 0"),
                       config_error);
  CHECK_THROWS_WITH_AS(ppo_policy_loss(x, x, x, mask, {.clip_high = INFINITY}), doctest::Contains("clip_high"),
                       config_error);
  CHECK_THROWS_WITH_AS(ppo_policy_loss(x, x, x, mask, {.aggregation = static_cast<Aggregation>(7)}),
                       doctest::Contains("aggregation must be"), config_error);
  CHECK_THROWS_WITH_AS(ppo_value_loss(x, x, x, mask, {.aggregation = Aggregation::token_sum}),
                       doctest::Contains("aggregation must be"), config_error);
  CHECK_THROWS_WITH_AS(ppo_policy_loss(x, x, x, mask, {.aggregation = Aggregation::sequence_sum, .max_tokens = 0}),
                       doctest::Contains("max_tokens must be finite and > 0"), config_error);
  CHECK_THROWS_WITH_AS(ppo_value_loss(x, x, x, mask, {.max_tokens = -1}), doctest::Contains("max_tokens"),
                       config_error);
  CHECK_THROWS_WITH_AS(ppo_value_loss(x, x, x, mask, {.clip = NAN}), doctest::Contains("clip"), config_error);
  // value
  CHECK_THROWS_WITH_AS(ppo_value_loss(x, x, mat(mat::Zero(B, 3)), mask),
                       doctest::Contains("'returns' is [4, 3] but 'values' is [4, 9]"), shape_error);
  CHECK_THROWS_WITH_AS(ppo_value_loss(x, nan, x, mask), doctest::Contains("'old_values' holds 1 NaN or Inf"),
                       value_error);
  CHECK_THROWS_WITH_AS(ppo_value_loss(x, x, inf, mask), doctest::Contains("'returns' holds 1 NaN or Inf"), value_error);
  CHECK_THROWS_WITH_AS(ppo_value_loss(mat(), mat(), mat(), mat()), doctest::Contains("empty batch"), shape_error);
  CHECK_THROWS_WITH_AS(ppo_value_loss(x, x, x, mask, {.clip = -0.1f}), doctest::Contains("clip must be >= 0"),
                       config_error);
  CHECK_THROWS_AS(ppo_value_loss(x, x, x, mask, {.clip = INFINITY}), config_error);
}
