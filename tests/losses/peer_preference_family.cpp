// The preference and token losses against the peers' formulas: values and gradients that
// tests/peers/preference_family.py computed with PyTorch autograd from its own float64 implementations of
// the DPO repo, TRL, OpenRLHF and fairseq formulas (each cited there), stored in
// tests/data/peers/preference_family.json. Every output and every gradient must agree:
//   double: |got − ref| ≤ 1e-12 + 1e-9 |ref|
//   float : |got − ref| ≤ 1e-6 · max(1, |ref|)   (the inputs are float-representable; only the float roundings
//           of the outputs and of the per-token work in float differ; measured: 1.5e-7)
//           1e-4 · max(1, |ref|) for fairseq's clamp form of unlikelihood, whose 1 − e^x cancels in float (at
//           p = 1 − 1e-3 it keeps 4 fewer digits, in fairseq's float32 as here)
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "rlhf/backends/eigen.hpp"
#include "rlhf/losses/bradley_terry.hpp"
#include "rlhf/losses/dpo.hpp"
#include "rlhf/losses/listwise_dpo.hpp"
#include "rlhf/losses/plackett_luce.hpp"
#include "rlhf/losses/sft.hpp"
#include "rlhf/losses/unlikelihood.hpp"

using namespace rlhf;
using json = nlohmann::json;

