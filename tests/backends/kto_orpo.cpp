// KTO and ORPO on every backend against Eigen: several seeds, both labels, z0 clamped or not, ℓ near 0.
#include "rlhf/losses/kto.hpp"
#include "rlhf/losses/orpo.hpp"

#include "typed.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

struct HostExamples {
  std::vector<double> policy, reference, desirable, policy_kl, reference_kl;
};

HostExamples random_examples(std::size_t n, double kl_shift, std::uint64_t seed) {
  auto desirable = uniform(n, 0, 1, seed + 2);
  for (auto& d : desirable) d = std::round(d);
  auto policy_kl = uniform(n / 2 + 1, -300, -5, seed + 3);
  for (auto& p : policy_kl) p += kl_shift;
  return {uniform(n, -300, -5, seed), uniform(n, -300, -5, seed + 1), desirable, policy_kl,
          uniform(n / 2 + 1, -300, -5, seed + 4)};
}

template <class Be>
KtoExamples<typename Be::vector> on(const HostExamples& h) {
  return {to_backend<Be>(h.policy), to_backend<Be>(h.reference), to_backend<Be>(h.desirable),
          to_backend<Be>(h.policy_kl), to_backend<Be>(h.reference_kl)};
}

struct HostPairs {
  std::vector<double> pc, pr, lc, lr;
};

HostPairs random_pairs(std::size_t n, std::uint64_t seed) {
  auto lc = uniform(n, 1, 20, seed + 2), lr = uniform(n, 1, 20, seed + 3);
  for (auto& l : lc) l = std::round(l);
  for (auto& l : lr) l = std::round(l);
  auto pc = uniform(n, -60, -1, seed), pr = uniform(n, -60, -1, seed + 1);
  pr[n / 2] = 0, lr[n / 2] = 0;  // an empty completion: ℓ = 0, read at the clamp
  pc[n / 3] = -1e-4, lc[n / 3] = 1;  // a response of probability near 1
  return {pc, pr, lc, lr};
}

template <class Be>
OrpoPairs<typename Be::vector> on(const HostPairs& h) {
  return {to_backend<Be>(h.pc), to_backend<Be>(h.pr), to_backend<Be>(h.lc), to_backend<Be>(h.lr)};
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("backends/kto: agrees with Eigen", Be, kto_agrees) {
  using Ref = reference_of<Be>;
  const KtoConfig configs[] = {{}, {.beta = 0.5, .desirable_weight = 1.3, .undesirable_weight = 0.7}};
  for (const double shift : {-100.0, 100.0})
    for (const std::size_t n : {std::size_t(65), std::size_t(100003)})
      for (const auto& c : configs) {
        const auto h = random_examples(n, shift, n + 1);
        const auto got = kto_loss(on<Be>(h), c);
        const auto want = kto_loss(on<Ref>(h), c);
        check_close<Be>("loss", got.loss, want.loss);
        check_close<Be>("kl", got.kl, want.kl);
        check_tensor<Be>("losses", got.losses, want.losses);
        check_tensor<Be>("d_policy", got.d_policy, want.d_policy);
        check_tensor<Be>("d_reference", got.d_reference, want.d_reference);
        check_metrics<Be>(got.metrics, want.metrics);
      }
  auto bad = random_examples(8, 0, 1);
  bad.desirable[2] = 0.5;
  CHECK_THROWS_WITH_AS(kto_loss(on<Be>(bad)), doctest::Contains("'desirable' holds 1 value(s) other than 0 or 1"),
                       value_error);
}
TEST_CASE_TEMPLATE_APPLY(kto_agrees, backends_under_test);

TEST_CASE_TEMPLATE_DEFINE("backends/orpo: agrees with Eigen", Be, orpo_agrees) {
  using Ref = reference_of<Be>;
  for (const std::size_t n : {std::size_t(64), std::size_t(100003)})
    for (const double lambda : {0.1, 2.0}) {
      const auto h = random_pairs(n, n);
      const auto got = orpo_loss(on<Be>(h), {.lambda = lambda});
      const auto want = orpo_loss(on<Ref>(h), {.lambda = lambda});
      check_close<Be>("loss", got.loss, want.loss);
      check_tensor<Be>("losses", got.losses, want.losses);
      check_tensor<Be>("d_policy_chosen", got.d_policy_chosen, want.d_policy_chosen);
      check_tensor<Be>("d_policy_rejected", got.d_policy_rejected, want.d_policy_rejected);
      check_metrics<Be>(got.metrics, want.metrics);
    }
  auto bad = random_pairs(8, 1);
  bad.lc[1] = -2;
  CHECK_THROWS_WITH_AS(orpo_loss(on<Be>(bad)), doctest::Contains("'chosen_length' holds 1 value(s) < 0"), value_error);
}
TEST_CASE_TEMPLATE_APPLY(orpo_agrees, backends_under_test);
