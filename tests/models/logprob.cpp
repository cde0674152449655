#include "rlhf/models/logprob.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "support/gradcheck.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

using dbe = eigen<double>;
using fbe = eigen<float>;
using ivec = dbe::index_vector;
using fmat = fbe::matrix;

constexpr std::size_t B = 3, T = 5, V = 7, N = B * T;

// A small batch: sequence 0 right-padded, sequence 1 left-padded, sequence 2 with a gap; padding rows carry
// target −100 (as PyTorch's ignore_index), which must never be read.
struct Inputs {
  mat logits = random_matrix(N, V, -3, 3, 17);
  ivec targets = ivec(N);
  vec mask = vec(N);
  Inputs() {
    const double m[N] = {1, 1, 1, 0, 0, /**/ 0, 0, 1, 1, 1, /**/ 1, 0, 1, 1, 0};
    Rng rng(5);
    for (std::size_t r = 0; r < N; ++r) {
      mask[r] = m[r];
      targets[r] = m[r] ? static_cast<std::int32_t>(rng.below(V)) : -100;
    }
  }
};

// log softmax(x)[t] as the textbook writes it, in double, without the max shift.
double naive_logprob(const mat& logits, std::size_t r, std::int32_t t) {
  double z = 0;
  for (std::size_t v = 0; v < V; ++v) z += std::exp(logits(r, v));
  return std::log(std::exp(logits(r, t)) / z);
}

const SequenceLogprobConfig reductions[] = {{.reduction = Reduction::sum},
                                            {.reduction = Reduction::mean},
                                            {.reduction = Reduction::per_token}};

// Σ of weights · output, so that d loss / d output = weights: [B] for sum/mean, [B, T] for per_token.
double weighted_output(const SequenceLogprobResult<dbe>& r, const vec& w_seq, const mat& w_tok) {
  if (r.config.reduction == Reduction::per_token) return (r.tokens.array() * w_tok.array()).sum();
  return r.sequence.dot(w_seq);
}

}  // namespace

TEST_CASE("logprob: values of every reduction match the textbook log-softmax") {
  const Inputs in;
  for (const auto& c : reductions) {
    const auto r = sequence_logprob(in.logits, in.targets, in.mask, B, c);
    REQUIRE(r.sequence.size() == static_cast<Eigen::Index>(B));
    REQUIRE(r.tokens.rows() == static_cast<Eigen::Index>(B));
    REQUIRE(r.tokens.cols() == static_cast<Eigen::Index>(T));
    for (std::size_t b = 0; b < B; ++b) {
      double total = 0, count = 0;
      for (std::size_t t = 0; t < T; ++t) {
        const std::size_t row = b * T + t;
        const double want = in.mask[row] ? naive_logprob(in.logits, row, in.targets[row]) : 0.0;
        CHECK(r.tokens(b, t) == doctest::Approx(want).epsilon(1e-12));
        total += want;
        count += in.mask[row];
        if (in.mask[row]) {
          double z = 0;
          for (std::size_t v = 0; v < V; ++v) z += std::exp(in.logits(row, v));
          CHECK(r.row_max[row] + r.row_log_sum[row] == doctest::Approx(std::log(z)).epsilon(1e-12));
        }
      }
      CHECK(r.response_length[b] == count);
      const double want_seq = c.reduction == Reduction::mean ? total / count : total;
      CHECK(r.sequence[b] == doctest::Approx(want_seq).epsilon(1e-12));
    }
  }
}

TEST_CASE("logprob: a hand-computed row") {
  // Logits (0, ln 2, ln 5) → softmax (1/8, 2/8, 5/8); target 2 → log p = ln(5/8).
  mat logits(1, 3);
  logits << 0.0, std::log(2.0), std::log(5.0);
  ivec targets(1);
  targets << 2;
  const vec mask = vec::Ones(1);
  const auto r = sequence_logprob(logits, targets, mask, 1);
  CHECK(r.sequence[0] == doctest::Approx(std::log(5.0 / 8.0)).epsilon(1e-14));
  CHECK(r.row_max[0] + r.row_log_sum[0] == doctest::Approx(std::log(8.0)).epsilon(1e-14));
  // d log p / d logits = one_hot(2) − softmax = (−1/8, −2/8, 3/8)
  mat d = mat::Constant(1, 3, 99.0);
  sequence_logprob_backward(d, logits, targets, mask, r, vec(vec::Ones(1)));
  CHECK(d(0, 0) == doctest::Approx(-1.0 / 8).epsilon(1e-14));
  CHECK(d(0, 1) == doctest::Approx(-2.0 / 8).epsilon(1e-14));
  CHECK(d(0, 2) == doctest::Approx(3.0 / 8).epsilon(1e-14));
}

