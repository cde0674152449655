#include "rlhf/losses/kl.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "support/gradcheck.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

const KlEstimator estimators[] = {KlEstimator::k1, KlEstimator::k2, KlEstimator::k3};

mat random_mask(std::size_t B, std::size_t T, std::uint64_t seed) {
  Rng rng(seed);
  mat m(static_cast<Eigen::Index>(B), static_cast<Eigen::Index>(T));
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = rng.uniform() < 0.7 ? 1 : 0;
  m(0, 0) = 1;
  return m;
}

// Textbook forms, written from log π and log π_ref directly (not through r).
double reference_k(KlEstimator k, double logp, double ref) {
  switch (k) {
    case KlEstimator::k1:
      return logp - ref;
    case KlEstimator::k2:
      return 0.5 * (logp - ref) * (logp - ref);
    case KlEstimator::k3:
      return std::exp(ref) / std::exp(logp) - 1 - (ref - logp);
  }
  return 0;
}

// KL(p ‖ q) of one row through explicit softmax probabilities (fine for moderate logits).
double reference_exact_kl(const mat& zp, const mat& zq, Eigen::Index row) {
  double zsum_p = 0, zsum_q = 0;
  for (Eigen::Index v = 0; v < zp.cols(); ++v) {
    zsum_p += std::exp(zp(row, v));
    zsum_q += std::exp(zq(row, v));
  }
  double kl = 0;
  for (Eigen::Index v = 0; v < zp.cols(); ++v) {
    const double p = std::exp(zp(row, v)) / zsum_p, q = std::exp(zq(row, v)) / zsum_q;
    kl += p * std::log(p / q);
  }
  return kl;
}

std::vector<double> softmax(const std::vector<double>& z) {
  double s = 0;
  for (double x : z) s += std::exp(x);
  std::vector<double> p;
  for (double x : z) p.push_back(std::exp(x) / s);
  return p;
}

}  // namespace

TEST_CASE("kl: each estimator matches its textbook form per token, per sequence and on average") {
  const mat logp = random_matrix(4, 7, -6, -0.1, 1), ref = random_matrix(4, 7, -6, -0.1, 2);
  const mat mask = random_mask(4, 7, 3);
  for (const auto k : estimators) {
    const auto r = kl_estimate(logp, ref, mask, k);
    double mean = 0;
    for (Eigen::Index b = 0; b < 4; ++b) {
      double seq = 0;
      for (Eigen::Index t = 0; t < 7; ++t) {
        const double want = mask(b, t) == 1 ? reference_k(k, logp(b, t), ref(b, t)) : 0.0;
        CHECK(r.per_token(b, t) == doctest::Approx(want).epsilon(1e-12));
        seq += want;
      }
      CHECK(r.per_sequence[b] == doctest::Approx(seq).epsilon(1e-12));
      mean += seq / 4;
    }
    CHECK(r.mean == doctest::Approx(mean).epsilon(1e-12));
    if (k != KlEstimator::k1) CHECK(r.per_token.minCoeff() >= 0.0);
  }
}

TEST_CASE("kl: the estimators at a hand-computed point") {
  // log π = −1, log π_ref = −1 − ln 2: r = −ln 2, e^r = 1/2.
  const mat logp = mat::Constant(1, 1, -1), ref = mat::Constant(1, 1, -1 - std::log(2.0)), mask = mat::Ones(1, 1);
  CHECK(kl_estimate(logp, ref, mask, KlEstimator::k1).mean == doctest::Approx(std::log(2.0)));
  CHECK(kl_estimate(logp, ref, mask, KlEstimator::k2).mean == doctest::Approx(0.5 * std::log(2.0) * std::log(2.0)));
  const auto k3 = kl_estimate(logp, ref, mask, KlEstimator::k3);
  CHECK(k3.mean == doctest::Approx(-0.5 + std::log(2.0)));
  CHECK(k3.d_logp(0, 0) == doctest::Approx(0.5));  // −(e^r − 1)
  CHECK(k3.d_ref_logp(0, 0) == doctest::Approx(-0.5));
}

