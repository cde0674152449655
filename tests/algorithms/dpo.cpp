#include "rlhf/algorithms/dpo.hpp"

#include <doctest/doctest.h>

#include <cmath>

#include "algorithms/bandit_fixture.hpp"
#include "rlhf/optim/adamw.hpp"
#include "support/max_abs_difference.hpp"

using namespace rlhf;
using namespace rlhf::testing;
using rlhf::test::max_abs_difference;

namespace {

// A small batch of comparisons from a random problem, with its reference log-probs filled in.
PreferenceBatch small_batch(const BanditProblem& problem, std::size_t n, std::uint64_t seed) {
  Rng rng(seed);
  auto batch = preference_batch(toy::sample_comparisons(problem.reward, problem.N, n, rng));
  auto reference = problem.reference();
  precompute_reference_logps(reference, batch);
  return batch;
}

}  // namespace

TEST_CASE("dpo_step: on bandit preferences drawn from Bradley-Terry(r), the policy converges to pi*") {
  // 24000 comparisons over 3 prompts x 4 responses, beta = 2, r/beta in [-1, 1]. The remaining distance is
  // the sampling error of the data set (it falls as 1/sqrt(n)); the starting distance is 0.16.
  const BanditProblem problem(3, 4, 2.0, 7);
  Rng rng(1);
  auto batch = preference_batch(toy::sample_comparisons(problem.reward, problem.N, 24000, rng));
  auto reference = problem.reference();
  precompute_reference_logps(reference, batch);
  auto policy = problem.reference();
  CHECK(problem.max_tv(policy) > 0.1);
  AdamW<double> opt({.learning_rate = 0.1f, .weight_decay = 0.0f});
  const int steps = 100;
  for (int step = 0; step < steps; ++step) {
    opt.set_learning_rate(0.1f * float(steps - step) / steps);
    dpo_step(policy, opt, batch, {.beta = float(problem.beta)}, {.micro_batches = 2});
  }
  CHECK(problem.max_tv(policy) <= 0.02);  // max over the 3 prompts of TV(pi(.|x), pi*(.|x))
}

TEST_CASE("dpo_step: one step over 4 micro-batches equals one step on the whole batch") {
  const BanditProblem problem(3, 5, 0.5, 11);
  const auto batch = small_batch(problem, 103, 2);  // 103 rows: blocks of 25 and 26
  const DpoConfig configs[] = {{.beta = 0.5f},
                               {.beta = 0.3f, .length_normalize = true, .nll_weight = 0.5f},
                               {.variant = DpoVariant::ipo, .beta = 0.2f}};
  for (const auto& config : configs) {
    auto whole = moved_policy(problem, 3), split = moved_policy(problem, 3);
    Sgd sgd{0.5};
    const auto a = dpo_step(whole, sgd, batch, config);
    const auto b = dpo_step(split, sgd, batch, config, {.micro_batches = 4});
    CHECK(max_abs_difference(whole.gradients(), split.gradients()) <= 1e-12);
    CHECK(max_abs_difference(whole.parameters(), split.parameters()) <= 1e-12);
    CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-12));
    for (const auto& [name, value] : a.metrics.items()) CHECK(b.metrics[name] == doctest::Approx(value).epsilon(1e-12));
    // AdamW's first step is nearly sign(g), so check it after a second step too.
    AdamW<double> adam_whole({.learning_rate = 0.01f}), adam_split({.learning_rate = 0.01f});
    for (int i = 0; i < 2; ++i) {
      dpo_step(whole, adam_whole, batch, config);
      dpo_step(split, adam_split, batch, config, {.micro_batches = 4});
    }
    CHECK(max_abs_difference(whole.parameters(), split.parameters()) <= 1e-5);
  }
}