TEST_CASE("logprob: d logits of every reduction match finite differences") {
  Inputs in;
  const vec w_seq = random_vector(B, -2, 2, 31);
  const mat w_tok = random_matrix(B, T, -2, 2, 37);
  for (const auto& c : reductions) {
    const auto fwd = sequence_logprob(in.logits, in.targets, in.mask, B, c);
    mat d = mat::Constant(N, V, 123.0);  // overwritten, masked rows included
    if (c.reduction == Reduction::per_token)
      sequence_logprob_backward(d, in.logits, in.targets, in.mask, fwd, w_tok);
    else
      sequence_logprob_backward(d, in.logits, in.targets, in.mask, fwd, w_seq);
    const auto loss = [&] {
      return weighted_output(sequence_logprob(in.logits, in.targets, in.mask, B, c), w_seq, w_tok);
    };
    CHECK(max_relative_error(d, numeric_gradient(loss, in.logits)) < 1e-7);
    for (std::size_t r = 0; r < N; ++r)
      if (!in.mask[r]) CHECK(d.row(r).cwiseAbs().maxCoeff() == 0.0);
  }
}

TEST_CASE("logprob: the fused forward+backward equals forward then backward") {
  const Inputs in;
  const vec w_seq = random_vector(B, -2, 2, 41);
  const mat w_tok = random_matrix(B, T, -2, 2, 43);
  for (const auto& c : reductions) {
    const bool per_token = c.reduction == Reduction::per_token;
    const auto fwd = sequence_logprob(in.logits, in.targets, in.mask, B, c);
    mat d_two = mat::Constant(N, V, 7.0), d_fused = mat::Constant(N, V, -7.0);
    if (per_token)
      sequence_logprob_backward(d_two, in.logits, in.targets, in.mask, fwd, w_tok);
    else
      sequence_logprob_backward(d_two, in.logits, in.targets, in.mask, fwd, w_seq);
    const auto fused = per_token ? sequence_logprob_with_grad(d_fused, in.logits, in.targets, in.mask, B, w_tok, c)
                                 : sequence_logprob_with_grad(d_fused, in.logits, in.targets, in.mask, B, w_seq, c);
    CHECK((d_two - d_fused).cwiseAbs().maxCoeff() < 1e-15);
    CHECK((fused.sequence - fwd.sequence).cwiseAbs().maxCoeff() == 0.0);
    CHECK((fused.tokens - fwd.tokens).cwiseAbs().maxCoeff() == 0.0);
    CHECK((fused.row_log_sum - fwd.row_log_sum).cwiseAbs().maxCoeff() == 0.0);
  }
}

