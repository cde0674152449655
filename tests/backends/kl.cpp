// KL estimators (k1/k2/k3) and the exact KL from logits on every backend against Eigen.
#include "rlhf/losses/kl.hpp"

#include "typed.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

template <class Be>
void check_estimate(std::size_t rows, std::size_t cols, const std::vector<double>& logp, const std::vector<double>& ref,
                    const std::vector<double>& mask) {
  using Ref = reference_of<Be>;
  for (const auto k : {KlEstimator::k1, KlEstimator::k2, KlEstimator::k3}) {
    CAPTURE(static_cast<int>(k));
    const auto got = kl_estimate(to_backend<Be>(rows, cols, logp), to_backend<Be>(rows, cols, ref),
                                 to_backend<Be>(rows, cols, mask), k);
    const auto want = kl_estimate(to_backend<Ref>(rows, cols, logp), to_backend<Ref>(rows, cols, ref),
                                  to_backend<Ref>(rows, cols, mask), k);
    check_close<Be>("mean", got.mean, want.mean);
    check_tensor<Be>("per_sequence", got.per_sequence, want.per_sequence);
    check_tensor<Be>("per_token", got.per_token, want.per_token);
    check_tensor<Be>("d_logp", got.d_logp, want.d_logp);
    check_tensor<Be>("d_ref_logp", got.d_ref_logp, want.d_ref_logp);
    for (const auto how : {Aggregation::token_mean, Aggregation::sequence_mean})  // with OpenRLHF's clamp
      for (const double clamp : {0.0, 10.0}) {
        const KlConfig c{.estimator = k, .aggregation = how, .clamp = clamp};
        const auto got_c = kl_estimate(to_backend<Be>(rows, cols, logp), to_backend<Be>(rows, cols, ref),
                                       to_backend<Be>(rows, cols, mask), c);
        const auto want_c = kl_estimate(to_backend<Ref>(rows, cols, logp), to_backend<Ref>(rows, cols, ref),
                                        to_backend<Ref>(rows, cols, mask), c);
        check_close<Be>("mean (config)", got_c.mean, want_c.mean);
        check_tensor<Be>("per_token (config)", got_c.per_token, want_c.per_token);
        check_tensor<Be>("d_logp (config)", got_c.d_logp, want_c.d_logp);
        check_tensor<Be>("d_ref_logp (config)", got_c.d_ref_logp, want_c.d_ref_logp);
      }
  }
}

template <class Be>
void check_exact(std::size_t rows, std::size_t vocab, const std::vector<double>& p, const std::vector<double>& q,
                 const std::vector<double>& mask) {
  using Ref = reference_of<Be>;
  const auto got =
      exact_kl_from_logits(to_backend<Be>(rows, vocab, p), to_backend<Be>(rows, vocab, q), to_backend<Be>(mask));
  const auto want =
      exact_kl_from_logits(to_backend<Ref>(rows, vocab, p), to_backend<Ref>(rows, vocab, q), to_backend<Ref>(mask));
  check_close<Be>("mean", got.mean, want.mean);
  check_tensor<Be>("per_row", got.per_row, want.per_row);
  check_tensor<Be>("d_logits_p", got.d_logits_p, want.d_logits_p);
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("backends/kl: the estimators agree with Eigen", Be, kl_estimate_agrees) {
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    const std::size_t rows = 10 + seed, cols = 30;
    auto mask = response_mask(rows, cols, seed);
    for (std::size_t t = 0; t < cols; ++t) mask[cols + t] = 0;  // an empty row
    check_estimate<Be>(rows, cols, uniform(rows * cols, -16, 0, seed), uniform(rows * cols, -16, 0, seed + 9), mask);
  }
  // Log-probs near −1e4 with log-ratios of ±60 (past the k3 cap in float) and ±1e4.
  const std::size_t rows = 6, cols = 8;
  auto logp = uniform(rows * cols, -1e4, -9.9e3, 4), ref = logp;
  const double gaps[] = {60, -60, 1e4, -1e4, 0.5};
  for (std::size_t i = 0; i < ref.size(); ++i) ref[i] += gaps[i % 5];
  check_estimate<Be>(rows, cols, logp, ref, response_mask(rows, cols, 4));
}
TEST_CASE_TEMPLATE_APPLY(kl_estimate_agrees, backends_under_test);

TEST_CASE_TEMPLATE_DEFINE("backends/kl: the exact KL from logits agrees with Eigen", Be, kl_exact_agrees) {
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    const std::size_t rows = 7 + seed, vocab = 50 + 13 * seed;
    auto mask = constant(rows, 1.0);
    mask[1] = 0;
    auto p = uniform(rows * vocab, -6, 6, seed), q = uniform(rows * vocab, -6, 6, seed + 3);
    for (std::size_t v = 0; v < vocab; ++v) p[vocab + v] = std::nan("");  // masked row: never read
    check_exact<Be>(rows, vocab, p, q, mask);
  }
  const std::size_t rows = 4, vocab = 64;  // logits of ±1e4
  auto p = uniform(rows * vocab, -1e4, 1e4, 5), q = uniform(rows * vocab, -1e4, 1e4, 6);
  check_exact<Be>(rows, vocab, p, q, constant(rows, 1.0));
}
TEST_CASE_TEMPLATE_APPLY(kl_exact_agrees, backends_under_test);
