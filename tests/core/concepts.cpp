// The smallest classes that satisfy each concept (the same ones docs/concepts.md shows), and
// near-misses that must not.
#include "rlhf/core/concepts.hpp"

#include <doctest/doctest.h>

#include <span>
#include <vector>

#include "rlhf/backends/eigen.hpp"

namespace {

using Be = rlhf::eigen<float>;

struct UniformPolicy {  // Policy: every token has log-prob −log V
  using backend = rlhf::eigen<float>;
  backend::matrix log_probs(const rlhf::TokenBatch& b) {
    backend::matrix out = backend::matrix_of(b.batch, b.time);
    for (std::size_t i = 0; i < b.batch * b.time; ++i) out.data()[i] = b.response_mask[i] ? -std::log(8.0f) : 0.0f;
    return out;
  }
};

struct BiasPolicy : UniformPolicy {  // TrainablePolicy: one parameter per vocabulary entry
  std::vector<float> theta = std::vector<float>(8), grad = std::vector<float>(8);
  void zero_grad() { std::fill(grad.begin(), grad.end(), 0.0f); }
  void backward(const rlhf::TokenBatch&, const backend::matrix&) {}
  std::span<float> parameters() { return theta; }
  std::span<float> gradients() { return grad; }
};

struct EchoSampler {  // SamplingPolicy: answers every prompt with its own first token
  rlhf::TokenBatch sample(const rlhf::PromptBatch& x, const rlhf::SampleOptions&, rlhf::Rng&) {
    auto out = rlhf::TokenBatch::zeros(x.batch, x.time + 1);
    for (std::size_t b = 0; b < x.batch; ++b) {
      for (std::size_t t = 0; t < x.time; ++t) out.token(b, t) = x.tokens[b * x.time + t];
      out.token(b, x.time) = x.tokens[b * x.time];
      out.mask(b, x.time) = 1;
    }
    return out;
  }
};

struct ZeroCritic {  // ValueModel
  using backend = rlhf::eigen<float>;
  std::vector<float> w = std::vector<float>(1), g = std::vector<float>(1);
  backend::matrix values(const rlhf::TokenBatch& b) { return backend::matrix_of(b.batch, b.time); }
  void zero_grad() {}
  void backward_values(const rlhf::TokenBatch&, const backend::matrix&) {}
  std::span<float> parameters() { return w; }
  std::span<float> gradients() { return g; }
};

struct NoLogProbs {
  using backend = rlhf::eigen<float>;
};
struct WrongReturnType {
  using backend = rlhf::eigen<float>;
  std::vector<float> log_probs(const rlhf::TokenBatch&) { return {}; }
};
struct NoBackend {
  Be::matrix log_probs(const rlhf::TokenBatch&) { return {}; }
};

}  // namespace

static_assert(rlhf::Backend<Be>);
static_assert(rlhf::Policy<UniformPolicy>);
static_assert(!rlhf::TrainablePolicy<UniformPolicy>);
static_assert(rlhf::TrainablePolicy<BiasPolicy>);
static_assert(rlhf::SamplingPolicy<EchoSampler>);
static_assert(!rlhf::SamplingPolicy<UniformPolicy>);
static_assert(rlhf::ValueModel<ZeroCritic>);
static_assert(!rlhf::Policy<NoLogProbs>);
static_assert(!rlhf::Policy<WrongReturnType>);
static_assert(!rlhf::Policy<NoBackend>);
static_assert(std::is_same_v<rlhf::backend_of_t<Be::vector>, Be>);
static_assert(std::is_same_v<rlhf::backend_of_t<const Be::matrix&>, Be>);

TEST_CASE("concepts: the smallest policy scores only response tokens") {
  auto batch = rlhf::TokenBatch::zeros(2, 3);
  batch.mask(0, 2) = 1;
  batch.mask(1, 1) = batch.mask(1, 2) = 1;
  const auto lp = UniformPolicy{}.log_probs(batch);
  CHECK(lp(0, 0) == 0.0f);
  CHECK(lp(0, 2) == doctest::Approx(-std::log(8.0)));
  CHECK(lp.row(1).sum() == doctest::Approx(-2 * std::log(8.0)));
}

TEST_CASE("TokenBatch::validate names each problem") {
  auto b = rlhf::TokenBatch::zeros(2, 3);
  b.mask(0, 1) = 1;
  CHECK_THROWS_WITH_AS(b.validate(10), doctest::Contains("row 1 of 2 has no response token"), rlhf::value_error);
  b.mask(1, 2) = 1;
  b.validate(10);
  b.token(1, 1) = 10;
  CHECK_THROWS_WITH_AS(b.validate(10), doctest::Contains("token id 10 at [1,1] is outside the vocabulary [0, 10)"),
                       rlhf::value_error);
  b.token(1, 1) = -1;
  CHECK_THROWS_AS(b.validate(10), rlhf::value_error);
  b.token(1, 1) = 0;
  b.mask(1, 0) = 1;
  CHECK_THROWS_WITH_AS(b.validate(10), doctest::Contains("position 0"), rlhf::value_error);
  b.tokens.pop_back();
  CHECK_THROWS_WITH_AS(b.validate(10), doctest::Contains("'tokens' has 5 elements but B*T is 6"), rlhf::shape_error);
  CHECK_THROWS_WITH_AS(rlhf::TokenBatch{}.validate(10), doctest::Contains("empty batch"), rlhf::shape_error);
}
