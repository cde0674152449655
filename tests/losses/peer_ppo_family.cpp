// The PPO family against the peers' conventions: tests/peers/ppo_family.py computes, with PyTorch autograd in
// float64, small implementations of TRL's and OpenRLHF's formulas (policy loss, value loss, KL estimates and
// their reductions, rewards, GAE, whitening) and stores inputs, values and gradients in
// tests/data/peers/ppo_family.json. Every output and every gradient of the library must match:
//   double: |got − ref| <= 1e-12 + 1e-9 · |ref|
//   float:  |got − ref| <= 1e-6 · (|ref| + max |ref| of that output)   (inputs are float values; the kernels work
//           in double and round each result to float once; GAE and the rewards use γ, λ, κ rounded to float)
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rlhf/backends/eigen.hpp"
#include "rlhf/losses/kl.hpp"
#include "rlhf/losses/ppo.hpp"

using namespace rlhf;
using json = nlohmann::json;

namespace {

const json& data() {
  static const json j = [] {
    std::ifstream in(std::string(RLHF_SOURCE_DIR) + "/tests/data/peers/ppo_family.json");
    REQUIRE_MESSAGE(in.good(), "tests/data/peers/ppo_family.json is missing; run tests/peers/ppo_family.py");
    return json::parse(in);
  }();
  return j;
}

// The largest errors seen, per precision and kind of case, for the summary lines.
struct Worst {
  double abs = 0, rel = 0;
};
std::string current_kind;

template <class S>
struct Bound;
template <>
struct Bound<double> {
  static bool ok(double err, double ref, double) { return err <= 1e-12 + 1e-9 * std::abs(ref); }
  static inline std::map<std::string, Worst> worst;
};
template <>
struct Bound<float> {
  static bool ok(double err, double ref, double scale) { return err <= 1e-6 * (std::abs(ref) + scale); }
  static inline std::map<std::string, Worst> worst;
};

template <class S>
void compare(const std::string& what, const std::vector<double>& got, const std::vector<double>& ref) {
  REQUIRE_MESSAGE(got.size() == ref.size(), what);
  double scale = 0;
  for (const double r : ref) scale = std::max(scale, std::abs(r));
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double err = std::abs(got[i] - ref[i]);
    if (!(err == err) || !Bound<S>::ok(err, ref[i], scale)) {
      if (bad++ == 0) first = i;
    }
    Worst& w = Bound<S>::worst[current_kind];
    w.abs = std::max(w.abs, err);
    if (ref[i] != 0) w.rel = std::max(w.rel, err / std::abs(ref[i]));
  }
  const std::string precision = sizeof(S) == 8 ? "double" : "float";
  CHECK_MESSAGE(bad == 0, what, " (", precision, "): ", bad, " of ", ref.size(), " entries out of bounds; first at ",
                first, ": ", got[first], " vs ", ref[first]);
}
template <class S>
void compare(const std::string& what, double got, double ref) {
  compare<S>(what, std::vector<double>{got}, std::vector<double>{ref});
}

template <class S>
using mat = typename eigen<S>::matrix;

template <class S>
mat<S> matrix(const json& values) {
  const auto shape = data()["shape"];
  const auto h = values.get<std::vector<double>>();
  return eigen<S>::matrix_from_host(shape[0], shape[1], std::vector<S>(h.begin(), h.end()));
}
template <class S>
std::vector<double> host(const mat<S>& m) {
  const auto h = eigen<S>::to_host(m);
  return {h.begin(), h.end()};
}
template <class S>
std::vector<double> host(const typename eigen<S>::vector& v) {
  const auto h = eigen<S>::to_host(v);
  return {h.begin(), h.end()};
}

Aggregation aggregation(const std::string& name) {
  if (name == "token_mean") return Aggregation::token_mean;
  if (name == "sequence_mean") return Aggregation::sequence_mean;
  REQUIRE(name == "sequence_sum");
  return Aggregation::sequence_sum;
}
KlEstimator estimator(const std::string& name) {
  return name == "k1" ? KlEstimator::k1 : name == "k2" ? KlEstimator::k2 : KlEstimator::k3;
}

template <class S>
void check_metrics(const std::string& name, const Metrics& got, const json& ref) {
  for (const auto& [metric, value] : ref.items()) {
    REQUIRE_MESSAGE(got.has(metric), name, ": no metric ", metric);
    compare<S>(name + " " + metric, got[metric], double(value));
  }
}

template <class S>
void policy_case(const json& c) {
  const json& in = data()["inputs"]["policy"];
  const json& k = c["config"];
  const std::string name = c["name"];
  const PpoConfig config{.clip = 0.2,
                         .clip_low = k["clip_low"],
                         .clip_high = k["clip_high"],
                         .dual_clip = k["dual_clip"],
                         .aggregation = aggregation(k["aggregation"]),
                         .max_tokens = k["max_tokens"]};
  const auto r = ppo_policy_loss(matrix<S>(in["logp"]), matrix<S>(in["old_logp"]), matrix<S>(in["advantages"]),
                                 matrix<S>(c["mask"]), config);
  compare<S>(name + " loss", r.loss, c["outputs"]["loss"].get<double>());
  compare<S>(name + " d_logp", host<S>(r.d_logp), c["outputs"]["d_logp"].get<std::vector<double>>());
  check_metrics<S>(name, r.metrics, c["metrics"]);
}

