#pragma once
// rlhf-train's LoRA (TRL's use_peft with PEFT's LoraConfig, models/lora/): the policy as a frozen base with
// adapters, and its reference as the same weights with the adapters off, so that a run holds one copy of the
// base. Both share the rlhf::Lora on the heap: the reference stays valid wherever the session moves.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "rlhf/models/lora/files.hpp"
#include "rlhf/models/lora/model.hpp"

namespace trainer {

// The policy: the base's forward plus the adapters; parameters() and gradients() are the adapters' alone.
template <class Base>
class AdaptedModel {
 public:
  using backend = typename Base::backend;
  using matrix = typename backend::matrix;
  using vector = typename backend::vector;

  AdaptedModel(Base base, const rlhf::LoraSettings& settings, rlhf::Rng& rng)
      : lora_(std::make_shared<rlhf::Lora<Base>>(std::move(base), settings, rng)) {}
  explicit AdaptedModel(rlhf::Lora<Base> lora) : lora_(std::make_shared<rlhf::Lora<Base>>(std::move(lora))) {}

  matrix log_probs(const rlhf::TokenBatch& b) { return lora_->log_probs(b); }
  void backward(const rlhf::TokenBatch& b, const matrix& g) { lora_->backward(b, g); }
  matrix values(const rlhf::TokenBatch& b) { return lora_->values(b); }
  void backward_values(const rlhf::TokenBatch& b, const matrix& g) { lora_->backward_values(b, g); }
  vector scores(const rlhf::TokenBatch& b) { return lora_->scores(b); }
  void backward_scores(const rlhf::TokenBatch& b, const vector& g) { lora_->backward_scores(b, g); }
  rlhf::TokenBatch sample(const rlhf::PromptBatch& p, const rlhf::SampleOptions& o, rlhf::Rng& rng) {
    return lora_->sample(p, o, rng);
  }
  void zero_grad() { lora_->zero_grad(); }
  std::span<float> parameters() { return lora_->parameters(); }
  std::span<const float> parameters() const { return std::as_const(*lora_).parameters(); }
  std::span<float> gradients() { return lora_->gradients(); }
  std::span<const float> gradients() const { return std::as_const(*lora_).gradients(); }
  const auto& config() const { return lora_->base().config(); }

  rlhf::Lora<Base>& lora() { return *lora_; }
  const rlhf::Lora<Base>& lora() const { return *lora_; }
  std::shared_ptr<rlhf::Lora<Base>> shared() const { return lora_; }

 private:
  std::shared_ptr<rlhf::Lora<Base>> lora_;
};

// The reference: the policy's base, its adapters off for each forward. It is never trained.
template <class Base>
class AdaptersOffModel {
 public:
  using backend = typename Base::backend;

  explicit AdaptersOffModel(std::shared_ptr<rlhf::Lora<Base>> lora) : lora_(std::move(lora)) {}
  typename backend::matrix log_probs(const rlhf::TokenBatch& b) { return rlhf::LoraReference<Base>(*lora_).log_probs(b); }
  std::span<const float> parameters() const { return {}; }  // the policy's base: nothing of its own
  const auto& config() const { return lora_->base().config(); }

 private:
  std::shared_ptr<rlhf::Lora<Base>> lora_;
};

}  // namespace trainer
