#pragma once
// Controllers for the KL coefficient κ of PPO's per-token penalty −κ (log π − log π_ref)
// (rlhf::kl_penalized_rewards). Plain host code: one double of state, updated once per PPO batch.
//
//   fixed    : κ never changes.
//   adaptive : e = clip(KL / target − 1, −0.2, 0.2),  κ ← κ (1 + e · n_steps / horizon)
//              (Ziegler et al., 2019)
// docs/algorithms/kl_control.md has the settings.
#include <cmath>
#include <cstddef>

#include "rlhf/core/error.hpp"

namespace rlhf {

struct FixedKlController {
  double coef = 0.1;  // κ

  double value() const { return coef; }
  // Rejects a NaN or infinite observed_kl (as AdaptiveKlController does), then changes nothing.
  void update(double observed_kl, std::size_t /*n_steps*/) {
    if (!std::isfinite(observed_kl))
      fail<value_error>("rlhf::FixedKlController::update: observed_kl is ", observed_kl, "; it must be finite");
  }
};

struct AdaptiveKlController {
  double coef = 0.1;         // κ, the starting value; moved by update
  double target = 6.0;       // KL (nats per sequence, as observed) that κ steers towards
  double horizon = 10000.0;  // samples over which a KL ≥ 20% off target changes κ by about e^{±0.2}

  double value() const { return coef; }

  // observed_kl: the KL between policy and reference measured on the last batch (per sequence, summed over
  // tokens, as in Ziegler et al.); n_steps: the samples in that batch.
  void update(double observed_kl, std::size_t n_steps) {
    constexpr const char* fn = "rlhf::AdaptiveKlController::update";
    require_positive(fn, "target", target);
    require_positive(fn, "horizon", horizon);
    if (!(coef >= 0.0) || !std::isfinite(coef)) fail<config_error>(fn, ": coef must be >= 0 (got ", coef, ")");
    if (!std::isfinite(observed_kl)) fail<value_error>(fn, ": observed_kl is ", observed_kl, "; it must be finite");
    // The factor 1 + e·n/h stays > 0 only while 0.2·n/h < 1; past that one batch could flip κ's sign.
    const double step = static_cast<double>(n_steps) / horizon;
    if (max_error * step >= 1.0)
      fail<config_error>(fn, ": n_steps (", n_steps, ") must be < 5 * horizon (", horizon,
                         ") so that one update keeps the coefficient positive");
    double error = observed_kl / target - 1.0;
    error = error < -max_error ? -max_error : (error > max_error ? max_error : error);
    coef *= 1.0 + error * step;
  }

  static constexpr double max_error = 0.2;  // the proportional error is clipped to ±0.2
};

}  // namespace rlhf