TEST_CASE("kl: estimator gradients match finite differences and vanish where masked") {
  mat logp = random_matrix(3, 6, -5, -0.1, 11), ref = random_matrix(3, 6, -5, -0.1, 12);
  const mat mask = random_mask(3, 6, 13);
  for (const auto k : estimators) {
    const auto r = kl_estimate(logp, ref, mask, k);
    const auto mean = [&] { return kl_estimate(logp, ref, mask, k).mean; };
    CHECK(max_relative_error(r.d_logp, numeric_gradient(mean, logp)) < 1e-7);
    CHECK(max_relative_error(r.d_ref_logp, numeric_gradient(mean, ref)) < 1e-7);
    for (Eigen::Index i = 0; i < mask.size(); ++i)
      if (mask.data()[i] == 0) {
        CHECK(r.d_logp.data()[i] == 0.0);
        CHECK(r.d_ref_logp.data()[i] == 0.0);
      }
  }
}

TEST_CASE("kl: the token-mean and sequence-mean reductions and the clamp match their definitions and gradients") {
  // Log-ratios up to ±14 so that the clamp at 10 is active for some tokens of every estimator.
  mat logp = random_matrix(4, 6, -16, -0.1, 41), ref = random_matrix(4, 6, -16, -0.1, 42);
  mat mask = random_mask(4, 6, 43);
  mask.row(2).setZero();  // an empty row
  for (const auto k : estimators)
    for (const auto how : {Aggregation::sequence_sum, Aggregation::token_mean, Aggregation::sequence_mean})
      for (const double clamp : {0.0, 10.0}) {
        CAPTURE(static_cast<int>(k));
        CAPTURE(static_cast<int>(how));
        CAPTURE(clamp);
        const KlConfig c{.estimator = k, .aggregation = how, .clamp = clamp};
        const auto r = kl_estimate(logp, ref, mask, c);
        double total = 0, n = 0, clamped = 0;
        std::vector<double> row_sum(4, 0.0), row_n(4, 0.0);
        for (Eigen::Index b = 0; b < 4; ++b)
          for (Eigen::Index t = 0; t < 6; ++t) {
            if (mask(b, t) == 0) continue;
            double v = reference_k(k, logp(b, t), ref(b, t));
            if (clamp > 0 && std::abs(v) > clamp) v = v > 0 ? clamp : -clamp, clamped += 1;
            CHECK(r.per_token(b, t) == doctest::Approx(v).epsilon(1e-12));
            total += v, n += 1, row_sum[b] += v, row_n[b] += 1;
          }
        double want = 0;
        if (how == Aggregation::sequence_sum) want = total / 4;
        if (how == Aggregation::token_mean) want = total / n;
        if (how == Aggregation::sequence_mean)
          for (int b = 0; b < 4; ++b) want += row_n[b] > 0 ? row_sum[b] / row_n[b] / 4 : 0.0;
        CHECK(r.mean == doctest::Approx(want).epsilon(1e-12));
        if (clamp > 0) CHECK(clamped > 0);
        const auto mean = [&] { return kl_estimate(logp, ref, mask, c).mean; };
        const double tol = k == KlEstimator::k3 && clamp == 0 ? 1e-6 : 1e-7;  // terms of e^16 cost digits
        CHECK(max_relative_error(r.d_logp, numeric_gradient(mean, logp)) < tol);
        CHECK(max_relative_error(r.d_ref_logp, numeric_gradient(mean, ref)) < tol);
      }
  // A mask with no token at all: a token mean of 0, not NaN.
  const auto none = kl_estimate(logp, ref, mat(mat::Zero(4, 6)), {.aggregation = Aggregation::token_mean});
  CHECK(none.mean == 0.0);
  CHECK(none.d_logp.isZero(0));
  // The old call and the config with only the estimator set agree.
  CHECK(kl_estimate(logp, ref, mask, KlEstimator::k3).mean ==
        kl_estimate(logp, ref, mask, {.estimator = KlEstimator::k3}).mean);
}

