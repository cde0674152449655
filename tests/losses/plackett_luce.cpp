#include "rlhf/losses/plackett_luce.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "rlhf/losses/bradley_terry.hpp"
#include "support/gradcheck.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

// Row lengths drawn from [2, K].
vec random_lengths(std::size_t rows, std::size_t K, std::uint64_t seed) {
  vec v = random_vector(rows, 2, static_cast<double>(K) + 1, seed).array().floor();
  return v;
}

// The likelihood written as a product of choice probabilities, independently of the kernel.
double reference_row_loss(const double* s, std::size_t n, std::size_t top_k) {
  const std::size_t stages = top_k == 0 ? n - 1 : std::min(top_k, n - 1);
  double likelihood = 1;
  for (std::size_t k = 0; k < stages; ++k) {
    double rest = 0;
    for (std::size_t j = k; j < n; ++j) rest += std::exp(s[j]);
    likelihood *= std::exp(s[k]) / rest;
  }
  return -std::log(likelihood);
}

const std::size_t top_ks[] = {0, 1, 2, 3, 100};

}  // namespace

TEST_CASE("plackett_luce: values match the product of choice probabilities") {
  const std::size_t B = 8, K = 6;
  const mat s = random_matrix(B, K, -3, 3, 41);
  const vec len = random_lengths(B, K, 42);
  for (const std::size_t top_k : top_ks) {
    for (const bool ragged : {false, true}) {
      const auto r = plackett_luce_loss(s, ragged ? len : vec(), {.top_k = top_k});
      double mean = 0;
      for (std::size_t b = 0; b < B; ++b) {
        const std::size_t n = ragged ? static_cast<std::size_t>(len[b]) : K;
        const double want = reference_row_loss(s.data() + b * K, n, top_k);
        CHECK(r.losses[b] == doctest::Approx(want).epsilon(1e-12));
        mean += want / B;
      }
      CHECK(r.loss == doctest::Approx(mean).epsilon(1e-12));
    }
  }
}

TEST_CASE("plackett_luce: a hand-computed point and its metrics") {
  // Scores 2, 1, 0: log(e² + e + 1) − 2 + log(e + 1) − 1 = 0.720867651962...
  const mat s = (mat(2, 3) << 2, 1, 0, 0, 1, 2).finished();
  const auto r = plackett_luce_loss(s, vec());
  CHECK(r.losses[0] == doctest::Approx(0.7208676519626029).epsilon(1e-14));
  CHECK(plackett_luce_loss(s, vec(), {.top_k = 1}).losses[0] == doctest::Approx(0.40760596444438013).epsilon(1e-14));
  CHECK(r.metrics[metric::rewards_accuracies] == 0.5);            // row 0 ranks its best item first, row 1 does not
  CHECK(r.metrics["rewards/chosen"] == 1.0);      // (2 + 0) / 2
  CHECK(r.metrics["rewards/rejected"] == 1.0);    // (0 + 2) / 2
  CHECK(r.metrics["rewards/margins"] == 0.0);     // (2 + −2) / 2
  const auto ragged = plackett_luce_loss(s, (vec(2) << 2, 3).finished());
  CHECK(ragged.metrics["rewards/rejected"] == 1.5);  // row 0 ends at item 1 (score 1), row 1 at item 2 (score 2)
}

TEST_CASE("plackett_luce: accuracy counts a tie for the top as wrong (item 0 must outscore every other)") {
  // A tie with item 1, a tie with a later item, a strict best, a loss; a tie past the row's length is no tie.
  const mat s = (mat(5, 3) << 1, 1, 0, 2, 0, 2, 2, 1, 0, 0, 1, 2, 2, 1, 2).finished();
  CHECK(plackett_luce_loss(s, vec()).metrics[metric::rewards_accuracies] == doctest::Approx(1.0 / 5).epsilon(1e-15));
  const vec lengths = (vec(5) << 3, 3, 3, 3, 2).finished();
  CHECK(plackett_luce_loss(s, lengths).metrics[metric::rewards_accuracies] == doctest::Approx(2.0 / 5).epsilon(1e-15));
  CHECK(plackett_luce_loss(mat(mat::Constant(2, 4, 0.5)), vec()).metrics[metric::rewards_accuracies] == 0.0);  // all tied
}

