#include "rlhf/losses/listwise_dpo.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "rlhf/losses/dpo.hpp"
#include "support/gradcheck.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

// The listwise likelihood written out with plain loops: stage k picks response k among k..n−1.
double reference_row_loss(const ListwiseDpoConfig& c, const double* policy, const double* reference, std::size_t n) {
  const std::size_t stages = c.top_k == 0 ? n - 1 : std::min(c.top_k, n - 1);
  const auto reward = [&](std::size_t j) {
    return static_cast<double>(c.beta) * (policy[j] - (c.reference_free ? 0.0 : reference[j]));
  };
  double loss = 0;
  for (std::size_t k = 0; k < stages; ++k) {
    double rest = 0;
    for (std::size_t j = k; j < n; ++j) rest += std::exp(reward(j) - reward(k));
    loss += std::log(rest);  // −log(e^{r_k} / Σ_{j≥k} e^{r_j})
  }
  return loss;
}

const ListwiseDpoConfig configs[] = {
    {},
    {.beta = 0.5f},
    {.beta = 0.05f, .top_k = 1},
    {.beta = 0.3f, .top_k = 2},
    {.beta = 0.2f, .reference_free = true},
};

}  // namespace

TEST_CASE("listwise_dpo: values match the listwise likelihood written out") {
  const std::size_t B = 6, K = 5;
  const mat policy = random_matrix(B, K, -40, -5, 1), reference = random_matrix(B, K, -40, -5, 2);
  const vec len = (vec(B) << 5, 2, 3, 4, 5, 2).finished();
  for (const auto& c : configs) {
    for (const bool ragged : {false, true}) {
      const auto r = listwise_dpo_loss(policy, reference, ragged ? len : vec(), c);
      double mean = 0;
      for (std::size_t b = 0; b < B; ++b) {
        const double want = reference_row_loss(c, policy.data() + b * K, reference.data() + b * K,
                                               ragged ? static_cast<std::size_t>(len[b]) : K);
        CHECK(r.losses[b] == doctest::Approx(want).epsilon(1e-12));
        mean += want / B;
      }
      CHECK(r.loss == doctest::Approx(mean).epsilon(1e-12));
    }
  }
}

TEST_CASE("listwise_dpo: K = 2 is sigmoid DPO, values, gradients and metrics") {
  const std::size_t B = 7;
  const mat policy = random_matrix(B, 2, -30, -5, 11), reference = random_matrix(B, 2, -30, -5, 12);
  const PreferencePairs<vec> pairs{policy.col(0), policy.col(1), reference.col(0), reference.col(1)};
  for (const float beta : {0.1f, 0.7f}) {
    for (const bool reference_free : {false, true}) {
      const auto l = listwise_dpo_loss(policy, reference, vec(), {.beta = beta, .reference_free = reference_free});
      const auto d = dpo_loss(pairs, {.beta = beta, .reference_free = reference_free});
      CHECK(l.loss == doctest::Approx(d.loss).epsilon(1e-13));
      for (std::size_t b = 0; b < B; ++b) {
        CHECK(l.losses[b] == doctest::Approx(d.losses[b]).epsilon(1e-13));
        CHECK(l.d_policy(b, 0) == doctest::Approx(d.d_policy_chosen[b]).epsilon(1e-13));
        CHECK(l.d_policy(b, 1) == doctest::Approx(d.d_policy_rejected[b]).epsilon(1e-13));
        CHECK(l.d_reference(b, 0) == doctest::Approx(d.d_reference_chosen[b]).epsilon(1e-13));
        CHECK(l.d_reference(b, 1) == doctest::Approx(d.d_reference_rejected[b]).epsilon(1e-13));
      }
      for (const char* name : {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                               "logps/chosen", "logps/rejected"})
        CHECK(l.metrics[name] == doctest::Approx(d.metrics[name]).epsilon(1e-13));
    }
  }
}

TEST_CASE("listwise_dpo: is Plackett–Luce on the implicit rewards") {
  const mat policy = random_matrix(4, 6, -20, -1, 5), reference = random_matrix(4, 6, -20, -1, 6);
  const vec len = (vec(4) << 6, 3, 2, 5).finished();
  const ListwiseDpoConfig c{.beta = 0.4f, .top_k = 3};
  const auto l = listwise_dpo_loss(policy, reference, len, c);
  const mat rewards = static_cast<double>(c.beta) * (policy - reference);
  const auto pl = plackett_luce_loss(rewards, len, {.top_k = 3});
  CHECK(l.loss == doctest::Approx(pl.loss).epsilon(1e-13));
  const mat want = static_cast<double>(c.beta) * pl.d_scores;
  CHECK((l.d_policy - want).cwiseAbs().maxCoeff() < 1e-14);
  CHECK((l.d_reference + want).cwiseAbs().maxCoeff() < 1e-14);
}

