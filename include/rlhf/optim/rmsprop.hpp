#pragma once
// RMSprop (Hinton, 2012 lecture notes; centred form from Graves, 2013), stepping a flat parameter
// buffer in place. Matches torch.optim.RMSprop, whose weight decay is an L2 term added to the gradient:
//
//   g ← g + wd·p
//   v ← α v + (1 − α) g²                    centred: ḡ ← α ḡ + (1 − α) g,  v̂ = v − ḡ²  (else v̂ = v)
//   momentum μ > 0:  b ← μ b + g / (√v̂ + ε),  p ← p − lr·b
//   otherwise:       p ← p − lr · g / (√v̂ + ε)
//
// docs/optim/rmsprop.md. Satisfies rlhf::OptimizerFor like rlhf::AdamW; state() and restore() as AdamW's
// (RmspropState; files: optim/state_file.hpp; docs/optim/state.md).
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "rlhf/core/error.hpp"
#include "rlhf/optim/clip.hpp"
#include "rlhf/optim/state.hpp"

namespace rlhf {

struct RmspropConfig {
  float learning_rate = 1e-2f;
  float alpha = 0.99f;        // decay of the mean-square estimate
  float epsilon = 1e-8f;      // added to the root mean square
  float weight_decay = 0.0f;  // L2 penalty added to the gradient (coupled, unlike AdamW)
  float momentum = 0.0f;      // 0: off
  bool centered = false;      // divide by the estimated standard deviation instead of the RMS
};

// Everything an Rmsprop holds between steps (torch.optim.RMSprop's state_dict names).
template <class T>
struct RmspropState {
  RmspropConfig config;             // as it is now (learning_rate: the one a schedule set last)
  std::size_t step = 0;             // updates taken
  std::vector<T> square_avg;        // v [n]; all three empty before the first step
  std::vector<T> grad_avg;          // ḡ [n] when centered, else empty
  std::vector<T> momentum_buffer;   // b [n] when momentum > 0, else empty
};

namespace detail {
inline void validate_rmsprop(const RmspropConfig& c, std::string_view fn = "rlhf::Rmsprop") {
  require_in_range(fn, "learning_rate", c.learning_rate, 0.0, std::numeric_limits<double>::max());
  require_in_range(fn, "alpha", c.alpha, 0.0, 0.999999999);
  require_positive(fn, "epsilon", c.epsilon);
  require_in_range(fn, "weight_decay", c.weight_decay, 0.0, std::numeric_limits<double>::max());
  require_in_range(fn, "momentum", c.momentum, 0.0, 0.999999);
}

// A state some Rmsprop can be in: a valid config (config_error); buffers empty before the first step, else
// square_avg [n], grad_avg [n] exactly when centered and momentum_buffer [n] exactly when momentum > 0
// (shape_error); every value finite and square_avg ≥ 0 (value_error). Messages begin with `fn`.
template <class T>
void validate_rmsprop_state(std::string_view fn, const RmspropState<T>& s) {
  validate_rmsprop(s.config, fn);
  const std::size_t n = s.square_avg.size();
  const bool started = n > 0;
  const auto require_buffer = [&](const char* field, std::size_t got, bool used, const char* when) {
    const std::size_t want = started && used ? n : 0;
    if (got != want)
      fail<shape_error>(fn, ": '", field, "' has ", got, " elements but ", want, " were expected (", n,
                        " in 'square_avg'; '", field, "' is used ", when, ")");
  };
  require_buffer("grad_avg", s.grad_avg.size(), s.config.centered, "when centered");
  require_buffer("momentum_buffer", s.momentum_buffer.size(), s.config.momentum > 0, "when momentum > 0");
  if (s.step == 0 && started)
    fail<shape_error>(fn, ": step is 0 but 'square_avg' holds ", n, " values; an Rmsprop sizes it at its first step");
  require_finite_state(fn, "square_avg", std::span<const T>(s.square_avg), /*nonnegative=*/true);
  require_finite_state(fn, "grad_avg", std::span<const T>(s.grad_avg));
  require_finite_state(fn, "momentum_buffer", std::span<const T>(s.momentum_buffer));
}
}  // namespace detail

template <class T = float>
class Rmsprop {
 public:
  using scalar = T;

  explicit Rmsprop(const RmspropConfig& config = {}) : config_(config) { detail::validate_rmsprop(config_); }

  void step(std::span<T> params, std::span<const T> grads) {
    constexpr const char* fn = "rlhf::Rmsprop::step";
    detail::begin_optimizer_step(fn, params, grads, square_avg_.size(), [&] {
      square_avg_.assign(params.size(), T(0));
      if (config_.centered) grad_avg_.assign(params.size(), T(0));
      if (config_.momentum > 0) momentum_.assign(params.size(), T(0));
    });
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

  // A copy of everything the next step depends on.
  RmspropState<T> state() const { return {config_, t_, square_avg_, grad_avg_, momentum_}; }
  // Continues from `s`; throws (validate_rmsprop_state) before anything changes.
  void restore(RmspropState<T> s) {
    detail::validate_rmsprop_state("rlhf::Rmsprop::restore", s);
    config_ = s.config;
    t_ = s.step;
    square_avg_ = std::move(s.square_avg);
    grad_avg_ = std::move(s.grad_avg);
    momentum_ = std::move(s.momentum_buffer);
  }

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
