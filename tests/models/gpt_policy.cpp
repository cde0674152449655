// The GPT as a policy: padding invariance (left, right, one row at a time), the forward/backward contract,
// and bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "models/gpt_support.hpp"
#include "rlhf/models/gpt/model.hpp"

namespace {

using rlhf::Gpt;
using rlhf::TokenBatch;
using rlhf::testing::Pad;
using rlhf::testing::Row;
using Mat = rlhf::eigen<float>::matrix;

rlhf::GptConfig config(bool head = false) {
  return {.vocab_size = 50, .max_seq_len = 24, .channels = 32, .layers = 2, .heads = 4, .scalar_head = head};
}

// Per-token log-probs of each row's response, in order, from a padded batch.
std::vector<std::vector<float>> responses(const TokenBatch& b, const Mat& lp) {
  std::vector<std::vector<float>> out(b.batch);
  for (std::size_t i = 0; i < b.batch; ++i)
    for (std::size_t t = 0; t < b.time; ++t)
      if (b.mask(i, t)) out[i].push_back(lp(i, t));
  return out;
}

double max_diff(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i].size() == b[i].size());
    for (std::size_t k = 0; k < a[i].size(); ++k) worst = std::max(worst, double(std::abs(a[i][k] - b[i][k])));
  }
  return worst;
}

std::vector<float> grads_of(Gpt<float>& m, const TokenBatch& b) {
  m.zero_grad();
  const Mat lp = m.log_probs(b);
  Mat d = Mat::Zero(lp.rows(), lp.cols());
  for (std::size_t i = 0; i < b.batch * b.time; ++i) d.data()[i] = b.response_mask[i] ? -1.0f : 0.0f;
  m.backward(b, d);
  return {m.gradients().begin(), m.gradients().end()};
}

}  // namespace

TEST_CASE("gpt padding: per-token log-probs equal (1e-5) left-padded, right-padded, masked or row by row") {
  Gpt<float> model(config(), 1);
  rlhf::testing::randomize(model, 2, 0.3);
  const auto rows = rlhf::testing::random_rows(6, 3, 16, 50, 3);
  const auto right = rlhf::testing::pad_rows(rows, Pad::right, 0, 7);
  const auto left = rlhf::testing::pad_rows(rows, Pad::left, 0, 7);
  const auto masked = rlhf::testing::pad_rows(rows, Pad::right_masked, 20, 7);
  const auto r = responses(right, model.log_probs(right));
  const auto l = responses(left, model.log_probs(left));
  const auto m = responses(masked, model.log_probs(masked));
  std::vector<std::vector<float>> one;
  for (const auto& row : rows) {
    const auto b = rlhf::testing::pad_rows({row}, Pad::right);
    one.push_back(responses(b, model.log_probs(b))[0]);
  }
  CHECK(max_diff(r, l) <= 1e-5);
  CHECK(max_diff(r, m) <= 1e-5);
  CHECK(max_diff(r, one) <= 1e-5);
  // per sequence
  for (std::size_t i = 0; i < rows.size(); ++i) {
    double sr = 0, sl = 0;
    for (auto v : r[i]) sr += v;
    for (auto v : l[i]) sl += v;
    CHECK(std::abs(sr - sl) <= 1e-5 * std::max(1.0, std::abs(sr)));
  }
  // the left padding changes something when it is not masked: the test can fail
  auto unmasked = left;
  unmasked.attention_mask.clear();
  CHECK(max_diff(r, responses(unmasked, model.log_probs(unmasked))) > 1e-3);
}