TEST_CASE("kl: a row with no token contributes 0 but still counts, and padding holds anything") {
  mat logp = random_matrix(2, 3, -5, -0.1, 21), ref = random_matrix(2, 3, -5, -0.1, 22);
  mat mask = mat::Ones(2, 3);
  mask.row(1).setZero();
  const double first = kl_estimate(logp, ref, mask, KlEstimator::k3).per_sequence[0];
  logp.row(1).setConstant(std::nan(""));
  ref(1, 0) = -INFINITY;
  const auto r = kl_estimate(logp, ref, mask, KlEstimator::k3);
  CHECK(r.per_sequence[1] == 0.0);
  CHECK(r.mean == doctest::Approx(first / 2));
  CHECK(all_finite(r.d_logp));
  CHECK(all_finite(r.per_token));
}

TEST_CASE("kl: finite values and gradients at extreme log-ratios, in float; k3 saturates at its cap") {
  using fmat = eigen<float>::matrix;
  const fmat mask = fmat::Ones(2, 256);
  // r = +1e4 (policy far below the reference) and r = −1e4; log-probs down to −1e4.
  const fmat low = fmat::Constant(2, 256, -1e4f), zero = fmat::Zero(2, 256);
  for (const auto k : estimators)
    for (const auto& [logp, ref] : {std::pair{low, zero}, std::pair{zero, low}}) {
      const auto r = kl_estimate(logp, ref, mask, k);
      CHECK(std::isfinite(r.mean));
      CHECK(all_finite(r.per_sequence));
      CHECK(all_finite(r.per_token));
      CHECK(all_finite(r.d_logp));
      CHECK(all_finite(r.d_ref_logp));
    }
  const float cap = kl_k3_max_log_ratio<float>;
  const auto at_cap =
      kl_estimate(fmat(fmat::Constant(1, 1, -cap)), fmat(fmat::Zero(1, 1)), fmat(fmat::Ones(1, 1)), KlEstimator::k3);
  const auto beyond = kl_estimate(low, zero, mask, KlEstimator::k3);
  CHECK(beyond.per_token(0, 0) == at_cap.per_token(0, 0));
  CHECK(beyond.per_token(0, 0) == doctest::Approx(std::exp(44.0) - 45.0).epsilon(1e-5));
  CHECK(beyond.d_logp(0, 0) == doctest::Approx(-std::expm1(44.0) / 2).epsilon(1e-5));
  // r = −1e4: k3 = e^r − 1 − r ≈ 1e4 − 1, gradient −(e^r − 1) = 1 (before 1/B).
  const auto below = kl_estimate(zero, low, mask, KlEstimator::k3);
  CHECK(below.per_token(1, 5) == doctest::Approx(1e4 - 1));
  CHECK(below.d_logp(1, 5) == doctest::Approx(0.5));
}

