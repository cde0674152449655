#pragma once
// A contextual bandit as a language model: P prompts, N candidate responses, one response token each.
// The smallest model on which the algorithms of rlhf-cpp have a closed-form answer, so tests can check
// that they reach it (docs/examples/toy_bandit.md):
//
//   policy        π(y | x) = softmax(θ[x, :])_y                θ: [P, N]
//   reward model  r̂(x, y) = φ[x, y]                            φ: [P, N]
//   value model   V(x)    = ψ[x]                               ψ: [P]
//   optimum of  E_π[r] − β KL(π ‖ π_ref)  is  π*(y | x) ∝ π_ref(y | x) · exp(r(x, y) / β)
//
// A sequence is [prompt id, response id] with response_mask [0, 1] (T = 2); longer rows are accepted as
// long as each holds one response token, preceded by its prompt token. Token ids: prompts in [0, P),
// responses in [0, N), read by position, so the two ranges may overlap.
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "rlhf/backends/eigen.hpp"
#include "rlhf/core/batch.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/rng.hpp"

namespace rlhf::toy {

namespace detail {

struct BanditRow {
  std::size_t position;  // t of the response token
  std::size_t prompt;    // x = tokens[b, t − 1]
  std::size_t response;  // y = tokens[b, t]
};

inline BanditRow bandit_row(const char* fn, const TokenBatch& batch, std::size_t b, std::size_t P, std::size_t N) {
  BanditRow row{0, 0, 0};
  std::size_t found = 0;
  for (std::size_t t = 0; t < batch.time; ++t)
    if (batch.mask(b, t)) {
      row.position = t;
      ++found;
    }
  if (found != 1)
    rlhf::fail<value_error>(fn, ": row ", b, " has ", found, " response tokens; a bandit response is exactly one");
  if (row.position == 0) rlhf::fail<value_error>(fn, ": row ", b, " has its response at position 0, before any prompt");
  const token_id x = batch.token(b, row.position - 1), y = batch.token(b, row.position);
  if (x < 0 || static_cast<std::size_t>(x) >= P)
    rlhf::fail<value_error>(fn, ": row ", b, " has prompt id ", x, " outside [0, ", P, ")");
  if (y < 0 || static_cast<std::size_t>(y) >= N)
    rlhf::fail<value_error>(fn, ": row ", b, " has response id ", y, " outside [0, ", N, ")");
  row.prompt = static_cast<std::size_t>(x);
  row.response = static_cast<std::size_t>(y);
  return row;
}

// `visit(b, row)` for each row b of the batch, in order, its response read by bandit_row (which checks it), once
// the batch's buffers are checked to be [B, T].
template <class Visit>
void for_each_bandit_row(const char* fn, const TokenBatch& batch, std::size_t P, std::size_t N, Visit&& visit) {
  require_size(fn, "tokens", batch.tokens.size(), batch.batch * batch.time, "B*T");
  require_size(fn, "response_mask", batch.response_mask.size(), batch.batch * batch.time, "B*T");
  for (std::size_t b = 0; b < batch.batch; ++b) visit(b, bandit_row(fn, batch, b, P, N));
}

// A gradient with respect to a [B, T] output must be [B, T] (shape_error naming it).
template <class Matrix>
void require_batch_shape(const char* fn, const char* name, const Matrix& d, const TokenBatch& batch) {
  if (static_cast<std::size_t>(d.rows()) != batch.batch || static_cast<std::size_t>(d.cols()) != batch.time)
    rlhf::fail<shape_error>(fn, ": '", name, "' is [", d.rows(), ", ", d.cols(), "] but the batch is [", batch.batch,
                            ", ", batch.time, "]");
}

// log softmax of each row of a [rows, cols] table.
template <class T>
std::vector<T> log_softmax_rows(const std::vector<T>& logits, std::size_t rows, std::size_t cols) {
  std::vector<T> out(logits.size());
  for (std::size_t r = 0; r < rows; ++r) {
    const T* z = logits.data() + r * cols;
    T top = z[0];
    for (std::size_t j = 1; j < cols; ++j) top = std::max(top, z[j]);
    T total = 0;
    for (std::size_t j = 0; j < cols; ++j) total += std::exp(z[j] - top);
    const T log_z = top + std::log(total);
    for (std::size_t j = 0; j < cols; ++j) out[r * cols + j] = z[j] - log_z;
  }
  return out;
}

}  // namespace detail

// π(y | x) = softmax(θ[x, :]): a TrainablePolicy and a SamplingPolicy.
template <class T = double>
class BanditPolicy {
 public:
  using backend = rlhf::eigen<T>;
  using matrix = typename backend::matrix;

