// PPO's policy and value losses, KL-penalised rewards, GAE and whitening on every backend against Eigen.
#include "rlhf/losses/ppo.hpp"

#include "rlhf/losses/gae.hpp"
#include "typed.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

struct Rollout {
  std::size_t rows, cols;
  std::vector<double> logp, old_logp, ref_logp, advantages, values, old_values, returns, scores, mask;
};

Rollout rollout(std::size_t rows, std::size_t cols, std::uint64_t seed, double spread = 1.0) {
  const std::size_t n = rows * cols;
  Rollout r{rows, cols};
  r.logp = uniform(n, -8, -0.01, seed);
  r.old_logp = r.logp;
  const auto jitter = uniform(n, -0.4 * spread, 0.4 * spread, seed + 1);
  for (std::size_t i = 0; i < n; ++i) r.old_logp[i] += jitter[i];
  r.ref_logp = uniform(n, -8, -0.01, seed + 2);
  r.advantages = uniform(n, -2 * spread, 2 * spread, seed + 3);
  r.values = uniform(n, -1, 1, seed + 4);
  r.old_values = r.values;
  const auto drift = uniform(n, -0.5, 0.5, seed + 5);
  for (std::size_t i = 0; i < n; ++i) r.old_values[i] += drift[i];
  r.returns = uniform(n, -2 * spread, 2 * spread, seed + 6);
  r.scores = uniform(rows, -3, 3, seed + 7);
  r.mask = response_mask(rows, cols, seed + 8);
  return r;
}

// Log-ratios of ±50 (past the ±20 clamp), log-probs near −1e4, advantages and returns of ±1e4.
Rollout extreme_rollout(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  auto r = rollout(rows, cols, seed, 1e4);
  for (std::size_t i = 0; i < r.logp.size(); ++i) {
    r.logp[i] -= 1e4;
    r.old_logp[i] = r.logp[i] + (i % 3 == 0 ? 50.0 : i % 3 == 1 ? -50.0 : 0.1);
    r.ref_logp[i] = r.logp[i] - 1e4 * (i % 2);
  }
  return r;
}

template <class Be>
typename Be::matrix on(const Rollout& r, const std::vector<double>& h) {
  return to_backend<Be>(r.rows, r.cols, h);
}

template <class Be>
void check_policy(const Rollout& r) {
  using Ref = reference_of<Be>;
  const PpoConfig configs[] = {
      {},
      {.clip = 0.1f, .dual_clip = 3.0f},
      {.clip_low = 0.1, .clip_high = 0.28, .aggregation = Aggregation::sequence_mean},
      {.clip_high = 0.3, .dual_clip = 2.0, .aggregation = Aggregation::sequence_sum, .max_tokens = 32}};
  for (const auto& c : configs) {
    const auto got =
        ppo_policy_loss(on<Be>(r, r.logp), on<Be>(r, r.old_logp), on<Be>(r, r.advantages), on<Be>(r, r.mask), c);
    const auto want =
        ppo_policy_loss(on<Ref>(r, r.logp), on<Ref>(r, r.old_logp), on<Ref>(r, r.advantages), on<Ref>(r, r.mask), c);
    check_close<Be>("policy loss", got.loss, want.loss);
    check_tensor<Be>("d_logp", got.d_logp, want.d_logp);
    check_metrics<Be>(got.metrics, want.metrics);
  }
  for (const ValueLossConfig c : {ValueLossConfig{}, ValueLossConfig{.clip = 0.0f},
                                  ValueLossConfig{.clip = 0.5, .aggregation = Aggregation::sequence_mean},
                                  ValueLossConfig{.aggregation = Aggregation::sequence_sum, .max_tokens = 32}}) {
    const auto got =
        ppo_value_loss(on<Be>(r, r.values), on<Be>(r, r.old_values), on<Be>(r, r.returns), on<Be>(r, r.mask), c);
    const auto want =
        ppo_value_loss(on<Ref>(r, r.values), on<Ref>(r, r.old_values), on<Ref>(r, r.returns), on<Ref>(r, r.mask), c);
    check_close<Be>("value loss", got.loss, want.loss);
    check_tensor<Be>("d_values", got.d_values, want.d_values);
    check_metrics<Be>(got.metrics, want.metrics);
  }
}

