#include "rlhf/algorithms/kto.hpp"

#include <doctest/doctest.h>

#include <cmath>

#include "algorithms/bandit_fixture.hpp"
#include "rlhf/algorithms/evaluate.hpp"
#include "rlhf/optim/adamw.hpp"
#include "support/max_abs_difference.hpp"

using namespace rlhf;
using namespace rlhf::testing;
using rlhf::test::max_abs_difference;

namespace {

struct Example {
  token_id prompt, response;
  bool desirable;
};

UnpairedBatch unpaired_batch(const std::vector<Example>& data) {
  std::vector<token_id> x, y;
  UnpairedBatch out;
  for (const auto& e : data) {
    x.push_back(e.prompt);
    y.push_back(e.response);
    out.desirable.push_back(e.desirable ? 1 : 0);
  }
  out.sequences = toy::bandit_batch(x, y);
  out.mismatched = mismatched_rows(out.sequences);
  return out;
}

// n examples of uniform prompts and responses, each desirable with probability σ(r(x, y)).
UnpairedBatch random_batch(const BanditProblem& problem, std::size_t n, std::uint64_t seed, bool with_reference = true) {
  Rng rng(seed);
  std::vector<Example> data;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t x = rng.below(problem.P), y = rng.below(problem.N);
    data.push_back({token_id(x), token_id(y), rng.uniform() < math::sigmoid(problem.reward[x * problem.N + y])});
  }
  auto batch = unpaired_batch(data);
  if (with_reference) {
    auto reference = problem.reference();
    precompute_reference_logps(reference, batch);
  }
  return batch;
}

double sigmoid_derivative(double t) { return math::sigmoid(t) * math::sigmoid(-t); }

}  // namespace

TEST_CASE("mismatched_rows: prompt i with completion i - 1, TRL's rotation; padding dropped") {
  // Rows [pad?, prompt..., response..., pad]: row 0 is left-padded, row 2 has a two-token response.
  TokenBatch s = TokenBatch::zeros(3, 5);
  s.attention_mask.assign(15, 1);
  const std::vector<std::vector<token_id>> rows = {{0, 7, 3, 4, 0}, {5, 6, 1, 0, 0}, {8, 2, 2, 9, 0}};
  const std::vector<std::vector<int>> masks = {{0, 0, 0, 1, 0}, {0, 0, 1, 0, 0}, {0, 0, 1, 1, 0}};
  for (std::size_t b = 0; b < 3; ++b)
    for (std::size_t t = 0; t < 5; ++t) s.token(b, t) = rows[b][t], s.mask(b, t) = std::uint8_t(masks[b][t]);
  s.attention_mask[0] = 0;  // row 0: [pad, 7, 3 | 4]
  const TokenBatch m = mismatched_rows(s);
  REQUIRE(m.batch == 3);
  REQUIRE(m.time == 4);  // row 0: prompt [7, 3] + completion of row 2 [2, 9]
  CHECK(m.attention_mask.empty());
  const std::vector<std::vector<token_id>> want = {{7, 3, 2, 9}, {5, 6, 4, 0}, {8, 2, 1, 0}};
  const std::vector<std::vector<int>> want_mask = {{0, 0, 1, 1}, {0, 0, 1, 0}, {0, 0, 1, 0}};
  for (std::size_t b = 0; b < 3; ++b)
    for (std::size_t t = 0; t < 4; ++t) {
      CHECK(m.token(b, t) == want[b][t]);
      CHECK(int(m.mask(b, t)) == want_mask[b][t]);
    }
  CHECK_THROWS_WITH_AS(mismatched_rows(slice_rows(s, 0, 1)), doctest::Contains("need at least 2"), shape_error);

  // max_length bounds the rows: row 0 ([7, 3] + [2, 9]) keeps [7, 3, 2]; with 2, a prompt keeps its last token.
  const TokenBatch three = mismatched_rows(s, 3);
  REQUIRE(three.time == 3);
  CHECK(three.token(0, 2) == 2);
  CHECK(three.response_length(0) == 1);
  const TokenBatch two = mismatched_rows(s, 2);
  REQUIRE(two.time == 2);
  CHECK(two.token(0, 0) == 3);  // prompt [7, 3] cut to its last token
  CHECK(two.token(0, 1) == 2);
  CHECK(two.response_length(0) == 1);
}

