#pragma once
// The one training step every method in algorithms/ is made of, and the checks of the batches it takes:
//
//   model.zero_grad()
//   for each micro-batch, rows [lo, hi) of B:   r = body(lo, hi, share)      share = (hi − lo) / B
//       the body scores its rows, takes its loss, runs model.backward with d loss scaled by `share`
//   grad_norm = ‖gradients‖₂; if max_grad_norm > 0 and grad_norm > max_grad_norm, scale the gradients down to it
//   optimizer.step(model.parameters(), model.gradients())
//
// A non-finite loss or gradient throws rlhf::value_error before the optimizer step, so the parameters and the
// optimizer's state stay as they were (a trainer stops there and keeps its last good checkpoint). Gradients in
// device memory (gradients_on_device) are not read on the host: for them only the loss is checked here.
// Because each micro-batch's loss is a mean over its rows, the scaled gradients add up to the gradient of
// the whole batch's mean loss: M micro-batches give the step of one. A method is its loss plus a body.
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string_view>
#include <utility>

#include "rlhf/core/batch.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/distributed/communicator.hpp"
#include "rlhf/optim/clip.hpp"

namespace rlhf {

struct StepOptions {
  // M ≥ 1: the batch is split into M row blocks (sizes differing by at most one) whose gradients are
  // accumulated before the one optimizer step; the step equals the step on the whole batch.
  std::size_t micro_batches = 1;
  // > 0: clip the gradient to this global L2 norm before the optimizer step (TRL's max_grad_norm); 0: no clipping.
  double max_grad_norm = 0;
  // Data parallel: this rank's rows are its part of the global batch; the gradient, the loss and the metrics
  // become the global batch's before the optimizer step (distributed/communicator.hpp). nullptr: one process.
  Communicator* communicator = nullptr;
  // This rank's weight in the global mean: its rows (0, the default) for a loss that is a mean over rows; its
  // token count for a token mean (sft_step and the PPO-family steps set it themselves).
  double rank_weight = 0;
};

struct StepResult {
  double loss = 0;  // the loss of the whole batch, as the loss function defines it (a mean)
  Metrics metrics;  // the loss's metrics over the whole batch (each combined by its own rule)
  double grad_norm = std::numeric_limits<double>::quiet_NaN();  // ‖g‖₂ before clipping; NaN for device gradients
};

namespace detail {

// The whole batch is B rows; micro-batch m of M covers rows [m·B/M, (m+1)·B/M).
inline std::size_t micro_batch_count(std::string_view fn, const StepOptions& o, std::size_t rows) {
  if (o.micro_batches == 0 || o.micro_batches > rows)
    fail<config_error>(fn, ": micro_batches must be in [1, ", rows, "] for a batch of ", rows, " (got ",
                       o.micro_batches, ")");
  return o.micro_batches;
}
inline std::pair<std::size_t, std::size_t> micro_batch_rows(std::size_t rows, std::size_t count, std::size_t m) {
  return {m * rows / count, (m + 1) * rows / count};
}

// A token batch as the steps need it: buffers of B·T, at least one row, a response token in every row.
// (The vocabulary is the model's business: its log_probs checks the ids.)
inline void require_token_batch(std::string_view fn, std::string_view arg, const TokenBatch& b) {
  require_nonempty(fn, arg, b.batch);
  require_size(fn, detail::cat(arg, ".tokens"), b.tokens.size(), b.batch * b.time, "B*T");
  require_size(fn, detail::cat(arg, ".response_mask"), b.response_mask.size(), b.batch * b.time, "B*T");
  if (!b.attention_mask.empty())
    require_size(fn, detail::cat(arg, ".attention_mask"), b.attention_mask.size(), b.batch * b.time, "B*T (or 0)");
  for (std::size_t r = 0; r < b.batch; ++r)
    if (b.response_length(r) == 0)
      fail<value_error>(fn, ": '", arg, "' row ", r, " of ", b.batch, " has no response token");
}

// Both sides of a preference batch, with as many rejected rows as chosen; returns B, the number of pairs.
inline std::size_t require_preference_batch(std::string_view fn, const PreferenceBatch& batch) {
  require_token_batch(fn, "chosen", batch.chosen);
  require_token_batch(fn, "rejected", batch.rejected);
  require_size(fn, "rejected", batch.rejected.batch, batch.chosen.batch, "the number of chosen rows");
  return batch.chosen.batch;
}

// K ≥ 2 responses per list, B·K valid rows, and a length per list if any; returns B, the number of lists.
inline std::size_t require_ranked_batch(std::string_view fn, const RankedBatch& batch) {
  const std::size_t K = batch.k;
  if (K < 2) fail<shape_error>(fn, ": k is ", K, "; a ranking needs at least 2 responses per list");
  require_token_batch(fn, "responses", batch.responses);
  if (batch.responses.batch % K != 0)
    fail<shape_error>(fn, ": 'responses' has ", batch.responses.batch, " rows, not a multiple of k = ", K);
  const std::size_t B = batch.lists();
  if (!batch.lengths.empty()) require_size(fn, "lengths", batch.lengths.size(), B, "the number of lists");
  return B;
}

// A model whose gradients() are device memory says so (static constexpr bool gradients_on_device = true): the
// host cannot read them, so its steps measure no norm and cannot clip.
template <class Model>
constexpr bool gradients_on_device() {
  if constexpr (requires { Model::gradients_on_device; })
    return Model::gradients_on_device;
  else
    return false;
}

// Measures the gradient's global norm and clips it when options.max_grad_norm > 0; throws value_error on NaN or Inf.
template <class Model>
double measure_and_clip(std::string_view fn, Model& model, const StepOptions& options) {
  if (options.max_grad_norm < 0 || !std::isfinite(options.max_grad_norm))
    fail<config_error>(fn, ": max_grad_norm must be >= 0 and finite (got ", options.max_grad_norm, ")");
  if constexpr (gradients_on_device<Model>()) {
    if (options.max_grad_norm > 0)
      fail<config_error>(fn, ": max_grad_norm needs gradients in host memory; this model keeps them on the device");
    return std::numeric_limits<double>::quiet_NaN();
  } else {
    std::span grads{model.gradients()};
    if (options.max_grad_norm > 0) return clip_gradient_norm(grads, options.max_grad_norm);
    return require_finite_gradient(fn, "gradients", std::span<const typename decltype(grads)::value_type>(grads));
  }
}

}  // namespace detail

// The step above for any model with zero_grad / parameters / gradients and any optimizer. `body(lo, hi,
// share)` returns its loss's result (anything with `.loss` and `.metrics`); the step's loss is the
// share-weighted sum of theirs and its metrics combine theirs (Metrics::combine).
template <class Model, class Optimizer, class Body>
StepResult training_step(std::string_view fn, Model& model, Optimizer& optimizer, std::size_t rows,
                         const StepOptions& options, Body&& body) {
  const std::size_t count = detail::micro_batch_count(fn, options, rows);
  StepResult out;
  model.zero_grad();
  for (std::size_t m = 0; m < count; ++m) {
    const auto [lo, hi] = detail::micro_batch_rows(rows, count, m);
    const double share = static_cast<double>(hi - lo) / static_cast<double>(rows);
    const auto part = body(lo, hi, share);
    out.loss += share * part.loss;
    out.metrics.combine(part.metrics, share);
  }
  if (options.communicator && options.communicator->size() > 1) {
    Communicator& c = *options.communicator;
    const double weight = options.rank_weight > 0 ? options.rank_weight : static_cast<double>(rows);
    out.loss = reduce_step_result(c, rows, weight, out.loss, out.metrics);  // the same on every rank
    if (!std::isfinite(out.loss))
      fail<value_error>(fn, ": the loss over the ranks is ", out.loss, "; the step is refused and nothing is changed");
    weighted_gradient_mean(c, std::span{model.gradients()}, weight, detail::gradients_on_device<Model>());
  }
  if (!std::isfinite(out.loss))
    fail<value_error>(fn, ": the loss is ", out.loss, "; the step is refused and nothing is changed");
  out.grad_norm = detail::measure_and_clip(fn, model, options);
  optimizer.step(model.parameters(), model.gradients());
  return out;
}

}  // namespace rlhf