TEST_CASE("plackett_luce: the likelihoods of all orderings sum to one") {
  // Over the K! orderings of K items, Σ e^{−loss} = 1 for the full ranking; with top_k stages each
  // distinct prefix of length top_k appears (K − top_k)! times.
  const std::vector<double> items = {0.3, -1.2, 2.0, 0.7};
  for (const std::size_t top_k : {0, 1, 2}) {
    std::vector<int> order = {0, 1, 2, 3};
    double total = 0;
    do {
      mat s(1, 4);
      for (int j = 0; j < 4; ++j) s(0, j) = items[order[j]];
      total += std::exp(-plackett_luce_loss(s, vec(), {.top_k = top_k}).loss);
    } while (std::next_permutation(order.begin(), order.end()));
    const double repeats = top_k == 0 ? 1 : std::tgamma(static_cast<double>(4 - top_k) + 1);
    CHECK(total == doctest::Approx(repeats).epsilon(1e-12));
  }
}

TEST_CASE("plackett_luce: gradients match finite differences, and padding gets none") {
  const std::size_t B = 5, K = 6;
  const vec len = random_lengths(B, K, 9);
  for (const std::size_t top_k : top_ks) {
    for (const bool ragged : {false, true}) {
      mat s = random_matrix(B, K, -4, 4, 17 + top_k);
      const vec lengths = ragged ? len : vec();
      const auto r = plackett_luce_loss(s, lengths, {.top_k = top_k});
      const auto loss = [&] { return plackett_luce_loss(s, lengths, {.top_k = top_k}).loss; };
      CHECK(max_relative_error(r.d_scores, numeric_gradient(loss, s)) < 1e-6);
      for (std::size_t b = 0; b < B; ++b)
        for (std::size_t j = ragged ? static_cast<std::size_t>(len[b]) : K; j < K; ++j)
          CHECK(r.d_scores(b, j) == 0.0);
    }
  }
}

TEST_CASE("plackett_luce: K = 2 is the Bradley–Terry loss, values and gradients") {
  const std::size_t B = 7;
  const mat s = random_matrix(B, 2, -6, 6, 3);
  const RewardPairs<vec> pairs{s.col(0), s.col(1)};
  const auto pl = plackett_luce_loss(s, vec());
  const auto bt = bradley_terry_loss(pairs);
  CHECK(pl.loss == doctest::Approx(bt.loss).epsilon(1e-14));
  for (std::size_t b = 0; b < B; ++b) {
    CHECK(pl.losses[b] == doctest::Approx(bt.losses[b]).epsilon(1e-14));
    CHECK(pl.d_scores(b, 0) == doctest::Approx(bt.d_chosen[b]).epsilon(1e-14));
    CHECK(pl.d_scores(b, 1) == doctest::Approx(bt.d_rejected[b]).epsilon(1e-14));
  }
  for (const char* name : {metric::rewards_accuracies, "rewards/chosen", "rewards/rejected", "rewards/margins"})
    CHECK(pl.metrics[name] == doctest::Approx(bt.metrics[name]));
}

TEST_CASE("plackett_luce: padding is ignored; a row's loss does not depend on its batch") {
  const std::size_t K = 5;
  mat s = random_matrix(3, K, -2, 2, 77);
  const vec len = (vec(3) << 3, 5, 2).finished();
  s(0, 3) = std::nan("");  // padding may hold anything
  s(0, 4) = INFINITY;
  s(2, 2) = -1e300;
  const auto batch = plackett_luce_loss(s, len, {.top_k = 2});
  for (Eigen::Index b = 0; b < 3; ++b) {
    const auto n = static_cast<Eigen::Index>(len[b]);
    const mat alone = s.block(b, 0, 1, n);
    const auto single = plackett_luce_loss(alone, vec(), {.top_k = 2});
    CHECK(batch.losses[b] == doctest::Approx(single.loss).epsilon(1e-14));
    for (Eigen::Index j = 0; j < n; ++j)
      CHECK(3 * batch.d_scores(b, j) == doctest::Approx(single.d_scores(0, j)).epsilon(1e-14));
  }
  CHECK(all_finite(batch.d_scores));
  CHECK(std::isfinite(batch.loss));
}

TEST_CASE("plackett_luce: top_k = 1 is softmax cross-entropy on the first item") {
  const mat s = random_matrix(4, 5, -3, 3, 5);
  const auto r = plackett_luce_loss(s, vec(), {.top_k = 1});
  for (Eigen::Index b = 0; b < 4; ++b) {
    double total = 0;
    for (Eigen::Index j = 0; j < 5; ++j) total += std::exp(s(b, j));
    const double lse = std::log(total);
    CHECK(r.losses[b] == doctest::Approx(lse - s(b, 0)).epsilon(1e-12));
    for (Eigen::Index j = 0; j < 5; ++j) {
      const double softmax = std::exp(s(b, j) - lse);
      CHECK(4 * r.d_scores(b, j) == doctest::Approx(softmax - (j == 0 ? 1 : 0)).epsilon(1e-12));
    }
  }
}