TEST_CASE("kl: bad estimator input names the argument") {
  const mat logp = random_matrix(3, 4, -5, -0.1, 31), ref = random_matrix(3, 4, -5, -0.1, 32), mask = mat::Ones(3, 4);
  CHECK_THROWS_WITH_AS(kl_estimate(logp, mat(mat::Zero(3, 5)), mask),
                       doctest::Contains("'ref_logp' is [3, 5] but 'logp' is [3, 4]"), shape_error);
  CHECK_THROWS_WITH_AS(kl_estimate(logp, ref, mat(mat::Ones(2, 4))), doctest::Contains("'mask' is [2, 4]"),
                       shape_error);
  CHECK_THROWS_WITH_AS(kl_estimate(mat(0, 4), mat(0, 4), mat(0, 4)), doctest::Contains("empty batch"), shape_error);
  mat nan = logp;
  nan(2, 1) = std::nan("");
  CHECK_THROWS_WITH_AS(kl_estimate(nan, ref, mask),
                       doctest::Contains("'logp' holds 1 NaN or Inf value(s) where the mask is 1"), value_error);
  mat inf = ref;
  inf(0, 3) = INFINITY;
  CHECK_THROWS_WITH_AS(kl_estimate(logp, inf, mask), doctest::Contains("'ref_logp' holds 1 NaN or Inf"), value_error);
  mat half = mask;
  half(1, 1) = 0.5;
  CHECK_THROWS_WITH_AS(kl_estimate(logp, ref, half), doctest::Contains("'mask' holds 1 value(s) other than 0 or 1"),
                       value_error);
  CHECK_THROWS_WITH_AS(kl_estimate(logp, ref, mask, static_cast<KlEstimator>(3)), doctest::Contains("estimator"),
                       config_error);
  CHECK_THROWS_WITH_AS(kl_estimate(logp, ref, mask, {.clamp = -1}), doctest::Contains("clamp must be finite and >= 0"),
                       config_error);
  CHECK_THROWS_WITH_AS(kl_estimate(logp, ref, mask, {.aggregation = static_cast<Aggregation>(9)}),
                       doctest::Contains("aggregation must be"), config_error);
  CHECK_THROWS_AS(kl_estimate(logp, ref, mask, {.aggregation = Aggregation::token_sum}), config_error);
}

// ---- exact KL from logits --------------------------------------------------------------------------

TEST_CASE("exact kl: matches an explicit-softmax formula, is >= 0, and is 0 for identical logits") {
  const mat zp = random_matrix(5, 13, -4, 4, 41), zq = random_matrix(5, 13, -4, 4, 42);
  const vec mask = vec::Ones(5);
  const auto r = exact_kl_from_logits(zp, zq, mask);
  double mean = 0;
  for (Eigen::Index i = 0; i < 5; ++i) {
    const double want = reference_exact_kl(zp, zq, i);
    CHECK(r.per_row[i] == doctest::Approx(want).epsilon(1e-12));
    CHECK(r.per_row[i] > 0.0);
    mean += want / 5;
  }
  CHECK(r.mean == doctest::Approx(mean).epsilon(1e-12));

  const auto same = exact_kl_from_logits(zp, zp, mask);
  CHECK(same.mean == 0.0);
  CHECK(same.d_logits_p.cwiseAbs().maxCoeff() == 0.0);
  // Logits are defined up to a constant per row: shifting q's changes nothing.
  const mat shifted = zp.array() + 123.0;
  CHECK(std::abs(exact_kl_from_logits(zp, shifted, mask).mean) < 1e-12);
  CHECK(exact_kl_from_logits(zp, mat(zq.array() - 50.0), mask).mean == doctest::Approx(r.mean).epsilon(1e-12));

  // Non-negative over many random pairs, including nearly identical ones.
  for (std::uint64_t s = 0; s < 20; ++s) {
    const mat a = random_matrix(3, 50, -10, 10, 100 + s);
    const mat b = random_matrix(3, 50, -10, 10, 300 + s);
    CHECK(exact_kl_from_logits(a, b, vec(vec::Ones(3))).per_row.minCoeff() > 0.0);
    // Nearly equal rows: the true KL is ~1e-18, below double rounding; the result is tiny and never negative.
    const auto near = exact_kl_from_logits(a, mat(a + 1e-9 * random_matrix(3, 50, -1, 1, 200 + s)), vec(vec::Ones(3)));
    CHECK(near.per_row.minCoeff() >= 0.0);
    CHECK(near.per_row.maxCoeff() < 1e-14);
  }
}