TEST_CASE("listwise_dpo: metrics at a hand-computed point") {
  // β = 0.5; log-ratios (row 0) 4, 2, −2 and (row 1) 0, 2, 0 with only 2 ranked.
  const mat policy = (mat(2, 3) << -6, -8, -12, -10, -8, -99).finished();
  const mat reference = mat::Constant(2, 3, -10);
  const auto r = listwise_dpo_loss(policy, reference, (vec(2) << 3, 2).finished(), {.beta = 0.5f});
  CHECK(r.metrics["rewards/chosen"] == doctest::Approx((2.0 + 0.0) / 2));
  CHECK(r.metrics["rewards/rejected"] == doctest::Approx((-1.0 + 1.0) / 2));
  CHECK(r.metrics["rewards/margins"] == doctest::Approx((3.0 - 1.0) / 2));
  CHECK(r.metrics["rewards/accuracies"] == 0.5);  // row 0 orders its top pair, row 1 does not
  CHECK(r.metrics["logps/chosen"] == doctest::Approx(-8.0));
  CHECK(r.metrics["logps/rejected"] == doctest::Approx(-10.0));
  // row 0: log(1 + e^{−1} + e^{−3}) + log(1 + e^{−2}); row 1: log(1 + e^{1})
  const double want0 = std::log(1 + std::exp(-1.0) + std::exp(-3.0)) + std::log(1 + std::exp(-2.0));
  const double want1 = std::log(1 + std::exp(1.0));
  CHECK(r.loss == doctest::Approx((want0 + want1) / 2).epsilon(1e-12));
}

TEST_CASE("listwise_dpo: rewards/accuracies counts a tie of the top pair as wrong") {
  // Implicit rewards (β = 0.5, reference −10): row 0 (1, 1, −1) a tie, row 1 (1, 0, 2) a win, row 2 (0, 1, 0) a loss.
  const mat policy = (mat(3, 3) << -8, -8, -12, -8, -10, -6, -10, -8, -10).finished();
  const mat reference = mat::Constant(3, 3, -10);
  const auto r = listwise_dpo_loss(policy, reference, vec(), {.beta = 0.5f});
  CHECK(r.metrics["rewards/accuracies"] == doctest::Approx(1.0 / 3).epsilon(1e-15));
  CHECK(listwise_dpo_loss(policy, policy, vec(), {.beta = 0.5f}).metrics["rewards/accuracies"] == 0.0);  // all 0
}

TEST_CASE("listwise_dpo: gradients match finite differences") {
  const std::size_t B = 5, K = 4;
  const vec len = (vec(B) << 4, 2, 3, 4, 3).finished();
  for (const auto& c : configs) {
    for (const bool ragged : {false, true}) {
      mat policy = random_matrix(B, K, -30, -5, 21), reference = random_matrix(B, K, -30, -5, 22);
      const vec lengths = ragged ? len : vec();
      const auto r = listwise_dpo_loss(policy, reference, lengths, c);
      const auto loss = [&] { return listwise_dpo_loss(policy, reference, lengths, c).loss; };
      CHECK(max_relative_error(r.d_policy, numeric_gradient(loss, policy)) < 1e-6);
      CHECK(max_relative_error(r.d_reference, numeric_gradient(loss, reference)) < 1e-6);
    }
  }
}

TEST_CASE("listwise_dpo: reference_free ignores the reference and may omit it") {
  const mat policy = random_matrix(3, 4, -20, -1, 8), reference = random_matrix(3, 4, -20, -1, 9);
  const auto with = listwise_dpo_loss(policy, reference, vec(), {.reference_free = true});
  const auto without = listwise_dpo_loss(policy, mat(), vec(), {.reference_free = true});
  CHECK(with.loss == without.loss);
  CHECK(with.d_policy == without.d_policy);
  CHECK(without.d_reference.rows() == 3);
  CHECK(without.d_reference.cwiseAbs().maxCoeff() == 0.0);
  CHECK(with.loss != listwise_dpo_loss(policy, reference, vec()).loss);
}

TEST_CASE("listwise_dpo: finite values and gradients at extreme log-probs, in float") {
  using fm = eigen<float>::matrix;
  using fv = eigen<float>::vector;
  // Log-ratios 1e4, 0, −1e4 (right order), reversed, and all log-probs at −1e4.
  const fm policy = (fm(3, 3) << 0, -1e4f, -2e4f, -2e4f, -1e4f, 0, -1e4f, -1e4f, -1e4f).finished();
  const fm reference = fm::Constant(3, 3, -1e4f);
  for (const auto& c : {ListwiseDpoConfig{.beta = 1.0f}, ListwiseDpoConfig{.beta = 0.1f, .top_k = 1},
                        ListwiseDpoConfig{.beta = 2.0f, .reference_free = true}}) {
    for (const bool ragged : {false, true}) {
      const auto r = listwise_dpo_loss(policy, reference, ragged ? fv((fv(3) << 2, 3, 2).finished()) : fv(), c);
      CHECK(std::isfinite(r.loss));
      CHECK(all_finite(r.losses));
      CHECK(all_finite(r.d_policy));
      CHECK(all_finite(r.d_reference));
    }
  }
  const auto r = listwise_dpo_loss(policy, reference, fv(), {.beta = 1.0f});
  CHECK(r.losses[0] == doctest::Approx(0.0));
  CHECK(r.losses[1] == doctest::Approx(3e4));
  CHECK(r.losses[2] == doctest::Approx(std::log(6.0)).epsilon(1e-6));  // log-ratios all exactly 0
  CHECK(3 * r.d_policy(1, 2) == doctest::Approx(2.0));
  CHECK(3 * r.d_reference(1, 2) == doctest::Approx(-2.0));
}

