#include "rlhf/losses/gae.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "support/gradcheck.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

using fmat = eigen<float>::matrix;

// A [B, T] mask with row b's response at [start[b], start[b] + length[b]).
mat response_mask(std::size_t T, const std::vector<std::size_t>& start, const std::vector<std::size_t>& length) {
  mat m = mat::Zero(static_cast<Eigen::Index>(start.size()), static_cast<Eigen::Index>(T));
  for (std::size_t b = 0; b < start.size(); ++b)
    for (std::size_t t = start[b]; t < start[b] + length[b]; ++t) m(b, t) = 1;
  return m;
}

// The masked entries of row b, in order.
std::vector<double> response_of(const mat& x, const mat& mask, Eigen::Index b) {
  std::vector<double> out;
  for (Eigen::Index t = 0; t < x.cols(); ++t)
    if (mask(b, t) == 1) out.push_back(x(b, t));
  return out;
}

// GAE by the direct sum A_t = Σ_l (γλ)^l δ_{t+l}, on one response (no recursion).
std::vector<double> direct_advantages(const std::vector<double>& r, const std::vector<double>& v, double gamma,
                                      double lambda) {
  const std::size_t L = r.size();
  std::vector<double> delta(L), a(L, 0.0);
  for (std::size_t t = 0; t < L; ++t) delta[t] = r[t] + gamma * (t + 1 < L ? v[t + 1] : 0.0) - v[t];
  for (std::size_t t = 0; t < L; ++t)
    for (std::size_t k = t; k < L; ++k) a[t] += std::pow(gamma * lambda, static_cast<double>(k - t)) * delta[k];
  return a;
}

// Rows 0..3: right-padded, left-padded, full, one token in the middle.
const std::vector<std::size_t> starts{2, 4, 0, 3}, lengths{4, 3, 7, 1};
constexpr std::size_t T = 7;

}  // namespace

TEST_CASE("kl_penalized_rewards: k1 penalty on every response token, score on the last one") {
  const mat mask = response_mask(T, starts, lengths);
  const mat logp = random_matrix(4, T, -6, -0.1, 1), ref = random_matrix(4, T, -6, -0.1, 2);
  const vec scores = random_vector(4, -3, 3, 3);
  const float kl = 0.05f;
  const mat r = kl_penalized_rewards(scores, logp, ref, mask, kl);
  for (Eigen::Index b = 0; b < 4; ++b) {
    const std::size_t last = starts[b] + lengths[b] - 1;
    for (Eigen::Index t = 0; t < static_cast<Eigen::Index>(T); ++t) {
      double want = 0;
      if (mask(b, t) == 1) want = -double(kl) * logp(b, t) + double(kl) * ref(b, t);
      if (static_cast<std::size_t>(t) == last) want += scores[b];
      CHECK(r(b, t) == doctest::Approx(want).epsilon(1e-12));
    }
  }
}

TEST_CASE("kl_penalized_rewards: padding never holds a reward, whatever the log-probs there") {
  const mat mask = response_mask(T, starts, lengths);
  mat logp = random_matrix(4, T, -6, -0.1, 4), ref = random_matrix(4, T, -6, -0.1, 5);
  for (Eigen::Index i = 0; i < mask.size(); ++i)
    if (mask.data()[i] == 0) logp.data()[i] = i % 2 ? -INFINITY : NAN;  // junk where the policy did not score
  const mat r = kl_penalized_rewards(vec(vec::Constant(4, 7.0)), logp, ref, mask, 0.1f);
  for (Eigen::Index i = 0; i < mask.size(); ++i)
    if (mask.data()[i] == 0) CHECK(r.data()[i] == 0.0);
  // The score sits on the last real token: row 0 ends at t = 5 (right padding after it), row 1 at t = 6.
  CHECK(r(0, 5) == doctest::Approx(7.0 - 0.1 * (logp(0, 5) - ref(0, 5))).epsilon(1e-6));
  CHECK(r(1, 6) == doctest::Approx(7.0 - 0.1 * (logp(1, 6) - ref(1, 6))).epsilon(1e-6));
  CHECK(r(3, 3) == doctest::Approx(7.0 - 0.1 * (logp(3, 3) - ref(3, 3))).epsilon(1e-6));
}