  BanditPolicy(std::size_t prompts, std::size_t responses) : BanditPolicy(prompts, responses, {}) {}
  // logits: [P, N] row-major; empty: all 0 (uniform).
  BanditPolicy(std::size_t prompts, std::size_t responses, std::vector<T> logits)
      : P_(prompts), N_(responses), theta_(std::move(logits)), grad_(prompts * responses, T(0)) {
    if (P_ == 0 || N_ < 2)
      rlhf::fail<config_error>("rlhf::toy::BanditPolicy: needs P >= 1 and N >= 2 (got ", P_, ", ", N_, ")");
    if (theta_.empty()) theta_.assign(P_ * N_, T(0));
    require_size("rlhf::toy::BanditPolicy", "logits", theta_.size(), P_ * N_, "P*N");
  }

  std::size_t prompts() const { return P_; }
  std::size_t responses() const { return N_; }

  // π(· | x) for every x: [P, N] row-major, in double.
  std::vector<double> probabilities() const {
    const auto lp = detail::log_softmax_rows(theta_, P_, N_);
    std::vector<double> out(lp.size());
    for (std::size_t i = 0; i < lp.size(); ++i) out[i] = std::exp(static_cast<double>(lp[i]));
    return out;
  }

  // [B, T]: log π(y | x) at each row's response token, 0 elsewhere.
  matrix log_probs(const TokenBatch& batch) const {
    constexpr const char* fn = "rlhf::toy::BanditPolicy::log_probs";
    const auto lp = detail::log_softmax_rows(theta_, P_, N_);
    matrix out = backend::matrix_of(batch.batch, batch.time);
    detail::for_each_bandit_row(fn, batch, P_, N_, [&](std::size_t b, const detail::BanditRow& row) {
      out(b, row.position) = lp[row.prompt * N_ + row.response];
    });
    return out;
  }

  // θ[x, :] += d · (onehot(y) − π(· | x)) for every row; d = d_logp at the response token.
  void backward(const TokenBatch& batch, const matrix& d_logp) {
    constexpr const char* fn = "rlhf::toy::BanditPolicy::backward";
    detail::require_batch_shape(fn, "d_logp", d_logp, batch);
    auto probs = detail::log_softmax_rows(theta_, P_, N_);
    for (auto& p : probs) p = std::exp(p);
    detail::for_each_bandit_row(fn, batch, P_, N_, [&](std::size_t b, const detail::BanditRow& row) {
      const T d = d_logp(b, row.position);
      T* g = grad_.data() + row.prompt * N_;
      const T* pi = probs.data() + row.prompt * N_;
      for (std::size_t j = 0; j < N_; ++j) g[j] -= d * pi[j];
      g[row.response] += d;
    });
  }

  void zero_grad() { std::fill(grad_.begin(), grad_.end(), T(0)); }
  std::span<T> parameters() { return theta_; }  // θ [P*N]
  std::span<T> gradients() { return grad_; }    // [P*N]

  // One response token per prompt, y ~ softmax(θ[x, :] / temperature), x = the prompt's last token.
  // The result is [B, prompt T + 1], the response right after each prompt, padding after it.
  TokenBatch sample(const PromptBatch& prompts, const SampleOptions& options, Rng& rng) const {
    constexpr const char* fn = "rlhf::toy::BanditPolicy::sample";
    require_size(fn, "tokens", prompts.tokens.size(), prompts.batch * prompts.time, "B*T");
    require_size(fn, "prompt_length", prompts.prompt_length.size(), prompts.batch, "B");
    if (options.max_new_tokens == 0) rlhf::fail<config_error>(fn, ": max_new_tokens must be >= 1");
    if (!(options.temperature > 0.0f))
      rlhf::fail<config_error>(fn, ": temperature must be > 0 (got ", options.temperature, ")");
    const std::size_t T_out = prompts.time + 1;
    TokenBatch out = TokenBatch::zeros(prompts.batch, T_out);
    std::vector<double> weights(N_);
    for (std::size_t b = 0; b < prompts.batch; ++b) {
      const std::size_t len = prompts.prompt_length[b];
      if (len == 0 || len > prompts.time)
        rlhf::fail<value_error>(fn, ": prompt ", b, " has length ", len, "; it must be in [1, ", prompts.time, "]");
      for (std::size_t t = 0; t < len; ++t) out.token(b, t) = prompts.tokens[b * prompts.time + t];
      const token_id x = out.token(b, len - 1);
      if (x < 0 || static_cast<std::size_t>(x) >= P_)
        rlhf::fail<value_error>(fn, ": prompt ", b, " ends with id ", x, " outside [0, ", P_, ")");
      const T* z = theta_.data() + static_cast<std::size_t>(x) * N_;
      double top = static_cast<double>(z[0]);
      for (std::size_t j = 1; j < N_; ++j) top = std::max(top, static_cast<double>(z[j]));
      for (std::size_t j = 0; j < N_; ++j)
        weights[j] = std::exp((static_cast<double>(z[j]) - top) / options.temperature);
      out.token(b, len) = static_cast<token_id>(rng.categorical(weights, N_));
      out.mask(b, len) = 1;
    }
    return out;
  }

