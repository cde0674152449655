#include "rlhf/algorithms/kl_control.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace rlhf;

TEST_CASE("kl_control: the fixed controller never moves") {
  FixedKlController c{.coef = 0.05f};
  for (const double kl : {0.0, 100.0, -3.0, 1e9}) c.update(kl, 512);
  CHECK(c.value() == 0.05f);
  CHECK(FixedKlController{}.value() == 0.1);
}

TEST_CASE("kl_control: the adaptive controller follows Ziegler et al.'s proportional rule") {
  SUBCASE("above target: coef grows") {
    AdaptiveKlController c{.coef = 0.2f, .target = 6.0f, .horizon = 10000.0f};
    c.update(6.6, 100);  // e = 0.1
    CHECK(c.value() == doctest::Approx(0.2 * (1 + 0.1 * 100 / 10000.0)).epsilon(1e-6));
  }
  SUBCASE("below target: coef shrinks") {
    AdaptiveKlController c{.coef = 0.2f, .target = 6.0f, .horizon = 10000.0f};
    c.update(5.7, 1000);  // e = −0.05
    CHECK(c.value() == doctest::Approx(0.2 * (1 - 0.05 * 0.1)).epsilon(1e-6));
  }
  SUBCASE("the error is clipped to ±0.2") {
    AdaptiveKlController up{.coef = 1.0f, .target = 1.0f, .horizon = 100.0f}, down = up;
    up.update(50.0, 10);    // e = 49 → 0.2
    down.update(-5.0, 10);  // e = −6 → −0.2 (k1 estimates of KL can be negative)
    CHECK(up.value() == doctest::Approx(1.02));
    CHECK(down.value() == doctest::Approx(0.98));
  }
  SUBCASE("on target: no change") {
    AdaptiveKlController c{.coef = 0.3};
    c.update(6.0, 256);
    CHECK(c.value() == 0.3);
  }
  CHECK(AdaptiveKlController{}.value() == 0.1);
}

TEST_CASE("kl_control: on a toy where KL = 2 / coef, the adaptive controller reaches the target") {
  // KL falls as the penalty grows; KL = 6 at coef = 1/3. Start far on either side.
  for (const float start : {0.01f, 3.0f}) {
    AdaptiveKlController c{.coef = start, .target = 6.0f, .horizon = 10000.0f};
    const auto kl = [&] { return 2.0 / c.value(); };
    double previous_gap = std::abs(kl() - c.target);
    for (int step = 0; step < 3000; ++step) {
      c.update(kl(), 512);
      const double gap = std::abs(kl() - c.target);
      CHECK(gap <= previous_gap + 1e-9);  // monotone approach: no overshoot with these gains
      previous_gap = gap;
    }
    CHECK(kl() == doctest::Approx(6.0).epsilon(1e-4));
    CHECK(c.value() == doctest::Approx(1.0 / 3).epsilon(1e-4));
  }
}

TEST_CASE("kl_control: bad input names the setting") {
  AdaptiveKlController c;
  CHECK_THROWS_WITH_AS(c.update(NAN, 10), doctest::Contains("observed_kl is nan"), value_error);
  CHECK_THROWS_AS(c.update(INFINITY, 10), value_error);
  CHECK_THROWS_AS(FixedKlController{}.update(NAN, 10), value_error);
  CHECK_THROWS_WITH_AS((AdaptiveKlController{.target = 0.f}.update(1.0, 10)), doctest::Contains("target must be > 0"),
                       config_error);
  CHECK_THROWS_WITH_AS((AdaptiveKlController{.horizon = -1.f}.update(1.0, 10)),
                       doctest::Contains("horizon must be > 0"), config_error);
  CHECK_THROWS_WITH_AS((AdaptiveKlController{.coef = -0.1f}.update(1.0, 10)), doctest::Contains("coef must be >= 0"),
                       config_error);
  CHECK_THROWS_WITH_AS((AdaptiveKlController{.horizon = 100.f}.update(1.0, 500)), doctest::Contains("n_steps (500)"),
                       config_error);
  CHECK(c.value() == 0.1);  // a failed update leaves the coefficient alone
}