TEST_CASE("gae: matches the direct sum of discounted TD errors") {
  const mat mask = response_mask(T, starts, lengths);
  const mat rewards = random_matrix(4, T, -1, 1, 6), values = random_matrix(4, T, -2, 2, 7);
  for (const GaeConfig c :
       {GaeConfig{}, GaeConfig{.gamma = 0.9f, .lambda = 0.8f}, GaeConfig{.gamma = 1.f, .lambda = 1.f},
        GaeConfig{.gamma = 0.99f, .lambda = 0.f}, GaeConfig{.gamma = 0.f, .lambda = 0.5f}}) {
    const auto g = gae(rewards, values, mask, c);
    for (Eigen::Index b = 0; b < 4; ++b) {
      const auto want =
          direct_advantages(response_of(rewards, mask, b), response_of(values, mask, b), c.gamma, c.lambda);
      const auto adv = response_of(g.advantages, mask, b), ret = response_of(g.returns, mask, b);
      const auto v = response_of(values, mask, b);
      REQUIRE(adv.size() == want.size());
      for (std::size_t t = 0; t < want.size(); ++t) {
        CHECK(adv[t] == doctest::Approx(want[t]).epsilon(1e-12));
        CHECK(ret[t] == doctest::Approx(want[t] + v[t]).epsilon(1e-12));
      }
    }
    for (Eigen::Index i = 0; i < mask.size(); ++i)
      if (mask.data()[i] == 0) CHECK((g.advantages.data()[i] == 0.0 && g.returns.data()[i] == 0.0));
  }
}

TEST_CASE("gae: gamma = lambda = 1 gives Monte-Carlo returns; lambda = 0 gives one-step TD errors") {
  mat rewards(1, 4), values(1, 4), mask(1, 4);
  rewards << 0.5, -1.0, 2.0, 3.0;
  values << 1.0, 2.0, -1.0, 0.5;
  mask << 1, 1, 1, 1;
  const auto mc = gae(rewards, values, mask, {.gamma = 1.f, .lambda = 1.f});
  const double to_go[] = {4.5, 4.0, 5.0, 3.0};
  for (int t = 0; t < 4; ++t) {
    CHECK(mc.returns(0, t) == doctest::Approx(to_go[t]));
    CHECK(mc.advantages(0, t) == doctest::Approx(to_go[t] - values(0, t)));
  }
  const auto td = gae(rewards, values, mask, {.gamma = 0.5f, .lambda = 0.f});
  CHECK(td.advantages(0, 0) == doctest::Approx(0.5 + 0.5 * 2.0 - 1.0));
  CHECK(td.advantages(0, 2) == doctest::Approx(2.0 + 0.5 * 0.5 + 1.0));
  CHECK(td.advantages(0, 3) == doctest::Approx(3.0 - 0.5));  // terminal: no bootstrap
}

TEST_CASE("kl_penalized_rewards and gae: left and right padding give the same numbers, row by row") {
  // The same three responses placed right-padded (after a 2-token prompt) and left-padded (ending at T − 1).
  const std::vector<std::size_t> len{3, 5, 1};
  const mat right_mask = response_mask(T, {2, 2, 2}, len), left_mask = response_mask(T, {4, 2, 6}, len);
  const mat lp = random_matrix(3, 5, -5, -0.5, 8), rf = random_matrix(3, 5, -5, -0.5, 9);
  const mat vals = random_matrix(3, 5, -1, 1, 10);
  const vec scores = random_vector(3, -2, 2, 11);
  const auto place = [&](const mat& seq, const mat& mask) {  // seq[b, 0..L) onto the masked positions
    mat out = mat::Constant(3, T, -99.0);                    // junk everywhere else
    for (Eigen::Index b = 0; b < 3; ++b)
      for (Eigen::Index t = 0, k = 0; t < static_cast<Eigen::Index>(T); ++t)
        if (mask(b, t) == 1) out(b, t) = seq(b, k++);
    return out;
  };
  const GaeConfig c{.gamma = 0.97f, .lambda = 0.9f};
  const mat r_right = kl_penalized_rewards(scores, place(lp, right_mask), place(rf, right_mask), right_mask, 0.2f);
  const mat r_left = kl_penalized_rewards(scores, place(lp, left_mask), place(rf, left_mask), left_mask, 0.2f);
  const auto g_right = gae(r_right, place(vals, right_mask), right_mask, c);
  const auto g_left = gae(r_left, place(vals, left_mask), left_mask, c);
  for (Eigen::Index b = 0; b < 3; ++b) {
    CHECK(response_of(r_right, right_mask, b) == response_of(r_left, left_mask, b));
    CHECK(response_of(g_right.advantages, right_mask, b) == response_of(g_left.advantages, left_mask, b));
    CHECK(response_of(g_right.returns, right_mask, b) == response_of(g_left.returns, left_mask, b));
    CHECK(response_of(r_left, left_mask, b).back() ==
          doctest::Approx(scores[b] - 0.2 * (lp(b, len[b] - 1) - rf(b, len[b] - 1))).epsilon(1e-6));
  }
  // Running each row on its own gives the same numbers as the batch.
  for (Eigen::Index b = 0; b < 3; ++b) {
    const mat m = left_mask.row(b), r = r_left.row(b), v = place(vals, left_mask).row(b);
    const auto alone = gae(r, v, m, c);
    CHECK(alone.advantages.row(0) == g_left.advantages.row(b));
  }
}

