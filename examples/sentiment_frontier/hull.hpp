#pragma once
// The numbers of the pre-registered protocol (docs/experiments/sentiment.md#protocol-pre-registered):
//   upper_hull   the reward–KL upper concave hull of a method's checkpoints: h(k) is the highest reward of a mixture
//                of checkpoints whose mean KL is at most k (a mixture's KL is at most the mixture of the KLs), so h
//                is concave and non-decreasing, and flat beyond its highest vertex
//   hull_at      h(k); NaN below the hull's first KL
//   hull_area    (1 / (hi − lo)) ∫_lo^hi h(k) dk: the hull's mean reward over [lo, hi] nats, in reward units
//   t975         Student's t 0.975 quantile (a table to 30 degrees of freedom)
//   t_interval   the mean of per-seed values with its 95% t-interval, and the ±margin verdict of the protocol
// Plain standard C++: tests/examples/sentiment_hull.cpp checks each against hand-computed cases.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

namespace sentiment {

struct KlPoint {
  double kl = 0, reward = 0;
};

// The vertices of h, in increasing KL and increasing reward: from the highest point at the least KL to the highest
// reward (the first point that reaches it). Empty for no points.
inline std::vector<KlPoint> upper_hull(std::vector<KlPoint> points) {
  std::sort(points.begin(), points.end(), [](const KlPoint& a, const KlPoint& b) {
    return a.kl < b.kl || (a.kl == b.kl && a.reward > b.reward);
  });
  // one point per KL, the highest
  points.erase(std::unique(points.begin(), points.end(), [](const KlPoint& a, const KlPoint& b) { return a.kl == b.kl; }),
               points.end());
  std::vector<KlPoint> hull;
  const auto cross = [](const KlPoint& o, const KlPoint& a, const KlPoint& b) {
    return (a.kl - o.kl) * (b.reward - o.reward) - (a.reward - o.reward) * (b.kl - o.kl);
  };
  for (const auto& p : points) {  // Andrew's monotone chain, upper side: keep right turns only
    while (hull.size() >= 2 && cross(hull[hull.size() - 2], hull.back(), p) >= 0) hull.pop_back();
    hull.push_back(p);
  }
  // past the highest reward the upper hull falls; h stays flat there instead
  const auto top = std::max_element(hull.begin(), hull.end(),
                                    [](const KlPoint& a, const KlPoint& b) { return a.reward < b.reward; });
  if (top != hull.end()) hull.erase(top + 1, hull.end());
  return hull;
}

// h(k) from upper_hull's vertices.
inline double hull_at(const std::vector<KlPoint>& hull, double k) {
  if (hull.empty() || k < hull.front().kl) return std::nan("");
  for (std::size_t i = 1; i < hull.size(); ++i)
    if (k <= hull[i].kl) {
      const auto& a = hull[i - 1];
      const auto& b = hull[i];
      return a.reward + (b.reward - a.reward) * (k - a.kl) / (b.kl - a.kl);
    }
  return hull.back().reward;
}

// (1 / (hi − lo)) ∫_lo^hi h(k) dk, exact for the piecewise-linear h; NaN when h is not defined at lo.
inline double hull_area(const std::vector<KlPoint>& hull, double lo, double hi) {
  if (hull.empty() || lo < hull.front().kl || !(hi > lo)) return std::nan("");
  // breakpoints of h inside (lo, hi), then the trapezoids between consecutive ones
  std::vector<double> ks{lo};
  for (const auto& v : hull)
    if (v.kl > lo && v.kl < hi) ks.push_back(v.kl);
  ks.push_back(hi);
  double area = 0;
  for (std::size_t i = 1; i < ks.size(); ++i)
    area += 0.5 * (hull_at(hull, ks[i - 1]) + hull_at(hull, ks[i])) * (ks[i] - ks[i - 1]);
  return area / (hi - lo);
}

// Student's t 0.975 quantile with df degrees of freedom: the table to 30; beyond, the first Cornish–Fisher term.
inline double t975(std::size_t df) {
  static const double table[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                                 2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                                 2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  if (df >= 1 && df <= 30) return table[df - 1];
  const double z = 1.959964;
  return z + (z * z * z + z) / (4.0 * double(df));
}

struct TInterval {
  double mean = std::nan(""), lo = std::nan(""), hi = std::nan("");
  std::size_t n = 0;
};

// The mean of `values` and mean ± t975(n − 1) · sd / √n (the interval is NaN for fewer than 2 values).
inline TInterval t_interval(const std::vector<double>& values) {
  TInterval out;
  out.n = values.size();
  if (values.empty()) return out;
  double mean = 0;
  for (const double v : values) mean += v / double(values.size());
  out.mean = mean;
  if (values.size() < 2) return out;
  double ss = 0;
  for (const double v : values) ss += (v - mean) * (v - mean);
  const double half = t975(values.size() - 1) * std::sqrt(ss / double(values.size() - 1) / double(values.size()));
  out.lo = mean - half;
  out.hi = mean + half;
  return out;
}

// The protocol's rule for a difference DPO − other: called only when its interval clears ±margin.
inline std::string margin_verdict(const TInterval& d, double margin) {
  if (std::isnan(d.lo) || std::isnan(d.hi)) return "no interval";
  if (d.lo > margin) return "DPO ahead";
  if (d.hi < -margin) return "DPO behind";
  if (d.lo >= -margin && d.hi <= margin) return "level, within +-" + std::to_string(margin).substr(0, 4);
  return "level";
}

}  // namespace sentiment
