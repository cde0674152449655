#include "rlhf/losses/kto.hpp"

#include <doctest/doctest.h>

#include <cmath>

#include "support/gradcheck.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

vec labels(std::initializer_list<double> l) {
  vec v(static_cast<Eigen::Index>(l.size()));
  Eigen::Index i = 0;
  for (const double x : l) v[i++] = x;
  return v;
}

// Random log-probs with a mix of labels; the mismatched rows' log-ratios lean positive or negative by `kl_shift`.
KtoExamples<vec> random_examples(std::size_t n, std::size_t m, double kl_shift, std::uint64_t seed) {
  vec desirable = random_vector(n, 0, 1, seed + 2).array().round();
  return {random_vector(n, -30, -5, seed), random_vector(n, -30, -5, seed + 1), desirable,
          random_vector(m, -30, -5, seed + 3).array() + kl_shift, random_vector(m, -30, -5, seed + 4)};
}

// The paper's value function, written independently of the kernel: one example's weighted loss given z0.
double reference_loss(const KtoConfig& c, double policy, double reference, bool desirable, double z0) {
  const double u = policy - reference;
  const auto sigma = [](double x) { return 1 / (1 + std::exp(-x)); };
  return desirable ? c.desirable_weight * (1 - sigma(c.beta * (u - z0)))
                   : c.undesirable_weight * (1 - sigma(c.beta * (z0 - u)));
}

double reference_point(const KtoExamples<vec>& in) {
  double total = 0;
  for (Eigen::Index j = 0; j < in.policy_kl.size(); ++j) total += in.policy_kl[j] - in.reference_kl[j];
  return std::max(0.0, total / double(in.policy_kl.size()));
}

const KtoConfig configs[] = {{}, {.beta = 0.5}, {.beta = 0.2, .desirable_weight = 1.33, .undesirable_weight = 0.7},
                             {.beta = 2.0, .desirable_weight = 0.0}};

}  // namespace

TEST_CASE("kto: the loss, z0 and the metrics match the formula written out") {
  for (const double shift : {-20.0, 20.0}) {  // z0 clamped at 0, and z0 > 0
    const auto in = random_examples(11, 7, shift, 3);
    const double z0 = reference_point(in);
    CHECK((shift < 0 ? z0 == 0.0 : z0 > 0.0));
    for (const auto& c : configs) {
      const auto r = kto_loss(in, c);
      CHECK(r.kl == doctest::Approx(z0).epsilon(1e-14));
      double mean = 0, n_d = 0, n_u = 0, reward_d = 0, reward_u = 0, logp_d = 0, logp_u = 0;
      for (Eigen::Index i = 0; i < 11; ++i) {
        const bool d = in.desirable[i] == 1;
        const double want = reference_loss(c, in.policy[i], in.reference[i], d, z0);
        CHECK(r.losses[i] == doctest::Approx(want).epsilon(1e-12));
        mean += want / 11;
        (d ? n_d : n_u) += 1;
        (d ? reward_d : reward_u) += c.beta * (in.policy[i] - in.reference[i]);
        (d ? logp_d : logp_u) += in.policy[i];
      }
      REQUIRE(n_d > 0);
      REQUIRE(n_u > 0);
      CHECK(r.loss == doctest::Approx(mean).epsilon(1e-12));
      CHECK(r.metrics["kl"] == doctest::Approx(z0).epsilon(1e-14));
      CHECK(r.metrics["count/chosen"] == n_d);
      CHECK(r.metrics["count/rejected"] == n_u);
      CHECK(r.metrics["rewards/chosen"] == doctest::Approx(reward_d / n_d).epsilon(1e-12));
      CHECK(r.metrics["rewards/rejected"] == doctest::Approx(reward_u / n_u).epsilon(1e-12));
      CHECK(r.metrics["logps/chosen"] == doctest::Approx(logp_d / n_d).epsilon(1e-12));
      CHECK(r.metrics["logps/rejected"] == doctest::Approx(logp_u / n_u).epsilon(1e-12));
    }
  }
}

TEST_CASE("kto: a hand-computed point") {
  // β = 0.5, z0 = max(0, mean(1, 3)) = 2; desirable u = 4: 1 − σ(1); undesirable u = 0: 1 − σ(1).
  const KtoExamples<vec> in{labels({-6, -10}), labels({-10, -10}), labels({1, 0}), labels({-4, -2}), labels({-5, -5})};
  const auto r = kto_loss(in, {.beta = 0.5});
  const double want = 1 / (1 + std::exp(1.0));  // 1 − σ(1) = 0.2689414213699951
  CHECK(r.kl == 2.0);
  CHECK(r.losses[0] == doctest::Approx(want).epsilon(1e-15));
  CHECK(r.losses[1] == doctest::Approx(want).epsilon(1e-15));
  CHECK(r.loss == doctest::Approx(0.2689414213699951).epsilon(1e-15));
  CHECK(r.metrics["rewards/chosen"] == 2.0);
  CHECK(r.metrics["rewards/rejected"] == 0.0);
}

TEST_CASE("kto: gradients match finite differences; z0 is a constant") {
  for (const double shift : {-20.0, 20.0})
    for (const auto& c : configs) {
      auto in = random_examples(9, 5, shift, 17);
      const auto r = kto_loss(in, c);
      const auto loss = [&] { return kto_loss(in, c).loss; };
      CHECK(max_relative_error(r.d_policy, numeric_gradient(loss, in.policy)) < 1e-7);
      CHECK(max_relative_error(r.d_reference, numeric_gradient(loss, in.reference)) < 1e-7);
      // The loss at z0 held where it is: its derivative with respect to u is d_policy (TRL detaches z0).
      const auto at_fixed_z0 = [&] {
        double total = 0;
        for (Eigen::Index i = 0; i < in.policy.size(); ++i)
          total += reference_loss(c, in.policy[i], in.reference[i], in.desirable[i] == 1, r.kl);
        return total / double(in.policy.size());
      };
      CHECK(max_relative_error(r.d_policy, numeric_gradient(at_fixed_z0, in.policy)) < 1e-7);
    }
}

