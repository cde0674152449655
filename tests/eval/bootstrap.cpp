// The percentile bootstrap (rlhf/eval/bootstrap.hpp) against what is known without it:
//   - for a large normal sample the interval of the mean is the textbook mean ± 1.96·s/√n;
//   - over many samples of a known distribution, the interval covers the true mean about 95% of the time;
//   - a seed gives the same interval bit for bit, another seed a slightly different one;
//   - a constant sample gives a zero-width interval at that constant; one value, the value itself;
//   - quantile_sorted is R's type 7; bad settings are refused.
#include "rlhf/eval/bootstrap.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <vector>

using rlhf::eval::BootstrapConfig;
using rlhf::eval::bootstrap_interval;
using rlhf::eval::bootstrap_mean;
using rlhf::eval::Interval;

namespace {

std::vector<double> normal_sample(std::size_t n, double mean, double sd, std::uint64_t seed) {
  rlhf::Rng rng(seed);
  std::vector<double> x(n);
  for (auto& v : x) v = mean + sd * rng.normal();
  return x;
}

struct MeanSd {
  double mean = 0, sd = 0;
};

MeanSd mean_sd(const std::vector<double>& x) {
  MeanSd m;
  for (const double v : x) m.mean += v / double(x.size());
  for (const double v : x) m.sd += (v - m.mean) * (v - m.mean) / double(x.size() - 1);
  m.sd = std::sqrt(m.sd);
  return m;
}

}  // namespace

TEST_CASE("bootstrap_mean: a large normal sample gives mean ± 1.96·s/√n") {
  const std::size_t n = 4000;
  const auto x = normal_sample(n, 3.0, 2.0, 7);
  const auto m = mean_sd(x);
  const double half = 1.959964 * m.sd / std::sqrt(double(n));  // ≈ 0.062
  const Interval ci = bootstrap_mean(x, {.resamples = 20000});
  // the Monte Carlo error of a 2.5% quantile of 20,000 resamples is about 2.5% of the half-width
  CHECK(std::abs(ci.lo - (m.mean - half)) < 0.1 * half);
  CHECK(std::abs(ci.hi - (m.mean + half)) < 0.1 * half);
  CHECK(std::abs((ci.hi - ci.lo) / 2 - half) < 0.08 * half);
  CHECK(ci.contains(m.mean));
  // the default 2,000 resamples: within 15% of the half-width at each end
  const Interval quick = bootstrap_mean(x);
  CHECK(std::abs(quick.lo - (m.mean - half)) < 0.15 * half);
  CHECK(std::abs(quick.hi - (m.mean + half)) < 0.15 * half);
  // level 0.9: ± 1.645·s/√n
  const Interval ninety = bootstrap_mean(x, {.resamples = 20000, .level = 0.9});
  CHECK(std::abs((ninety.hi - ninety.lo) / 2 - 1.644854 * m.sd / std::sqrt(double(n))) < 0.08 * half);
}

TEST_CASE("bootstrap_mean: the interval covers the true mean about 95% of the time") {
  // 400 samples of 60 draws from an exponential distribution of mean 1 (skewed: the percentile interval is known to
  // cover a little less than 95% at this n, about 93%); the binomial standard error of the rate is about 1.2%
  rlhf::Rng rng(11);
  const std::size_t trials = 400, n = 60;
  std::size_t covered = 0;
  for (std::size_t t = 0; t < trials; ++t) {
    std::vector<double> x(n);
    for (auto& v : x) v = -std::log(1.0 - rng.uniform());
    covered += bootstrap_mean(x, {.resamples = 1000, .seed = t}).contains(1.0);
  }
  const double rate = double(covered) / double(trials);
  CHECK(rate > 0.88);
  CHECK(rate < 0.985);
}

TEST_CASE("bootstrap_mean: deterministic under a seed; constant and single samples") {
  const auto x = normal_sample(64, 0.6, 0.15, 3);
  const Interval a = bootstrap_mean(x, {.seed = 42}), b = bootstrap_mean(x, {.seed = 42});
  CHECK(a.lo == b.lo);  // bit for bit
  CHECK(a.hi == b.hi);
  const Interval other = bootstrap_mean(x, {.seed = 43});
  CHECK((other.lo != a.lo || other.hi != a.hi));
  CHECK(std::abs(other.lo - a.lo) < 0.01);

  const std::vector<double> constant(50, 0.625);
  const Interval c = bootstrap_mean(constant);
  CHECK(c.lo == 0.625);
  CHECK(c.hi == 0.625);
  const std::vector<double> one{2.5};
  const Interval single = bootstrap_mean(one);
  CHECK(single.lo == 2.5);
  CHECK(single.hi == 2.5);
}

TEST_CASE("bootstrap_interval: one seed gives two statistics of the same units the same resamples") {
  // y = 2x + 1 exactly: the interval of mean(y) is that of mean(x) mapped by the same line, end for end
  const auto x = normal_sample(100, 0.0, 1.0, 5);
  std::vector<double> y;
  for (const double v : x) y.push_back(2 * v + 1);
  const Interval ix = bootstrap_mean(x), iy = bootstrap_mean(y);
  CHECK(iy.lo == doctest::Approx(2 * ix.lo + 1).epsilon(1e-12));
  CHECK(iy.hi == doctest::Approx(2 * ix.hi + 1).epsilon(1e-12));
  // a statistic that is never finite gives no interval
  const Interval none = bootstrap_interval(10, [](std::span<const std::size_t>) { return std::nan(""); });
  CHECK(!none.valid());
}

TEST_CASE("quantile_sorted is type 7; bad settings are refused") {
  const std::vector<double> s{1, 2, 3, 4, 5};
  CHECK(rlhf::eval::quantile_sorted(s, 0.0) == 1);
  CHECK(rlhf::eval::quantile_sorted(s, 1.0) == 5);
  CHECK(rlhf::eval::quantile_sorted(s, 0.5) == 3);
  CHECK(rlhf::eval::quantile_sorted(s, 0.1) == doctest::Approx(1.4));
  CHECK(rlhf::eval::quantile_sorted(s, 0.975) == doctest::Approx(4.9));

  const std::vector<double> empty;
  CHECK_THROWS_AS(bootstrap_mean(empty), rlhf::shape_error);
  const std::vector<double> x{1, 2, 3};
  CHECK_THROWS_AS(bootstrap_mean(x, {.resamples = 0}), rlhf::config_error);
  CHECK_THROWS_AS(bootstrap_mean(x, {.level = 1.0}), rlhf::config_error);
  CHECK_THROWS_AS(bootstrap_mean(x, {.level = 0.0}), rlhf::config_error);
}
