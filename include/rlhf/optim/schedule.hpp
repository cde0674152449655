#pragma once
// Learning-rate schedules: linear warm-up, then constant, linear or cosine decay to a floor.
// A schedule is a pure function of the step; hand its value to an optimizer's set_learning_rate.
// LearningRateSchedule keeps the step too, so that the step is all a resumed run needs (docs/optim/state.md).
#include <cmath>
#include <cstddef>
#include <string_view>

#include "rlhf/core/error.hpp"

namespace rlhf {

enum class Decay { constant, linear, cosine };

struct ScheduleConfig {
  float peak_learning_rate = 1e-3f;
  std::size_t warmup_steps = 0;  // the rate rises linearly from peak/warmup_steps to peak over these steps
  std::size_t total_steps = 1;   // warm-up included; the decay reaches the floor at the last step
  Decay decay = Decay::cosine;
  float final_fraction = 0.0f;   // floor, as a fraction of the peak
};

namespace detail {
inline void validate_schedule(const ScheduleConfig& c, std::string_view fn) {
  require_positive(fn, "peak_learning_rate", c.peak_learning_rate);
  require_in_range(fn, "final_fraction", c.final_fraction, 0.0, 1.0);
  if (c.total_steps == 0 || c.warmup_steps > c.total_steps)
    fail<config_error>(fn, ": need 0 <= warmup_steps <= total_steps and total_steps >= 1 (got warmup_steps ",
                       c.warmup_steps, ", total_steps ", c.total_steps, ")");
  if (c.decay != Decay::constant && c.decay != Decay::linear && c.decay != Decay::cosine)
    fail<config_error>(fn, ": decay ", static_cast<int>(c.decay), " is not constant, linear or cosine");
}
}  // namespace detail

// Learning rate for step s = 0, 1, ..., total_steps − 1 (later steps stay at the floor).
inline float learning_rate_at(const ScheduleConfig& c, std::size_t s) {
  detail::validate_schedule(c, "rlhf::learning_rate_at");
  const double peak = c.peak_learning_rate;
  if (s < c.warmup_steps) return static_cast<float>(peak * double(s + 1) / double(c.warmup_steps));
  const std::size_t decay_steps = c.total_steps - c.warmup_steps;
  const double progress =
      decay_steps <= 1 ? 1.0 : std::fmin(1.0, double(s - c.warmup_steps) / double(decay_steps - 1));
  const double floor = peak * c.final_fraction;
  switch (c.decay) {
    case Decay::constant: return static_cast<float>(peak);
    case Decay::linear: return static_cast<float>(peak - (peak - floor) * progress);
    case Decay::cosine: return static_cast<float>(floor + (peak - floor) * 0.5 * (1.0 + std::cos(M_PI * progress)));
  }
  return static_cast<float>(peak);
}

// Where a schedule stands: its config and the step whose rate comes next.
struct ScheduleState {
  ScheduleConfig config;
  std::size_t step = 0;
};

// A schedule that counts its steps:
//
//   opt.set_learning_rate(schedule.learning_rate());  // learning_rate_at(config, step())
//   ... the optimizer step ...
//   schedule.advance();
//
// state() after N advances, restored into a fresh schedule, gives the rates of steps N, N + 1, ...
class LearningRateSchedule {
 public:
  explicit LearningRateSchedule(const ScheduleConfig& config = {}) : config_(config) {
    detail::validate_schedule(config_, "rlhf::LearningRateSchedule");
  }
  float learning_rate() const { return learning_rate_at(config_, step_); }
  void advance() { ++step_; }
  std::size_t step() const { return step_; }
  const ScheduleConfig& config() const { return config_; }

  ScheduleState state() const { return {config_, step_}; }
  // Continues from `s`; a config outside its range throws config_error before anything changes.
  void restore(const ScheduleState& s) {
    detail::validate_schedule(s.config, "rlhf::LearningRateSchedule::restore");
    config_ = s.config;
    step_ = s.step;
  }

 private:
  ScheduleConfig config_;
  std::size_t step_ = 0;
};

}  // namespace rlhf