TEST_CASE("exact kl: gradient matches finite differences; masked rows are skipped") {
  mat zp = random_matrix(4, 9, -3, 3, 51);
  const mat zq = random_matrix(4, 9, -3, 3, 52);
  vec mask = vec::Ones(4);
  mask[2] = 0;
  const auto r = exact_kl_from_logits(zp, zq, mask);
  const auto mean = [&] { return exact_kl_from_logits(zp, zq, mask).mean; };
  CHECK(max_relative_error(r.d_logits_p, numeric_gradient(mean, zp)) < 1e-8);
  CHECK(r.per_row[2] == 0.0);
  CHECK(r.d_logits_p.row(2).cwiseAbs().maxCoeff() == 0.0);
  CHECK(r.mean == doctest::Approx((r.per_row.sum()) / 3).epsilon(1e-14));
  // Each row's gradient sums to 0 (softmax logits are shift-invariant).
  for (Eigen::Index i = 0; i < 4; ++i) CHECK(std::abs(r.d_logits_p.row(i).sum()) < 1e-15);
  // Whatever a masked row holds, it is never read.
  mat dirty_p = zp, dirty_q = zq;
  dirty_p.row(2).setConstant(std::nan(""));
  dirty_q(2, 0) = INFINITY;
  const auto dirty = exact_kl_from_logits(dirty_p, dirty_q, mask);
  CHECK(dirty.mean == r.mean);
  CHECK(dirty.d_logits_p == r.d_logits_p);
}

TEST_CASE("exact kl: finite at extreme logits, in float") {
  using fmat = eigen<float>::matrix;
  using fvec = eigen<float>::vector;
  fmat zp = fmat::Zero(2, 1000), zq = fmat::Zero(2, 1000);
  zp(0, 0) = 1e4f;   // p is a point mass on token 0 ...
  zq(0, 0) = -1e4f;  // ... which q all but rules out: KL = −log q_0 = 1e4 + log 999
  zp(1, 5) = -1e4f;
  zq.row(1).setConstant(1e4f);
  zq(1, 7) = -1e4f;
  const auto r = exact_kl_from_logits(zp, zq, fvec(fvec::Ones(2)));
  CHECK(std::isfinite(r.mean));
  CHECK(all_finite(r.per_row));
  CHECK(all_finite(r.d_logits_p));
  CHECK(r.per_row[0] == doctest::Approx(1e4 + std::log(999.0)).epsilon(1e-5));
  CHECK(r.per_row[1] >= 0.0f);
}

TEST_CASE("exact kl: bad input names the argument") {
  const mat zp = random_matrix(3, 5, -2, 2, 61), zq = random_matrix(3, 5, -2, 2, 62);
  const vec mask = vec::Ones(3);
  CHECK_THROWS_WITH_AS(exact_kl_from_logits(zp, mat(mat::Zero(3, 4)), mask),
                       doctest::Contains("'logits_q' is [3, 4] but 'logits_p' is [3, 5]"), shape_error);
  CHECK_THROWS_WITH_AS(exact_kl_from_logits(zp, zq, vec(vec::Ones(2))), doctest::Contains("'mask' has 2 elements"),
                       shape_error);
  CHECK_THROWS_WITH_AS(exact_kl_from_logits(mat(0, 5), mat(0, 5), vec()), doctest::Contains("empty batch"),
                       shape_error);
  CHECK_THROWS_WITH_AS(exact_kl_from_logits(mat(3, 0), mat(3, 0), mask), doctest::Contains("0 columns"), shape_error);
  mat nan = zq;
  nan(1, 1) = std::nan("");
  CHECK_THROWS_WITH_AS(exact_kl_from_logits(zp, nan, mask), doctest::Contains("'logits_q' holds 1 NaN or Inf"),
                       value_error);
  CHECK_THROWS_WITH_AS(exact_kl_from_logits(zp, zq, vec(vec::Zero(3))),
                       doctest::Contains("'mask' selects none of the 3 rows"), value_error);
  vec two = mask;
  two[0] = 2;
  CHECK_THROWS_WITH_AS(exact_kl_from_logits(zp, zq, two), doctest::Contains("other than 0 or 1"), value_error);
}

// ---- the estimators against the exact KL, by Monte Carlo --------------------------------------------

