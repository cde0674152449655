#pragma once
// Learning-rate schedules: linear warm-up, then constant, linear or cosine decay to a floor.
// A schedule is a pure function of the step; hand its value to an optimizer's set_learning_rate.
#include <cmath>
#include <cstddef>

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

// Learning rate for step s = 0, 1, ..., total_steps − 1 (later steps stay at the floor).
inline float learning_rate_at(const ScheduleConfig& c, std::size_t s) {
  constexpr const char* fn = "rlhf::learning_rate_at";
  require_positive(fn, "peak_learning_rate", c.peak_learning_rate);
  require_in_range(fn, "final_fraction", c.final_fraction, 0.0, 1.0);
  if (c.total_steps == 0 || c.warmup_steps > c.total_steps)
    fail<config_error>(fn, ": need 0 <= warmup_steps <= total_steps and total_steps >= 1 (got warmup_steps ",
                       c.warmup_steps, ", total_steps ", c.total_steps, ")");
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

}  // namespace rlhf