template <class Be>
void check_rewards(const Rollout& r) {
  using Ref = reference_of<Be>;
  const auto got = kl_penalized_rewards(to_backend<Be>(r.scores), on<Be>(r, r.logp), on<Be>(r, r.ref_logp),
                                        on<Be>(r, r.mask), 0.05f);
  const auto want = kl_penalized_rewards(to_backend<Ref>(r.scores), on<Ref>(r, r.logp), on<Ref>(r, r.ref_logp),
                                         on<Ref>(r, r.mask), 0.05f);
  check_tensor<Be>("rewards", got, want);
  const KlConfig k3{.estimator = KlEstimator::k3, .clamp = 10};  // OpenRLHF's clamped estimate
  check_tensor<Be>("rewards (k3, clamp 10)",
                   kl_penalized_rewards(to_backend<Be>(r.scores), on<Be>(r, r.logp), on<Be>(r, r.ref_logp),
                                        on<Be>(r, r.mask), 0.05, k3),
                   kl_penalized_rewards(to_backend<Ref>(r.scores), on<Ref>(r, r.logp), on<Ref>(r, r.ref_logp),
                                        on<Ref>(r, r.mask), 0.05, k3));
  const GaeConfig gc{.gamma = 0.99f, .lambda = 0.9f};
  const auto got_gae = gae(got, on<Be>(r, r.values), on<Be>(r, r.mask), gc);
  const auto want_gae = gae(want, on<Ref>(r, r.values), on<Ref>(r, r.mask), gc);
  check_tensor<Be>("advantages", got_gae.advantages, want_gae.advantages);
  check_tensor<Be>("returns", got_gae.returns, want_gae.returns);
  for (const bool shift : {true, false}) {
    check_tensor<Be>("whitened", whiten(got_gae.advantages, on<Be>(r, r.mask), shift),
                     whiten(want_gae.advantages, on<Ref>(r, r.mask), shift));
  }
  const WhitenConfig open_rlhf{.unbiased = false, .eps_as_floor = true, .zero_outside_mask = false};
  check_tensor<Be>("whitened (OpenRLHF)", whiten(got_gae.advantages, on<Be>(r, r.mask), open_rlhf),
                   whiten(want_gae.advantages, on<Ref>(r, r.mask), open_rlhf));
  const auto got_stats = whiten_stats(got_gae.advantages, on<Be>(r, r.mask), open_rlhf);
  const auto want_stats = whiten_stats(want_gae.advantages, on<Ref>(r, r.mask), open_rlhf);
  check_close<Be>("whiten mean", got_stats.mean, want_stats.mean);
  check_close<Be>("whiten variance", got_stats.variance, want_stats.variance);
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("backends/ppo: policy and value losses agree with Eigen", Be, ppo_agrees) {
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    check_policy<Be>(rollout(10 + seed, 24, seed));
  }
  check_policy<Be>(rollout(400, 200, 4));  // above the parallel threshold
  check_policy<Be>(extreme_rollout(8, 12, 5));
  auto empty = rollout(9, 16, 6);  // empty completions: rows 0 and 4
  for (std::size_t t = 0; t < 16; ++t) empty.mask[t] = empty.mask[4 * 16 + t] = 0;
  check_policy<Be>(empty);
  check_rewards<Be>(empty);
}
TEST_CASE_TEMPLATE_APPLY(ppo_agrees, backends_under_test);

TEST_CASE_TEMPLATE_DEFINE("backends/ppo: KL-penalised rewards, GAE and whitening agree with Eigen", Be, gae_agrees) {
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    check_rewards<Be>(rollout(10 + seed, 24, seed));
  }
  check_rewards<Be>(extreme_rollout(8, 12, 5));
}
TEST_CASE_TEMPLATE_APPLY(gae_agrees, backends_under_test);

TEST_CASE_TEMPLATE_DEFINE("backends/ppo: inputs of ±3e38 agree with Eigen and stay finite", Be, ppo_huge) {
  auto r = rollout(6, 10, 9);
  for (std::size_t i = 0; i < r.logp.size(); ++i) {  // log-ratios of ±6e38, V − R of ±3e38
    const double s = i % 2 ? 1.0 : -1.0;
    r.logp[i] = s * 3e38, r.old_logp[i] = -s * 3e38;
    r.values[i] = s * 1.5e38, r.old_values[i] = r.values[i], r.returns[i] = -s * 1.5e38;
  }
  check_policy<Be>(r);
}
TEST_CASE_TEMPLATE_APPLY(ppo_huge, backends_under_test);
