// rlhf-train cpo: its settings map to the library's DPO family as TRL's CPOTrainer computes CPO and SimPO (checked
// against the formulas written out here), the loss's gradient matches finite differences, and its keys read and
// refuse values by name. The ctest examples_trainer_resume_cpo trains it end to end.
#include "methods/cpo.hpp"

#include <doctest/doctest.h>

#include <cmath>

#include "support/gradcheck.hpp"

using namespace rlhf::testing;
using trainer::CpoSettings;

namespace {

// TRL CPOTrainer's loss over a batch, from its definition: logits = (Σ or mean) log π(y_w) − (Σ or mean) log π(y_l)
// (means for ipo and simpo); simpo subtracts simpo_gamma / β; the NLL is the cross-entropy over every chosen token
// of the batch, added with weight cpo_alpha.
double trl_cpo_loss(const CpoSettings& s, const vec& pc, const vec& pr, const vec& lc, const vec& lr) {
  const bool mean = s.loss_type == "ipo" || s.loss_type == "simpo";
  const auto logsigmoid = [](double x) { return -std::log1p(std::exp(-x)); };
  double total = 0, chosen_logp = 0, chosen_tokens = 0;
  for (Eigen::Index i = 0; i < pc.size(); ++i) {
    double logits = mean ? pc[i] / lc[i] - pr[i] / lr[i] : pc[i] - pr[i];
    if (s.loss_type == "simpo") logits -= s.simpo_gamma / s.beta;
    double loss = 0;
    if (s.loss_type == "sigmoid" || s.loss_type == "simpo")
      loss = -logsigmoid(s.beta * logits) * (1 - s.label_smoothing) - logsigmoid(-s.beta * logits) * s.label_smoothing;
    else if (s.loss_type == "hinge")
      loss = std::max(0.0, 1 - s.beta * logits);
    else
      loss = std::pow(logits - 1 / (2 * s.beta), 2);
    total += loss;
    chosen_logp += pc[i], chosen_tokens += lc[i];
  }
  return total / double(pc.size()) + s.cpo_alpha * (-chosen_logp / chosen_tokens);
}

struct Batch {
  vec pc, pr, lc, lr;
};

Batch random_batch(std::uint64_t seed) {
  return {random_vector(6, -30, -5, seed), random_vector(6, -30, -5, seed + 1),
          random_vector(6, 1, 12, seed + 2).array().round(), random_vector(6, 1, 12, seed + 3).array().round()};
}

double library_loss(const CpoSettings& s, const Batch& b) {
  const rlhf::PreferencePairs<vec> pairs{b.pc, b.pr, vec(), vec(), b.lc, b.lr};
  return rlhf::dpo_loss(pairs, s.loss_config()).loss;
}

std::vector<CpoSettings> every_loss_type() {
  std::vector<CpoSettings> out;
  for (const char* type : {"sigmoid", "hinge", "ipo", "simpo"}) {
    CpoSettings s;
    s.loss_type = type;
    s.beta = 0.7;
    s.label_smoothing = 0.1;
    s.cpo_alpha = 0.5;
    s.simpo_gamma = 0.8;
    out.push_back(s);
  }
  CpoSettings simpo_alone;  // SimPO as its paper has it: no NLL term
  simpo_alone.loss_type = "simpo", simpo_alone.cpo_alpha = 0, simpo_alone.beta = 2.0;
  out.push_back(simpo_alone);
  return out;
}

}  // namespace

TEST_CASE("cpo: every loss_type's value is TRL CPOTrainer's formula") {
  for (const auto& s : every_loss_type()) {
    CAPTURE(s.loss_type);
    CAPTURE(s.cpo_alpha);
    for (std::uint64_t seed : {1u, 7u, 19u}) {
      const Batch b = random_batch(seed);
      CHECK(library_loss(s, b) == doctest::Approx(trl_cpo_loss(s, b.pc, b.pr, b.lc, b.lr)).epsilon(1e-12));
    }
  }
}

TEST_CASE("cpo: the gradient with respect to the log-probabilities matches finite differences") {
  for (const auto& s : every_loss_type()) {
    CAPTURE(s.loss_type);
    Batch b = random_batch(3);
    const rlhf::PreferencePairs<vec> pairs{b.pc, b.pr, vec(), vec(), b.lc, b.lr};
    const auto r = rlhf::dpo_loss(pairs, s.loss_config());
    const auto numeric_chosen = numeric_gradient([&] { return library_loss(s, b); }, b.pc);
    const auto numeric_rejected = numeric_gradient([&] { return library_loss(s, b); }, b.pr);
    CHECK(max_relative_error(r.d_policy_chosen, numeric_chosen) < 1e-6);
    CHECK(max_relative_error(r.d_policy_rejected, numeric_rejected) < 1e-6);
  }
}

TEST_CASE("cpo: its keys set its settings and refuse bad values by name") {
  trainer::Cpo cpo;
  auto keys = cpo.keys();
  const auto set = [&](const char* name, const trainer::json& v) {
    const trainer::Key* k = trainer::find_key(keys, name);
    REQUIRE(k != nullptr);
    trainer::assign(*k, v);
  };
  set("loss_type", "simpo");
  set("cpo_alpha", 0.0);
  set("simpo_gamma", 1.5);
  set("beta", 2.0);
  const auto c = cpo.settings().loss_config();
  CHECK(c.length_normalize);
  CHECK(c.reference_free);
  CHECK(c.margin == 1.5);
  CHECK(c.nll_weight == 0.0);
  CHECK(c.beta == 2.0);
  CHECK_THROWS_WITH_AS(set("loss_type", "robust"), doctest::Contains("loss_type: 'robust' is not one of"),
                       trainer::Refusal);
  CHECK_THROWS_WITH_AS(set("cpo_alpha", -1.0), doctest::Contains("cpo_alpha: -1"), trainer::Refusal);
  CHECK(trainer::find_key(keys, "rpo_alpha") == nullptr);  // DPO's key is not CPO's
  trainer::TrainingArguments args;
  set("beta", 0.0);
  CHECK_THROWS_WITH_AS(cpo.check(args), doctest::Contains("beta: must be > 0"), trainer::Refusal);
}