template <class S>
void value_case(const json& c) {
  const json& in = data()["inputs"]["value"];
  const std::string name = c["name"];
  const ValueLossConfig config{.clip = c["config"]["clip"], .aggregation = aggregation(c["config"]["aggregation"])};
  const auto r = ppo_value_loss(matrix<S>(in["values"]), matrix<S>(in["old_values"]), matrix<S>(in["returns"]),
                                matrix<S>(c["mask"]), config);
  compare<S>(name + " loss", r.loss, c["outputs"]["loss"].get<double>());
  compare<S>(name + " d_values", host<S>(r.d_values), c["outputs"]["d_values"].get<std::vector<double>>());
  check_metrics<S>(name, r.metrics, c["metrics"]);
}

template <class S>
void kl_case(const json& c) {
  const json& in = data()["inputs"]["kl"];
  const std::string name = c["name"];
  const KlConfig config{.estimator = estimator(c["config"]["estimator"]),
                        .aggregation = aggregation(c["config"]["aggregation"]),
                        .clamp = c["config"]["clamp"]};
  const auto r = kl_estimate(matrix<S>(in["logp"]), matrix<S>(in["ref_logp"]), matrix<S>(c["mask"]), config);
  const json& out = c["outputs"];
  compare<S>(name + " mean", r.mean, out["mean"].get<double>());
  compare<S>(name + " per_token", host<S>(r.per_token), out["per_token"].get<std::vector<double>>());
  compare<S>(name + " per_sequence", host<S>(r.per_sequence), out["per_sequence"].get<std::vector<double>>());
  compare<S>(name + " d_logp", host<S>(r.d_logp), out["d_logp"].get<std::vector<double>>());
  compare<S>(name + " d_ref_logp", host<S>(r.d_ref_logp), out["d_ref_logp"].get<std::vector<double>>());
}

template <class S>
void rollout_case(const json& c) {
  const json& in = data()["inputs"]["rollout"];
  const json& k = c["config"];
  const std::string name = c["name"];
  const mat<S> mask = matrix<S>(data()["cases"][0]["mask"]);  // the batch's response mask
  const auto scores = data()["inputs"]["scores"].get<std::vector<double>>();
  const auto rewards = kl_penalized_rewards(eigen<S>::from_host(std::vector<S>(scores.begin(), scores.end())),
                                            matrix<S>(in["logp"]), matrix<S>(in["ref_logp"]), mask, k["kl_coef"],
                                            {.estimator = estimator(k["estimator"]), .clamp = k["clamp"]});
  compare<S>(name + " rewards", host<S>(rewards), c["outputs"]["rewards"].get<std::vector<double>>());
  const auto g = gae(rewards, matrix<S>(in["values"]), mask, {.gamma = k["gamma"], .lambda = k["lambda"]});
  compare<S>(name + " advantages", host<S>(g.advantages), c["outputs"]["advantages"].get<std::vector<double>>());
  compare<S>(name + " returns", host<S>(g.returns), c["outputs"]["returns"].get<std::vector<double>>());
  for (const json& w : c["whiten"]) {
    const std::string what = name + " whiten " + w["input"].get<std::string>() + " " + w["name"].get<std::string>();
    const WhitenConfig config{.shift_mean = w["shift_mean"],
                              .unbiased = w["unbiased"],
                              .eps_as_floor = w["eps_as_floor"],
                              .zero_outside_mask = w["zero_outside_mask"]};
    const mat<S> x = w["input"] == "tiny" ? matrix<S>(in["tiny"]) : g.advantages;
    const auto stats = whiten_stats(x, mask, config);
    compare<S>(what + " mean", stats.mean, w["mean"].get<double>());
    compare<S>(what + " variance", stats.variance, w["variance"].get<double>());
    compare<S>(what, host<S>(whiten(x, mask, config)), w["values"].get<std::vector<double>>());
  }
}

template <class S>
void all_cases() {
  std::size_t n = 0;
  for (const json& c : data()["cases"]) {
    CAPTURE(c["name"].get<std::string>());
    const std::string kind = c["kind"];
    current_kind = kind;
    if (kind == "policy") policy_case<S>(c);
    if (kind == "value") value_case<S>(c);
    if (kind == "kl") kl_case<S>(c);
    if (kind == "rollout") rollout_case<S>(c);
    ++n;
  }
  CHECK(n == data()["cases"].size());
  const std::string precision = sizeof(S) == 8 ? "double" : "float";
  for (const auto& [kind, w] : Bound<S>::worst)
    MESSAGE(precision, ", ", kind, " cases: largest |got − ref| ", w.abs, ", largest |got − ref| / |ref| ", w.rel);
}

}  // namespace

TEST_CASE("peers: the PPO family matches TRL's and OpenRLHF's formulas in double (values and gradients)") {
  all_cases<double>();
}

TEST_CASE("peers: the PPO family matches TRL's and OpenRLHF's formulas in float") { all_cases<float>(); }