TEST_CASE("plackett_luce: finite values and gradients at score spreads of 1e4, in float") {
  using fm = eigen<float>::matrix;
  using fv = eigen<float>::vector;
  const fm s = (fm(3, 3) << 1e4f, 0, -1e4f, -1e4f, 0, 1e4f, -1e4f, -1e4f, -1e4f).finished();
  for (const std::size_t top_k : top_ks) {
    for (const bool ragged : {false, true}) {
      const auto r = plackett_luce_loss(s, ragged ? fv((fv(3) << 2, 3, 2).finished()) : fv(), {.top_k = top_k});
      CHECK(std::isfinite(r.loss));
      CHECK(all_finite(r.losses));
      CHECK(all_finite(r.d_scores));
    }
  }
  const auto r = plackett_luce_loss(s, fv());
  CHECK(r.losses[0] == doctest::Approx(0.0));  // right order, far apart: certain
  CHECK(r.losses[1] == doctest::Approx(3e4));  // reversed: (1e4 − −1e4) + (1e4 − 0)
  CHECK(r.losses[2] == doctest::Approx(std::log(6.0)).epsilon(1e-3));  // three ties at −1e4: 1 / 3!
  CHECK(3 * r.d_scores(0, 0) == doctest::Approx(0.0));
  CHECK(3 * r.d_scores(1, 0) == doctest::Approx(-1.0));
  CHECK(3 * r.d_scores(1, 1) == doctest::Approx(-1.0));
  CHECK(3 * r.d_scores(1, 2) == doctest::Approx(2.0));
}

TEST_CASE("plackett_luce: bad input names the argument, row and value") {
  const mat s = random_matrix(3, 4, -1, 1, 1);
  CHECK_THROWS_WITH_AS(plackett_luce_loss(s, vec(vec::Constant(2, 3))), doctest::Contains("'lengths' has 2 elements"),
                       shape_error);
  auto nan = s;
  nan(1, 2) = std::nan("");
  CHECK_THROWS_WITH_AS(plackett_luce_loss(nan, vec()), doctest::Contains("'scores' holds 1 NaN or Inf"), value_error);
  auto inf = s;
  inf(0, 0) = -INFINITY;
  CHECK_THROWS_WITH_AS(plackett_luce_loss(inf, vec()), doctest::Contains("'scores' holds 1 NaN or Inf"), value_error);
  CHECK_THROWS_WITH_AS(plackett_luce_loss(mat(0, 4), vec()), doctest::Contains("empty batch"), shape_error);
  CHECK_THROWS_WITH_AS(plackett_luce_loss(mat(mat::Zero(3, 1)), vec()), doctest::Contains("has 1 column(s)"), shape_error);
  CHECK_THROWS_WITH_AS(plackett_luce_loss(s, (vec(3) << 4, 1, 3).finished()),
                       doctest::Contains("'lengths' row 1 is 1; a ranking needs at least 2"), value_error);
  CHECK_THROWS_WITH_AS(plackett_luce_loss(s, (vec(3) << 4, 2, 5).finished()),
                       doctest::Contains("'lengths' row 2 is 5 but 'scores' has only 4 columns"), value_error);
  CHECK_THROWS_WITH_AS(plackett_luce_loss(s, (vec(3) << 2.5, 2, 2).finished()),
                       doctest::Contains("'lengths' row 0 is 2.5"), value_error);
  CHECK_THROWS_WITH_AS(plackett_luce_loss(s, (vec(3) << 2, std::nan(""), 2).finished()),
                       doctest::Contains("'lengths' row 1 is nan"), value_error);
}

TEST_CASE("plackett_luce: scores of ±3e38 in float give a finite loss, or a named error where it exceeds float") {
  using fm = eigen<float>::matrix;
  using fv = eigen<float>::vector;
  fm scores(1, 3);
  scores << 3e38f, -3e38f, 0;
  const auto r = plackett_luce_loss(scores, fv());
  CHECK(r.loss == doctest::Approx(3e38).epsilon(1e-6));
  CHECK(all_finite(r.d_scores));
  CHECK_THROWS_WITH_AS(plackett_luce_loss(fm(-scores), fv()), doctest::Contains("'scores'"), value_error);  // 6e38
}