 private:
  std::size_t P_, N_;
  std::vector<T> theta_, grad_;  // [P*N] each
};

// r̂(x, y) = φ[x, y]: an rlhf::RewardModel.
template <class T = double>
class BanditRewardModel {
 public:
  using backend = rlhf::eigen<T>;
  using vector = typename backend::vector;

  BanditRewardModel(std::size_t prompts, std::size_t responses)
      : P_(prompts), N_(responses), phi_(prompts * responses, T(0)), grad_(prompts * responses, T(0)) {}

  vector scores(const TokenBatch& batch) const {  // [B]
    constexpr const char* fn = "rlhf::toy::BanditRewardModel::scores";
    vector out = backend::vector_of(batch.batch);
    detail::for_each_bandit_row(fn, batch, P_, N_, [&](std::size_t b, const detail::BanditRow& row) {
      out[static_cast<Eigen::Index>(b)] = phi_[row.prompt * N_ + row.response];
    });
    return out;
  }
  void backward_scores(const TokenBatch& batch, const vector& d_scores) {  // d_scores: [B]
    constexpr const char* fn = "rlhf::toy::BanditRewardModel::backward_scores";
    require_size(fn, "d_scores", static_cast<std::size_t>(d_scores.size()), batch.batch, "B");
    detail::for_each_bandit_row(fn, batch, P_, N_, [&](std::size_t b, const detail::BanditRow& row) {
      grad_[row.prompt * N_ + row.response] += d_scores[static_cast<Eigen::Index>(b)];
    });
  }
  void zero_grad() { std::fill(grad_.begin(), grad_.end(), T(0)); }
  std::span<T> parameters() { return phi_; }  // φ [P*N]
  std::span<T> gradients() { return grad_; }

 private:
  std::size_t P_, N_;
  std::vector<T> phi_, grad_;
};

// V(x) = ψ[x] at each row's response token (the state before the response): an rlhf::ValueModel.
template <class T = double>
class BanditValueModel {
 public:
  using backend = rlhf::eigen<T>;
  using matrix = typename backend::matrix;

  BanditValueModel(std::size_t prompts, std::size_t responses)
      : P_(prompts), N_(responses), psi_(prompts, T(0)), grad_(prompts, T(0)) {}

  matrix values(const TokenBatch& batch) const {  // [B, T]
    constexpr const char* fn = "rlhf::toy::BanditValueModel::values";
    matrix out = backend::matrix_of(batch.batch, batch.time);
    detail::for_each_bandit_row(fn, batch, P_, N_, [&](std::size_t b, const detail::BanditRow& row) {
      out(b, row.position) = psi_[row.prompt];
    });
    return out;
  }
  void backward_values(const TokenBatch& batch, const matrix& d_values) {  // [B, T]
    constexpr const char* fn = "rlhf::toy::BanditValueModel::backward_values";
    detail::require_batch_shape(fn, "d_values", d_values, batch);
    detail::for_each_bandit_row(fn, batch, P_, N_, [&](std::size_t b, const detail::BanditRow& row) {
      grad_[row.prompt] += d_values(b, row.position);
    });
  }
  void zero_grad() { std::fill(grad_.begin(), grad_.end(), T(0)); }
  std::span<T> parameters() { return psi_; }  // ψ [P]
  std::span<T> gradients() { return grad_; }