TEST_CASE("whiten: mean 0 and unbiased variance 1 over the masked entries") {
  const mat mask = response_mask(T, starts, lengths);
  mat x = random_matrix(4, T, -3, 8, 12);
  for (Eigen::Index i = 0; i < mask.size(); ++i)
    if (mask.data()[i] == 0) x.data()[i] = i % 2 ? 1e6 : NAN;  // must not leak into the statistics
  const auto moments = [&](const mat& y) {
    double n = 0, s = 0, ss = 0;
    for (Eigen::Index i = 0; i < y.size(); ++i)
      if (mask.data()[i] == 1) n += 1, s += y.data()[i];
    for (Eigen::Index i = 0; i < y.size(); ++i)
      if (mask.data()[i] == 1) ss += (y.data()[i] - s / n) * (y.data()[i] - s / n);
    return std::pair{s / n, ss / (n - 1)};
  };
  const auto [mx, vx] = moments(x);
  const mat w = whiten(x, mask);
  const auto [mw, vw] = moments(w);
  CHECK(mw == doctest::Approx(0.0).epsilon(1e-12));
  CHECK(vw == doctest::Approx(vx / (vx + 1e-8)).epsilon(1e-12));
  CHECK(vw == doctest::Approx(1.0).epsilon(1e-8));
  for (Eigen::Index i = 0; i < mask.size(); ++i) {
    if (mask.data()[i] == 0)
      CHECK(w.data()[i] == 0.0);
    else
      CHECK(w.data()[i] == doctest::Approx((x.data()[i] - mx) / std::sqrt(vx + 1e-8)).epsilon(1e-12));
  }
  const mat kept = whiten(x, mask, false);  // rescaled, mean kept
  const auto [mk, vk] = moments(kept);
  CHECK(mk == doctest::Approx(mx).epsilon(1e-12));
  CHECK(vk == doctest::Approx(1.0).epsilon(1e-8));
  // Two entries {3, 5}: mean 4, unbiased variance (1 + 1) / (2 − 1) = 2, so ∓1/√2 (the biased one would give ∓1).
  mat two(1, 3), two_mask(1, 3);
  two << 3.0, 5.0, 100.0;
  two_mask << 1, 1, 0;
  const mat w2 = whiten(two, two_mask);
  CHECK(w2(0, 0) == doctest::Approx(-1.0 / std::sqrt(2 + 1e-8)).epsilon(1e-12));
  CHECK(w2(0, 1) == doctest::Approx(1.0 / std::sqrt(2 + 1e-8)).epsilon(1e-12));
  CHECK(w2(0, 2) == 0.0);
}

TEST_CASE("kl_penalized_rewards and gae: a row with no response token gets zeros and changes no other row") {
  const mat mask = response_mask(T, starts, lengths);
  mat with_empty = mask;
  with_empty.row(2).setZero();
  const mat logp = random_matrix(4, T, -6, -0.1, 21), ref = random_matrix(4, T, -6, -0.1, 22);
  const mat values = random_matrix(4, T, -1, 1, 23);
  const vec scores = random_vector(4, -3, 3, 24);
  const mat r_all = kl_penalized_rewards(scores, logp, ref, mask, 0.1),
            r = kl_penalized_rewards(scores, logp, ref, with_empty, 0.1);
  const auto g_all = gae(r_all, values, mask), g = gae(r, values, with_empty);
  CHECK(r.row(2).isZero(0));  // the score of row 2 has no token to land on
  CHECK(g.advantages.row(2).isZero(0));
  CHECK(g.returns.row(2).isZero(0));
  for (const Eigen::Index b : {0, 1, 3}) {
    CHECK(r.row(b) == r_all.row(b));
    CHECK(g.advantages.row(b) == g_all.advantages.row(b));
  }
  const mat nothing = mat::Zero(4, T);  // a batch of empty responses
  CHECK(kl_penalized_rewards(scores, logp, ref, nothing, 0.1).isZero(0));
  CHECK(gae(r, values, nothing).returns.isZero(0));
}

