#pragma once
// Named scalar metrics returned by every loss, under the names the ecosystem uses ("rewards/chosen"), each
// with the rule by which the values of the parts of a batch (micro-batches) make the whole batch's value.
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rlhf/core/error.hpp"

namespace rlhf {

// How one part's value of a metric joins the others' (Metrics::combine):
enum class Combine {
  row_mean,    // a mean over rows: weighted by the part's share of the batch's rows
  token_mean,  // a mean over tokens: weighted by the part's token count, given to set()
  sum,         // a count or total: added
};

class Metrics {
 public:
  // `tokens` is the count a token_mean is a mean over (ignored by the other rules).
  void set(std::string name, double value, Combine rule = Combine::row_mean, double tokens = 0) {
    for (std::size_t i = 0; i < items_.size(); ++i)
      if (items_[i].first == name) {
        items_[i].second = value;
        rules_[i] = {rule, tokens};
        return;
      }
    items_.emplace_back(std::move(name), value);
    rules_.push_back({rule, tokens});
  }
  bool has(std::string_view name) const { return find(name) < items_.size(); }
  double operator[](std::string_view name) const {
    const std::size_t i = find(name);
    if (i == items_.size()) fail<error>("Metrics: no metric named '", name, "'");
    return items_[i].second;
  }
  Combine rule(std::string_view name) const {
    const std::size_t i = find(name);
    if (i == items_.size()) fail<error>("Metrics: no metric named '", name, "'");
    return rules_[i].rule;
  }
  // The token count a token_mean metric is a mean over (0 for the other rules).
  double tokens(std::string_view name) const {
    const std::size_t i = find(name);
    if (i == items_.size()) fail<error>("Metrics: no metric named '", name, "'");
    return rules_[i].tokens;
  }
  const std::vector<std::pair<std::string, double>>& items() const { return items_; }

  // Adds one part's metrics to these, each by its rule; `row_share` is the part's share of the rows (for
  // row_mean). Combining every part of a batch, starting from empty, gives the whole batch's metrics.
  void combine(const Metrics& part, double row_share) {
    for (std::size_t j = 0; j < part.items_.size(); ++j) {
      const auto& [name, value] = part.items_[j];
      const auto [rule, tokens] = part.rules_[j];
      std::size_t i = find(name);
      if (i == items_.size()) {
        items_.emplace_back(name, 0.0);
        rules_.push_back({rule, 0.0});
      } else if (rules_[i].rule != rule) {
        fail<error>("Metrics::combine: metric '", name, "' is combined by two different rules");
      }
      double& total = items_[i].second;
      Rule& mine = rules_[i];
      switch (rule) {
        case Combine::row_mean: total += row_share * value; break;
        case Combine::sum: total += value; break;
        case Combine::token_mean:
          if (mine.tokens + tokens > 0) total = (total * mine.tokens + value * tokens) / (mine.tokens + tokens);
          mine.tokens += tokens;
          break;
      }
    }
  }

 private:
  struct Rule {
    Combine rule;
    double tokens;
  };
  std::size_t find(std::string_view name) const {
    std::size_t i = 0;
    while (i < items_.size() && items_[i].first != name) ++i;
    return i;
  }
  std::vector<std::pair<std::string, double>> items_;
  std::vector<Rule> rules_;  // one per item
};

}  // namespace rlhf
