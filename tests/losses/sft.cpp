#include "rlhf/losses/sft.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "support/gradcheck.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

// A 0/1 mask [B, T] with a random number (≥ 1) of response tokens per row, right-padded.
mat random_mask(std::size_t B, std::size_t T, std::uint64_t seed) {
  Rng rng(seed);
  mat m = mat::Zero(static_cast<Eigen::Index>(B), static_cast<Eigen::Index>(T));
  for (Eigen::Index b = 0; b < m.rows(); ++b) {
    const auto first = static_cast<Eigen::Index>(rng.below(T / 2));  // a prompt of random length
    const auto len = 1 + static_cast<Eigen::Index>(rng.below(T - static_cast<std::size_t>(first)));
    for (Eigen::Index t = first; t < first + len; ++t) m(b, t) = 1;
  }
  return m;
}

// Written independently of the kernel: plain loops over the masked tokens.
double reference_loss(const mat& logps, const mat& mask, Aggregation how) {
  double total = 0;
  for (Eigen::Index b = 0; b < logps.rows(); ++b) {
    double nll = 0, count = 0;
    for (Eigen::Index t = 0; t < logps.cols(); ++t)
      if (mask(b, t) == 1) {
        nll -= logps(b, t);
        ++count;
      }
    total += how == Aggregation::sequence_mean ? nll / count : nll;
  }
  return total / static_cast<double>(logps.rows());
}

}  // namespace

TEST_CASE("sft: the loss at a hand-computed point") {
  mat logps(2, 3), mask(2, 3);
  logps << -1, -2, -7, -3, -5, -6;
  mask << 1, 1, 0, 1, 0, 0;
  // Rows: NLL 3 over 2 tokens, NLL 3 over 1 token.
  const auto sum = sft_loss(logps, mask);
  CHECK(sum.loss == doctest::Approx(3.0).epsilon(1e-15));
  CHECK(sum.metrics["nll/token"] == doctest::Approx(2.0));
  CHECK(sum.metrics["tokens"] == 3.0);
  const auto mean = sft_loss(logps, mask, {.aggregation = Aggregation::sequence_mean});
  CHECK(mean.loss == doctest::Approx((1.5 + 3.0) / 2).epsilon(1e-15));
  CHECK(mean.metrics["nll/token"] == doctest::Approx(2.0));
  // d loss / d log p: −1/B per token (sequence_sum), −1/(B n_b) (sequence_mean); zero where masked.
  CHECK(sum.d_logp(0, 0) == -0.5);
  CHECK(sum.d_logp(0, 2) == 0.0);
  CHECK(mean.d_logp(0, 1) == -0.25);
  CHECK(mean.d_logp(1, 0) == -0.5);
  CHECK(mean.d_logp(1, 1) == 0.0);
}

TEST_CASE("sft: sequence sums and sequence means match a plain-loop formula") {
  for (const auto how : {Aggregation::sequence_sum, Aggregation::sequence_mean}) {
    const mat logps = random_matrix(6, 11, -9, -0.01, 3);
    const mat mask = random_mask(6, 11, 4);
    CHECK(sft_loss(logps, mask, {how}).loss ==
          doctest::Approx(reference_loss(logps, mask, how)).epsilon(1e-13));
  }
}

TEST_CASE("sft: gradients match finite differences and vanish where masked") {
  for (const auto how : {Aggregation::sequence_sum, Aggregation::sequence_mean}) {
    mat logps = random_matrix(5, 9, -9, -0.01, 7);
    const mat mask = random_mask(5, 9, 8);
    const auto r = sft_loss(logps, mask, {how});
    const auto loss = [&] { return sft_loss(logps, mask, {how}).loss; };
    CHECK(max_relative_error(r.d_logp, numeric_gradient(loss, logps)) < 1e-8);
    for (Eigen::Index i = 0; i < mask.size(); ++i)
      if (mask.data()[i] == 0) CHECK(r.d_logp.data()[i] == 0.0);
  }
}