TEST_CASE("dpo_step: the gradient it accumulates is the gradient of the loss it returns") {
  const BanditProblem problem(2, 4, 0.5, 5);
  const auto batch = small_batch(problem, 40, 9);
  const DpoConfig configs[] = {{.beta = 0.5f},
                               {.beta = 0.5f, .label_smoothing = 0.1f},
                               {.variant = DpoVariant::hinge, .beta = 0.4f},
                               {.beta = 0.3f, .length_normalize = true, .nll_weight = 0.5f},
                               {.beta = 0.5f, .reference_free = true}};
  for (const auto& config : configs) {
    auto policy = moved_policy(problem, 4);
    const Sgd frozen{0.0};
    dpo_step(policy, frozen, batch, config, {.micro_batches = 3});
    const std::vector<double> analytic(policy.gradients().begin(), policy.gradients().end());
    Eigen::Map<Eigen::VectorXd> theta(policy.parameters().data(), policy.parameters().size());
    const auto numeric = numeric_gradient([&] { return dpo_step(policy, frozen, batch, config).loss; }, theta);
    CHECK(max_relative_error(analytic, numeric) < 1e-6);
  }
}

TEST_CASE("dpo_step: a reference policy and precomputed reference log-probs give the same step") {
  const BanditProblem problem(3, 4, 0.5, 13);
  auto batch = small_batch(problem, 30, 4);
  auto reference = problem.reference();
  auto with_reference = moved_policy(problem, 8), with_logps = moved_policy(problem, 8);
  Sgd sgd{0.3};
  PreferenceBatch bare{batch.chosen, batch.rejected, {}, {}};
  const auto a = dpo_step(with_reference, reference, sgd, bare, {.beta = 0.5f}, {.micro_batches = 2});
  const auto b = dpo_step(with_logps, sgd, batch, {.beta = 0.5f});
  CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-12));
  CHECK(max_abs_difference(with_reference.parameters(), with_logps.parameters()) <= 1e-12);
  // A whole dataset at once, in blocks: the same numbers.
  std::vector<PreferenceBatch> dataset = {bare, bare};
  precompute_reference_logps(reference, dataset, {.micro_batches = 4});
  for (const auto& b : dataset) {
    CHECK(max_abs_difference(b.reference_chosen, batch.reference_chosen) == 0.0);
    CHECK(max_abs_difference(b.reference_rejected, batch.reference_rejected) == 0.0);
  }
  // The step's loss is rlhf::dpo_loss on the sequence log-probs.
  CHECK(a.metrics["rewards/accuracies"] >= 0.0);
  CHECK(a.metrics.has("rewards/margins"));
}

TEST_CASE("dpo_step: padding on either side of a row changes nothing") {
  const BanditProblem problem(2, 3, 0.5, 17);
  const auto batch = small_batch(problem, 12, 5);
  // The rejected rows again, as [pad, prompt, response] with the response at t = 2 (left padding), and the
  // chosen rows as [prompt, response, pad] (right padding).
  PreferenceBatch padded = batch;
  padded.rejected = TokenBatch::zeros(batch.rejected.batch, 3);
  padded.chosen = TokenBatch::zeros(batch.chosen.batch, 3);
  for (std::size_t b = 0; b < batch.rejected.batch; ++b) {
    padded.rejected.token(b, 0) = 2;
    padded.rejected.token(b, 1) = batch.rejected.token(b, 0);
    padded.rejected.token(b, 2) = batch.rejected.token(b, 1);
    padded.rejected.mask(b, 2) = 1;
    padded.chosen.token(b, 0) = batch.chosen.token(b, 0);
    padded.chosen.token(b, 1) = batch.chosen.token(b, 1);
    padded.chosen.token(b, 2) = 1;
    padded.chosen.mask(b, 1) = 1;
  }
  auto plain = moved_policy(problem, 2), with_padding = moved_policy(problem, 2);
  Sgd sgd{0.3};
  const auto a = dpo_step(plain, sgd, batch, {.beta = 0.5f});
  const auto b = dpo_step(with_padding, sgd, padded, {.beta = 0.5f}, {.micro_batches = 5});
  CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-12));
  CHECK(max_abs_difference(plain.parameters(), with_padding.parameters()) <= 1e-12);
}