TEST_CASE("kl_penalized_rewards: the KL estimate is selectable (k1, k2, k3) and clampable per token (OpenRLHF)") {
  mat logp(1, 4), ref(1, 4), mask = mat::Ones(1, 4);
  logp << -1.0, -2.0, -30.0, -0.5;
  ref << -1.5, -1.0, -1.0, -20.0;
  const vec score = vec::Constant(1, 2.0);
  const double kappa = 0.1;
  for (const auto k : {KlEstimator::k1, KlEstimator::k2, KlEstimator::k3})
    for (const double clamp : {0.0, 10.0}) {
      const mat r = kl_penalized_rewards(score, logp, ref, mask, kappa, {.estimator = k, .clamp = clamp});
      for (Eigen::Index t = 0; t < 4; ++t) {
        const double lr = ref(0, t) - logp(0, t);  // log π_ref − log π
        double est = k == KlEstimator::k1 ? -lr : k == KlEstimator::k2 ? 0.5 * lr * lr : std::exp(lr) - 1 - lr;
        if (clamp > 0) est = std::min(std::max(est, -clamp), clamp);
        const double want = -kappa * est + (t == 3 ? 2.0 : 0.0);
        CHECK(r(0, t) == doctest::Approx(want).epsilon(1e-13));
      }
    }
}

TEST_CASE("whiten: OpenRLHF's form (variance over n, 1 / sqrt(max(var, eps)), padding transformed); the statistics") {
  const mat mask = response_mask(T, starts, lengths);
  const mat x = random_matrix(4, T, -3, 8, 25);
  double n = 0, s = 0;
  for (Eigen::Index i = 0; i < x.size(); ++i)
    if (mask.data()[i] == 1) n += 1, s += x.data()[i];
  const double mean = s / n;
  double ss = 0;
  for (Eigen::Index i = 0; i < x.size(); ++i)
    if (mask.data()[i] == 1) ss += (x.data()[i] - mean) * (x.data()[i] - mean);
  const WhitenConfig open_rlhf{.unbiased = false, .eps_as_floor = true, .zero_outside_mask = false};
  const auto stats = whiten_stats(x, mask, open_rlhf);
  CHECK(stats.count == n);
  CHECK(stats.mean == doctest::Approx(mean).epsilon(1e-14));
  CHECK(stats.variance == doctest::Approx(ss / n).epsilon(1e-13));
  CHECK(stats.inv_std == doctest::Approx(1 / std::sqrt(ss / n)).epsilon(1e-13));
  CHECK(whiten_stats(x, mask).variance == doctest::Approx(ss / (n - 1)).epsilon(1e-13));
  const mat w = whiten(x, mask, open_rlhf);
  for (Eigen::Index i = 0; i < x.size(); ++i)  // every entry, masked or not
    CHECK(w.data()[i] == doctest::Approx((x.data()[i] - mean) / std::sqrt(ss / n)).epsilon(1e-12));
  // A spread below eps: the floor gives (x − mean) / sqrt(eps), the sum (x − mean) / sqrt(var + eps).
  mat tiny(1, 2), both = mat::Ones(1, 2);
  tiny << 1.0, 1.0 + 2e-5;  // biased variance 1e-10
  const double d = -1e-5;
  CHECK(whiten(tiny, both, {.unbiased = false, .eps_as_floor = true})(0, 0) == doctest::Approx(d / 1e-4).epsilon(1e-6));
  CHECK(whiten(tiny, both, {.unbiased = false})(0, 0) == doctest::Approx(d / std::sqrt(1e-10 + 1e-8)).epsilon(1e-6));
}

