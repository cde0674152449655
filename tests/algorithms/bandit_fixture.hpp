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

// A bandit whose responses are several tokens, each scored on its own by π(· | x) = softmax(θ[x, :]), x = the
// row's first token: log π(y | x) = Σ_t log π(y_t | x). A response's log-prob, and its gradient, grow with
// its length, which the one-token bandit cannot show. Rows: [x, y_1, ..., y_L, padding], mask on the y_t.
class MultiTokenBandit {
 public:
  using backend = rlhf::eigen<double>;
  using matrix = backend::matrix;

  MultiTokenBandit(std::size_t prompts, std::size_t responses, std::vector<double> logits)
      : P(prompts), N(responses), theta(std::move(logits)), grad(prompts * responses, 0.0) {}

  // log π(y | x) [P, N] row-major.
  std::vector<double> log_table() const {
    std::vector<double> out(P * N);
    for (std::size_t x = 0; x < P; ++x) {
      double total = 0;
      for (std::size_t y = 0; y < N; ++y) total += std::exp(theta[x * N + y]);
      for (std::size_t y = 0; y < N; ++y) out[x * N + y] = theta[x * N + y] - std::log(total);
    }
    return out;
  }

  matrix log_probs(const TokenBatch& batch) const {
    const auto lp = log_table();
    matrix out = backend::matrix_of(batch.batch, batch.time);
    for (std::size_t b = 0; b < batch.batch; ++b)
      for (std::size_t t = 0; t < batch.time; ++t)
        if (batch.mask(b, t)) out(b, t) = lp[cell(batch, b, t)];
    return out;
  }

  // θ[x, :] += d[b, t] · (onehot(y_t) − π(· | x)) for every response token.
  void backward(const TokenBatch& batch, const matrix& d) {
    const auto lp = log_table();
    for (std::size_t b = 0; b < batch.batch; ++b)
      for (std::size_t t = 0; t < batch.time; ++t)
        if (batch.mask(b, t)) {
          const std::size_t x = static_cast<std::size_t>(batch.token(b, 0));
          for (std::size_t y = 0; y < N; ++y) grad[x * N + y] -= d(b, t) * std::exp(lp[x * N + y]);
          grad[cell(batch, b, t)] += d(b, t);
        }
  }

  void zero_grad() { std::fill(grad.begin(), grad.end(), 0.0); }
  std::span<double> parameters() { return theta; }
  std::span<double> gradients() { return grad; }

  std::size_t P, N;
  std::vector<double> theta, grad;

 private:
  std::size_t cell(const TokenBatch& batch, std::size_t b, std::size_t t) const {  // [x, y_t] in the table
    return static_cast<std::size_t>(batch.token(b, 0)) * N + static_cast<std::size_t>(batch.token(b, t));
  }
};

// The true reward of a BanditProblem as a callable for PPO and the critic-free steps: r(x, y) of each row [B].
struct TableReward {
  const BanditProblem* problem;
  std::vector<double> operator()(const TokenBatch& batch) const {
    std::vector<double> out;
    for (std::size_t b = 0; b < batch.batch; ++b)
      out.push_back(problem->reward[batch.token(b, 0) * problem->N + batch.token(b, 1)]);
    return out;
  }
};

// `copies` rounds of every prompt 0 … P − 1, as a prompt batch.
inline PromptBatch all_prompts(std::size_t P, std::size_t copies) {
  std::vector<token_id> x;
  for (std::size_t c = 0; c < copies; ++c)
    for (std::size_t p = 0; p < P; ++p) x.push_back(static_cast<token_id>(p));
  return toy::bandit_prompts(x);
}

// An optimizer that records the gradient it is handed and changes nothing.
struct RecordingOptimizer {
  std::vector<double> seen;
  void step(std::span<double>, std::span<const double> grads) { seen.assign(grads.begin(), grads.end()); }
};

// Pairs of multi-token responses [x, y_1 … y_L] for MultiTokenBandit, padded to T.
struct TokenPair {
  token_id x;
  std::vector<token_id> chosen, rejected;
};
inline PreferenceBatch token_pairs(const std::vector<TokenPair>& pairs, std::size_t T) {
  const auto rows = [&](bool chosen) {
    TokenBatch b = TokenBatch::zeros(pairs.size(), T);
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      const auto& y = chosen ? pairs[i].chosen : pairs[i].rejected;
      b.token(i, 0) = pairs[i].x;
      for (std::size_t t = 0; t < y.size(); ++t) b.token(i, t + 1) = y[t], b.mask(i, t + 1) = 1;
    }
    return b;
  };
  return PreferenceBatch{rows(true), rows(false), {}, {}};
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