TEST_CASE("dpo_step: responses of several tokens, of different lengths, give the DPO loss, metrics and step written out") {
  // Pairs (prompt, chosen tokens, rejected tokens) of 1 to 4 tokens, right-padded to T = 5, on the
  // multi-token bandit: Σ_t log π(y_t | x), and d/dθ[x, :] of it is counts(y) − L·π(·|x).
  const std::vector<TokenPair> pairs = {
      {0, {1}, {2, 2, 0}}, {1, {0, 2, 2, 1}, {1, 1}}, {0, {2, 0}, {1, 0, 1, 1}}, {1, {1, 1, 1}, {0}}, {1, {2, 0}, {2}}};
  const std::size_t P = 2, N = 3, B = pairs.size(), T = 5;
  const PreferenceBatch batch = token_pairs(pairs, T);
  const MultiTokenBandit reference(P, N, moved_logits(P, N, 31));
  const auto sum_logps = [&](const std::vector<double>& table, token_id x, const std::vector<token_id>& y) {
    double s = 0;
    for (const token_id t : y) s += table[std::size_t(x) * N + std::size_t(t)];
    return s;
  };

  const DpoConfig configs[] = {{.beta = 0.5f},
                               {.beta = 0.3f, .length_normalize = true, .nll_weight = 0.5f},
                               {.variant = DpoVariant::ipo, .beta = 0.2f},
                               {.beta = 0.4f, .nll_weight = 1.0f}};
  for (const auto& config : configs) {
    MultiTokenBandit policy(P, N, moved_logits(P, N, 32));
    const auto table = policy.log_table(), ref_table = reference.log_table();
    const double beta = config.beta, lr = 0.5;
    // The loss of each pair as a function of its sequence log-probs, and d loss / d Σ log π of both sides.
    double loss = 0, chosen_reward = 0, rejected_reward = 0, accuracy = 0, chosen_logp = 0, rejected_logp = 0;
    std::vector<double> grad(P * N, 0.0);
    for (const auto& [x, yw, yl] : pairs) {
      const double sw = sum_logps(table, x, yw), sl = sum_logps(table, x, yl);
      const double lw = double(yw.size()), ll = double(yl.size());
      const double scale_w = config.length_normalize ? 1 / lw : 1, scale_l = config.length_normalize ? 1 / ll : 1;
      const double uw = (sw - sum_logps(ref_table, x, yw)) * scale_w, ul = (sl - sum_logps(ref_table, x, yl)) * scale_l;
      double pair_loss = 0, d_du = 0;  // d loss / d (uw − ul)
      if (config.variant == DpoVariant::ipo) {
        const double r = uw - ul - 1 / (2 * beta);
        pair_loss = r * r, d_du = 2 * r;
      } else {
        const double h = beta * (uw - ul);
        pair_loss = std::log1p(std::exp(-h)), d_du = -beta / (1 + std::exp(h));
      }
      pair_loss -= config.nll_weight * sw / lw;
      const double d_sw = d_du * scale_w - config.nll_weight / lw, d_sl = -d_du * scale_l;
      for (std::size_t y = 0; y < N; ++y)  // − L·π(y | x) from each response
        grad[std::size_t(x) * N + y] -= (d_sw * lw + d_sl * ll) * std::exp(table[std::size_t(x) * N + y]) / double(B);
      for (const token_id t : yw) grad[std::size_t(x) * N + std::size_t(t)] += d_sw / double(B);
      for (const token_id t : yl) grad[std::size_t(x) * N + std::size_t(t)] += d_sl / double(B);
      loss += pair_loss / double(B);
      chosen_reward += beta * uw / double(B), rejected_reward += beta * ul / double(B);
      accuracy += (uw > ul ? 1.0 : 0.0) / double(B);
      chosen_logp += sw / double(B), rejected_logp += sl / double(B);
    }
    std::vector<double> stepped = policy.theta;
    for (std::size_t i = 0; i < stepped.size(); ++i) stepped[i] -= lr * grad[i];

    Sgd sgd{lr};
    const auto r = dpo_step(policy, reference, sgd, batch, config);
    CHECK(r.loss == doctest::Approx(loss).epsilon(1e-12));
    CHECK(max_abs_difference(policy.gradients(), grad) <= 1e-12);
    CHECK(max_abs_difference(policy.parameters(), stepped) <= 1e-12);
    CHECK(r.metrics["rewards/chosen"] == doctest::Approx(chosen_reward).epsilon(1e-12));
    CHECK(r.metrics["rewards/rejected"] == doctest::Approx(rejected_reward).epsilon(1e-12));
    CHECK(r.metrics["rewards/margins"] == doctest::Approx(chosen_reward - rejected_reward).epsilon(1e-12));
    CHECK(r.metrics["rewards/accuracies"] == doctest::Approx(accuracy).epsilon(1e-12));
    CHECK(r.metrics["logps/chosen"] == doctest::Approx(chosen_logp).epsilon(1e-12));
    CHECK(r.metrics["logps/rejected"] == doctest::Approx(rejected_logp).epsilon(1e-12));
  }
}

