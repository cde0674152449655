#pragma once
// Percentile bootstrap intervals (Efron & Tibshirani, 1993, ch. 13): draw `resamples` samples of n indices with
// replacement, compute the statistic on each, and take the (1 − level)/2 and (1 + level)/2 quantiles of what it
// gives. Deterministic: the draws depend only on the seed and n, so two statistics of the same n units (the reward
// and the KL of the same prompts, or two checkpoints' rewards on the same prompts) see the same resamples when
// they are given the same seed, and a result can be cached and compared byte for byte.
//
//   bootstrap_mean(values)            the interval of the mean of `values`
//   bootstrap_interval(n, statistic)  any statistic of a resample, statistic(std::span<const std::size_t> indices)
//
// Cost: resamples × (n draws + the statistic); for the mean of 500 values and 2,000 resamples, about 2 ms.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "rlhf/core/error.hpp"
#include "rlhf/core/rng.hpp"

namespace rlhf::eval {

struct Interval {
  double lo = std::numeric_limits<double>::quiet_NaN(), hi = std::numeric_limits<double>::quiet_NaN();

  bool valid() const { return std::isfinite(lo) && std::isfinite(hi); }
  bool contains(double v) const { return lo <= v && v <= hi; }
  bool below(double v) const { return hi < v; }  // the whole interval lies below v
  bool above(double v) const { return lo > v; }
  bool overlaps(const Interval& o) const { return lo <= o.hi && o.lo <= hi; }
};

struct BootstrapConfig {
  std::size_t resamples = 2000;
  double level = 0.95;
  std::uint64_t seed = 0xb0075;
};

// The q-quantile of sorted values, interpolated linearly between order statistics (R's type 7, numpy's default).
inline double quantile_sorted(std::span<const double> sorted, double q) {
  if (sorted.empty()) return std::numeric_limits<double>::quiet_NaN();
  const double at = q * double(sorted.size() - 1);
  const auto i = std::size_t(std::floor(at));
  if (i + 1 >= sorted.size()) return sorted.back();
  return sorted[i] + (at - double(i)) * (sorted[i + 1] - sorted[i]);
}

// The percentile interval of statistic(indices) over resamples of 0..n-1. Resamples whose statistic is not finite
// (a fit with too few distinct points, say) are left out; when none is finite the interval is NaN.
template <class Statistic>
Interval bootstrap_interval(std::size_t n, Statistic&& statistic, const BootstrapConfig& c = {}) {
  require_nonempty("rlhf::eval::bootstrap_interval", "n", n);
  require_positive("rlhf::eval::bootstrap_interval", "resamples", double(c.resamples));
  if (!(c.level > 0 && c.level < 1))
    fail<config_error>("rlhf::eval::bootstrap_interval: level must be in (0, 1) (got ", c.level, ")");
  Rng rng(c.seed);
  std::vector<std::size_t> indices(n);  // [n]
  std::vector<double> stats;            // [≤ resamples]
  stats.reserve(c.resamples);
  for (std::size_t r = 0; r < c.resamples; ++r) {
    for (auto& i : indices) i = rng.below(n);
    const double s = statistic(std::span<const std::size_t>(indices));
    if (std::isfinite(s)) stats.push_back(s);
  }
  std::sort(stats.begin(), stats.end());
  return {quantile_sorted(stats, (1 - c.level) / 2), quantile_sorted(stats, (1 + c.level) / 2)};
}

inline Interval bootstrap_mean(std::span<const double> values, const BootstrapConfig& c = {}) {
  const double n = double(values.size());
  return bootstrap_interval(
      values.size(),
      [&](std::span<const std::size_t> idx) {
        double sum = 0;
        for (const std::size_t i : idx) sum += values[i];
        return sum / n;
      },
      c);
}

}  // namespace rlhf::eval
