#include "rlhf/core/math.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <initializer_list>
#include <limits>

#include "rlhf/core/rng.hpp"

using namespace rlhf::math;

TEST_CASE("math: log_sigmoid and sigmoid against the direct formula, and at the extremes") {
  for (double x : {-30.0, -3.0, -0.5, 0.0, 0.25, 4.0, 30.0}) {
    CHECK(log_sigmoid(x) == doctest::Approx(std::log(1 / (1 + std::exp(-x)))).epsilon(1e-12));
    CHECK(sigmoid(x) == doctest::Approx(1 / (1 + std::exp(-x))).epsilon(1e-12));
  }
  CHECK(log_sigmoid(-1e4f) == doctest::Approx(-1e4f));
  CHECK(log_sigmoid(1e4f) == 0.0f);
  CHECK(sigmoid(-1e4f) == 0.0f);
  CHECK(sigmoid(1e4f) == 1.0f);
}

TEST_CASE("math: log1m_exp is accurate on both sides of its switch point") {
  for (double x : {-1e-10, -1e-3, -0.5, -0.7, -2.0, -40.0})
    CHECK(log1m_exp(x) == doctest::Approx(std::log(-std::expm1(x))).epsilon(1e-12));
  CHECK(std::isfinite(log1m_exp(-1e-7f)));
  CHECK(log1m_exp(0.0) == -std::numeric_limits<double>::infinity());
}

TEST_CASE("math: is_finite") {
  CHECK(is_finite(1.0f));
  CHECK(!is_finite(std::numeric_limits<float>::infinity()));
  CHECK(!is_finite(std::nan("")));
}

TEST_CASE("rng: seeded, uniform in [0, 1), categorical follows its weights") {
  rlhf::Rng a(7), b(7);
  for (int i = 0; i < 10; ++i) CHECK(a.next() == b.next());
  rlhf::Rng r(1);
  double counts[3] = {0, 0, 0}, mean = 0;
  const double w[3] = {1, 2, 7};
  const int n = 200000;
  bool in_range = true;
  for (int i = 0; i < n; ++i) {
    const double u = r.uniform();
    in_range = in_range && u >= 0.0 && u < 1.0;
    mean += u / n;
    counts[r.categorical(w, 3)] += 1.0 / n;
  }
  CHECK(in_range);
  CHECK(mean == doctest::Approx(0.5).epsilon(0.01));
  CHECK(counts[0] == doctest::Approx(0.1).epsilon(0.05));  // 5 % relative: ~7 standard errors at n = 2e5
  CHECK(counts[2] == doctest::Approx(0.7).epsilon(0.05));
}