namespace {

const json& cases() {
  static const json doc = [] {
    std::ifstream f(RLHF_SOURCE_DIR "/tests/data/peers/preference_family.json");
    REQUIRE_MESSAGE(f.good(), "tests/data/peers/preference_family.json is missing");
    std::stringstream s;
    s << f.rdbuf();
    return json::parse(s.str());
  }();
  return doc.at("cases");
}

double float_relative = 1e-6;  // set per case: the float bound of the case at hand

template <class T>
struct Bound {
  static double of(double ref) {
    if constexpr (std::is_same_v<T, double>) return 1e-12 + 1e-9 * std::abs(ref);
    return float_relative * std::max(1.0, std::abs(ref));
  }
};

// Largest |got − ref| / bound over all compared numbers, per scalar type; the test reports them.
template <class T>
double& worst_ratio() {
  static double w = 0;
  return w;
}
template <class T>
double& worst_error() {
  static double w = 0;
  return w;
}

template <class T>
void compare(const std::string& what, double got, double ref) {
  const double err = std::abs(got - ref), bound = Bound<T>::of(ref);
  worst_ratio<T>() = std::max(worst_ratio<T>(), err / bound);
  worst_error<T>() = std::max(worst_error<T>(), err);
  if (!(err <= bound)) FAIL_CHECK(what, ": got ", got, ", reference ", ref, ", |error| ", err, " > ", bound);
}

template <class T>
void compare_all(const std::string& what, const std::vector<double>& got, const json& ref) {
  REQUIRE_MESSAGE(got.size() == ref.size(), what, ": ", got.size(), " values, reference has ", ref.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    compare<T>(what + "[" + std::to_string(i) + "]", got[i], ref[i].get<double>());
}

template <class T>
void compare_metrics(const Metrics& got, const json& ref) {
  for (const auto& [name, value] : ref.items()) {
    REQUIRE_MESSAGE(got.has(name), "metric ", name, " missing");
    compare<T>("metric " + name, got[name], value.template get<double>());
  }
}

template <class T>
typename eigen<T>::vector vec_of(const json& j) {
  const auto h = j.get<std::vector<double>>();
  return eigen<T>::from_host(std::vector<T>(h.begin(), h.end()));
}
template <class T>
typename eigen<T>::matrix mat_of(const json& j, std::size_t rows, std::size_t cols) {
  typename eigen<T>::matrix m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  const auto h = j.get<std::vector<double>>();
  REQUIRE(h.size() == rows * cols);
  for (std::size_t i = 0; i < h.size(); ++i)
    m(static_cast<Eigen::Index>(i / cols), static_cast<Eigen::Index>(i % cols)) = T(h[i]);
  return m;
}
template <class Tensor>
std::vector<double> host(const Tensor& t) {  // row-major
  std::vector<double> out;
  for (Eigen::Index r = 0; r < t.rows(); ++r)
    for (Eigen::Index c = 0; c < t.cols(); ++c) out.push_back(static_cast<double>(t(r, c)));
  return out;
}

DpoConfig dpo_config(const json& c) {
  DpoConfig out;
  const std::string v = c.at("variant");
  out.variant = v == "sigmoid" ? DpoVariant::sigmoid
                : v == "robust" ? DpoVariant::robust
                : v == "hinge"  ? DpoVariant::hinge
                                : DpoVariant::ipo;
  out.beta = c.at("beta");
  out.label_smoothing = c.value("label_smoothing", 0.0);
  out.margin = c.value("margin", 0.0);
  out.length_normalize = c.value("length_normalize", false);
  out.reference_free = c.value("reference_free", false);
  out.nll_weight = c.value("nll_weight", 0.0);
  out.nll_aggregation = c.value("nll_normalization", std::string("per_sequence")) == "batch_tokens"
                            ? Aggregation::token_mean
                            : Aggregation::sequence_mean;
  out.reward_metrics = c.at("reward_metrics") == "raw" ? DpoRewardMetrics::raw : DpoRewardMetrics::as_loss;
  return out;
}

template <class T>
void check_dpo(const json& k) {
  const json &in = k.at("inputs"), &out = k.at("outputs");
  const PreferencePairs<typename eigen<T>::vector> pairs{
      vec_of<T>(in.at("policy_chosen")),    vec_of<T>(in.at("policy_rejected")), vec_of<T>(in.at("reference_chosen")),
      vec_of<T>(in.at("reference_rejected")), vec_of<T>(in.at("chosen_length")), vec_of<T>(in.at("rejected_length"))};
  const auto r = dpo_loss(pairs, dpo_config(k.at("config")));
  compare<T>("loss", r.loss, out.at("loss"));
  compare_all<T>("losses", host(r.losses), out.at("losses"));
  compare_all<T>("d_policy_chosen", host(r.d_policy_chosen), out.at("d_policy_chosen"));
  compare_all<T>("d_policy_rejected", host(r.d_policy_rejected), out.at("d_policy_rejected"));
  compare_all<T>("d_reference_chosen", host(r.d_reference_chosen), out.at("d_reference_chosen"));
  compare_all<T>("d_reference_rejected", host(r.d_reference_rejected), out.at("d_reference_rejected"));
  compare_metrics<T>(r.metrics, out.at("metrics"));
}

template <class T>
void check_bradley_terry(const json& k) {
  const json &in = k.at("inputs"), &out = k.at("outputs");
  RewardPairs<typename eigen<T>::vector> pairs{vec_of<T>(in.at("chosen")), vec_of<T>(in.at("rejected")), {}};
  if (in.contains("margin")) pairs.margin = vec_of<T>(in.at("margin"));
  const BradleyTerryConfig c{.center_coefficient = k.at("config").value("center_coefficient", 0.0)};
  const auto r = bradley_terry_loss(pairs, c);
  compare<T>("loss", r.loss, out.at("loss"));
  compare_all<T>("losses", host(r.losses), out.at("losses"));
  compare_all<T>("d_chosen", host(r.d_chosen), out.at("d_chosen"));
  compare_all<T>("d_rejected", host(r.d_rejected), out.at("d_rejected"));
  compare_metrics<T>(r.metrics, out.at("metrics"));
}

template <class T>
void check_plackett_luce(const json& k) {
  const json &in = k.at("inputs"), &out = k.at("outputs");
  const std::size_t rows = in.at("rows"), cols = in.at("cols");
  const auto r = plackett_luce_loss(mat_of<T>(in.at("scores"), rows, cols), vec_of<T>(in.at("lengths")),
                                    {.top_k = k.at("config").at("top_k")});
  compare<T>("loss", r.loss, out.at("loss"));
  compare_all<T>("losses", host(r.losses), out.at("losses"));
  compare_all<T>("d_scores", host(r.d_scores), out.at("d_scores"));
  compare_metrics<T>(r.metrics, out.at("metrics"));
}

template <class T>
void check_listwise_dpo(const json& k) {
  const json &in = k.at("inputs"), &out = k.at("outputs");
  const std::size_t rows = in.at("rows"), cols = in.at("cols");
  const ListwiseDpoConfig c{.beta = k.at("config").at("beta"), .top_k = k.at("config").at("top_k")};
  const auto r = listwise_dpo_loss(mat_of<T>(in.at("policy"), rows, cols), mat_of<T>(in.at("reference"), rows, cols),
                                   vec_of<T>(in.at("lengths")), c);
  compare<T>("loss", r.loss, out.at("loss"));
  compare_all<T>("losses", host(r.losses), out.at("losses"));
  compare_all<T>("d_policy", host(r.d_policy), out.at("d_policy"));
  compare_all<T>("d_reference", host(r.d_reference), out.at("d_reference"));
  compare_metrics<T>(r.metrics, out.at("metrics"));
}

// The generator's settings (a reduction per row, then one over the rows) as the point of Aggregation they name.
Aggregation aggregation_of(const json& c) {
  const std::string rows = c.at("batch_reduction");
  const bool row_means = c.at("reduction") == "mean";
  if (rows == "mean_rows") return row_means ? Aggregation::sequence_mean : Aggregation::sequence_sum;
  REQUIRE_FALSE(row_means);  // row means summed or over the tokens name no point of Aggregation
  return rows == "sum_rows" ? Aggregation::token_sum : Aggregation::token_mean;
}

template <class T>
void check_sft(const json& k) {
  const json &in = k.at("inputs"), &out = k.at("outputs");
  const std::size_t rows = in.at("rows"), cols = in.at("cols");
  const SftConfig c{aggregation_of(k.at("config"))};
  const auto r = sft_loss(mat_of<T>(in.at("logps"), rows, cols), mat_of<T>(in.at("mask"), rows, cols), c);
  compare<T>("loss", r.loss, out.at("loss"));
  compare_all<T>("losses", r.losses, out.at("losses"));
  compare_all<T>("d_logp", host(r.d_logp), out.at("d_logp"));
  compare_metrics<T>(r.metrics, out.at("metrics"));
}

template <class T>
void check_unlikelihood(const json& k) {
  const json &in = k.at("inputs"), &out = k.at("outputs"), &cj = k.at("config");
  const std::size_t cr = in.at("chosen_rows"), cc = in.at("chosen_cols");
  const std::size_t rr = in.at("rejected_rows"), rc = in.at("rejected_cols");
  const UnlikelihoodConfig c{.alpha = cj.at("alpha"),
                             .aggregation = aggregation_of(cj),
                             .form = cj.at("form") == "clamp" ? UnlikelihoodForm::clamp : UnlikelihoodForm::exact,
                             .epsilon = cj.at("epsilon"),
                             .clamp_min = cj.at("clamp_min")};
  const auto r = unlikelihood_loss(mat_of<T>(in.at("chosen_logps"), cr, cc), mat_of<T>(in.at("chosen_mask"), cr, cc),
                                   mat_of<T>(in.at("rejected_logps"), rr, rc),
                                   mat_of<T>(in.at("rejected_mask"), rr, rc), c);
  compare<T>("loss", r.loss, out.at("loss"));
  compare_all<T>("chosen_losses", r.chosen_losses, out.at("chosen_losses"));
  compare_all<T>("rejected_losses", r.rejected_losses, out.at("rejected_losses"));
  compare_all<T>("d_chosen", host(r.d_chosen), out.at("d_chosen"));
  compare_all<T>("d_rejected", host(r.d_rejected), out.at("d_rejected"));
  compare_metrics<T>(r.metrics, out.at("metrics"));
}

template <class T>
void check_all() {
  std::size_t n = 0;
  for (const json& k : cases()) {
    const std::string family = k.at("family"), name = k.at("name");
    CAPTURE(name);
    const bool cancels = family == "unlikelihood" && k.at("config").at("form") == "clamp";
    float_relative = cancels ? 1e-4 : 1e-6;
    if (family == "dpo") check_dpo<T>(k);
    else if (family == "bradley_terry") check_bradley_terry<T>(k);
    else if (family == "plackett_luce") check_plackett_luce<T>(k);
    else if (family == "listwise_dpo") check_listwise_dpo<T>(k);
    else if (family == "sft") check_sft<T>(k);
    else if (family == "unlikelihood") check_unlikelihood<T>(k);
    else FAIL("unknown family ", family);
    ++n;
  }
  CHECK(n >= 30);
  MESSAGE(n, " cases in ", std::string(sizeof(T) == 8 ? "double" : "float"), ": largest |error| ", worst_error<T>(),
          ", largest |error| / bound ", worst_ratio<T>());
}

}  // namespace

TEST_CASE("peer_preference_family: every output and gradient matches the peers' formulas, in double") {
  check_all<double>();
}

TEST_CASE("peer_preference_family: the same in float, within 1e-6 relative (1e-4 for fairseq's clamp form)") { check_all<float>(); }