 private:
  std::size_t P_, N_;
  std::vector<T> psi_, grad_;
};

// ---- the problem around the models: batches, the optimum, preference data ------------------------

// Rows [prompts[i], responses[i]] with response_mask [0, 1]: [B, 2].
inline TokenBatch bandit_batch(std::span<const token_id> prompts, std::span<const token_id> responses) {
  require_size("rlhf::toy::bandit_batch", "responses", responses.size(), prompts.size(), "the number of prompts");
  TokenBatch out = TokenBatch::zeros(prompts.size(), 2);
  for (std::size_t b = 0; b < prompts.size(); ++b) {
    out.token(b, 0) = prompts[b];
    out.token(b, 1) = responses[b];
    out.mask(b, 1) = 1;
  }
  return out;
}

// One-token prompts: [B, 1].
inline PromptBatch bandit_prompts(std::span<const token_id> prompts) {
  PromptBatch out{prompts.size(), 1, {prompts.begin(), prompts.end()}, std::vector<std::size_t>(prompts.size(), 1)};
  return out;
}

// π*(y | x) ∝ π_ref(y | x) · exp(r(x, y) / β), the maximiser of E_π[r] − β KL(π ‖ π_ref): [P, N].
inline std::vector<double> kl_optimum(std::span<const double> reference_probs, std::span<const double> reward,
                                      std::size_t responses, double beta) {
  require_size("rlhf::toy::kl_optimum", "reward", reward.size(), reference_probs.size(), "P*N");
  require_positive("rlhf::toy::kl_optimum", "beta", beta);
  std::vector<double> out(reward.size());
  for (std::size_t x = 0; x < reward.size() / responses; ++x) {
    double top = -INFINITY, total = 0;
    for (std::size_t y = 0; y < responses; ++y)
      top = std::max(top, std::log(reference_probs[x * responses + y]) + reward[x * responses + y] / beta);
    for (std::size_t y = 0; y < responses; ++y) {
      const std::size_t i = x * responses + y;
      out[i] = std::exp(std::log(reference_probs[i]) + reward[i] / beta - top);
      total += out[i];
    }
    for (std::size_t y = 0; y < responses; ++y) out[x * responses + y] /= total;
  }
  return out;
}

// ½ Σ_y |p(y | x) − q(y | x)| for each prompt x: [P].
inline std::vector<double> total_variation(std::span<const double> p, std::span<const double> q,
                                           std::size_t responses) {
  require_size("rlhf::toy::total_variation", "q", q.size(), p.size(), "the size of p");
  std::vector<double> out(p.size() / responses, 0.0);
  for (std::size_t i = 0; i < p.size(); ++i) out[i / responses] += 0.5 * std::abs(p[i] - q[i]);
  return out;
}

struct Comparison {
  token_id prompt, chosen, rejected;
};

// n comparisons from the Bradley–Terry model of `reward` [P, N]: a uniform prompt, two distinct uniform
// responses, the first preferred with probability σ(r₁ − r₂).
inline std::vector<Comparison> sample_comparisons(std::span<const double> reward, std::size_t responses, std::size_t n,
                                                  Rng& rng) {
  const std::size_t P = reward.size() / responses;
  std::vector<Comparison> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t x = rng.below(P), a = rng.below(responses);
    std::size_t b = rng.below(responses - 1);
    if (b >= a) ++b;
    const bool a_wins = rng.uniform() < math::sigmoid(reward[x * responses + a] - reward[x * responses + b]);
    out.push_back(
        {static_cast<token_id>(x), static_cast<token_id>(a_wins ? a : b), static_cast<token_id>(a_wins ? b : a)});
  }
  return out;
}

struct Ranking {
  token_id prompt;
  std::vector<token_id> ranked;  // best first
};

// n rankings of k distinct uniform responses from the Plackett–Luce model of `reward` [P, N]: each
// place goes to one of the responses left with probability ∝ exp(r).
inline std::vector<Ranking> sample_rankings(std::span<const double> reward, std::size_t responses, std::size_t k,
                                            std::size_t n, Rng& rng) {
  if (k < 2 || k > responses)
    rlhf::fail<config_error>("rlhf::toy::sample_rankings: k must be in [2, ", responses, "] (got ", k, ")");
  const std::size_t P = reward.size() / responses;
  std::vector<Ranking> out;
  out.reserve(n);
  std::vector<std::size_t> pool(responses);
  std::vector<double> weights(k);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t x = rng.below(P);
    for (std::size_t j = 0; j < responses; ++j) pool[j] = j;
    for (std::size_t j = 0; j < k; ++j) std::swap(pool[j], pool[j + rng.below(responses - j)]);  // k distinct
    Ranking r{static_cast<token_id>(x), {}};
    for (std::size_t left = k; left > 0; --left) {
      for (std::size_t j = 0; j < left; ++j) weights[j] = std::exp(reward[x * responses + pool[j]]);
      const std::size_t pick = rng.categorical(weights, left);
      r.ranked.push_back(static_cast<token_id>(pool[pick]));
      std::swap(pool[pick], pool[left - 1]);
    }
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace rlhf::toy