TEST_CASE("kto_step: at its fixed point the bandit policy satisfies the stationarity condition derived in the docs") {
  // docs/algorithms/kto.md: with c(x, y) = λ_D n_D(x, y) − λ_U n_U(x, y) the net weighted label count of a cell,
  // the full-batch gradient vanishes iff, for every prompt x, σ'(β (u(x, y) − z0)) c(x, y) / π(y|x) is the same
  // for every y. Every cell here has c > 0 and β < 1, so the fixed point is inside the simplex.
  const KtoConfig config{.beta = 0.5, .desirable_weight = 1.0, .undesirable_weight = 1.2};
  const int counts[2][3][2] = {{{10, 1}, {2, 1}, {3, 1}}, {{2, 1}, {10, 1}, {2, 0}}};  // [x][y] = {n_D, n_U}
  std::vector<Example> data;
  for (int x = 0; x < 2; ++x)
    for (int y = 0; y < 3; ++y)
      for (int label = 0; label < 2; ++label)
        for (int k = 0; k < counts[x][y][label]; ++k) data.push_back({token_id(x), token_id(y), label == 0});
  auto batch = unpaired_batch(data);
  // The frequent cells start unlikely, so that the data's mean log-ratio, z0, ends above 0.
  toy::BanditPolicy<double> reference(2, 3, {-1.0, 0.5, 0.3, 0.4, -1.0, 0.6});
  precompute_reference_logps(reference, batch);

  auto policy = reference;
  AdamW<double> opt({.learning_rate = 0.05f, .weight_decay = 0.0f});
  const int steps = 3000;
  StepResult last;
  for (int step = 0; step < steps; ++step) {
    opt.set_learning_rate(0.05 * (1.0 - 0.9 * step / steps));
    last = kto_step(policy, opt, batch, config, {.micro_batches = 3});
  }
  const auto pi = policy.probabilities(), pi_ref = reference.probabilities();
  const auto u = [&](std::size_t x, std::size_t y) { return std::log(pi[x * 3 + y]) - std::log(pi_ref[x * 3 + y]); };
  // z0 from the mismatched rows (prompt i, response of example i − 1), written out.
  double z0 = 0;
  for (std::size_t i = 0; i < data.size(); ++i) {
    const auto& prev = data[(i + data.size() - 1) % data.size()];
    z0 += u(std::size_t(data[i].prompt), std::size_t(prev.response)) / double(data.size());
  }
  CHECK(z0 > 0.1);  // not clamped: the condition depends on it
  z0 = std::max(0.0, z0);
  CHECK(last.metrics["kl"] == doctest::Approx(z0).epsilon(1e-9));
  // max over prompts of the relative spread over y of σ'(β (u − z)) c / π
  const auto spread = [&](double z) {
    double worst = 0;
    for (std::size_t x = 0; x < 2; ++x) {
      double lo = INFINITY, hi = -INFINITY;
      for (std::size_t y = 0; y < 3; ++y) {
        const double c = config.desirable_weight * counts[x][y][0] - config.undesirable_weight * counts[x][y][1];
        const double ratio = sigmoid_derivative(config.beta * (u(x, y) - z)) * c / pi[x * 3 + y];
        lo = std::min(lo, ratio), hi = std::max(hi, ratio);
      }
      worst = std::max(worst, (hi - lo) / hi);
    }
    return worst;
  };
  CHECK(spread(z0) < 1e-6);
  CHECK(spread(0.0) > 1e-2);  // the same check with z0 left out fails: it sees z0
  double moved = 0;
  for (std::size_t i = 0; i < pi.size(); ++i) moved = std::max(moved, std::abs(pi[i] - pi_ref[i]));
  CHECK(moved > 0.05);  // the fixed point is not the reference
}

TEST_CASE("kto_step: one step over micro-batches equals one step on the whole batch") {
  const BanditProblem problem(3, 4, 0.5, 11);
  auto batch = random_batch(problem, 53, 2);
  for (double& r : batch.reference_mismatched) r -= 2;  // lifts the mismatched log-ratios: z0 > 0, not clamped
  const KtoConfig configs[] = {{.beta = 0.5}, {.beta = 0.2, .desirable_weight = 1.3, .undesirable_weight = 0.6}};
  for (const auto& config : configs) {
    auto whole = moved_policy(problem, 3), split = moved_policy(problem, 3);
    Sgd sgd{0.5};
    const auto a = kto_step(whole, sgd, batch, config);
    const auto b = kto_step(split, sgd, batch, config, {.micro_batches = 4});
    CHECK(max_abs_difference(whole.gradients(), split.gradients()) <= 1e-12);
    CHECK(max_abs_difference(whole.parameters(), split.parameters()) <= 1e-12);
    CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-12));
    for (const auto& [name, value] : a.metrics.items()) CHECK(b.metrics[name] == doctest::Approx(value).epsilon(1e-12));
    CHECK(a.metrics["count/chosen"] + a.metrics["count/rejected"] == 53.0);
    CHECK(a.metrics["kl"] > 0);
  }
}

