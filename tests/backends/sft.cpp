// SFT and unlikelihood on every backend against Eigen: several seeds, padding holding -inf/NaN, extreme log-probs.
#include "rlhf/losses/sft.hpp"

#include "rlhf/losses/unlikelihood.hpp"
#include "typed.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

struct Tokens {
  std::size_t rows, cols;
  std::vector<double> logp, mask;
};

// Log-probs in [lo, hi) under a contiguous response mask; padding holds -inf and NaN, which must not leak.
Tokens tokens(std::size_t rows, std::size_t cols, double lo, double hi, std::uint64_t seed) {
  Tokens t{rows, cols, uniform(rows * cols, lo, hi, seed), response_mask(rows, cols, seed + 1)};
  for (std::size_t i = 0; i < t.logp.size(); ++i)
    if (t.mask[i] == 0) t.logp[i] = i % 2 ? -INFINITY : std::nan("");
  return t;
}

template <class Be>
void check_sft(const Tokens& t) {
  using Ref = reference_of<Be>;
  const SftConfig configs[] = {{Aggregation::sequence_sum}, {Aggregation::sequence_mean}, {Aggregation::token_sum},
                               {Aggregation::token_mean}};
  for (const auto& c : configs) {
    const auto got = sft_loss(to_backend<Be>(t.rows, t.cols, t.logp), to_backend<Be>(t.rows, t.cols, t.mask), c);
    const auto want = sft_loss(to_backend<Ref>(t.rows, t.cols, t.logp), to_backend<Ref>(t.rows, t.cols, t.mask), c);
    check_close<Be>("loss", got.loss, want.loss);
    check_tensor<Be>("d_logp", got.d_logp, want.d_logp);
    check_metrics<Be>(got.metrics, want.metrics);
    check_close<Be>("losses", got.losses, want.losses);
  }
}

template <class Be>
void check_unlikelihood(const Tokens& chosen, const Tokens& rejected) {
  using Ref = reference_of<Be>;
  const UnlikelihoodConfig configs[] = {
      {},
      {.alpha = 0.5f, .aggregation = Aggregation::sequence_mean},
      {.alpha = 0.0f},
      {.aggregation = Aggregation::token_sum, .form = UnlikelihoodForm::clamp},
      {.alpha = 2.0, .aggregation = Aggregation::token_mean, .epsilon = 1e-4},
      {.aggregation = Aggregation::sequence_mean, .form = UnlikelihoodForm::clamp, .clamp_min = 1e-3},
  };
  for (const auto& c : configs) {
    const auto got = unlikelihood_loss(to_backend<Be>(chosen.rows, chosen.cols, chosen.logp),
                                       to_backend<Be>(chosen.rows, chosen.cols, chosen.mask),
                                       to_backend<Be>(rejected.rows, rejected.cols, rejected.logp),
                                       to_backend<Be>(rejected.rows, rejected.cols, rejected.mask), c);
    const auto want = unlikelihood_loss(to_backend<Ref>(chosen.rows, chosen.cols, chosen.logp),
                                        to_backend<Ref>(chosen.rows, chosen.cols, chosen.mask),
                                        to_backend<Ref>(rejected.rows, rejected.cols, rejected.logp),
                                        to_backend<Ref>(rejected.rows, rejected.cols, rejected.mask), c);
    check_close<Be>("loss", got.loss, want.loss);
    check_tensor<Be>("d_chosen", got.d_chosen, want.d_chosen);
    check_tensor<Be>("d_rejected", got.d_rejected, want.d_rejected);
    check_close<Be>("chosen_losses", got.chosen_losses, want.chosen_losses);
    check_close<Be>("rejected_losses", got.rejected_losses, want.rejected_losses);
    check_metrics<Be>(got.metrics, want.metrics);
  }
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("backends/sft: agrees with Eigen", Be, sft_agrees) {
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    check_sft<Be>(tokens(16 + seed, 24, -12, 0, seed));
  }
  check_sft<Be>(tokens(512, 300, -12, 0, 4));     // above the parallel threshold
  check_sft<Be>(tokens(8, 16, -1e4, -9.9e3, 5));  // extreme log-probs
}
TEST_CASE_TEMPLATE_APPLY(sft_agrees, backends_under_test);

TEST_CASE_TEMPLATE_DEFINE("backends/unlikelihood: agrees with Eigen", Be, unlikelihood_agrees) {
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    check_unlikelihood<Be>(tokens(12 + seed, 20, -12, 0, seed), tokens(9 + seed, 17, -12, 0, seed + 50));
  }
  // Extremes: chosen near −1e4; rejected near 0 (p → 1, the ε clamp) and near −1e4 (gradient → 0).
  auto near_one = tokens(6, 10, -1e-9, 0, 7);
  const auto far = tokens(6, 10, -1e4, -9.9e3, 8);
  for (std::size_t i = 0; i < near_one.logp.size(); i += 2)
    if (near_one.mask[i] != 0) near_one.logp[i] = far.logp[i] == far.logp[i] ? -1e4 : -3.0;
  check_unlikelihood<Be>(far, near_one);
}
TEST_CASE_TEMPLATE_APPLY(unlikelihood_agrees, backends_under_test);
