#pragma once
// A toy bandit problem shared by the algorithm tests: P prompts, N responses, a reference policy, a true
// reward r and its KL-constrained optimum π* ∝ π_ref · exp(r / β); preference data drawn from r.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>
#include <utility>
#include <vector>

#include "rlhf/algorithms/sequence.hpp"
#include "rlhf/models/toy/bandit.hpp"
#include "support/gradcheck.hpp"

namespace rlhf::testing {

// Plain gradient descent: the smallest optimizer the algorithms accept.
struct Sgd {
  double learning_rate = 0.1;
  void step(std::span<double> params, std::span<const double> grads) const {
    for (std::size_t i = 0; i < params.size(); ++i) params[i] -= learning_rate * grads[i];
  }
};

struct BanditProblem {
  std::size_t P, N;
  double beta;
  std::vector<double> reference_logits;  // [P, N]
  std::vector<double> reward;            // [P, N]

  BanditProblem(std::size_t prompts, std::size_t responses, double beta_, std::uint64_t seed)
      : P(prompts), N(responses), beta(beta_) {
    Rng rng(seed);
    for (std::size_t i = 0; i < P * N; ++i) reference_logits.push_back(2 * rng.uniform() - 1);
    for (std::size_t i = 0; i < P * N; ++i) reward.push_back(beta * (2 * rng.uniform() - 1));  // r/β in [−1, 1]
  }
  toy::BanditPolicy<double> reference() const { return {P, N, reference_logits}; }
  std::vector<double> optimum() const { return toy::kl_optimum(reference().probabilities(), reward, N, beta); }

  // max over prompts of TV(π(·|x), π*(·|x))
  double max_tv(const toy::BanditPolicy<double>& policy) const {
    const auto tv = toy::total_variation(policy.probabilities(), optimum(), N);
    return *std::max_element(tv.begin(), tv.end());
  }
};

// Logits [P, N] drawn from N(0, 1): a policy away from the reference, so that every gradient is non-trivial.
inline std::vector<double> moved_logits(std::size_t P, std::size_t N, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<double> logits;
  for (std::size_t i = 0; i < P * N; ++i) logits.push_back(rng.normal());
  return logits;
}
inline toy::BanditPolicy<double> moved_policy(std::size_t P, std::size_t N, std::uint64_t seed) {
  return {P, N, moved_logits(P, N, seed)};
}
inline toy::BanditPolicy<double> moved_policy(const BanditProblem& problem, std::uint64_t seed) {
  return moved_policy(problem.P, problem.N, seed);
}

inline PreferenceBatch preference_batch(const std::vector<toy::Comparison>& data) {
  std::vector<token_id> x, w, l;
  for (const auto& c : data) {
    x.push_back(c.prompt);
    w.push_back(c.chosen);
    l.push_back(c.rejected);
  }
  return {toy::bandit_batch(x, w), toy::bandit_batch(x, l), {}, {}};
}

inline RankedBatch ranked_batch(const std::vector<toy::Ranking>& data) {
  const std::size_t k = data.front().ranked.size();
  std::vector<token_id> x, y;
  for (const auto& r : data)
    for (const token_id id : r.ranked) {
      x.push_back(r.prompt);
      y.push_back(id);
    }
  return {k, toy::bandit_batch(x, y), {}, {}};
}

// Pearson correlation of a and b after subtracting each prompt's mean from both (rewards are only
// identified up to a per-prompt constant).
inline double centered_correlation(std::span<const double> a, std::span<const double> b, std::size_t N) {
  std::vector<double> ca(a.begin(), a.end()), cb(b.begin(), b.end());
  for (std::size_t x = 0; x < a.size() / N; ++x) {
    double ma = 0, mb = 0;
    for (std::size_t y = 0; y < N; ++y) ma += a[x * N + y] / N, mb += b[x * N + y] / N;
    for (std::size_t y = 0; y < N; ++y) ca[x * N + y] -= ma, cb[x * N + y] -= mb;
  }
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t i = 0; i < ca.size(); ++i) ab += ca[i] * cb[i], aa += ca[i] * ca[i], bb += cb[i] * cb[i];
  return ab / std::sqrt(aa * bb);
}

}  // namespace rlhf::testing
