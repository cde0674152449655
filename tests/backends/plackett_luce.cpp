// Plackett–Luce and listwise DPO on every backend against Eigen: ragged lengths, top_k, extreme spreads.
#include "rlhf/losses/plackett_luce.hpp"

#include "rlhf/losses/listwise_dpo.hpp"
#include "typed.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

std::vector<double> ragged_lengths(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<double> l(rows);
  for (auto& x : l) x = static_cast<double>(2 + rng.below(cols - 1));
  return l;
}

template <class Be>
void check_pl(std::size_t rows, std::size_t cols, const std::vector<double>& scores,
              const std::vector<double>& lengths) {
  using Ref = reference_of<Be>;
  for (const std::size_t top_k : {std::size_t(0), std::size_t(1), std::size_t(2)}) {
    CAPTURE(top_k);
    const PlackettLuceConfig c{.top_k = top_k};
    const auto got = plackett_luce_loss(to_backend<Be>(rows, cols, scores), to_backend<Be>(lengths), c);
    const auto want = plackett_luce_loss(to_backend<Ref>(rows, cols, scores), to_backend<Ref>(lengths), c);
    check_close<Be>("loss", got.loss, want.loss);
    check_tensor<Be>("losses", got.losses, want.losses);
    check_tensor<Be>("d_scores", got.d_scores, want.d_scores);
    check_metrics<Be>(got.metrics, want.metrics);
  }
}

template <class Be>
void check_listwise(std::size_t rows, std::size_t cols, const std::vector<double>& policy,
                    const std::vector<double>& reference, const std::vector<double>& lengths) {
  using Ref = reference_of<Be>;
  const ListwiseDpoConfig configs[] = {{}, {.beta = 0.5f, .top_k = 1}, {.beta = 0.2f, .reference_free = true}};
  for (const auto& c : configs) {
    const auto got = listwise_dpo_loss(to_backend<Be>(rows, cols, policy), to_backend<Be>(rows, cols, reference),
                                       to_backend<Be>(lengths), c);
    const auto want = listwise_dpo_loss(to_backend<Ref>(rows, cols, policy), to_backend<Ref>(rows, cols, reference),
                                        to_backend<Ref>(lengths), c);
    check_close<Be>("loss", got.loss, want.loss);
    check_tensor<Be>("losses", got.losses, want.losses);
    check_tensor<Be>("d_policy", got.d_policy, want.d_policy);
    check_tensor<Be>("d_reference", got.d_reference, want.d_reference);
    check_metrics<Be>(got.metrics, want.metrics);
  }
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("backends/plackett_luce: agrees with Eigen, full and ragged rows", Be, pl_agrees) {
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    const std::size_t rows = 40 + seed, cols = 2 + 2 * seed;
    const auto scores = uniform(rows * cols, -5, 5, seed);
    check_pl<Be>(rows, cols, scores, {});
    check_pl<Be>(rows, cols, scores, ragged_lengths(rows, cols, seed));
  }
  check_pl<Be>(20000, 4, uniform(80000, -5, 5, 9), {});  // above the parallel threshold
}
TEST_CASE_TEMPLATE_APPLY(pl_agrees, backends_under_test);

TEST_CASE_TEMPLATE_DEFINE("backends/plackett_luce: score spreads of 1e4 agree with Eigen", Be, pl_extreme) {
  const std::size_t rows = 12, cols = 4;
  auto scores = uniform(rows * cols, -1, 1, 4);
  for (std::size_t i = 0; i < scores.size(); ++i) scores[i] *= i % 3 ? 1e4 : 1.0;
  check_pl<Be>(rows, cols, scores, {});
}
TEST_CASE_TEMPLATE_APPLY(pl_extreme, backends_under_test);

TEST_CASE_TEMPLATE_DEFINE("backends/listwise_dpo: agrees with Eigen", Be, listwise_agrees) {
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    const std::size_t rows = 30 + seed, cols = 3 + seed;
    check_listwise<Be>(rows, cols, uniform(rows * cols, -200, -5, seed), uniform(rows * cols, -200, -5, seed + 7),
                       ragged_lengths(rows, cols, seed));
  }
  // Log-probs near −1e4 with gaps of 1e4 between responses.
  const std::size_t rows = 10, cols = 4;
  auto policy = uniform(rows * cols, -1e4, -9e3, 5), reference = uniform(rows * cols, -1e4, -9e3, 6);
  for (std::size_t i = 0; i < policy.size(); i += 3) policy[i] -= 1e4;
  check_listwise<Be>(rows, cols, policy, reference, {});
}
TEST_CASE_TEMPLATE_APPLY(listwise_agrees, backends_under_test);