TEST_CASE("kl: k1 and k3 are unbiased estimates of the exact KL for samples drawn from p; k2 is not") {
  // Two fixed distributions over 6 tokens, far enough apart that k2's bias is visible.
  const std::vector<double> zp = {1.5, 0.2, -0.7, 0.9, -1.8, 0.0}, zq = {-0.5, 1.1, 0.4, -1.2, 0.8, 0.3};
  const auto p = softmax(zp), q = softmax(zq);
  mat logits_p(1, 6), logits_q(1, 6);
  for (int v = 0; v < 6; ++v) logits_p(0, v) = zp[v], logits_q(0, v) = zq[v];
  const double kl = exact_kl_from_logits(logits_p, logits_q, vec(vec::Ones(1))).mean;

  // Exact mean and standard deviation of each estimator under p, to size the tolerance.
  const auto moments = [&](KlEstimator k) {
    double m = 0, m2 = 0;
    for (int v = 0; v < 6; ++v) {
      const double x = reference_k(k, std::log(p[v]), std::log(q[v]));
      m += p[v] * x;
      m2 += p[v] * x * x;
    }
    return std::pair{m, std::sqrt(m2 - m * m)};
  };
  CHECK(moments(KlEstimator::k1).first == doctest::Approx(kl).epsilon(1e-12));  // E_p[k1] = KL exactly
  CHECK(moments(KlEstimator::k3).first == doctest::Approx(kl).epsilon(1e-12));  // E_p[k3] = KL exactly

  // N samples from p, one per row: kl_estimate's mean is then the sample mean of k.
  constexpr int N = 200000;
  Rng rng(2024);
  mat logp(N, 1), ref(N, 1);
  for (int i = 0; i < N; ++i) {
    const std::size_t x = rng.categorical(p, 6);
    logp(i, 0) = std::log(p[x]);
    ref(i, 0) = std::log(q[x]);
  }
  const mat mask = mat::Ones(N, 1);
  // The sample mean is within 4 standard errors (σ/√N) of its expectation but for a ~6e-5 chance; the
  // seed is fixed, so the test is deterministic. At N = 2e5 that band is a few percent of the KL.
  for (const auto k : {KlEstimator::k1, KlEstimator::k3}) {
    const double tolerance = 4 * moments(k).second / std::sqrt(double(N));
    CAPTURE(static_cast<int>(k));
    CHECK(tolerance < 0.05 * kl);
    CHECK(std::abs(kl_estimate(logp, ref, mask, k).mean - kl) < tolerance);
  }
  // The same check tells a biased estimator: k2's sample mean lands on E_p[k2], far outside the KL's band.
  const auto [k2_mean, k2_sigma] = moments(KlEstimator::k2);
  const double k2_tolerance = 4 * k2_sigma / std::sqrt(double(N));
  const double k2_estimate = kl_estimate(logp, ref, mask, KlEstimator::k2).mean;
  CHECK(std::abs(k2_estimate - k2_mean) < k2_tolerance);
  CHECK(std::abs(k2_estimate - kl) > 10 * k2_tolerance);
}

TEST_CASE("kl: log-ratios past float's range are a named error, never Inf, NaN or a silent 0") {
  using fm = eigen<float>::matrix;
  using fv = eigen<float>::vector;
  fm logp(1, 2), ref(1, 2);
  logp << 3e38f, -1.f;
  ref << -3e38f, -1.f;  // r = −6e38 on the first token
  for (const auto e : {KlEstimator::k1, KlEstimator::k2, KlEstimator::k3})
    CHECK_THROWS_WITH_AS(kl_estimate(logp, ref, fm(fm::Ones(1, 2)), e), doctest::Contains("'ref_logp' − 'logp'"),
                         value_error);
  // k3 of a huge positive r is capped: finite.
  const auto capped = kl_estimate(ref, logp, fm(fm::Ones(1, 2)), KlEstimator::k3);
  CHECK(std::isfinite(capped.mean));
  // The exact KL of two rows 6e38 apart is no float (it used to come back as 0).
  fm zp(1, 3), zq(1, 3);
  zp << 3e38f, -3e38f, 0;
  zq << -3e38f, 3e38f, 0;
  CHECK_THROWS_WITH_AS(exact_kl_from_logits(zp, zq, fv(fv::Ones(1))), doctest::Contains("'logits_p'"), value_error);
}