TEST_CASE("gpt padding: gradients equal left- and right-padded, and summed over rows one by one") {
  Gpt<float> model(config(), 4);
  rlhf::testing::randomize(model, 5, 0.3);
  const auto rows = rlhf::testing::random_rows(4, 3, 12, 50, 6);
  const auto gr = grads_of(model, rlhf::testing::pad_rows(rows, Pad::right));
  const auto gl = grads_of(model, rlhf::testing::pad_rows(rows, Pad::left, 14));
  std::vector<float> sum(gr.size(), 0.0f);
  for (const auto& row : rows) {
    const auto g = grads_of(model, rlhf::testing::pad_rows({row}, Pad::right));
    for (std::size_t i = 0; i < g.size(); ++i) sum[i] += g[i];
  }
  double scale = 0, dl = 0, ds = 0;
  for (std::size_t i = 0; i < gr.size(); ++i) {
    scale = std::max(scale, double(std::abs(gr[i])));
    dl = std::max(dl, double(std::abs(gr[i] - gl[i])));
    ds = std::max(ds, double(std::abs(gr[i] - sum[i])));
  }
  CHECK(dl <= 1e-5 * scale);
  CHECK(ds <= 1e-5 * scale);
}

TEST_CASE("gpt padding: long rows (one per tile, split over threads) score and train as they do alone") {
  rlhf::GptConfig c = config();
  c.max_seq_len = 300;
  Gpt<float> model(c, 17);
  rlhf::testing::randomize(model, 18, 0.3);
  const auto rows = rlhf::testing::random_rows(5, 100, 290, 50, 19);
  const auto left = rlhf::testing::pad_rows(rows, Pad::left);
  std::vector<std::vector<float>> one;
  std::vector<float> sum(model.parameters().size(), 0.0f);
  for (const auto& row : rows) {
    const auto b = rlhf::testing::pad_rows({row}, Pad::right);
    one.push_back(responses(b, model.log_probs(b))[0]);
    const auto g = grads_of(model, b);
    for (std::size_t i = 0; i < g.size(); ++i) sum[i] += g[i];
  }
  CHECK(max_diff(responses(left, model.log_probs(left)), one) <= 1e-5);
  const auto g = grads_of(model, left);
  double scale = 0, diff = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    scale = std::max(scale, double(std::abs(sum[i])));
    diff = std::max(diff, double(std::abs(g[i] - sum[i])));
  }
  CHECK(diff <= 1e-5 * scale);
}

TEST_CASE("gpt padding: values and scores do not depend on the padding side") {
  Gpt<float> model(config(true), 7);
  rlhf::testing::randomize(model, 8, 0.3);
  const auto rows = rlhf::testing::random_rows(5, 3, 10, 50, 9);
  const auto right = rlhf::testing::pad_rows(rows, Pad::right);
  const auto left = rlhf::testing::pad_rows(rows, Pad::left, 12);
  CHECK(max_diff(responses(right, model.values(right)), responses(left, model.values(left))) <= 1e-5);
  const auto sr = model.scores(right), sl = model.scores(left);
  CHECK((sr - sl).cwiseAbs().maxCoeff() <= 1e-5);
  CHECK((sr.array() != 0).all());
}

TEST_CASE("gpt: log-probs are normalised (Σ over the vocabulary of p = 1)") {
  rlhf::GptConfig c = config();
  c.vocab_size = 7;
  Gpt<float> model(c, 10);
  rlhf::testing::randomize(model, 11, 0.3);
  auto b = TokenBatch::zeros(c.vocab_size, 4);  // every possible last token after the same prefix
  for (std::size_t v = 0; v < c.vocab_size; ++v) {
    b.token(v, 0) = 1, b.token(v, 1) = 2, b.token(v, 2) = 3, b.token(v, 3) = rlhf::token_id(v);
    b.mask(v, 3) = 1;
  }
  const Mat lp = model.log_probs(b);
  CHECK(lp.col(3).array().exp().sum() == doctest::Approx(1.0).epsilon(1e-5));
}