TEST_CASE("kto: a batch of one label only") {
  for (const double label : {1.0, 0.0}) {
    auto in = random_examples(6, 6, 2.0, 5);
    in.desirable = vec::Constant(6, label);
    const KtoConfig c{.beta = 0.3, .desirable_weight = 1.5, .undesirable_weight = 0.5};
    const auto r = kto_loss(in, c);
    const double z0 = reference_point(in);
    double mean = 0;
    for (Eigen::Index i = 0; i < 6; ++i) mean += reference_loss(c, in.policy[i], in.reference[i], label == 1, z0) / 6;
    CHECK(r.loss == doctest::Approx(mean).epsilon(1e-12));
    CHECK(r.metrics["count/chosen"] == (label == 1 ? 6.0 : 0.0));
    CHECK(r.metrics["count/rejected"] == (label == 1 ? 0.0 : 6.0));
    // The absent label's means are 0 with weight 0: present (every batch has the same metrics), counting for nothing.
    CHECK(r.metrics.tokens(label == 1 ? "rewards/rejected" : "rewards/chosen") == 0.0);
    CHECK(r.metrics[label == 1 ? "logps/rejected" : "logps/chosen"] == 0.0);
    CHECK(r.metrics.tokens(label == 1 ? "rewards/chosen" : "rewards/rejected") == 6.0);
    const auto loss = [&] { return kto_loss(in, c).loss; };
    CHECK(max_relative_error(r.d_policy, numeric_gradient(loss, in.policy)) < 1e-7);
  }
}

TEST_CASE("kto: an empty completion (Σ log π = Σ log π_ref = 0) is valid input") {
  auto in = random_examples(4, 4, 0.0, 9);
  in.policy[2] = in.reference[2] = 0;
  in.policy_kl[1] = in.reference_kl[1] = 0;
  const auto r = kto_loss(in);
  CHECK(std::isfinite(r.loss));
  CHECK(r.losses[2] == doctest::Approx(reference_loss({}, 0, 0, in.desirable[2] == 1, r.kl)).epsilon(1e-14));
}

TEST_CASE("kto: finite values at extreme inputs, in float") {
  using fv = eigen<float>::vector;
  const float H = 3e38f;  // u = ±6e38 is past float; the kernel takes the difference in double
  for (const float sign : {1.f, -1.f}) {
    const KtoExamples<fv> in{fv::Constant(2, sign * H), fv::Constant(2, -sign * H),
                             (fv(2) << 1.f, 0.f).finished(), fv::Constant(1, H), fv::Constant(1, -H)};
    const auto r = kto_loss(in, {.beta = 1.0});
    CHECK(std::isfinite(r.loss));
    CHECK(all_finite(r.losses));
    CHECK(all_finite(r.d_policy));
    CHECK(all_finite(r.d_reference));
    CHECK(std::isfinite(r.kl));
  }
}

TEST_CASE("kto: bad input names the problem") {
  const auto in = random_examples(4, 3, 0.0, 5);
  auto short_reference = in;
  short_reference.reference = vec::Zero(3);
  CHECK_THROWS_WITH_AS(kto_loss(short_reference), doctest::Contains("'reference' has 3 elements"), shape_error);
  auto short_labels = in;
  short_labels.desirable = vec::Ones(5);
  CHECK_THROWS_WITH_AS(kto_loss(short_labels), doctest::Contains("'desirable' has 5 elements"), shape_error);
  auto bad_label = in;
  bad_label.desirable[1] = 2;
  CHECK_THROWS_WITH_AS(kto_loss(bad_label), doctest::Contains("'desirable' holds 1 value(s) other than 0 or 1"),
                       value_error);
  auto no_kl = in;
  no_kl.policy_kl = vec();
  no_kl.reference_kl = vec();
  CHECK_THROWS_WITH_AS(kto_loss(no_kl), doctest::Contains("'policy_kl' is empty"), shape_error);
  auto mismatched_kl = in;
  mismatched_kl.reference_kl = vec::Zero(2);
  CHECK_THROWS_WITH_AS(kto_loss(mismatched_kl), doctest::Contains("'reference_kl' has 2 elements"), shape_error);
  auto nan = in;
  nan.policy_kl[0] = NAN;
  CHECK_THROWS_WITH_AS(kto_loss(nan), doctest::Contains("'policy_kl' holds 1 NaN or Inf"), value_error);
  auto inf = in;
  inf.policy[3] = -INFINITY;
  CHECK_THROWS_WITH_AS(kto_loss(inf), doctest::Contains("'policy' holds 1 NaN or Inf"), value_error);
  CHECK_THROWS_WITH_AS(kto_loss(KtoExamples<vec>{}), doctest::Contains("empty batch"), shape_error);
  CHECK_THROWS_WITH_AS(kto_loss(in, {.beta = 0}), doctest::Contains("beta must be > 0"), config_error);
  CHECK_THROWS_WITH_AS(kto_loss(in, {.desirable_weight = -1}), doctest::Contains("desirable_weight"), config_error);
  CHECK_THROWS_WITH_AS(kto_loss(in, {.undesirable_weight = NAN}), doctest::Contains("undesirable_weight"),
                       config_error);
}
