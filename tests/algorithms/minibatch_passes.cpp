// minibatch_passes visits every row once per pass in blocks, and the critic-free presets named by designated
// initialisers give the methods' settings.
#include <algorithm>
#include <vector>

#include "doctest/doctest.h"
#include "rlhf/algorithms/critic_free.hpp"
#include "rlhf/algorithms/minibatch_passes.hpp"

using namespace rlhf;

TEST_CASE("minibatch_passes: each pass covers every row once, in blocks differing by at most one row") {
  Rng rng(3);
  std::size_t calls = 0;
  std::vector<std::size_t> seen;
  minibatch_passes(7, {.passes = 2, .minibatches = 3}, rng, [&](std::span<const std::size_t> rows, double weight) {
    CHECK(weight == doctest::Approx(1.0 / 6));
    CHECK((rows.size() == 2 || rows.size() == 3));
    seen.insert(seen.end(), rows.begin(), rows.end());
    ++calls;
  });
  CHECK(calls == 6);
  for (std::size_t pass = 0; pass < 2; ++pass) {
    std::vector<std::size_t> rows(seen.begin() + std::ptrdiff_t(7 * pass), seen.begin() + std::ptrdiff_t(7 * pass + 7));
    std::sort(rows.begin(), rows.end());
    CHECK(rows == std::vector<std::size_t>{0, 1, 2, 3, 4, 5, 6});
  }
}

TEST_CASE("minibatch_passes: shuffle = false keeps the row order") {
  Rng rng(3);
  std::vector<std::size_t> seen;
  minibatch_passes(4, {.passes = 1, .minibatches = 2, .shuffle = false}, rng,
                   [&](std::span<const std::size_t> rows, double) { seen.insert(seen.end(), rows.begin(), rows.end()); });
  CHECK(seen == std::vector<std::size_t>{0, 1, 2, 3});
}

TEST_CASE("minibatch_step_options: a token mean weighs this rank by its tokens, the others by its rows") {
  Communicator* none = nullptr;
  const StepOptions outer{.micro_batches = 4, .max_grad_norm = 2.0, .communicator = none};
  const auto t = minibatch_step_options(outer, Aggregation::token_mean, 11, 3);
  CHECK(t.micro_batches == 1);
  CHECK(t.max_grad_norm == 2.0);
  CHECK(t.rank_weight == 11);
  CHECK(minibatch_step_options(outer, Aggregation::sequence_mean, 11, 3).rank_weight == 3);
}

TEST_CASE("CriticFreeConfig presets: named arguments, each method's settings") {
  const auto g = CriticFreeConfig::grpo({.group_size = 4, .beta = 0.1});
  CHECK(g.advantage == AdvantageEstimator::group);
  CHECK(g.group_size == 4);
  CHECK(g.beta == 0.1);
  CHECK(g.scale_rewards);
  CHECK(!g.kl_in_reward);
  CHECK(CriticFreeConfig::grpo().group_size == 8);
  CHECK(CriticFreeConfig::grpo().beta == 0.04);

  const auto d = CriticFreeConfig::dr_grpo({.group_size = 4, .max_tokens = 16});
  CHECK(!d.scale_rewards);
  CHECK(d.policy.aggregation == Aggregation::sequence_sum);
  CHECK(d.policy.max_tokens == 16);
  CHECK(d.beta == 0.0);
  CHECK(d.policy.clip == PpoConfig{}.clip);

  const auto r = CriticFreeConfig::rloo({.group_size = 6});
  CHECK(r.advantage == AdvantageEstimator::leave_one_out);
  CHECK(r.group_size == 6);
  CHECK(r.beta == 0.05);
  CHECK(!r.scale_rewards);
  CHECK(r.kl_in_reward);

  // The trap the names remove: reinforce_pp's positional form took beta first.
  const auto p = CriticFreeConfig::reinforce_pp({.group_size = 2, .beta = 0.02});
  CHECK(p.advantage == AdvantageEstimator::token_whitened);
  CHECK(p.group_size == 2);
  CHECK(p.beta == 0.02);
  CHECK(p.kl_in_reward);
  CHECK(CriticFreeConfig::reinforce_pp().group_size == 1);
}
