#pragma once
// The optimizer of a training run, one of the two the protocol tunes over (docs/experiments/sentiment.md):
//   adamw    rlhf::AdamW (β1 0.9, β2 0.999, ε 1e-8, weight decay 0), constant rate, no clipping: the sweeps' own
//   rmsprop  rlhf::Rmsprop as torch.optim.RMSprop (α 0.99, ε 1e-8, no momentum, weight decay 0), a linear warm-up
//            over the first ⌈warmup_fraction · steps⌉ steps, then constant, the gradient clipped to max_grad_norm:
//            the DPO paper's and repository's optimizer
// SweepOptimizer is an rlhf::OptimizerFor any model with float parameters; before each training step,
// next_step() sets the scheduled rate and gives the StepOptions (clipping) of that step.
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <span>
#include <stdexcept>
#include <string>
#include <variant>

#include "rlhf/algorithms/step.hpp"
#include "rlhf/optim/adamw.hpp"
#include "rlhf/optim/rmsprop.hpp"
#include "rlhf/optim/schedule.hpp"

namespace sentiment {

enum class OptimizerKind { adamw, rmsprop };

inline const char* optimizer_name(OptimizerKind k) { return k == OptimizerKind::adamw ? "adamw" : "rmsprop"; }

inline OptimizerKind optimizer_named(const std::string& name) {
  if (name == "adamw") return OptimizerKind::adamw;
  if (name == "rmsprop") return OptimizerKind::rmsprop;
  throw std::invalid_argument("unknown optimizer '" + name + "' (adamw or rmsprop)");
}

// A run's optimizer; learning_rate 0 takes the sweep's rate for the method (the sweeps before the protocol).
struct OptimizerSettings {
  OptimizerKind kind = OptimizerKind::adamw;
  float learning_rate = 0;

  bool is_default() const { return kind == OptimizerKind::adamw && learning_rate == 0; }
  std::string text() const {
    char s[48];
    std::snprintf(s, sizeof s, "%s lr %g", optimizer_name(kind), double(learning_rate));
    return s;
  }
};

// What rmsprop adds (the DPO repository's warm-up and max_grad_norm, the warm-up as a fraction of a run's steps).
struct RmspropRecipe {
  double warmup_fraction = 0.1;
  double max_grad_norm = 10.0;
};

class SweepOptimizer {
 public:
  using scalar = float;

  // `steps`: the training steps of the run (one optimizer step each), for the warm-up.
  SweepOptimizer(OptimizerKind kind, float learning_rate, std::size_t steps, const RmspropRecipe& recipe = {})
      : opt_(make(kind, learning_rate)),
        schedule_({.peak_learning_rate = learning_rate,
                   .warmup_steps = kind == OptimizerKind::rmsprop ? warmup_steps(steps, recipe) : 0,
                   .total_steps = std::max<std::size_t>(1, steps),
                   .decay = rlhf::Decay::constant}),
        max_grad_norm_(kind == OptimizerKind::rmsprop ? recipe.max_grad_norm : 0.0) {}

  static std::size_t warmup_steps(std::size_t steps, const RmspropRecipe& recipe) {
    return std::min(steps, std::size_t(std::ceil(recipe.warmup_fraction * double(steps))));
  }

  // Sets this step's rate from the schedule and returns its options (clipping); call once per training step.
  rlhf::StepOptions next_step() {
    set_learning_rate(schedule_.learning_rate());
    schedule_.advance();
    return {.max_grad_norm = max_grad_norm_};
  }

  void step(std::span<float> params, std::span<const float> grads) {
    std::visit([&](auto& o) { o.step(params, grads); }, opt_);
  }
  void set_learning_rate(float lr) {
    std::visit([&](auto& o) { o.set_learning_rate(lr); }, opt_);
  }
  float learning_rate() const {
    return std::visit([](const auto& o) { return o.config().learning_rate; }, opt_);
  }

 private:
  static std::variant<rlhf::AdamW<float>, rlhf::Rmsprop<float>> make(OptimizerKind kind, float lr) {
    if (kind == OptimizerKind::rmsprop) return rlhf::Rmsprop<float>({.learning_rate = lr});
    return rlhf::AdamW<float>({.learning_rate = lr, .weight_decay = 0.0f});
  }

  std::variant<rlhf::AdamW<float>, rlhf::Rmsprop<float>> opt_;
  rlhf::LearningRateSchedule schedule_;
  double max_grad_norm_;
};

}  // namespace sentiment
