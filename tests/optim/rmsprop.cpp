#include "rlhf/optim/rmsprop.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

using namespace rlhf;

TEST_CASE("Rmsprop: three steps match the update written out by hand, in every mode") {
  const RmspropConfig configs[] = {
      {.learning_rate = 0.1f, .alpha = 0.9f, .epsilon = 1e-3f},
      {.learning_rate = 0.1f, .alpha = 0.9f, .epsilon = 1e-3f, .weight_decay = 0.2f, .momentum = 0.5f},
      {.learning_rate = 0.05f, .alpha = 0.8f, .epsilon = 1e-3f, .momentum = 0.3f, .centered = true},
  };
  for (const auto& c : configs) {
    Rmsprop<double> opt(c);
    std::vector<double> p = {1.0, -2.0}, want = p, sq(2, 0.0), avg(2, 0.0), buf(2, 0.0);
    const std::vector<std::vector<double>> grads = {{0.5, -1.0}, {0.2, 0.1}, {-0.3, 4.0}};
    for (const auto& g0 : grads) {
      for (int i = 0; i < 2; ++i) {
        const double a = double(c.alpha);
        const double g = g0[i] + double(c.weight_decay) * want[i];
        sq[i] = a * sq[i] + (1 - a) * g * g;
        avg[i] = a * avg[i] + (1 - a) * g;
        const double denom = std::sqrt(c.centered ? sq[i] - avg[i] * avg[i] : sq[i]) + double(c.epsilon);
        buf[i] = double(c.momentum) * buf[i] + g / denom;
        want[i] -= double(c.learning_rate) * (c.momentum > 0 ? buf[i] : g / denom);
      }
      opt.step(p, g0);
      CHECK(p[0] == doctest::Approx(want[0]).epsilon(1e-6));
      CHECK(p[1] == doctest::Approx(want[1]).epsilon(1e-6));
    }
  }
}

TEST_CASE("Rmsprop: minimises a quadratic") {
  Rmsprop<float> opt({.learning_rate = 0.01f});
  std::vector<float> x = {3.0f, -4.0f}, g(2);
  for (int i = 0; i < 3000; ++i) {
    if (i == 1500) opt.set_learning_rate(0.001f);
    for (int j = 0; j < 2; ++j) g[j] = 2 * (x[j] - float(j + 1));
    opt.step(x, g);
  }
  CHECK(x[0] == doctest::Approx(1.0f).epsilon(0.01));
  CHECK(x[1] == doctest::Approx(2.0f).epsilon(0.01));
}

TEST_CASE("Rmsprop: bad settings and sizes name the problem") {
  CHECK_THROWS_WITH_AS(Rmsprop<float>({.alpha = 1.0f}), doctest::Contains("alpha"), config_error);
  CHECK_THROWS_WITH_AS(Rmsprop<float>({.momentum = -0.1f}), doctest::Contains("momentum"), config_error);
  CHECK_THROWS_WITH_AS(Rmsprop<float>({.epsilon = 0.0f}), doctest::Contains("epsilon"), config_error);
  Rmsprop<float> opt;
  std::vector<float> p(3), g(2);
  CHECK_THROWS_WITH_AS(opt.step(p, g), doctest::Contains("'grads' has 2 elements"), shape_error);
}

TEST_CASE("Rmsprop: a NaN or Inf gradient is refused, naming it, and changes nothing") {
  Rmsprop<float> opt({.learning_rate = 0.1f, .momentum = 0.5f, .centered = true});
  std::vector<float> p = {1.0f, -2.0f}, g = {0.5f, -1.0f};
  opt.step(p, g);
  const std::vector<float> before = p;
  std::vector<float> bad = {NAN, 1.0f};
  CHECK_THROWS_WITH_AS(opt.step(p, bad), doctest::Contains("'grads' has a non-finite global norm"), value_error);
  CHECK(p == before);
  CHECK(opt.steps() == 1);
}
