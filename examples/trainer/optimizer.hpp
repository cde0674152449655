#pragma once
// The optimizer of a run, by transformers' `optim` names: "adamw_torch" (AdamW, the default) or "rmsprop"
// (torch.optim.RMSprop's defaults, the DPO repository's optimizer; warm-up and clipping come from the shared
// keys). One of them is held; the steps take it through step(), the schedule through set_learning_rate(), and
// checkpoints through save() and load() (optim/state_file.hpp).
#include <filesystem>
#include <span>
#include <utility>
#include <variant>

#include "rlhf/optim/adamw.hpp"
#include "rlhf/optim/rmsprop.hpp"
#include "rlhf/optim/state_file.hpp"

namespace trainer {

class Optimizer {
 public:
  explicit Optimizer(rlhf::AdamW<float> o) : o_(std::move(o)) {}
  explicit Optimizer(rlhf::Rmsprop<float> o) : o_(std::move(o)) {}

  void step(std::span<float> params, std::span<const float> grads) {
    std::visit([&](auto& o) { o.step(params, grads); }, o_);
  }
  void set_learning_rate(float lr) {
    std::visit([&](auto& o) { o.set_learning_rate(lr); }, o_);
  }
  float learning_rate() const {
    return std::visit([](const auto& o) { return float(o.config().learning_rate); }, o_);
  }
  void save(const std::filesystem::path& file) const {
    std::visit([&](const auto& o) { rlhf::save_optimizer_state(file, o); }, o_);
  }
  // `parameters`: the model's count, which the saved state must have been sized by.
  void load(const std::filesystem::path& file, std::size_t parameters) {
    std::visit([&](auto& o) { rlhf::load_optimizer_state(file, o, parameters); }, o_);
  }

 private:
  std::variant<rlhf::AdamW<float>, rlhf::Rmsprop<float>> o_;
};

}  // namespace trainer