TEST_CASE("sft: masked entries never contribute, whatever they hold") {
  const mat logps = random_matrix(4, 8, -6, -0.1, 12);
  const mat mask = random_mask(4, 8, 13);
  mat noisy = logps;
  for (Eigen::Index i = 0; i < mask.size(); ++i)
    if (mask.data()[i] == 0) noisy.data()[i] = i % 3 == 0 ? std::nan("") : (i % 3 == 1 ? -INFINITY : 1e30);
  for (const auto how : {Aggregation::sequence_sum, Aggregation::sequence_mean}) {
    const auto clean = sft_loss(logps, mask, {how}), dirty = sft_loss(noisy, mask, {how});
    CHECK(clean.loss == dirty.loss);
    CHECK(clean.d_logp == dirty.d_logp);
  }
}

TEST_CASE("sft: padding side and micro-batching do not change the result") {
  const mat logps = random_matrix(4, 6, -5, -0.1, 21);
  const mat mask = random_mask(4, 6, 22);
  // Move every row's tokens to the right end (left padding): same tokens, other positions.
  mat left_logps = mat::Zero(4, 6), left_mask = mat::Zero(4, 6);
  for (Eigen::Index b = 0; b < 4; ++b) {
    Eigen::Index to = 5;
    for (Eigen::Index t = 5; t >= 0; --t)
      if (mask(b, t) == 1) {
        left_logps(b, to) = logps(b, t);
        left_mask(b, to--) = 1;
      }
  }
  for (const auto how : {Aggregation::sequence_sum, Aggregation::sequence_mean}) {
    const double whole = sft_loss(logps, mask, {how}).loss;
    CHECK(sft_loss(left_logps, left_mask, {how}).loss == doctest::Approx(whole).epsilon(1e-14));
    const mat top_l = logps.topRows(1), top_m = mask.topRows(1), rest_l = logps.bottomRows(3),
              rest_m = mask.bottomRows(3);
    const double split =
        (sft_loss(top_l, top_m, {how}).loss + 3 * sft_loss(rest_l, rest_m, {how}).loss) / 4;
    CHECK(split == doctest::Approx(whole).epsilon(1e-14));
  }
}

TEST_CASE("sft: finite values and gradients at extreme inputs, in float") {
  using fmat = eigen<float>::matrix;
  fmat logps = fmat::Constant(3, 512, -1e4f), mask = fmat::Ones(3, 512);
  logps(1, 7) = 0.0f;
  for (const auto how : {Aggregation::sequence_sum, Aggregation::sequence_mean}) {
    const auto r = sft_loss(logps, mask, {how});
    CHECK(std::isfinite(r.loss));
    CHECK(all_finite(r.d_logp));
  }
  CHECK(sft_loss(logps, mask).loss == doctest::Approx((3 * 512 - 1) * 1e4 / 3).epsilon(1e-6));
}

TEST_CASE("sft: bad input names the argument") {
  const mat logps = random_matrix(3, 4, -5, -0.1, 31);
  const mat mask = mat::Ones(3, 4);
  CHECK_THROWS_WITH_AS(sft_loss(logps, mat(mat::Ones(3, 5))),
                       doctest::Contains("'mask' is [3, 5] but 'logps' is [3, 4]"), shape_error);
  CHECK_THROWS_WITH_AS(sft_loss(mat(0, 4), mat(0, 4)), doctest::Contains("empty batch"), shape_error);
  mat nan = logps;
  nan(1, 2) = std::nan("");
  CHECK_THROWS_WITH_AS(sft_loss(nan, mask),
                       doctest::Contains("'logps' holds 1 NaN or Inf value(s) where the mask is 1"), value_error);
  mat inf = logps;
  inf(0, 0) = -INFINITY;
  CHECK_THROWS_AS(sft_loss(inf, mask), value_error);
  mat empty_row = mask;
  empty_row.row(2).setZero();
  CHECK_THROWS_WITH_AS(sft_loss(logps, empty_row), doctest::Contains("'mask' has 1 row(s) of 3 with no token set"),
                       value_error);
  mat half = mask;
  half(0, 1) = 0.5;
  CHECK_THROWS_WITH_AS(sft_loss(logps, half), doctest::Contains("'mask' holds 1 value(s) other than 0 or 1"),
                       value_error);
  CHECK_THROWS_WITH_AS(sft_loss(logps, mask, {static_cast<Aggregation>(7)}), doctest::Contains("aggregation"),
                       config_error);
  CHECK_THROWS_AS(sft_loss(logps, mask, {Aggregation::nonempty_sequence_mean}), config_error);
}

