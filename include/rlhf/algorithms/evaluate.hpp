#pragma once
// Evaluation: any step of algorithms/ run on a batch for its loss and metrics, with no update.
//
//   rlhf::StepResult r = rlhf::evaluate(policy, [&](auto& frozen, auto& no_update) {
//     return rlhf::dpo_step(frozen, reference, no_update, batch, config);
//   });
//
// The step sees `frozen` (the model's forward passes; its backward passes do nothing and it has no parameters)
// and `no_update` (an optimizer that changes nothing), so the model, its gradients and every optimizer are
// left as they were, and the loss is the one training would take on the same batch. docs/algorithms/evaluate.md.
#include <limits>
#include <span>
#include <utility>

#include "rlhf/algorithms/step.hpp"
#include "rlhf/core/concepts.hpp"

namespace rlhf {

// A model's forward passes only: backward passes are dropped and there are no parameters to step.
template <class Model>
class Frozen {
 public:
  using backend = typename Model::backend;
  using scalar = typename backend::scalar;

  explicit Frozen(Model& model) : model_(model) {}

  auto log_probs(const TokenBatch& batch) requires HasLogProbs<Model> { return model_.log_probs(batch); }
  auto scores(const TokenBatch& batch) requires requires(Model& m) { m.scores(batch); } { return model_.scores(batch); }
  auto values(const TokenBatch& batch) requires requires(Model& m) { m.values(batch); } { return model_.values(batch); }

  void zero_grad() {}
  void backward(const TokenBatch&, const typename backend::matrix&) {}
  void backward_scores(const TokenBatch&, const typename backend::vector&) {}
  void backward_values(const TokenBatch&, const typename backend::matrix&) {}
  std::span<scalar> parameters() { return {}; }
  std::span<scalar> gradients() { return {}; }

 private:
  Model& model_;
};

// An optimizer that takes no step.
struct NoUpdate {
  template <class Parameters, class Gradients>
  void step(Parameters&&, Gradients&&) const {}
};

// `step(frozen, no_update)` → its StepResult, computed without changing `model`.
template <class Model, class Step>
StepResult evaluate(Model& model, Step&& step) {
  Frozen<Model> frozen(model);
  NoUpdate no_update;
  StepResult r = std::forward<Step>(step)(frozen, no_update);
  r.grad_norm = std::numeric_limits<double>::quiet_NaN();  // no gradient was taken
  return r;
}

}  // namespace rlhf