TEST_CASE("rewards, gae and whiten stay finite at extreme inputs, in float") {
  fmat mask = response_mask(T, starts, lengths).cast<float>();
  fmat logp = fmat::Constant(4, T, -1e4f), ref = fmat::Constant(4, T, -1e4f);
  logp.row(0).setConstant(0.f);  // log-ratio +1e4
  ref.row(1).setConstant(0.f);   // log-ratio −1e4
  const eigen<float>::vector scores = eigen<float>::vector::Constant(4, 1e4f);
  const fmat r = kl_penalized_rewards(scores, logp, ref, mask, 1.0f);
  CHECK(all_finite(r));
  CHECK(r(0, 5) == doctest::Approx(0.0));  // 1e4 − 1·1e4
  const auto g = gae(r, fmat(fmat::Constant(4, T, -1e4f)), mask, {.gamma = 1.f, .lambda = 1.f});
  CHECK(all_finite(g.advantages));
  CHECK(all_finite(g.returns));
  CHECK(all_finite(whiten(g.advantages, mask)));
  const fmat flat = fmat::Constant(4, T, 3.f);  // zero variance: 0, not NaN
  const fmat w = whiten(flat, mask);
  CHECK(all_finite(w));
  CHECK(w.cwiseAbs().maxCoeff() == 0.f);
}

TEST_CASE("rewards, gae and whiten: bad input names the argument") {
  const mat mask = response_mask(T, starts, lengths);
  const mat x = random_matrix(4, T, -2, -1, 13);
  const vec scores = vec::Ones(4);
  // kl_penalized_rewards
  CHECK_THROWS_WITH_AS(kl_penalized_rewards(vec(vec::Ones(3)), x, x, mask, 0.1f),
                       doctest::Contains("'scores' has 3 elements"), shape_error);
  CHECK_THROWS_WITH_AS(kl_penalized_rewards(scores, x, mat(mat::Zero(4, 6)), mask, 0.1f),
                       doctest::Contains("'ref_logp' is [4, 6] but 'logp' is [4, 7]"), shape_error);
  CHECK_THROWS_WITH_AS(kl_penalized_rewards(scores, x, x, mat(mat::Ones(3, 7)), 0.1f),
                       doctest::Contains("'mask' is [3, 7]"), shape_error);
  mat nan = x;
  nan(2, 3) = std::nan("");
  CHECK_THROWS_WITH_AS(kl_penalized_rewards(scores, nan, x, mask, 0.1f), doctest::Contains("'logp' holds 1 NaN or Inf"),
                       value_error);
  vec inf_scores = scores;
  inf_scores[1] = -INFINITY;
  CHECK_THROWS_WITH_AS(kl_penalized_rewards(inf_scores, x, x, mask, 0.1f),
                       doctest::Contains("'scores' holds 1 NaN or Inf"), value_error);
  CHECK_THROWS_WITH_AS(kl_penalized_rewards(vec(), mat(), mat(), mat(), 0.1f), doctest::Contains("empty batch"),
                       shape_error);
  CHECK_THROWS_WITH_AS(kl_penalized_rewards(scores, x, x, mask, -0.1f),
                       doctest::Contains("kl_coef must be >= 0 (got -0.1)"), config_error);
  CHECK_THROWS_AS(kl_penalized_rewards(scores, x, x, mask, NAN), config_error);
  mat fuzzy = mask;
  fuzzy(0, 3) = 0.5;
  CHECK_THROWS_WITH_AS(kl_penalized_rewards(scores, x, x, fuzzy, 0.1f), doctest::Contains("other than 0 or 1"),
                       value_error);
  // gae
  CHECK_THROWS_WITH_AS(gae(x, mat(mat::Zero(4, 8)), mask), doctest::Contains("'values' is [4, 8] but 'rewards' is [4, 7]"),
                       shape_error);
  CHECK_THROWS_WITH_AS(gae(x, nan, mask), doctest::Contains("'values' holds 1 NaN"), value_error);
  CHECK_THROWS_WITH_AS(gae(mat(), mat(), mat()), doctest::Contains("empty batch"), shape_error);
  mat gapped = mask;
  gapped(2, 3) = 0;  // row 2 covers the whole row; a hole in the middle
  CHECK_THROWS_WITH_AS(gae(x, x, gapped), doctest::Contains("not contiguous"), value_error);
  CHECK_THROWS_WITH_AS(gae(x, x, mask, {.gamma = 1.01f}), doctest::Contains("gamma must be in [0, 1]"), config_error);
  CHECK_THROWS_WITH_AS(gae(x, x, mask, {.gamma = -0.1f}), doctest::Contains("gamma"), config_error);
  CHECK_THROWS_WITH_AS(gae(x, x, mask, {.lambda = -0.5f}), doctest::Contains("lambda must be in [0, 1]"), config_error);
  CHECK_THROWS_WITH_AS(gae(x, x, mask, {.lambda = 2.f}), doctest::Contains("lambda"), config_error);
  CHECK_THROWS_AS(gae(x, x, mask, {.lambda = NAN}), config_error);
  CHECK_THROWS_WITH_AS(gae(x, x, mask, {.gamma = NAN}), doctest::Contains("gamma"), config_error);
  // whiten
  CHECK_THROWS_WITH_AS(whiten(x, mat(mat::Ones(4, 2))), doctest::Contains("'mask' is [4, 2] but 'x' is [4, 7]"), shape_error);
  CHECK_THROWS_WITH_AS(whiten(nan, mask), doctest::Contains("'x' holds 1 NaN"), value_error);
  CHECK_THROWS_WITH_AS(whiten(mat(), mat()), doctest::Contains("empty batch"), shape_error);
  mat single = mat::Zero(4, 7);
  single(1, 1) = 1;
  CHECK_THROWS_WITH_AS(whiten(x, single),
                       doctest::Contains("selects 1 entries; the unbiased variance needs at least 2"), value_error);
  CHECK(whiten_stats(x, single, {.unbiased = false}).variance == 0.0);  // n: one entry is enough
  CHECK_THROWS_WITH_AS(whiten(x, mat(mat::Zero(4, 7)), {.unbiased = false}),
                       doctest::Contains("selects 0 entries; the variance needs at least 1"), value_error);
  CHECK_THROWS_WITH_AS(whiten(x, mask, {.eps = 0}), doctest::Contains("eps must be finite and > 0"), config_error);
  mat padded_nan = x;
  padded_nan(0, 0) = NAN;  // under a 0 of the mask: read only when the padding is transformed too
  CHECK(all_finite(whiten(padded_nan, mask)));
  CHECK_THROWS_WITH_AS(whiten(padded_nan, mask, {.zero_outside_mask = false}), doctest::Contains("'x' holds 1 NaN"),
                       value_error);
  CHECK_THROWS_WITH_AS(kl_penalized_rewards(scores, x, x, mask, 0.1, {.clamp = -1}),
                       doctest::Contains("clamp must be finite and >= 0"), config_error);
  CHECK_THROWS_WITH_AS(whiten(x, fuzzy), doctest::Contains("other than 0 or 1"), value_error);
}

