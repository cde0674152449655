#pragma once
// Named scalar metrics returned by every loss, under the names the ecosystem uses ("rewards/chosen").
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rlhf/core/error.hpp"

namespace rlhf {

class Metrics {
 public:
  void set(std::string name, double value) {
    for (auto& [n, v] : items_)
      if (n == name) {
        v = value;
        return;
      }
    items_.emplace_back(std::move(name), value);
  }
  bool has(std::string_view name) const {
    for (const auto& [n, v] : items_)
      if (n == name) return true;
    return false;
  }
  double operator[](std::string_view name) const {
    for (const auto& [n, v] : items_)
      if (n == name) return v;
    fail<error>("Metrics: no metric named '", name, "'");
  }
  const std::vector<std::pair<std::string, double>>& items() const { return items_; }

 private:
  std::vector<std::pair<std::string, double>> items_;
};

}  // namespace rlhf
