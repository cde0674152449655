// DPO and its variants on every backend against Eigen: several seeds and extreme log-ratios.
#include "rlhf/losses/dpo.hpp"

#include "typed.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

const DpoConfig configs[] = {
    {},
    {.beta = 0.5f, .label_smoothing = 0.2f},
    {.variant = DpoVariant::robust, .beta = 0.3f, .label_smoothing = 0.1f},
    {.variant = DpoVariant::hinge, .beta = 0.05f},
    {.variant = DpoVariant::ipo, .beta = 0.1f, .length_normalize = true},
    DpoConfig::simpo(2.0f, 0.5f),
    {.beta = 0.2f, .reference_free = true},
    {.beta = 0.1f, .nll_weight = 0.7f},
    {.beta = 0.1, .nll_weight = 0.7, .nll_aggregation = Aggregation::token_mean},
    {.variant = DpoVariant::ipo, .beta = 0.3, .length_normalize = true, .reward_metrics = DpoRewardMetrics::raw},
    {.beta = 0.2, .reference_free = true, .reward_metrics = DpoRewardMetrics::raw},
};

struct HostPairs {
  std::vector<double> pc, pr, rc, rr, lc, lr;
};

HostPairs random_pairs(std::size_t n, std::uint64_t seed) {
  auto lc = uniform(n, 1, 200, seed + 4), lr = uniform(n, 1, 200, seed + 5);
  for (auto& l : lc) l = std::round(l);
  for (auto& l : lr) l = std::round(l);
  lr[n / 2] = 0;  // an empty completion: its length is read as 1
  return {uniform(n, -300, -5, seed),
          uniform(n, -300, -5, seed + 1),
          uniform(n, -300, -5, seed + 2),
          uniform(n, -300, -5, seed + 3),
          lc,
          lr};
}

// Log-probs near −1e4 with chosen−rejected gaps of ±1e4 in both policy and reference.
HostPairs extreme_pairs(std::size_t n, std::uint64_t seed) {
  auto p = random_pairs(n, seed);
  for (std::size_t i = 0; i < n; ++i) {
    const double gap = i % 2 ? 1e4 : -1e4;
    p.pc[i] = -1e4 + (i % 3 == 0 ? gap : 0.0);
    p.pr[i] = -1e4 - (i % 3 == 1 ? gap : 0.0);
    p.rc[i] = -1e4 + p.rc[i];
    p.rr[i] = -1e4 - (i % 3 == 2 ? gap : 0.0);
  }
  return p;
}

template <class Be>
PreferencePairs<typename Be::vector> on(const HostPairs& h) {
  return {to_backend<Be>(h.pc), to_backend<Be>(h.pr), to_backend<Be>(h.rc),
          to_backend<Be>(h.rr), to_backend<Be>(h.lc), to_backend<Be>(h.lr)};
}

template <class Be>
void check_dpo(const HostPairs& h) {
  using Ref = reference_of<Be>;
  for (const auto& c : configs) {
    const auto got = dpo_loss(on<Be>(h), c);
    const auto want = dpo_loss(on<Ref>(h), c);
    check_close<Be>("loss", got.loss, want.loss);
    check_tensor<Be>("losses", got.losses, want.losses);
    check_tensor<Be>("d_policy_chosen", got.d_policy_chosen, want.d_policy_chosen);
    check_tensor<Be>("d_policy_rejected", got.d_policy_rejected, want.d_policy_rejected);
    check_tensor<Be>("d_reference_chosen", got.d_reference_chosen, want.d_reference_chosen);
    check_tensor<Be>("d_reference_rejected", got.d_reference_rejected, want.d_reference_rejected);
    check_metrics<Be>(got.metrics, want.metrics);
  }
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("backends/dpo: every variant agrees with Eigen", Be, dpo_agrees) {
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    check_dpo<Be>(random_pairs(64 + seed, seed * 10));
  }
  check_dpo<Be>(random_pairs(100003, 7));  // above the parallel threshold: OpenMP on the host backends
}
TEST_CASE_TEMPLATE_APPLY(dpo_agrees, backends_under_test);

TEST_CASE_TEMPLATE_DEFINE("backends/dpo: extreme log-ratios agree with Eigen and stay finite", Be, dpo_extreme) {
  const auto h = extreme_pairs(30, 5);
  check_dpo<Be>(h);
  for (const auto& c : configs) {
    const auto r = dpo_loss(on<Be>(h), c);
    CHECK(std::isfinite(r.loss));
    for (const double g : to_host_double<Be>(r.d_policy_chosen)) CHECK(std::isfinite(g));
  }
}
TEST_CASE_TEMPLATE_APPLY(dpo_extreme, backends_under_test);

TEST_CASE_TEMPLATE_DEFINE("backends/dpo: bad input is rejected the same way", Be, dpo_bad) {
  auto h = random_pairs(8, 1);
  h.rc[3] = std::nan("");
  CHECK_THROWS_WITH_AS(dpo_loss(on<Be>(h)), doctest::Contains("'reference_chosen' holds 1 NaN or Inf"), value_error);
  auto short_h = random_pairs(8, 1);
  short_h.pr.pop_back();
  CHECK_THROWS_AS(dpo_loss(on<Be>(short_h)), shape_error);
}
TEST_CASE_TEMPLATE_APPLY(dpo_bad, backends_under_test);

TEST_CASE_TEMPLATE_DEFINE("backends/dpo: log-probs of ±3e38 agree with Eigen and stay finite", Be, dpo_huge) {
  using Ref = reference_of<Be>;
  const double H = 3e38;  // log-ratios of ±6e38: past float, so the kernel must take differences in double
  HostPairs h = random_pairs(12, 3);
  for (std::size_t i = 0; i < 12; ++i) {
    const double s = i % 2 ? 1.0 : -0.5;
    h.pc[i] = -s * H, h.rc[i] = s * H, h.pr[i] = s * H, h.rr[i] = -s * H;
  }
  const DpoConfig huge_configs[] = {{},
                                    {.beta = 0.1f, .label_smoothing = 0.2f},
                                    {.variant = DpoVariant::robust, .beta = 0.1f, .label_smoothing = 0.1f},
                                    {.variant = DpoVariant::hinge, .beta = 0.05f},
                                    {.beta = 0.2f, .reference_free = true}};
  for (const auto& c : huge_configs) {
    const auto got = dpo_loss(on<Be>(h), c);
    const auto want = dpo_loss(on<Ref>(h), c);
    CHECK(std::isfinite(got.loss));
    check_close<Be>("loss", got.loss, want.loss);
    check_tensor<Be>("losses", got.losses, want.losses);
    check_tensor<Be>("d_policy_chosen", got.d_policy_chosen, want.d_policy_chosen);
    check_tensor<Be>("d_reference_rejected", got.d_reference_rejected, want.d_reference_rejected);
    check_metrics<Be>(got.metrics, want.metrics);
  }
  if constexpr (std::is_same_v<typename Be::scalar, float>)  // IPO's square of 1.2e39 is no float
    CHECK_THROWS_WITH_AS(dpo_loss(on<Be>(h), {.variant = DpoVariant::ipo}), doctest::Contains("would exceed the range"),
                         value_error);
}
TEST_CASE_TEMPLATE_APPLY(dpo_huge, backends_under_test);
