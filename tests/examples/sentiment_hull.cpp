// The protocol's numbers (examples/sentiment_frontier/hull.hpp) against cases computed by hand, and the hull against
// its definition: h(k) = the highest reward of a mixture of points whose mean KL is at most k.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "hull.hpp"
#include "rlhf/core/rng.hpp"

using sentiment::KlPoint;

TEST_CASE("the upper concave hull drops points under it and falls flat past the highest reward") {
  // (1, 0.55) lies under the chord (0, 0.5)–(2, 0.7), which gives 0.6 at KL 1; (6, 0.75) lies past the top (4, 0.8)
  const auto hull = sentiment::upper_hull({{4, 0.8}, {1, 0.55}, {0, 0.5}, {6, 0.75}, {2, 0.7}});
  REQUIRE(hull.size() == 3);
  CHECK(hull[0].kl == 0);
  CHECK(hull[1].kl == 2);
  CHECK(hull[2].kl == 4);
  CHECK(sentiment::hull_at(hull, 1) == doctest::Approx(0.6));
  CHECK(sentiment::hull_at(hull, 3) == doctest::Approx(0.75));
  CHECK(sentiment::hull_at(hull, 5) == doctest::Approx(0.8));
  CHECK(sentiment::hull_at(hull, 100) == doctest::Approx(0.8));
  CHECK(std::isnan(sentiment::hull_at(hull, -0.1)));
  // ∫0..10 h = (0.5 + 0.7) / 2 · 2 + (0.7 + 0.8) / 2 · 2 + 0.8 · 6 = 1.2 + 1.5 + 4.8 = 7.5
  CHECK(sentiment::hull_area(hull, 0, 10) == doctest::Approx(0.75));
}

TEST_CASE("a point that breaks concavity is bridged, a point past 10 nats is cut at 10") {
  // the chord (0, 0.5)–(5, 0.9) gives 0.58 at KL 1, above (1, 0.52)
  const auto hull = sentiment::upper_hull({{0, 0.5}, {1, 0.52}, {5, 0.9}});
  REQUIRE(hull.size() == 2);
  CHECK(sentiment::hull_at(hull, 2) == doctest::Approx(0.66));
  CHECK(sentiment::hull_area(hull, 0, 10) == doctest::Approx((3.5 + 4.5) / 10));  // (0.5 + 0.9) / 2 · 5 + 0.9 · 5
  const auto far = sentiment::upper_hull({{0, 0.5}, {20, 0.9}});
  CHECK(sentiment::hull_at(far, 10) == doctest::Approx(0.7));
  CHECK(sentiment::hull_area(far, 0, 10) == doctest::Approx(0.6));  // (0.5 + 0.7) / 2
}

TEST_CASE("several points at one KL keep the highest; a method that never beats the reference is flat") {
  const auto hull = sentiment::upper_hull({{0, 0.5}, {0, 0.4}, {3, 0.45}, {3, 0.6}});
  REQUIRE(hull.size() == 2);
  CHECK(hull[1].reward == 0.6);
  const auto flat = sentiment::upper_hull({{0, 0.5}, {2, 0.45}, {7, 0.3}});
  REQUIRE(flat.size() == 1);
  CHECK(sentiment::hull_area(flat, 0, 10) == doctest::Approx(0.5));
}

TEST_CASE("h(k) is the best mixture of at most two points within KL k (the definition), on random clouds") {
  rlhf::Rng rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<KlPoint> pts{{0, 0.5}};
    for (int i = 0; i < 12; ++i) pts.push_back({12.0 * rng.uniform(), 0.3 + 0.7 * rng.uniform()});
    const auto hull = sentiment::upper_hull(pts);
    for (const double k : {0.0, 0.5, 2.0, 5.0, 7.5, 10.0, 13.0}) {
      // a linear programme with one constraint has an optimum on at most two points
      double best = -1;
      for (const auto& a : pts)
        for (const auto& b : pts) {
          if (a.kl <= k) best = std::max(best, a.reward);
          if (a.kl <= k && b.kl > k) best = std::max(best, a.reward + (b.reward - a.reward) * (k - a.kl) / (b.kl - a.kl));
        }
      CHECK(sentiment::hull_at(hull, k) == doctest::Approx(best).epsilon(1e-12));
    }
  }
}

TEST_CASE("t quantiles, intervals and the ±0.02 rule, by hand") {
  CHECK(sentiment::t975(2) == 4.303);
  CHECK(sentiment::t975(3) == 3.182);
  CHECK(sentiment::t975(30) == 2.042);
  CHECK(sentiment::t975(1000) == doctest::Approx(1.962).epsilon(1e-3));
  // {0.01, 0.03, 0.05}: mean 0.03, sd 0.02, half-width 4.303 · 0.02 / √3 = 0.049687
  const auto level = sentiment::t_interval({0.01, 0.03, 0.05});
  CHECK(level.mean == doctest::Approx(0.03));
  CHECK(level.lo == doctest::Approx(0.03 - 0.0496868).epsilon(1e-5));
  CHECK(level.hi == doctest::Approx(0.03 + 0.0496868).epsilon(1e-5));
  CHECK(sentiment::margin_verdict(level, 0.02) == "level");
  // {0.10, 0.11, 0.12}: half-width 4.303 · 0.01 / √3 = 0.024843, so [0.0852, 0.1348] clears +0.02
  CHECK(sentiment::margin_verdict(sentiment::t_interval({0.10, 0.11, 0.12}), 0.02) == "DPO ahead");
  CHECK(sentiment::margin_verdict(sentiment::t_interval({-0.10, -0.09, -0.08}), 0.02) == "DPO behind");
  // {0.001, 0.002, 0.003}: [-0.00148, 0.00548] lies inside ±0.02
  CHECK(sentiment::margin_verdict(sentiment::t_interval({0.001, 0.002, 0.003}), 0.02) == "level, within +-0.02");
  // an interval that clears 0 but not +0.02 is not called: [0.0052, 0.0548]
  CHECK(sentiment::margin_verdict(sentiment::t_interval({0.02, 0.03, 0.04}), 0.02) == "level");
  CHECK(std::isnan(sentiment::t_interval({0.5}).lo));
}
