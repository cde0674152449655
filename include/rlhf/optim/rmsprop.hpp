#pragma once
// RMSprop (Hinton, 2012 lecture notes; centred form from Graves, 2013), stepping a flat parameter
// buffer in place. Matches torch.optim.RMSprop, whose weight decay is an L2 term added to the gradient:
//
//   g ← g + wd·p
//   v ← α v + (1 − α) g²                    centred: ḡ ← α ḡ + (1 − α) g,  v̂ = v − ḡ²  (else v̂ = v)
//   momentum μ > 0:  b ← μ b + g / (√v̂ + ε),  p ← p − lr·b
//   otherwise:       p ← p − lr · g / (√v̂ + ε)
//
// docs/optim/rmsprop.md. Satisfies rlhf::OptimizerFor like rlhf::AdamW.
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <vector>

#include "rlhf/core/error.hpp"
#include "rlhf/optim/clip.hpp"

namespace rlhf {

struct RmspropConfig {
  float learning_rate = 1e-2f;
  float alpha = 0.99f;        // decay of the mean-square estimate
  float epsilon = 1e-8f;      // added to the root mean square
  float weight_decay = 0.0f;  // L2 penalty added to the gradient (coupled, unlike AdamW)
  float momentum = 0.0f;      // 0: off
  bool centered = false;      // divide by the estimated standard deviation instead of the RMS
};

namespace detail {
inline void validate_rmsprop(const RmspropConfig& c) {
  constexpr const char* fn = "rlhf::Rmsprop";
  require_in_range(fn, "learning_rate", c.learning_rate, 0.0, std::numeric_limits<double>::max());
  require_in_range(fn, "alpha", c.alpha, 0.0, 0.999999999);
  require_positive(fn, "epsilon", c.epsilon);
  require_in_range(fn, "weight_decay", c.weight_decay, 0.0, std::numeric_limits<double>::max());
  require_in_range(fn, "momentum", c.momentum, 0.0, 0.999999);
}
}  // namespace detail

template <class T = float>
class Rmsprop {
 public:
  using scalar = T;

  explicit Rmsprop(const RmspropConfig& config = {}) : config_(config) { detail::validate_rmsprop(config_); }

  void step(std::span<T> params, std::span<const T> grads) {
    constexpr const char* fn = "rlhf::Rmsprop::step";
    require_size(fn, "grads", grads.size(), params.size(), "the number of parameters");
    require_finite_gradient(fn, "grads", grads);  // before any change: a refused step leaves everything as it was
    if (square_avg_.empty()) {
      square_avg_.assign(params.size(), T(0));
      if (config_.centered) grad_avg_.assign(params.size(), T(0));
      if (config_.momentum > 0) momentum_.assign(params.size(), T(0));
    }
    require_size(fn, "params", params.size(), square_avg_.size(), "the size of the optimizer state");
    ++t_;
    const T lr = T(config_.learning_rate), alpha = T(config_.alpha), eps = T(config_.epsilon);
    const T wd = T(config_.weight_decay), mu = T(config_.momentum);
    for (std::size_t i = 0, n = params.size(); i < n; ++i) {
      const T g = grads[i] + wd * params[i];
      square_avg_[i] = alpha * square_avg_[i] + (T(1) - alpha) * g * g;
      T mean_square = square_avg_[i];
      if (config_.centered) {
        grad_avg_[i] = alpha * grad_avg_[i] + (T(1) - alpha) * g;
        mean_square -= grad_avg_[i] * grad_avg_[i];
        if (mean_square < T(0)) mean_square = T(0);  // rounding; the variance is never negative
      }
      const T update = g / (std::sqrt(mean_square) + eps);
      if (config_.momentum > 0) {
        momentum_[i] = mu * momentum_[i] + update;
        params[i] -= lr * momentum_[i];
      } else {
        params[i] -= lr * update;
      }
    }
  }

  const RmspropConfig& config() const { return config_; }
  void set_learning_rate(float lr) {
    require_in_range("rlhf::Rmsprop::set_learning_rate", "learning_rate", lr, 0.0, std::numeric_limits<double>::max());
    config_.learning_rate = lr;
  }
  std::size_t steps() const { return t_; }
  void reset() {
    square_avg_.clear();
    grad_avg_.clear();
    momentum_.clear();
    t_ = 0;
  }

 private:
  RmspropConfig config_;
  std::vector<T> square_avg_, grad_avg_, momentum_;  // [n] each (the last two only when used)
  std::size_t t_ = 0;
};

}  // namespace rlhf