TEST_CASE("sft: log-probs of −3e38 in float sum past float but the loss (a double) is finite") {
  using fm = eigen<float>::matrix;
  const fm logps = fm::Constant(1, 2, -3e38f), mask = fm::Ones(1, 2);
  const auto r = sft_loss(logps, mask);
  CHECK(r.loss == doctest::Approx(6e38).epsilon(1e-6));
  CHECK(r.metrics["nll/token"] == doctest::Approx(3e38).epsilon(1e-6));
  CHECK(all_finite(r.d_logp));
  CHECK(sft_loss(logps, mask, {Aggregation::sequence_mean}).loss == doctest::Approx(3e38).epsilon(1e-6));
}

TEST_CASE("sft: aggregations: mean over rows, sum over the batch, mean over the batch's tokens (TRL, OpenRLHF)") {
  mat logps = random_matrix(5, 9, -9, -0.01, 51);
  mat mask = random_mask(5, 9, 52);
  double total = 0, tokens = 0;
  std::vector<double> rows(5, 0.0);
  for (Eigen::Index b = 0; b < 5; ++b)
    for (Eigen::Index t = 0; t < 9; ++t)
      if (mask(b, t) == 1) rows[b] -= logps(b, t), total -= logps(b, t), tokens += 1;
  const auto sequence_sum = sft_loss(logps, mask);
  const auto token_sum = sft_loss(logps, mask, {Aggregation::token_sum});
  const auto token_mean = sft_loss(logps, mask, {Aggregation::token_mean});
  CHECK(token_sum.loss == doctest::Approx(total).epsilon(1e-14));
  CHECK(sequence_sum.loss == doctest::Approx(total / 5).epsilon(1e-14));
  CHECK(token_mean.loss == doctest::Approx(total / tokens).epsilon(1e-14));
  for (std::size_t b = 0; b < 5; ++b) CHECK(token_sum.losses[b] == doctest::Approx(rows[b]).epsilon(1e-14));
  for (const Aggregation how : {Aggregation::token_sum, Aggregation::token_mean}) {
    const SftConfig c{how};
    const auto r = sft_loss(logps, mask, c);
    const auto loss = [&] { return sft_loss(logps, mask, c).loss; };
    CHECK(max_relative_error(r.d_logp, numeric_gradient(loss, logps)) < 1e-8);
  }
  // An empty completion is valid where the peers take it (token_sum, token_mean), not in a mean over rows
  mask.row(2).setZero();
  CHECK(sft_loss(logps, mask, {Aggregation::token_mean}).losses[2] == 0.0);
  CHECK(sft_loss(logps, mask, {Aggregation::token_sum}).losses[2] == 0.0);
  CHECK_THROWS_AS(sft_loss(logps, mask), value_error);
  CHECK_THROWS_AS(sft_loss(logps, mask, {Aggregation::sequence_mean}), value_error);
  CHECK_THROWS_WITH_AS(sft_loss(logps, mat(mat::Zero(5, 9)), {Aggregation::token_mean}),
                       doctest::Contains("no token in the whole batch"), value_error);
}