TEST_CASE("kto_step: the step's loss and gradient are kto_loss on the sequence log-probs, written out") {
  const BanditProblem problem(2, 3, 0.5, 5);
  const auto batch = random_batch(problem, 12, 9);
  auto policy = moved_policy(problem, 4);
  const KtoConfig config{.beta = 0.7, .desirable_weight = 1.1, .undesirable_weight = 0.9};
  const auto lp = [&] {  // log π [P, N]
    auto p = policy.probabilities();
    for (auto& v : p) v = std::log(v);
    return p;
  }();
  const auto& s = batch.sequences;
  const auto& m = batch.mismatched;
  const std::size_t B = s.batch;
  double z0 = 0;
  for (std::size_t i = 0; i < B; ++i)
    z0 += (lp[std::size_t(m.token(i, 0)) * 3 + std::size_t(m.token(i, 1))] - batch.reference_mismatched[i]) / double(B);
  z0 = std::max(0.0, z0);
  double loss = 0;
  std::vector<double> grad(6, 0.0);
  for (std::size_t i = 0; i < B; ++i) {
    const std::size_t x = std::size_t(s.token(i, 0)), y = std::size_t(s.token(i, 1));
    const double u = lp[x * 3 + y] - batch.reference[i];
    const bool d = batch.desirable[i];
    const double w = d ? config.desirable_weight : config.undesirable_weight;
    const double h = d ? config.beta * (u - z0) : config.beta * (z0 - u);
    loss += w * (1 - math::sigmoid(h)) / double(B);
    const double du = -w * sigmoid_derivative(h) * config.beta * (d ? 1 : -1) / double(B);
    for (std::size_t k = 0; k < 3; ++k) grad[x * 3 + k] += du * ((k == y ? 1.0 : 0.0) - std::exp(lp[x * 3 + k]));
  }
  const Sgd frozen{0.0};
  const auto r = kto_step(policy, frozen, batch, config, {.micro_batches = 5});
  CHECK(r.loss == doctest::Approx(loss).epsilon(1e-12));
  CHECK(r.metrics["kl"] == doctest::Approx(z0).epsilon(1e-12));
  CHECK(max_abs_difference(policy.gradients(), grad) <= 1e-12);
}

TEST_CASE("kto_step: with z0 clamped at 0 the accumulated gradient is the gradient of the returned loss") {
  const BanditProblem problem(2, 4, 0.5, 5);
  auto batch = random_batch(problem, 30, 9);
  batch.reference_mismatched.assign(batch.mismatched.batch, 0.0);  // log π − 0 < 0 everywhere: z0 = 0
  auto policy = moved_policy(problem, 4);
  const Sgd frozen{0.0};
  const KtoConfig config{.beta = 0.8, .undesirable_weight = 1.4};
  const auto r = kto_step(policy, frozen, batch, config, {.micro_batches = 3});
  CHECK(r.metrics["kl"] == 0.0);
  const std::vector<double> analytic(policy.gradients().begin(), policy.gradients().end());
  Eigen::Map<Eigen::VectorXd> theta(policy.parameters().data(), policy.parameters().size());
  const auto numeric = numeric_gradient([&] { return kto_step(policy, frozen, batch, config).loss; }, theta);
  CHECK(max_relative_error(analytic, numeric) < 1e-7);
}

TEST_CASE("kto_step: a reference policy and precomputed reference log-probs give the same step") {
  const BanditProblem problem(3, 4, 0.5, 13);
  const auto batch = random_batch(problem, 20, 4);
  UnpairedBatch bare{batch.sequences, batch.desirable, batch.mismatched, {}, {}};
  auto reference = problem.reference();
  auto with_reference = moved_policy(problem, 8), with_logps = moved_policy(problem, 8);
  Sgd sgd{0.3};
  const auto a = kto_step(with_reference, reference, sgd, bare, {.beta = 0.5}, {.micro_batches = 3});
  const auto b = kto_step(with_logps, sgd, batch, {.beta = 0.5});
  CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-12));
  CHECK(max_abs_difference(with_reference.parameters(), with_logps.parameters()) <= 1e-12);
  // A data set at once, in blocks.
  std::vector<UnpairedBatch> dataset = {bare};
  precompute_reference_logps(reference, dataset, {.micro_batches = 4});
  CHECK(max_abs_difference(dataset[0].reference, batch.reference) == 0.0);
  CHECK(max_abs_difference(dataset[0].reference_mismatched, batch.reference_mismatched) == 0.0);
}

