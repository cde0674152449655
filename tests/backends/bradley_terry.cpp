// Bradley–Terry on every backend against Eigen: several seeds and extreme reward gaps.
#include "rlhf/losses/bradley_terry.hpp"

#include "typed.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

const BradleyTerryConfig configs[] = {
    {},
    {.margin = 0.5f},
    {.label_smoothing = 0.1f},
    {.margin = -1.0f, .label_smoothing = 0.25f, .center_coefficient = 0.01f},
};

// margin: a margin per pair, or empty.
template <class Be>
void check_bt(const std::vector<double>& chosen, const std::vector<double>& rejected,
              const std::vector<double>& margin = {}) {
  using Ref = reference_of<Be>;
  for (const auto& c : configs) {
    const auto got = bradley_terry_loss(
        RewardPairs<typename Be::vector>{to_backend<Be>(chosen), to_backend<Be>(rejected), to_backend<Be>(margin)}, c);
    const auto want = bradley_terry_loss(
        RewardPairs<typename Ref::vector>{to_backend<Ref>(chosen), to_backend<Ref>(rejected), to_backend<Ref>(margin)},
        c);
    check_close<Be>("loss", got.loss, want.loss);
    check_tensor<Be>("losses", got.losses, want.losses);
    check_tensor<Be>("d_chosen", got.d_chosen, want.d_chosen);
    check_tensor<Be>("d_rejected", got.d_rejected, want.d_rejected);
    check_metrics<Be>(got.metrics, want.metrics);
  }
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("backends/bradley_terry: agrees with Eigen", Be, bt_agrees) {
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    check_bt<Be>(uniform(50 + seed, -5, 5, seed), uniform(50 + seed, -5, 5, seed + 100));
  }
  check_bt<Be>(uniform(100003, -5, 5, 8), uniform(100003, -5, 5, 9));
  check_bt<Be>(uniform(77, -5, 5, 10), uniform(77, -5, 5, 11), uniform(77, -2, 3, 12));  // a margin per pair
}
TEST_CASE_TEMPLATE_APPLY(bt_agrees, backends_under_test);

TEST_CASE_TEMPLATE_DEFINE("backends/bradley_terry: reward gaps of ±1e4 agree with Eigen", Be, bt_extreme) {
  std::vector<double> chosen = uniform(20, -1, 1, 4), rejected = chosen;
  for (std::size_t i = 0; i < chosen.size(); ++i) rejected[i] += i % 2 ? 1e4 : -1e4;
  check_bt<Be>(chosen, rejected);
}
TEST_CASE_TEMPLATE_APPLY(bt_extreme, backends_under_test);

TEST_CASE_TEMPLATE_DEFINE("backends/bradley_terry: rewards of ±3e38 agree with Eigen and stay finite", Be, bt_huge) {
  std::vector<double> chosen(16), rejected(16);
  for (std::size_t i = 0; i < chosen.size(); ++i) {  // gaps of 6e38 (easy) and −3e38 (hard), sums 0
    chosen[i] = i % 2 ? 3e38 : -1.5e38;
    rejected[i] = -chosen[i];
  }
  check_bt<Be>(chosen, rejected);
  const auto r = bradley_terry_loss(RewardPairs<typename Be::vector>{to_backend<Be>(chosen), to_backend<Be>(rejected)});
  CHECK(std::isfinite(r.loss));
}
TEST_CASE_TEMPLATE_APPLY(bt_huge, backends_under_test);