TEST_CASE("gpt: the forward/backward contract is checked") {
  Gpt<float> model(config(), 12);
  const auto rows = rlhf::testing::random_rows(3, 3, 8, 50, 13);
  const auto batch = rlhf::testing::pad_rows(rows, Pad::right);
  const Mat d = Mat::Ones(batch.batch, batch.time);
  CHECK_THROWS_WITH_AS(model.backward(batch, d), doctest::Contains("no forward pass"), rlhf::value_error);
  model.log_probs(batch);
  CHECK_THROWS_WITH_AS(model.backward(batch, Mat::Ones(batch.batch, batch.time + 1)), doctest::Contains("d_logp"),
                       rlhf::shape_error);
  const auto other = rlhf::testing::pad_rows({rows[0], rows[1]}, Pad::right);
  CHECK_THROWS_WITH_AS(model.backward(other, Mat::Ones(other.batch, other.time)),
                       doctest::Contains("last forward pass was on"), rlhf::shape_error);
  auto changed = batch;
  changed.tokens[0] = (changed.tokens[0] + 1) % 50;
  CHECK_THROWS_WITH_AS(model.backward(changed, d), doctest::Contains("differs"), rlhf::value_error);
  Mat bad = d;
  bad(0, rows[0].tokens.size() - 1) = NAN;  // row 0's last token is a response token
  CHECK_THROWS_WITH_AS(model.backward(batch, bad), doctest::Contains("d_logp[0,"), rlhf::value_error);
  model.backward(batch, d);
  CHECK_THROWS_WITH_AS(model.backward(batch, d), doctest::Contains("call log_probs first"), rlhf::value_error);
}

TEST_CASE("gpt: bad input names the problem") {
  Gpt<float> model(config(), 14);
  auto b = rlhf::testing::pad_rows({{{1, 2, 3}, 1}}, Pad::right);
  b.tokens[1] = 50;
  CHECK_THROWS_WITH_AS(model.log_probs(b), doctest::Contains("outside the vocabulary"), rlhf::value_error);
  auto long_row = rlhf::testing::pad_rows({{std::vector<rlhf::token_id>(25, 1), 1}}, Pad::right);
  CHECK_THROWS_WITH_AS(model.log_probs(long_row), doctest::Contains("max_seq_len is 24"), rlhf::shape_error);
  // 25 slots but only 24 real tokens: fine
  long_row.attention_mask.assign(25, 1);
  long_row.attention_mask[0] = 0;
  CHECK(model.log_probs(long_row).rows() == 1);
  auto pad_response = rlhf::testing::pad_rows({{{1, 2, 3}, 1}}, Pad::right_masked);
  pad_response.attention_mask[2] = 0;
  CHECK_THROWS_WITH_AS(model.log_probs(pad_response), doctest::Contains("padding"), rlhf::value_error);
  const auto ok = rlhf::testing::pad_rows({{{1, 2, 3}, 1}}, Pad::right);
  CHECK_THROWS_WITH_AS(model.values(ok), doctest::Contains("no scalar head"), rlhf::config_error);
  Gpt<float> critic(config(true), 20);
  critic.values(ok);
  Mat dv = Mat::Zero(1, 3);
  dv(0, 2) = INFINITY;
  CHECK_THROWS_WITH_AS(critic.backward_values(ok, dv), doctest::Contains("not finite"), rlhf::value_error);
  CHECK(std::all_of(critic.gradients().begin(), critic.gradients().end(), [](float g) { return g == 0.0f; }));
  CHECK_THROWS_WITH_AS(model.scores(ok), doctest::Contains("no scalar head"), rlhf::config_error);
  CHECK_THROWS_AS(Gpt<float>(rlhf::GptConfig{.channels = 30, .heads = 4}), rlhf::config_error);
  CHECK_THROWS_AS(Gpt<float>(rlhf::GptConfig{.layers = 0}), rlhf::config_error);
  // NaN parameters surface as a named error, not as silent NaN log-probs
  model.parameters()[0] = NAN;
  for (auto& p : model.parameters()) p = NAN;
  CHECK_THROWS_WITH_AS(model.log_probs(ok), doctest::Contains("not finite"), rlhf::value_error);
}

TEST_CASE("gpt: steady-state steps reuse their buffers") {
  Gpt<float> model(config(), 15);
  const auto b = rlhf::testing::pad_rows(rlhf::testing::random_rows(4, 3, 12, 50, 16), Pad::right);
  model.log_probs(b);
  model.backward(b, Mat::Ones(b.batch, b.time));
  const auto before = model.log_probs(b);
  model.backward(b, Mat::Ones(b.batch, b.time));
  // the same batch twice gives the same answer (no state leaks between steps)
  CHECK((model.log_probs(b) - before).cwiseAbs().maxCoeff() == 0.0f);
}
