// The training steps with models whose tensors live on another backend (xtensor; Thrust on the host): each
// step must give the parameters the same step gives on Eigen. This is what lets one dpo_step/ppo_step serve
// the CPU and CUDA models; nothing in algorithms/ may touch a tensor except through the Backend concept.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "algorithms/bandit_fixture.hpp"
#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/algorithms/kl_control.hpp"
#include "rlhf/algorithms/ppo.hpp"
#include "rlhf/algorithms/reward_model.hpp"
#include "rlhf/algorithms/sft.hpp"
#include "rlhf/algorithms/unlikelihood.hpp"
#include "rlhf/optim/adamw.hpp"
#if __has_include("rlhf/backends/xtensor.hpp") && __has_include(<xtensor/xtensor.hpp>) && __has_include(<xsimd/xsimd.hpp>)
#include "rlhf/backends/xtensor.hpp"
#define RLHF_HAVE_XTENSOR 1
#endif
#if __has_include("rlhf/backends/thrust.hpp") && __has_include(<thrust/version.h>)
#include "rlhf/backends/thrust.hpp"
#define RLHF_HAVE_THRUST 1
#endif

using namespace rlhf;
using namespace rlhf::testing;

namespace {

// Host Eigen matrix → backend matrix and back, through the Backend concept only.
template <class Be, class M>
typename Be::matrix to_backend(const M& m) {
  const auto flat = Be::from_host(std::vector<typename Be::scalar>(m.data(), m.data() + m.size()));
  auto out = Be::matrix_of(m.rows(), m.cols());
  rlhf::detail::copy<Be>(Be::data(flat), Be::data(out), m.size());
  return out;
}
template <class Be>
typename eigen<typename Be::scalar>::matrix from_backend(const typename Be::matrix& m) {
  const std::size_t r = Be::rows(m), c = Be::cols(m);
  auto flat = Be::vector_of(r * c);
  rlhf::detail::copy<Be>(Be::data(m), Be::data(flat), r * c);
  const auto host = Be::to_host(flat);
  typename eigen<typename Be::scalar>::matrix out(r, c);
  std::copy(host.begin(), host.end(), out.data());
  return out;
}
template <class Be, class V>
typename Be::vector vector_to_backend(const V& v) {
  return Be::from_host(std::vector<typename Be::scalar>(v.data(), v.data() + v.size()));
}

// The bandit models with their tensors on backend Be: the tables stay on the host, every tensor crossing
// the seam is on Be.
template <class Be>
struct Policy {
  using backend = Be;
  toy::BanditPolicy<typename Be::scalar> inner;
  typename Be::matrix log_probs(const TokenBatch& b) const { return to_backend<Be>(inner.log_probs(b)); }
  void backward(const TokenBatch& b, const typename Be::matrix& d) { inner.backward(b, from_backend<Be>(d)); }
  void zero_grad() { inner.zero_grad(); }
  auto parameters() { return inner.parameters(); }
  auto gradients() { return inner.gradients(); }
  TokenBatch sample(const PromptBatch& x, const SampleOptions& o, Rng& r) const { return inner.sample(x, o, r); }
};
template <class Be>
struct Critic {
  using backend = Be;
  toy::BanditValueModel<typename Be::scalar> inner;
  typename Be::matrix values(const TokenBatch& b) const { return to_backend<Be>(inner.values(b)); }
  void backward_values(const TokenBatch& b, const typename Be::matrix& d) {
    inner.backward_values(b, from_backend<Be>(d));
  }
  void zero_grad() { inner.zero_grad(); }
  auto parameters() { return inner.parameters(); }
  auto gradients() { return inner.gradients(); }
};
template <class Be>
struct Scorer {
  using backend = Be;
  toy::BanditRewardModel<typename Be::scalar> inner;
  typename Be::vector scores(const TokenBatch& b) const { return vector_to_backend<Be>(inner.scores(b)); }
  void backward_scores(const TokenBatch& b, const typename Be::vector& d) {
    const auto host = Be::to_host(d);
    inner.backward_scores(b, Eigen::Map<const typename eigen<typename Be::scalar>::vector>(host.data(), host.size()));
  }
  void zero_grad() { inner.zero_grad(); }
  auto parameters() { return inner.parameters(); }
  auto gradients() { return inner.gradients(); }
};

template <class T>
std::vector<T> start_logits(std::size_t n, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<T> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(static_cast<T>(rng.normal()));
  return out;
}

// Runs every step a few times on the given models (Eigen ones, or wrapped ones) and returns all parameters.
template <class P, class C, class S>
std::vector<double> train_everything(P policy, P reference, C critic, S scorer) {
  using T = typename P::backend::scalar;
  const BanditProblem problem(2, 4, 0.5, 3);
  Rng data(5);
  auto pairs = preference_batch(toy::sample_comparisons(problem.reward, 4, 30, data));
  auto ranked = ranked_batch(toy::sample_rankings(problem.reward, 4, 3, 12, data));
  ranked.lengths.assign(12, 3);
  ranked.lengths[4] = 2;
  AdamW<T> opt({.learning_rate = 0.05f}), value_opt({.learning_rate = 0.05f}), score_opt({.learning_rate = 0.05f});
  for (int i = 0; i < 2; ++i) {
    dpo_step(policy, reference, opt, pairs, {.beta = 0.5f, .nll_weight = 0.1f}, {.micro_batches = 3});
    listwise_dpo_step(policy, reference, opt, ranked, {.beta = 0.5f}, {.micro_batches = 2});
    sft_step(policy, opt, pairs.chosen, {}, {.micro_batches = 2});
    unlikelihood_step(policy, opt, pairs, {.alpha = 0.5f}, {.micro_batches = 2});
    reward_model_step(scorer, score_opt, pairs, {.center_coefficient = 0.1f}, {.micro_batches = 2});
    reward_model_step(scorer, score_opt, ranked, PlackettLuceConfig{}, {.micro_batches = 3});
  }
  precompute_reference_logps(reference, pairs);
  dpo_step(policy, opt, pairs, {.beta = 0.5f});
  AdaptiveKlController kl{.coef = 0.2f, .target = 0.01f, .horizon = 1000.0f};
  Rng rng(9);
  const auto prompts = toy::bandit_prompts(std::vector<token_id>{0, 1, 0, 1, 0, 1, 0, 1});
  for (int i = 0; i < 2; ++i)
    ppo_step(PpoModels{policy, reference, critic, scorer}, PpoOptimizers{opt, value_opt}, kl, prompts, rng,
             {.epochs = 2, .minibatches = 2});
  std::vector<double> out;
  for (const auto p : policy.parameters()) out.push_back(p);
  for (const auto p : critic.parameters()) out.push_back(p);
  for (const auto p : scorer.parameters()) out.push_back(p);
  out.push_back(kl.value());
  return out;
}

template <class Be>
void check_backend() {
  using T = typename Be::scalar;
  const auto logits = start_logits<T>(8, 1);
  const auto want = train_everything(toy::BanditPolicy<T>(2, 4, logits), toy::BanditPolicy<T>(2, 4),
                                     toy::BanditValueModel<T>(2, 4), toy::BanditRewardModel<T>(2, 4));
  const auto got =
      train_everything(Policy<Be>{{2, 4, logits}}, Policy<Be>{{2, 4}}, Critic<Be>{{2, 4}}, Scorer<Be>{{2, 4}});
  const double tolerance = std::is_same_v<T, float> ? 1e-4 : 1e-10;
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (std::size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
  CHECK(worst <= tolerance);
}

}  // namespace

TEST_CASE("training steps on Eigen and Eigen agree (the harness itself)") {
  check_backend<eigen<double>>();
  check_backend<eigen<float>>();
}

#if RLHF_HAVE_XTENSOR
TEST_CASE("training steps with models on xtensor give the Eigen parameters") {
  check_backend<rlhf::xtensor<double>>();
  check_backend<rlhf::xtensor<float>>();
}
#endif

#if RLHF_HAVE_THRUST
TEST_CASE("training steps with models on Thrust (host) give the Eigen parameters") {
  check_backend<thrust_host<double>>();
  check_backend<thrust_host<float>>();
}
#endif