TEST_CASE("dpo_step: a float policy trains through the same code") {
  toy::BanditPolicy<float> policy(2, 3), reference(2, 3);
  AdamW<float> opt({.learning_rate = 0.1f});
  const std::vector<token_id> x = {0, 1, 0, 1}, w = {2, 0, 2, 0}, l = {0, 2, 1, 1};
  const PreferenceBatch batch{toy::bandit_batch(x, w), toy::bandit_batch(x, l), {}, {}};
  const double first = dpo_step(policy, reference, opt, batch).loss;
  double last = first;
  for (int i = 0; i < 20; ++i) last = dpo_step(policy, reference, opt, batch).loss;
  CHECK(first == doctest::Approx(std::log(2.0)));
  CHECK(last < first - 0.01);
}

TEST_CASE("dpo_step: bad input names the problem") {
  const BanditProblem problem(2, 3, 0.5, 3);
  auto batch = small_batch(problem, 8, 1);
  auto policy = problem.reference();
  Sgd sgd;
  auto short_rejected = batch;
  short_rejected.rejected = slice_rows(batch.rejected, 0, 7);
  short_rejected.reference_rejected.pop_back();
  CHECK_THROWS_WITH_AS(dpo_step(policy, sgd, short_rejected), doctest::Contains("'rejected' has 7 elements"),
                       shape_error);
  PreferenceBatch bare{batch.chosen, batch.rejected, {}, {}};
  CHECK_THROWS_WITH_AS(dpo_step(policy, sgd, bare), doctest::Contains("no reference log-probs"), value_error);
  CHECK_NOTHROW(dpo_step(policy, sgd, bare, {.reference_free = true}));
  auto one_side = batch;
  one_side.reference_rejected.clear();
  CHECK_THROWS_WITH_AS(dpo_step(policy, sgd, one_side), doctest::Contains("one side only"), shape_error);
  auto wrong_size = batch;
  wrong_size.reference_chosen.push_back(0.0);
  CHECK_THROWS_WITH_AS(dpo_step(policy, sgd, wrong_size), doctest::Contains("'reference_chosen' has 9 elements"),
                       shape_error);
  CHECK_THROWS_WITH_AS(dpo_step(policy, sgd, batch, {}, {.micro_batches = 9}),
                       doctest::Contains("micro_batches must be in [1, 8]"), config_error);
  CHECK_THROWS_AS(dpo_step(policy, sgd, batch, {}, {.micro_batches = 0}), config_error);
  auto no_response = batch;
  no_response.chosen.mask(3, 1) = 0;
  CHECK_THROWS_WITH_AS(dpo_step(policy, sgd, no_response), doctest::Contains("'chosen' row 3 of 8 has no response"),
                       value_error);
  auto nan_reference = batch;
  nan_reference.reference_chosen[0] = NAN;
  CHECK_THROWS_WITH_AS(dpo_step(policy, sgd, nan_reference), doctest::Contains("'reference_chosen' holds 1 NaN"),
                       value_error);
  CHECK_THROWS_AS(dpo_step(policy, sgd, batch, {.beta = 0.0f}), config_error);
  PreferenceBatch empty;
  CHECK_THROWS_WITH_AS(dpo_step(policy, sgd, empty), doctest::Contains("empty batch"), shape_error);
}