TEST_CASE("rewards, gae and whiten: inputs of ±3e38 in float give finite values, or a named error") {
  using fm = eigen<float>::matrix;
  using fv = eigen<float>::vector;
  const float H = 3e38f;
  const fm ones = fm::Ones(1, 2);
  fm logp(1, 2), ref(1, 2);
  logp << H, -1.f;
  ref << -H, -1.f;
  const fm rewards = kl_penalized_rewards(fv(fv::Zero(1)), logp, ref, ones, 0.1f);  // −0.1 · 6e38
  CHECK(rewards(0, 0) == doctest::Approx(-6e37).epsilon(1e-6));
  CHECK_THROWS_WITH_AS(kl_penalized_rewards(fv(fv::Zero(1)), logp, ref, ones, 1.0f), doctest::Contains("'logp'"),
                       value_error);
  // r_0 + γ V_1 = 6e38 is past float on the way; the advantages and returns themselves fit.
  fm r(1, 2), v(1, 2);
  r << H, 0;
  v << H, H;
  const auto g = gae(r, v, ones, {.gamma = 1.0f, .lambda = 0.95f});
  CHECK(g.advantages(0, 0) == doctest::Approx(0.05 * 3e38).epsilon(1e-5));
  CHECK(g.advantages(0, 1) == doctest::Approx(-3e38).epsilon(1e-6));
  CHECK(g.returns(0, 0) == doctest::Approx(1.05 * 3e38).epsilon(1e-5));
  v << -H, H;  // δ_0 = 3e38 + 3e38 + 3e38: the advantage itself is past float
  CHECK_THROWS_WITH_AS(gae(r, v, ones, {.gamma = 1.0f, .lambda = 0.95f}), doctest::Contains("'rewards'"), value_error);
  // x − mean of ±3e38: past float on the way, finite standardised values.
  fm x(1, 3);
  x << H, H, -H;
  const fm w = whiten(x, fm(fm::Ones(1, 3)));
  const double sd = std::sqrt((2 * 4e76 + 16e76) / 2);  // deviations 2e38, 2e38, −4e38 from the mean 1e38
  CHECK(w(0, 0) == doctest::Approx(2e38 / sd).epsilon(1e-5));
  CHECK(w(0, 2) == doctest::Approx(-4e38 / sd).epsilon(1e-5));
}
