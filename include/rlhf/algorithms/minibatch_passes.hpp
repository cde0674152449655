#pragma once
// The update loop of the online methods (ppo.hpp, critic_free.hpp): `passes` sweeps over the N rows of one
// rollout, each sweep in a fresh shuffled order cut into `minibatches` row blocks (sizes differing by at most
// one), one optimizer step per block:
//
//   order = 0, 1, …, N−1
//   for each pass:  shuffle order (Fisher–Yates, rng.below) unless shuffle is false
//     for block j:  body(rows = order[j·N/M, (j+1)·N/M), weight = 1 / (passes · M))
//
// `weight` is each block's share of the update's reported means: every block counts alike.
#include <cstddef>
#include <numeric>
#include <span>
#include <utility>
#include <vector>

#include "rlhf/algorithms/step.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/losses/aggregation.hpp"

namespace rlhf {

struct MinibatchSchedule {
  std::size_t passes = 1;       // sweeps over the rollout (PPO: epochs; GRPO: num_iterations μ)
  std::size_t minibatches = 1;  // optimizer steps per sweep, ≤ the rollout's rows
  bool shuffle = true;          // a new row order for every sweep
};

template <class Body>
void minibatch_passes(std::size_t rows, const MinibatchSchedule& schedule, Rng& rng, Body&& body) {
  std::vector<std::size_t> order(rows);
  std::iota(order.begin(), order.end(), std::size_t{0});
  const double weight = 1.0 / static_cast<double>(schedule.passes * schedule.minibatches);
  for (std::size_t pass = 0; pass < schedule.passes; ++pass) {
    if (schedule.shuffle)
      for (std::size_t i = rows; i-- > 1;) std::swap(order[i], order[rng.below(i + 1)]);
    for (std::size_t j = 0; j < schedule.minibatches; ++j) {
      const auto [lo, hi] = detail::micro_batch_rows(rows, schedule.minibatches, j);
      body(std::span<const std::size_t>(order.data() + lo, hi - lo), weight);
    }
  }
}

// The options of one minibatch's optimizer step: the caller's clipping and communicator, the minibatch taken
// whole (one micro-batch), and this rank's weight in the global mean: its response tokens under a token mean,
// else its rows.
inline StepOptions minibatch_step_options(const StepOptions& options, Aggregation how, double tokens, double rows) {
  return {.micro_batches = 1,
          .max_grad_norm = options.max_grad_norm,
          .communicator = options.communicator,
          .rank_weight = how == Aggregation::token_mean ? tokens : rows};
}

namespace detail {

// The StepOptions of an online step while its config still carries the older max_grad_norm and communicator
// fields: what `options` sets wins, the config fills in the rest.
template <class Config>
StepOptions online_step_options(const Config& config, const StepOptions& options) {
  StepOptions out = options;
  if (out.max_grad_norm == 0) out.max_grad_norm = config.max_grad_norm;
  if (!out.communicator) out.communicator = config.communicator;
  return out;
}

}  // namespace detail
}  // namespace rlhf
