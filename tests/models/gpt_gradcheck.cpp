// The GPT's backward against central finite differences, tensor by tensor, in double precision on a tiny
// config; and the float model against the double one.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "models/gpt_support.hpp"
#include "rlhf/models/gpt/model.hpp"
#include "support/gradcheck.hpp"

namespace {

using rlhf::Gpt;
using rlhf::testing::Pad;

// Largest |analytic − numeric| / max(1, |numeric|) over each parameter tensor, against df/dθ by central
// differences; every tensor must also have some non-zero gradient (no vacuous pass).
void check_every_tensor(Gpt<double>& model, const std::function<double()>& f, const std::vector<double>& analytic,
                        double tol, bool skip_head = false) {
  auto params = model.parameters();
  for (const auto& t : rlhf::gpt_param_layout(model.config())) {
    if (skip_head && (t.name == "headw" || t.name == "headb")) continue;
    double worst = 0, largest = 0;
    for (std::size_t i = t.offset; i < t.offset + t.size; ++i) {
      const double saved = params[i], h = 1e-6;
      params[i] = saved + h;
      const double up = f();
      params[i] = saved - h;
      const double down = f();
      params[i] = saved;
      const double numeric = (up - down) / (2 * h);
      worst = std::max(worst, std::abs(analytic[i] - numeric) / std::max(1.0, std::abs(numeric)));
      largest = std::max(largest, std::abs(numeric));
    }
    INFO("tensor ", t.name, ": max relative error ", worst, ", largest |gradient| ", largest);
    CHECK(worst < tol);
    CHECK(largest > 1e-4);
  }
}

// Rows of different lengths, one left-padded with an attention mask, so padding is exercised too.
rlhf::TokenBatch mixed_batch() {
  const std::vector<rlhf::testing::Row> rows = {
      {{3, 1, 4, 1, 5, 9, 2}, 3}, {{2, 7, 1, 8}, 2}, {{6, 6, 0, 12, 11}, 4}};
  return rlhf::testing::pad_rows(rows, Pad::left, 8);
}

std::vector<double> copy(std::span<const double> s) { return {s.begin(), s.end()}; }

}  // namespace

TEST_CASE("gpt gradcheck: log_probs backward, every parameter tensor, left padding") {
  Gpt<double> model(rlhf::testing::tiny_gpt_config(), 1);
  rlhf::testing::randomize(model, 2);
  const auto batch = mixed_batch();
  const auto w = rlhf::testing::random_matrix(batch.batch, batch.time, -1, 1, 3);  // d loss / d log p
  const auto f = [&] { return (model.log_probs(batch).array() * w.array()).sum(); };
  model.zero_grad();
  model.log_probs(batch);
  model.backward(batch, w);
  check_every_tensor(model, f, copy(model.gradients()), 1e-6);
}

TEST_CASE("gpt gradcheck: right padding without a mask, and a hole of padding inside a row") {
  Gpt<double> model(rlhf::testing::tiny_gpt_config(), 4);
  rlhf::testing::randomize(model, 5);
  auto batch = rlhf::testing::pad_rows({{{1, 2, 3, 4, 5, 6}, 2}, {{7, 8, 9}, 1}}, Pad::right_masked, 7);
  batch.attention_mask[2] = 0;  // row 0: real tokens 1 2 _ 4 5 6
  const auto w = rlhf::testing::random_matrix(batch.batch, batch.time, -1, 1, 6);
  const auto f = [&] { return (model.log_probs(batch).array() * w.array()).sum(); };
  model.zero_grad();
  model.log_probs(batch);
  model.backward(batch, w);
  check_every_tensor(model, f, copy(model.gradients()), 1e-6);
}

TEST_CASE("gpt gradcheck: long rows, one tile each (the threaded path: per-thread gradient buffers)") {
  rlhf::GptConfig config = rlhf::testing::tiny_gpt_config();
  config.max_seq_len = 160;  // rows of > 128 tokens: one sequence per 256-row tile, so three tiles
  Gpt<double> model(config, 19);
  rlhf::testing::randomize(model, 20, 0.3);
  const auto rows = rlhf::testing::random_rows(3, 130, 150, config.vocab_size, 21);
  const auto batch = rlhf::testing::pad_rows(rows, Pad::left);
  const auto w = rlhf::testing::random_matrix(batch.batch, batch.time, -1, 1, 22);
  const auto f = [&] { return (model.log_probs(batch).array() * w.array()).sum(); };
  model.zero_grad();
  model.log_probs(batch);
  model.backward(batch, w);
  check_every_tensor(model, f, copy(model.gradients()), 1e-6);
}

