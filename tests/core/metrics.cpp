// Metrics::combine: the parts of a batch give the whole batch's value of each metric, by the metric's rule.
#include <doctest/doctest.h>

#include "rlhf/core/metrics.hpp"

using rlhf::Combine;
using rlhf::Metrics;

namespace {
// One part of a batch: its rows' mean of x, its tokens' mean of y, its token count.
Metrics part(double row_mean, double token_mean, double tokens) {
  Metrics m;
  m.set("x", row_mean);
  m.set("y", token_mean, Combine::token_mean, tokens);
  m.set("tokens", tokens, Combine::sum);
  return m;
}
}  // namespace

TEST_CASE("Metrics::combine: row means by row share, token means by token count, sums added") {
  // Rows: part A holds 1 row with x = 2 (3 tokens of y summing to 3); part B holds 3 rows with x = 1, 2, 3
  // (1 token of y = 7). Whole batch: x = (2 + 1 + 2 + 3) / 4, y = (3 + 7) / 4 tokens, tokens = 4.
  Metrics whole;
  whole.combine(part(2.0, 1.0, 3), 0.25);
  whole.combine(part(2.0, 7.0, 1), 0.75);
  CHECK(whole["x"] == doctest::Approx(2.0));
  CHECK(whole["y"] == doctest::Approx(10.0 / 4.0));
  CHECK(whole["tokens"] == 4.0);
  CHECK(whole.rule("y") == Combine::token_mean);
  // The combined token mean keeps its count: a third part weighs in by its own tokens.
  whole.combine(part(0.0, 0.0, 4), 0.0);
  CHECK(whole["y"] == doctest::Approx(10.0 / 8.0));
  CHECK(whole["tokens"] == 8.0);
}

TEST_CASE("Metrics::combine: a single whole part gives itself back") {
  Metrics whole;
  const Metrics p = part(-1.5, 0.25, 9);
  whole.combine(p, 1.0);
  for (const auto& [name, value] : p.items()) CHECK(whole[name] == value);
}

TEST_CASE("Metrics::combine: one name under two rules is an error, not a silent mix") {
  Metrics whole;
  whole.combine(part(1.0, 1.0, 1), 0.5);
  Metrics other;
  other.set("tokens", 3.0);  // a row mean where the first part had a sum
  CHECK_THROWS_WITH_AS(whole.combine(other, 0.5), doctest::Contains("'tokens' is combined by two different rules"),
                       rlhf::error);
}