TEST_CASE("kto_step: rlhf::evaluate gives the step's loss and changes nothing; max_grad_norm clips") {
  const BanditProblem problem(2, 3, 0.5, 7);
  const auto batch = random_batch(problem, 16, 3);
  auto policy = moved_policy(problem, 2);
  const std::vector<double> before(policy.parameters().begin(), policy.parameters().end());
  const auto e = evaluate(policy, [&](auto& frozen, auto& no_update) { return kto_step(frozen, no_update, batch); });
  CHECK(max_abs_difference(policy.parameters(), before) == 0.0);
  Sgd sgd{1.0};
  const auto r = kto_step(policy, sgd, batch, {}, {.max_grad_norm = 1e-4});
  CHECK(e.loss == doctest::Approx(r.loss).epsilon(1e-14));
  CHECK(r.grad_norm > 1e-4);
  double step = 0;
  for (std::size_t i = 0; i < before.size(); ++i) step += math::square(policy.parameters()[i] - before[i]);
  CHECK(std::sqrt(step) == doctest::Approx(1e-4).epsilon(1e-9));
}

TEST_CASE("kto_step: a float policy trains through the same code; one label only works") {
  toy::BanditPolicy<float> policy(2, 3), reference(2, 3);
  AdamW<float> opt({.learning_rate = 0.1f});
  UnpairedBatch batch{toy::bandit_batch(std::vector<token_id>{0, 1, 0, 1}, std::vector<token_id>{2, 0, 1, 1}),
                      {1, 1, 1, 1}, {}, {}, {}};
  batch.mismatched = mismatched_rows(batch.sequences);
  const double first = kto_step(policy, reference, opt, batch).loss;
  double last = first;
  for (int i = 0; i < 30; ++i) last = kto_step(policy, reference, opt, batch).loss;
  CHECK(first == doctest::Approx(0.5));  // u = z0 = 0: 1 − σ(0)
  CHECK(last < first - 0.001);
  const auto r = kto_step(policy, reference, opt, batch);
  CHECK(r.metrics.tokens("rewards/rejected") == 0.0);  // no undesirable example: weight 0
  CHECK(r.metrics["count/rejected"] == 0.0);
}

TEST_CASE("kto_step: bad input names the problem") {
  const BanditProblem problem(2, 3, 0.5, 3);
  const auto batch = random_batch(problem, 8, 1);
  auto policy = problem.reference();
  Sgd sgd;
  auto short_labels = batch;
  short_labels.desirable.pop_back();
  CHECK_THROWS_WITH_AS(kto_step(policy, sgd, short_labels), doctest::Contains("'desirable' has 7 elements"),
                       shape_error);
  auto bad_label = batch;
  bad_label.desirable[2] = 3;
  CHECK_THROWS_WITH_AS(kto_step(policy, sgd, bad_label), doctest::Contains("'desirable' row 2 is 3"), value_error);
  auto no_mismatched = batch;
  no_mismatched.mismatched = {};
  CHECK_THROWS_WITH_AS(kto_step(policy, sgd, no_mismatched), doctest::Contains("'mismatched' is an empty batch"),
                       shape_error);
  auto short_ref = batch;
  short_ref.reference_mismatched.pop_back();
  CHECK_THROWS_WITH_AS(kto_step(policy, sgd, short_ref), doctest::Contains("'reference_mismatched' has 7 elements"),
                       shape_error);
  auto one_kind = batch;
  one_kind.reference_mismatched.clear();
  CHECK_THROWS_WITH_AS(kto_step(policy, sgd, one_kind), doctest::Contains("one kind of row only"), shape_error);
  UnpairedBatch bare{batch.sequences, batch.desirable, batch.mismatched, {}, {}};
  CHECK_THROWS_WITH_AS(kto_step(policy, sgd, bare), doctest::Contains("no reference log-probs"), value_error);
  auto no_response = batch;
  no_response.mismatched.mask(5, 1) = 0;
  CHECK_THROWS_WITH_AS(kto_step(policy, sgd, no_response), doctest::Contains("'mismatched' row 5 of 8 has no response"),
                       value_error);
  CHECK_THROWS_WITH_AS(kto_step(policy, sgd, batch, {}, {.micro_batches = 9}),
                       doctest::Contains("micro_batches must be in [1, 8]"), config_error);
  CHECK_THROWS_AS(kto_step(policy, sgd, batch, {.beta = 0}), config_error);
  auto nan_reference = batch;
  nan_reference.reference[0] = NAN;
  CHECK_THROWS_WITH_AS(kto_step(policy, sgd, nan_reference), doctest::Contains("'reference' holds 1 NaN"),
                       value_error);
}