TEST_CASE("listwise_dpo: bad input names the argument") {
  const mat policy = random_matrix(3, 4, -20, -1, 1), reference = random_matrix(3, 4, -20, -1, 2);
  CHECK_THROWS_WITH_AS(listwise_dpo_loss(policy, mat(reference.leftCols(3)), vec()),
                       doctest::Contains("'reference_logps' is [3, 3] but 'policy_logps' is [3, 4]"), shape_error);
  CHECK_THROWS_WITH_AS(listwise_dpo_loss(policy, mat(), vec()), doctest::Contains("'reference_logps' is [0, 0]"),
                       shape_error);
  CHECK_THROWS_WITH_AS(listwise_dpo_loss(policy, reference, vec(vec::Constant(4, 2))),
                       doctest::Contains("'lengths' has 4 elements"), shape_error);
  auto nan = policy;
  nan(2, 1) = std::nan("");
  CHECK_THROWS_WITH_AS(listwise_dpo_loss(nan, reference, vec()), doctest::Contains("'policy_logps' holds 1 NaN or Inf"),
                       value_error);
  auto inf = reference;
  inf(0, 3) = -INFINITY;
  CHECK_THROWS_WITH_AS(listwise_dpo_loss(policy, inf, vec()), doctest::Contains("'reference_logps' holds 1 NaN or Inf"),
                       value_error);
  CHECK_NOTHROW(listwise_dpo_loss(policy, inf, (vec(3) << 3, 3, 3).finished()));  // −inf in padding is ignored
  CHECK_THROWS_WITH_AS(listwise_dpo_loss(mat(0, 4), mat(0, 4), vec()), doctest::Contains("empty batch"), shape_error);
  CHECK_THROWS_WITH_AS(listwise_dpo_loss(mat(mat::Zero(3, 1)), mat(mat::Zero(3, 1)), vec()), doctest::Contains("has 1 column(s)"),
                       shape_error);
  CHECK_THROWS_WITH_AS(listwise_dpo_loss(policy, reference, (vec(3) << 2, 4, 0).finished()),
                       doctest::Contains("'lengths' row 2 is 0"), value_error);
  CHECK_THROWS_WITH_AS(listwise_dpo_loss(policy, reference, (vec(3) << 7, 4, 2).finished()),
                       doctest::Contains("'lengths' row 0 is 7 but 'policy_logps' has only 4 columns"), value_error);
  CHECK_THROWS_WITH_AS(listwise_dpo_loss(policy, reference, vec(), {.beta = 0.0f}),
                       doctest::Contains("beta must be > 0 (got 0)"), config_error);
  CHECK_THROWS_WITH_AS(listwise_dpo_loss(policy, reference, vec(), {.beta = -0.1f}), doctest::Contains("beta"),
                       config_error);
  CHECK_THROWS_WITH_AS(listwise_dpo_loss(policy, reference, vec(), {.beta = NAN}), doctest::Contains("beta"),
                       config_error);
}

TEST_CASE("listwise_dpo: log-probs of ±3e38 in float give finite values, or a named error where the loss exceeds float") {
  using fm = eigen<float>::matrix;
  using fv = eigen<float>::vector;
  const float H = 3e38f;  // log-ratios of ±6e38: past float, taken in double
  fm policy(1, 3), reference(1, 3);
  policy << H, -H, 0;
  reference << -H, H, 0;
  const auto good = listwise_dpo_loss(policy, reference, fv(), {.beta = 0.1f});  // rewards 6e37, −6e37, 0
  CHECK(good.loss == doctest::Approx(6e37).epsilon(1e-6));
  CHECK(all_finite(good.d_policy));
  const auto bad = listwise_dpo_loss(fm(-policy), fm(-reference), fv(), {.beta = 0.1f});
  CHECK(bad.loss == doctest::Approx(1.2e38).epsilon(1e-6));
  CHECK(all_finite(bad.d_reference));
  CHECK_THROWS_WITH_AS(listwise_dpo_loss(fm(-policy), fm(-reference), fv(), {.beta = 1.0f}),
                       doctest::Contains("'policy_logps'"), value_error);
}