TEST_CASE("logprob: accumulate adds to d_logits; in place overwrites the logits") {
  const Inputs in;
  const vec w = random_vector(B, -1, 1, 47);
  const auto fwd = sequence_logprob(in.logits, in.targets, in.mask, B);
  mat fresh = mat::Zero(N, V);
  sequence_logprob_backward(fresh, in.logits, in.targets, in.mask, fwd, w);

  const mat prior = random_matrix(N, V, -1, 1, 53);
  mat acc = prior;
  sequence_logprob_backward(acc, in.logits, in.targets, in.mask, fwd, w, GradWrite::accumulate);
  CHECK((acc - (prior + fresh)).cwiseAbs().maxCoeff() < 1e-15);
  mat acc_fused = prior;
  sequence_logprob_with_grad(acc_fused, in.logits, in.targets, in.mask, B, w, {}, GradWrite::accumulate);
  CHECK((acc_fused - (prior + fresh)).cwiseAbs().maxCoeff() < 1e-15);

  mat buffer = in.logits;  // llm.c style: the logits buffer becomes d logits
  sequence_logprob_backward(buffer, buffer, in.targets, in.mask, fwd, w);
  CHECK((buffer - fresh).cwiseAbs().maxCoeff() < 1e-15);
  buffer = in.logits;
  const auto fused = sequence_logprob_with_grad(buffer, buffer, in.targets, in.mask, B, w);
  CHECK((buffer - fresh).cwiseAbs().maxCoeff() < 1e-15);
  CHECK((fused.sequence - fwd.sequence).cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("logprob: masked rows are never read and contribute nothing") {
  Inputs in;
  const auto before = sequence_logprob(in.logits, in.targets, in.mask, B);
  for (std::size_t r = 0; r < N; ++r)
    if (!in.mask[r]) {
      in.logits.row(r).setConstant(std::nan(""));
      in.targets[r] = 1 << 30;
    }
  const auto after = sequence_logprob(in.logits, in.targets, in.mask, B);
  CHECK((after.sequence - before.sequence).cwiseAbs().maxCoeff() == 0.0);
  mat d = mat::Constant(N, V, 5.0);
  sequence_logprob_backward(d, in.logits, in.targets, in.mask, after, vec(vec::Ones(B)));
  CHECK(all_finite(d));
}

TEST_CASE("logprob: left and right padding, and one sequence at a time, give identical values") {
  // The same 3 response tokens of one sequence, placed at the start (right padding), at the end (left padding),
  // and alone in a batch of one with no padding; float, so that any change of summation order would show.
  const std::size_t t_pad = 6, len = 3, vocab = 50;
  const mat rows = random_matrix(len, vocab, -20, 20, 61);
  const std::int32_t tg[len] = {4, 49, 0};
  fmat right = fmat::Constant(2 * t_pad, vocab, 1e30f), alone(len, vocab);
  fbe::index_vector tr = fbe::index_vector::Zero(2 * t_pad), ta(len);
  fbe::vector mr = fbe::vector::Zero(2 * t_pad), ma = fbe::vector::Ones(len);
  for (std::size_t i = 0; i < len; ++i) {
    right.row(i) = rows.row(i).cast<float>();                        // sequence 0: right padded
    right.row(t_pad + t_pad - len + i) = rows.row(i).cast<float>();  // sequence 1: left padded
    alone.row(i) = rows.row(i).cast<float>();
    tr[i] = tr[t_pad + t_pad - len + i] = ta[i] = tg[i];
    mr[i] = mr[t_pad + t_pad - len + i] = 1;
  }
  for (const auto& c : reductions) {
    const auto padded = sequence_logprob(right, tr, mr, 2, c);
    const auto single = sequence_logprob(alone, ta, ma, 1, c);
    CHECK(padded.sequence[0] == padded.sequence[1]);
    CHECK(padded.sequence[0] == single.sequence[0]);
    CHECK(std::isfinite(padded.sequence[0]));
    for (std::size_t i = 0; i < len; ++i) CHECK(padded.tokens(0, i) == padded.tokens(1, t_pad - len + i));
  }
}

TEST_CASE("logprob: extreme logits stay finite in float") {
  const std::size_t vocab = 40;
  fmat logits(4, vocab);
  logits.row(0).setConstant(1e4f);  // all equal and huge: log p = −log V
  logits.row(1).setConstant(-1e4f);
  logits(1, 7) = 1e4f;  // one dominant token, target elsewhere: log p ≈ −2e4
  for (std::size_t v = 0; v < vocab; ++v) logits(2, v) = v % 2 ? 1e4f : -1e4f;  // huge spread, target at the top
  logits.row(3).setConstant(-INFINITY);  // −Inf is allowed away from the target (probability 0)
  logits(3, 0) = 3.f;
  logits(3, 1) = -2.f;
  fbe::index_vector targets(4);
  targets << 3, 0, 5, 1;
  const fbe::vector mask = fbe::vector::Ones(4);
  const auto r = sequence_logprob(logits, targets, mask, 4, {.reduction = Reduction::per_token});
  CHECK(r.tokens(0, 0) == doctest::Approx(-std::log(40.0)).epsilon(1e-6));
  CHECK(r.tokens(1, 0) == doctest::Approx(-2e4).epsilon(1e-6));
  CHECK(r.tokens(2, 0) == doctest::Approx(-std::log(20.0)).epsilon(1e-6));
  CHECK(r.tokens(3, 0) == doctest::Approx(-5 - std::log1p(std::exp(-5.0))).epsilon(1e-6));
  fmat d = fmat::Zero(4, vocab);
  sequence_logprob_backward(d, logits, targets, mask, r, fmat(fmat::Ones(4, 1)));
  CHECK(all_finite(d));
  CHECK(d(0, 3) == doctest::Approx(1 - 1 / 40.0).epsilon(1e-6));
  CHECK(d(1, 0) == doctest::Approx(1.0));
  CHECK(d(1, 7) == doctest::Approx(-1.0));
  CHECK(std::abs(d(3, 5)) < 1e-30f);  // probability 0, up to the smallest float the exp returns
  CHECK(d.rowwise().sum().cwiseAbs().maxCoeff() < 1e-5f);  // each gradient row sums to 0
}

TEST_CASE("logprob: float accumulation over a large vocabulary stays accurate") {
  const std::size_t vocab = 50000, rows = 4;
  const mat ref = random_matrix(rows, vocab, -10, 10, 71);
  const fmat logits = ref.cast<float>();
  ivec td(rows);
  td << 0, 17, 49999, 31337;
  const fbe::index_vector tf = td;
  const auto want = sequence_logprob(logits.cast<double>().eval(), td, vec::Ones(rows), rows,
                                     {.reduction = Reduction::per_token});
  const auto got =
      sequence_logprob(logits, tf, fbe::vector::Ones(rows), rows, {.reduction = Reduction::per_token});
  for (std::size_t i = 0; i < rows; ++i) CHECK(got.tokens(i, 0) == doctest::Approx(want.tokens(i, 0)).epsilon(1e-6));
}

TEST_CASE("logprob: bad input names the argument, index and value") {
  const Inputs in;
  SUBCASE("shapes") {
    CHECK_THROWS_WITH_AS(sequence_logprob(in.logits, ivec(N - 1), in.mask, B), doctest::Contains("'targets' has 14"),
                         shape_error);
    CHECK_THROWS_WITH_AS(sequence_logprob(in.logits, in.targets, vec(N + 1), B), doctest::Contains("'mask' has 16"),
                         shape_error);
    CHECK_THROWS_WITH_AS(sequence_logprob(in.logits, in.targets, in.mask, 4),
                         doctest::Contains("15 rows, not a multiple of the batch size B = 4"), shape_error);
    CHECK_THROWS_WITH_AS(sequence_logprob(mat(0, V), ivec(0), vec(0), 1), doctest::Contains("empty batch"),
                         shape_error);
    CHECK_THROWS_WITH_AS(sequence_logprob(in.logits, in.targets, in.mask, 0), doctest::Contains("empty batch"),
                         shape_error);
    CHECK_THROWS_WITH_AS(sequence_logprob(mat(N, 0), in.targets, in.mask, B), doctest::Contains("0 columns"),
                         shape_error);
  }
  SUBCASE("targets outside the vocabulary") {
    auto t = in.targets;
    t[7] = 7;
    CHECK_THROWS_WITH_AS(sequence_logprob(in.logits, t, in.mask, B),
                         doctest::Contains("targets[7] = 7 is outside the vocabulary [0, 7)"), value_error);
    t[7] = 1;
    t[12] = -1;
    CHECK_THROWS_WITH_AS(sequence_logprob(in.logits, t, in.mask, B), doctest::Contains("targets[12] = -1"),
                         value_error);
  }
  SUBCASE("NaN and Inf in a response row") {
    auto x = in.logits;
    x(8, 2) = std::nan("");
    CHECK_THROWS_WITH_AS(sequence_logprob(x, in.targets, in.mask, B),
                         doctest::Contains("'logits' row 8 (sequence 1, position 3) holds NaN or +Inf"), value_error);
    x = in.logits;
    x(12, 0) = INFINITY;
    CHECK_THROWS_WITH_AS(sequence_logprob(x, in.targets, in.mask, B),
                         doctest::Contains("row 12 (sequence 2, position 2)"), value_error);
    x = in.logits;
    x(0, in.targets[0]) = -INFINITY;
    CHECK_THROWS_WITH_AS(sequence_logprob(x, in.targets, in.mask, B),
                         doctest::Contains("row 0 (sequence 0, position 0) "
                                           "has logit -Inf at its target"),
                         value_error);
    mat d(N, V);
    x = in.logits;
    x(2, 6) = std::nan("");
    CHECK_THROWS_WITH_AS(sequence_logprob_with_grad(d, x, in.targets, in.mask, B, vec(vec::Ones(B))),
                         doctest::Contains("row 2 (sequence 0, position 2)"), value_error);
  }
  SUBCASE("masks") {
    auto m = in.mask;
    m[10] = 0;
    m[12] = 0;
    m[13] = 0;
    CHECK_THROWS_WITH_AS(sequence_logprob(in.logits, in.targets, m, B),
                         doctest::Contains("sequence 2 of 3 has no response token"), value_error);
    m = in.mask;
    m[3] = 0.5;
    CHECK_THROWS_WITH_AS(sequence_logprob(in.logits, in.targets, m, B), doctest::Contains("mask[3] = 0.5"),
                         value_error);
  }
  SUBCASE("config") {
    const SequenceLogprobConfig bad{.reduction = static_cast<Reduction>(9)};
    CHECK_THROWS_WITH_AS(sequence_logprob(in.logits, in.targets, in.mask, B, bad), doctest::Contains("reduction"),
                         config_error);
  }
  SUBCASE("backward") {
    const auto fwd = sequence_logprob(in.logits, in.targets, in.mask, B);
    mat d(N, V);
    mat small(N, V - 1);
    CHECK_THROWS_WITH_AS(sequence_logprob_backward(small, in.logits, in.targets, in.mask, fwd, vec(vec::Ones(B))),
                         doctest::Contains("'d_logits' is [15, 6]"), shape_error);
    CHECK_THROWS_WITH_AS(sequence_logprob_backward(d, in.logits, in.targets, in.mask, fwd, vec(vec::Ones(B + 1))),
                         doctest::Contains("'d_sequence' has 4"), shape_error);
    CHECK_THROWS_WITH_AS(sequence_logprob_backward(d, in.logits, in.targets, in.mask, fwd, mat(mat::Ones(B, T))),
                         doctest::Contains("must be the [B] vector 'd_sequence'"), config_error);
    CHECK_THROWS_WITH_AS(sequence_logprob_with_grad(d, in.logits, in.targets, in.mask, B, vec(vec::Ones(B)),
                                                    {.reduction = Reduction::per_token}),
                         doctest::Contains("must be the [B, T] matrix 'd_tokens'"), config_error);
    vec nan = vec(vec::Ones(B));
    nan[1] = std::nan("");
    CHECK_THROWS_WITH_AS(sequence_logprob_backward(d, in.logits, in.targets, in.mask, fwd, nan),
                         doctest::Contains("'d_sequence' holds 1 NaN or Inf"), value_error);
    mat buffer = in.logits;
    CHECK_THROWS_WITH_AS(
        sequence_logprob_backward(buffer, buffer, in.targets, in.mask, fwd, vec(vec::Ones(B)), GradWrite::accumulate),
        doctest::Contains("in place"), value_error);
    const auto other =
        sequence_logprob(in.logits.topRows(10).eval(), in.targets.head(10).eval(), in.mask.head(10).eval(), 2);
    CHECK_THROWS_WITH_AS(sequence_logprob_backward(d, in.logits, in.targets, in.mask, other, vec(vec::Ones(2))),
                         doctest::Contains("'forward' is for [10, 7] logits"), shape_error);
  }
}

// A finite target logit so far below the row's max that logit − max overflows float (issue 10): the message
// gives the logit instead of claiming it is −Inf.
TEST_CASE("sequence_logprob: an overflowing log-prob is not reported as a -Inf logit") {
  const Inputs in;
  fmat x = in.logits.cast<float>();
  const fvec mask = in.mask.cast<float>();
  const std::int32_t t = in.targets[0];
  x(0, t == 0 ? 1 : 0) = 3e38f;
  x(0, t) = -3e38f;
  CHECK_THROWS_WITH_AS(sequence_logprob(x, in.targets, mask, B),
                       doctest::Contains("row 0 (sequence 0, position 0) has logit -3e+38 at its target"), value_error);
  fmat d(N, V);
  CHECK_THROWS_WITH_AS(sequence_logprob_with_grad(d, x, in.targets, mask, B, fvec(fvec::Ones(B))),
                       doctest::Contains("so far below the row's max 3e+38"), value_error);
  CHECK_THROWS_WITH_AS(sequence_logprob_with_grad(x, x, in.targets, mask, B, fvec(fvec::Ones(B))),  // in place
                       doctest::Contains("its target's logit is -Inf, or so far below the row's max 3e+38"),
                       value_error);
  x(0, t) = -INFINITY;
  CHECK_THROWS_WITH_AS(sequence_logprob(x, in.targets, mask, B), doctest::Contains("has logit -Inf at its target"),
                       value_error);
}
