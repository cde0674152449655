#include "rlhf/optim/schedule.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "rlhf/optim/clip.hpp"

using namespace rlhf;

TEST_CASE("schedule: warm-up rises linearly to the peak, then each decay ends at the floor") {
  const ScheduleConfig base{.peak_learning_rate = 1.0f, .warmup_steps = 4, .total_steps = 14, .final_fraction = 0.1f};
  for (const Decay d : {Decay::constant, Decay::linear, Decay::cosine}) {
    auto c = base;
    c.decay = d;
    CHECK(learning_rate_at(c, 0) == doctest::Approx(0.25));
    CHECK(learning_rate_at(c, 3) == doctest::Approx(1.0));
    CHECK(learning_rate_at(c, 4) == doctest::Approx(1.0));  // first decay step is the peak
    const double last = d == Decay::constant ? 1.0 : 0.1;
    CHECK(learning_rate_at(c, 13) == doctest::Approx(last));
    CHECK(learning_rate_at(c, 100) == doctest::Approx(last));
  }
  auto linear = base;
  linear.decay = Decay::linear;
  CHECK(learning_rate_at(linear, 4 + 9 / 3) == doctest::Approx(1.0 - 0.9 / 3));  // a third of the way down
  const ScheduleConfig odd{.peak_learning_rate = 2.0f, .warmup_steps = 0, .total_steps = 3, .final_fraction = 0.0f};
  CHECK(learning_rate_at(odd, 1) == doctest::Approx(1.0));  // half-way down the cosine: (peak + floor) / 2
}

TEST_CASE("schedule: bad settings are named") {
  CHECK_THROWS_WITH_AS(learning_rate_at({.warmup_steps = 5, .total_steps = 3}, 0), doctest::Contains("warmup_steps 5"),
                       config_error);
  CHECK_THROWS_WITH_AS(learning_rate_at({.peak_learning_rate = 0.0f}, 0), doctest::Contains("peak_learning_rate"),
                       config_error);
  CHECK_THROWS_WITH_AS(learning_rate_at({.final_fraction = 1.5f}, 0), doctest::Contains("final_fraction"), config_error);
}

TEST_CASE("clip_gradient_norm: scales to max_norm only when above it, returns the old norm") {
  std::vector<float> g{3.0f, 4.0f};  // norm 5
  CHECK(clip_gradient_norm(std::span<float>(g), 10.0) == doctest::Approx(5.0));
  CHECK(g[0] == 3.0f);
  CHECK(clip_gradient_norm(std::span<float>(g), 1.0) == doctest::Approx(5.0));
  CHECK(g[0] == doctest::Approx(0.6));
  CHECK(g[1] == doctest::Approx(0.8));
  CHECK(std::hypot(g[0], g[1]) == doctest::Approx(1.0));
  std::vector<double> bad{1.0, NAN};
  CHECK_THROWS_WITH_AS(clip_gradient_norm(std::span<double>(bad), 1.0), doctest::Contains("NaN or Inf"), value_error);
  CHECK_THROWS_AS(clip_gradient_norm(std::span<double>(bad), 0.0), config_error);
}

// The norm is summed in eight partial sums over blocks of eight, then the remainder: lengths on both sides of a
// block, against the closed form Σ_{i<n} i² = (n−1)n(2n−1)/6 (exact in double here), and a NaN or an Inf found
// wherever it sits.
TEST_CASE("require_finite_gradient: the norm over blocks and their remainder; a non-finite value anywhere refused") {
  for (const std::size_t n : {std::size_t(1), std::size_t(7), std::size_t(8), std::size_t(9), std::size_t(1003)}) {
    std::vector<float> g(n);
    for (std::size_t i = 0; i < n; ++i) g[i] = float(i);
    const double want = std::sqrt(double(n - 1) * double(n) * double(2 * n - 1) / 6.0);
    INFO("n = ", n);
    CHECK(require_finite_gradient("test", "g", std::span<const float>(g)) == doctest::Approx(want).epsilon(1e-15));
    for (const std::size_t at : {std::size_t(0), n / 2, n - 1}) {
      for (const float bad : {NAN, INFINITY}) {
        auto h = g;
        h[at] = bad;
        const std::string where = "the first at index " + std::to_string(at);
        CHECK_THROWS_WITH_AS(require_finite_gradient("test", "g", std::span<const float>(h)),
                             doctest::Contains(where.c_str()), value_error);
      }
    }
  }
}
