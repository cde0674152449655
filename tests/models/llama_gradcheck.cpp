// The Llama's backward against central finite differences, every parameter of every tensor, in double precision
// on a tiny config with every option on (tests/models/llama_support.hpp), left padding included: log_probs, the
// value head and the reward head.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <span>
#include <vector>

#include "models/gpt_support.hpp"
#include "models/llama_support.hpp"
#include "rlhf/models/llama/model.hpp"
#include "support/gradcheck.hpp"

namespace {

using rlhf::Llama;

// Largest |analytic − numeric| / max(1, |numeric|) over each tensor; every tensor but `unused` (the head the
// objective does not read) must carry some gradient, so no check passes vacuously.
void check_every_tensor(Llama<double>& model, const std::function<double()>& f, const std::vector<double>& analytic,
                        double tol, std::size_t unused) {
  auto params = model.parameters();
  for (const auto& t : rlhf::llama_param_layout(model.config())) {
    if (t.slot == unused) continue;
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
    INFO("tensor slot ", t.slot, ": max relative error ", worst, ", largest |gradient| ", largest);
    CHECK(worst < tol);
    CHECK(largest > 1e-4);
  }
}

rlhf::TokenBatch mixed_batch() {  // rows of different lengths, left-padded with an attention mask
  const std::vector<rlhf::testing::Row> rows = {{{3, 1, 4, 1, 5, 9, 2}, 3}, {{2, 7, 1, 8}, 2}, {{6, 6, 0, 10, 7}, 4}};
  return rlhf::testing::pad_rows(rows, rlhf::testing::Pad::left, 8);
}

std::vector<double> copy(std::span<const double> s) { return {s.begin(), s.end()}; }

}  // namespace

TEST_CASE("llama gradcheck: log_probs backward, every parameter, left padding") {
  Llama<double> model(rlhf::testing::tiny_llama_config(), 1);
  rlhf::testing::randomize(model, 2);
  const auto batch = mixed_batch();
  const auto w = rlhf::testing::random_matrix(batch.batch, batch.time, -1, 1, 3);  // d loss / d log p
  const auto f = [&] { return (model.log_probs(batch).array() * w.array()).sum(); };
  model.zero_grad();
  model.log_probs(batch);
  model.backward(batch, w);
  check_every_tensor(model, f, copy(model.gradients()), 1e-6, rlhf::llama::score);
}

TEST_CASE("llama gradcheck: the value head (values, backward_values) and the reward head (scores, backward_scores)") {
  Llama<double> model(rlhf::testing::tiny_llama_config(), 4);
  rlhf::testing::randomize(model, 5);
  const auto batch = mixed_batch();
  SUBCASE("values") {
    const auto w = rlhf::testing::random_matrix(batch.batch, batch.time, -1, 1, 6);
    const auto f = [&] { return (model.values(batch).array() * w.array()).sum(); };
    model.zero_grad();
    model.values(batch);
    model.backward_values(batch, w);
    check_every_tensor(model, f, copy(model.gradients()), 1e-6, rlhf::llama::lm_head);
  }
  SUBCASE("scores") {
    const auto w = rlhf::testing::random_vector(batch.batch, -1, 1, 7);
    const auto f = [&] { return (model.scores(batch).array() * w.array()).sum(); };
    model.zero_grad();
    model.scores(batch);
    model.backward_scores(batch, w);
    check_every_tensor(model, f, copy(model.gradients()), 1e-6, rlhf::llama::lm_head);
  }
}