TEST_CASE("gpt gradcheck: values (scalar head) and scores") {
  Gpt<double> model(rlhf::testing::tiny_gpt_config(true), 7);
  rlhf::testing::randomize(model, 8);
  const auto batch = mixed_batch();

  const auto wv = rlhf::testing::random_matrix(batch.batch, batch.time, -1, 1, 9);
  const auto fv = [&] { return (model.values(batch).array() * wv.array()).sum(); };
  model.zero_grad();
  model.values(batch);
  model.backward_values(batch, wv);
  check_every_tensor(model, fv, copy(model.gradients()), 1e-6);

  const auto ws = rlhf::testing::random_vector(batch.batch, -1, 1, 10);
  const auto fs = [&] { return model.scores(batch).dot(ws); };
  model.zero_grad();
  model.scores(batch);
  model.backward_scores(batch, ws);
  check_every_tensor(model, fs, copy(model.gradients()), 1e-6);
}

TEST_CASE("gpt: log_probs on the tiny config equals a hand-rolled log-softmax of logits()") {
  Gpt<double> model(rlhf::testing::tiny_gpt_config(), 11);
  rlhf::testing::randomize(model, 12);
  const auto batch = rlhf::testing::pad_rows({{{1, 2, 3, 4, 5}, 3}, {{7, 8, 9}, 2}}, Pad::right);
  const auto lp = model.log_probs(batch);
  const auto logits = model.logits(batch);  // [B*T, V]
  for (std::size_t b = 0; b < batch.batch; ++b)
    for (std::size_t t = 0; t < batch.time; ++t) {
      if (!batch.mask(b, t)) {
        CHECK(lp(b, t) == 0.0);
        continue;
      }
      const auto row = logits.row(Eigen::Index(b * batch.time + t - 1));
      double z = 0;
      for (Eigen::Index v = 0; v < row.size(); ++v) z += std::exp(row[v]);
      CHECK(lp(b, t) == doctest::Approx(row[batch.token(b, t)] - std::log(z)).epsilon(1e-12));
    }
}

TEST_CASE("gpt: the float model matches the double one (values 1e-5, gradients 1e-3 relative)") {
  const auto config = rlhf::testing::tiny_gpt_config(true);
  Gpt<double> md(config, 13);
  rlhf::testing::randomize(md, 14);
  Gpt<float> mf(config, 13);
  for (std::size_t i = 0; i < md.parameters().size(); ++i) mf.parameters()[i] = float(md.parameters()[i]);
  const auto batch = mixed_batch();
  const auto wd = rlhf::testing::random_matrix(batch.batch, batch.time, -1, 1, 15);
  const rlhf::eigen<float>::matrix wf = wd.cast<float>();
  const auto ld = md.log_probs(batch);
  const auto lf = mf.log_probs(batch);
  CHECK((ld - lf.cast<double>()).cwiseAbs().maxCoeff() < 1e-5);
  md.zero_grad(), mf.zero_grad();
  md.backward(batch, wd), mf.backward(batch, wf);
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < md.gradients().size(); ++i) {
    worst = std::max(worst, std::abs(md.gradients()[i] - double(mf.gradients()[i])));
    scale = std::max(scale, std::abs(md.gradients()[i]));
  }
  CHECK(worst / scale < 1e-3);
}

TEST_CASE("gpt: backward accumulates across calls and zero_grad resets") {
  Gpt<double> model(rlhf::testing::tiny_gpt_config(), 16);
  rlhf::testing::randomize(model, 17);
  const auto batch = mixed_batch();
  const auto w = rlhf::testing::random_matrix(batch.batch, batch.time, -1, 1, 18);
  model.zero_grad();
  model.log_probs(batch);
  model.backward(batch, w);
  const auto once = copy(model.gradients());
  model.log_probs(batch);
  model.backward(batch, w);
  for (std::size_t i = 0; i < once.size(); ++i) CHECK(model.gradients()[i] == doctest::Approx(2 * once[i]));
  model.zero_grad();
  for (auto g : model.gradients()) CHECK(g == 0.0);
}
