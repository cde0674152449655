#include "rlhf/optim/adamw.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

using namespace rlhf;

TEST_CASE("AdamW: three steps match the update written out by hand") {
  const AdamWConfig c{.learning_rate = 0.1f, .beta1 = 0.8f, .beta2 = 0.9f, .epsilon = 1e-3f, .weight_decay = 0.5f};
  AdamW<double> opt(c);
  std::vector<double> p = {1.0, -2.0}, want = p, m(2, 0.0), v(2, 0.0);
  const std::vector<std::vector<double>> grads = {{0.5, -1.0}, {0.2, 0.0}, {-0.3, 4.0}};
  for (int t = 1; t <= 3; ++t) {
    const auto& g = grads[t - 1];
    for (int i = 0; i < 2; ++i) {
      const double lr = double(c.learning_rate), b1 = double(c.beta1), b2 = double(c.beta2);
      want[i] -= lr * double(c.weight_decay) * want[i];
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const double mhat = m[i] / (1 - std::pow(b1, t)), vhat = v[i] / (1 - std::pow(b2, t));
      want[i] -= lr * mhat / (std::sqrt(vhat) + double(c.epsilon));
    }
    opt.step(p, g);
    CHECK(p[0] == doctest::Approx(want[0]).epsilon(1e-6));
    CHECK(p[1] == doctest::Approx(want[1]).epsilon(1e-6));
  }
  CHECK(opt.steps() == 3);
}

TEST_CASE("AdamW: minimises a quadratic; weight decay alone shrinks the parameters") {
  AdamW<float> opt({.learning_rate = 0.05f, .weight_decay = 0.0f});
  std::vector<float> x = {3.0f, -4.0f, 0.5f}, g(3);
  const float target[] = {1.0f, 2.0f, -1.0f};
  for (int i = 0; i < 2000; ++i) {
    if (i == 1000) opt.set_learning_rate(0.005f);
    for (int j = 0; j < 3; ++j) g[j] = 2 * (x[j] - target[j]);
    opt.step(x, g);
  }
  for (int j = 0; j < 3; ++j) CHECK(x[j] == doctest::Approx(target[j]).epsilon(0.01));

  AdamW<double> decay({.learning_rate = 0.1f, .weight_decay = 0.5f});
  std::vector<double> w = {2.0}, zero = {0.0};
  decay.step(w, zero);
  CHECK(w[0] == doctest::Approx(2.0 * (1 - 0.1 * 0.5)).epsilon(1e-7));
}

TEST_CASE("AdamW: bad settings and sizes name the problem") {
  CHECK_THROWS_WITH_AS(AdamW<float>({.learning_rate = -1.0f}), doctest::Contains("learning_rate"), config_error);
  CHECK_THROWS_WITH_AS(AdamW<float>({.beta1 = 1.0f}), doctest::Contains("beta1"), config_error);
  CHECK_THROWS_WITH_AS(AdamW<float>({.beta2 = -0.1f}), doctest::Contains("beta2"), config_error);
  CHECK_THROWS_WITH_AS(AdamW<float>({.epsilon = 0.0f}), doctest::Contains("epsilon"), config_error);
  CHECK_THROWS_WITH_AS(AdamW<float>({.weight_decay = NAN}), doctest::Contains("weight_decay"), config_error);
  AdamW<float> opt;
  std::vector<float> p(3), g(2);
  CHECK_THROWS_WITH_AS(opt.step(p, g), doctest::Contains("'grads' has 2 elements"), shape_error);
  g.resize(3);
  opt.step(p, g);
  std::vector<float> q(4), h(4);
  CHECK_THROWS_WITH_AS(opt.step(q, h), doctest::Contains("the size of the optimizer state is 3"), shape_error);
  opt.reset();
  CHECK_NOTHROW(opt.step(q, h));
  CHECK_THROWS_AS(opt.set_learning_rate(-0.5f), config_error);
}

TEST_CASE("AdamW: a NaN or Inf gradient is refused, naming it, and changes nothing") {
  AdamW<float> opt({.learning_rate = 0.1f});
  std::vector<float> p = {1.0f, -2.0f, 3.0f}, g = {0.5f, 0.25f, -1.0f};
  opt.step(p, g);
  const std::vector<float> p_before = p;
  const std::vector<float> m_before(opt.first_moment().begin(), opt.first_moment().end());
  const std::vector<float> v_before(opt.second_moment().begin(), opt.second_moment().end());
  for (const float bad : {NAN, INFINITY, -INFINITY}) {
    std::vector<float> h = {0.5f, bad, -1.0f};
    CHECK_THROWS_WITH_AS(opt.step(p, h), doctest::Contains("'grads' has a non-finite global norm"), value_error);
    CHECK_THROWS_WITH_AS(opt.step(p, h), doctest::Contains("the first at index 1"), value_error);
    CHECK(p == p_before);
    CHECK(opt.steps() == 1);
    CHECK(std::equal(m_before.begin(), m_before.end(), opt.first_moment().begin()));
    CHECK(std::equal(v_before.begin(), v_before.end(), opt.second_moment().begin()));
  }
  // Refused on the first step too: the state stays empty.
  AdamW<double> fresh;
  std::vector<double> q = {1.0}, nan = {std::nan("")};
  CHECK_THROWS_AS(fresh.step(q, nan), value_error);
  CHECK(q[0] == 1.0);
  CHECK(fresh.first_moment().empty());
  // Huge but finite gradients (their squares overflow float, not the double norm) are stepped.
  std::vector<float> huge = {3e38f, -3e38f, 3e38f};
  CHECK_NOTHROW(opt.step(p, huge));
  for (const float x : p) CHECK(std::isfinite(x));
}
