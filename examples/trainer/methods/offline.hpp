#pragma once
// The base of every method that trains on fixed rows (no sampling): its step is written once, as a template over
// the model and the optimizer, and serves both training (the policy and its AdamW) and evaluation (the policy
// frozen, no update: rlhf::evaluate).
#include "../method.hpp"
#include "../session.hpp"
#include "rlhf/algorithms/evaluate.hpp"

namespace trainer {

enum class Split { train, eval };

// A method without settings of its own.
struct NoSettings {
  static const std::vector<KeySpec<NoSettings>>& keys() {
    static const std::vector<KeySpec<NoSettings>> none;
    return none;
  }
};

// Derived provides
//   template <class M, class O>
//   StepOutcome step(Session&, M& model, O& optimizer, const TokenizedDataset&, Rows, Split, const rlhf::StepOptions&);
// and its keys are those of Settings (a struct with a static keys() table), held in settings_.
template <class Derived, class Settings = NoSettings>
class OfflineMethod : public Method {
 public:
  std::vector<Key> keys() override {
    std::vector<Key> k;
    bind_keys(k, Settings::keys(), settings_);
    return k;
  }
  const Settings& settings() const { return settings_; }

  StepOutcome train_step(Session& s, Rows rows, const rlhf::StepOptions& options) override {
    return derived().step(s, *s.policy, *s.optimizer, s.train, rows, Split::train, options);
  }
  Evaluation evaluate(Session& s, Rows rows, std::size_t /*step*/) override {
    const auto r = rlhf::evaluate(*s.policy, [&](auto& frozen, auto& no_update) {
      return derived().step(s, frozen, no_update, s.eval, rows, Split::eval, {}).result;
    });
    return {r.metrics, r.loss};
  }

 protected:
  Settings settings_;

 private:
  Derived& derived() { return static_cast<Derived&>(*this); }
};

// The tokens of `rows` as a pair or list method scores them: each completion with its prompt.
inline double sequence_tokens(const TokenizedDataset& d, Rows rows) {
  double n = 0;
  for (const auto i : rows)
    for (const auto& c : d.rows[i].completions) n += double(c.size()) + double(d.rows[i].prompt.size());
  return n;
}

}  // namespace trainer
