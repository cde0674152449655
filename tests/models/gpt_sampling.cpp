// Sampling with the KV cache: the cache gives the same distribution as the full forward, seeds are
// reproducible, and temperature, top-k, top-p, stop token and max_new_tokens do what they say.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "models/gpt_support.hpp"
#include "rlhf/models/gpt/model.hpp"

namespace {

using rlhf::Gpt;
using rlhf::PromptBatch;
using rlhf::SampleOptions;
using rlhf::TokenBatch;

rlhf::GptConfig config() {
  return {.vocab_size = 20, .max_seq_len = 32, .channels = 16, .layers = 2, .heads = 2};
}

PromptBatch prompts() {  // three prompts of lengths 3, 1, 5, right-padded to 5
  return {3, 5, {4, 8, 15, 0, 0, 16, 0, 0, 0, 0, 2, 3, 5, 7, 11}, {3, 1, 5}};
}

template <class T>
Gpt<T> model(std::uint64_t seed) {
  Gpt<T> m(config(), seed);
  rlhf::testing::randomize(m, seed + 100, 0.4);
  return m;
}

}  // namespace

TEST_CASE("gpt sampling: the KV cache agrees with the full forward (log-probs of the sampled tokens)") {
  auto md = model<double>(1);
  rlhf::Rng rng(2);
  const TokenBatch out = md.sample(prompts(), SampleOptions{.max_new_tokens = 9}, rng);
  out.validate(20);
  const auto full = md.log_probs(out);
  CHECK((full - md.sampled_log_probs()).cwiseAbs().maxCoeff() < 1e-10);

  auto mf = model<float>(1);
  rlhf::Rng rng_f(2);
  const TokenBatch out_f = mf.sample(prompts(), SampleOptions{.max_new_tokens = 9}, rng_f);
  CHECK((mf.log_probs(out_f) - mf.sampled_log_probs()).cwiseAbs().maxCoeff() < 1e-4);

  // in bf16 the sampler multiplies as training does: with the forward's packed bf16 weights (float32 products
  // where the CPU has no AVX-512 BF16, in both)
  mf.set_matmul_precision(rlhf::gpt::MatmulPrecision::bf16);
  rlhf::Rng rng_b(2);
  const TokenBatch out_b = mf.sample(prompts(), SampleOptions{.max_new_tokens = 9}, rng_b);
  const Gpt<float>::matrix sampled_b = mf.sampled_log_probs(), full_b = mf.log_probs(out_b);
  CHECK((full_b - sampled_b).cwiseAbs().maxCoeff() < 1e-4);
  mf.set_matmul_precision(rlhf::gpt::MatmulPrecision::fp32);
  const double float32_gap = (mf.log_probs(out_b) - sampled_b).cwiseAbs().maxCoeff();
  MESSAGE("bf16 sampler against the float32 forward: " << float32_gap);
  if (rlhf::gpt::bf16::hardware_available()) CHECK(float32_gap > 1e-3);  // so the check above tells them apart
}

TEST_CASE("gpt sampling: the output keeps each prompt, marks the response, and pads on the right") {
  auto m = model<float>(3);
  rlhf::Rng rng(4);
  const auto x = prompts();
  const TokenBatch out = m.sample(x, SampleOptions{.max_new_tokens = 6}, rng);
  REQUIRE(out.batch == 3);
  CHECK(out.time == 11);  // longest prompt (5) + 6
  for (std::size_t b = 0; b < 3; ++b) {
    const std::size_t P = x.prompt_length[b];
    for (std::size_t t = 0; t < P; ++t) CHECK(out.token(b, t) == x.tokens[b * x.time + t]);
    CHECK(out.response_length(b) == 6);
    for (std::size_t t = 0; t < out.time; ++t) {
      CHECK(out.mask(b, t) == (t >= P && t < P + 6));
      CHECK(out.attention_mask[b * out.time + t] == (t < P + 6));
    }
  }
}

TEST_CASE("gpt sampling: the same seed gives the same tokens; another seed does not") {
  auto m = model<float>(5);
  const SampleOptions o{.max_new_tokens = 12, .temperature = 1.0f, .top_k = 10, .top_p = 0.9f};
  rlhf::Rng a(6), b(6), c(7);
  const auto ta = m.sample(prompts(), o, a).tokens;
  CHECK(m.sample(prompts(), o, b).tokens == ta);
  CHECK(m.sample(prompts(), o, c).tokens != ta);
}

TEST_CASE("gpt sampling: a round's rows draw in parallel as one by one, taking the seed's uniforms in row order") {
  // a vocabulary large enough for the rows to be split between threads
  const std::size_t rows = 7, V = 20000;
  rlhf::Rng fill(11);
  std::vector<float> logits(rows * V);
  for (auto& x : logits) x = float(3.0 * fill.normal());
  const auto logprob = [](const float* row, std::size_t n, rlhf::token_id t) {
    double total = 0;
    for (std::size_t i = 0; i < n; ++i) total += std::exp(double(row[i]));
    return float(double(row[t]) - std::log(total));
  };
  for (const SampleOptions o : {SampleOptions{.temperature = 1.0f}, SampleOptions{.temperature = 0.7f, .top_k = 50},
                                SampleOptions{.temperature = 1.3f, .top_p = 0.8f}, SampleOptions{.temperature = 0.0f}}) {
    // one by one: the uniform of row k is the seed's k-th (none at temperature 0)
    rlhf::Rng serial_rng(12);
    rlhf::gpt_host::TokenDraw<float> one;
    std::vector<rlhf::token_id> want(rows);
    for (std::size_t k = 0; k < rows; ++k)
      want[k] = one(logits.data() + k * V, V, o, o.temperature == 0.0f ? 0.0 : serial_rng.uniform());
    for (const int threads : {1, 3}) {
#ifdef _OPENMP
      const int before = omp_get_max_threads();
      omp_set_num_threads(threads);
#endif
      rlhf::Rng rng(12);
      rlhf::gpt_host::RoundDraws<float> draws;
      draws.run(logits.data(), rows, V, o, rng, logprob);
#ifdef _OPENMP
      omp_set_num_threads(before);
#endif
      INFO("threads ", threads, " temperature ", o.temperature, " top_k ", o.top_k, " top_p ", o.top_p);
      CHECK(draws.tokens == want);
      for (std::size_t k = 0; k < rows; ++k) CHECK(draws.logps[k] == logprob(logits.data() + k * V, V, want[k]));
      rlhf::Rng after_serial = serial_rng;
      CHECK(rng.uniform() == after_serial.uniform());  // as many uniforms taken
    }
  }
}

TEST_CASE("gpt sampling: temperature 0, top_k 1 and a tiny top_p are all greedy; greedy follows the argmax") {
  auto m = model<double>(8);
  rlhf::Rng rng(9);
  const auto greedy = m.sample(prompts(), SampleOptions{.max_new_tokens = 7, .temperature = 0.0f}, rng);
  CHECK(m.sample(prompts(), SampleOptions{.max_new_tokens = 7, .top_k = 1}, rng).tokens == greedy.tokens);
  CHECK(m.sample(prompts(), SampleOptions{.max_new_tokens = 7, .top_p = 1e-6f}, rng).tokens == greedy.tokens);
  const auto logits = m.logits(greedy);  // [B*T, V]
  for (std::size_t b = 0; b < greedy.batch; ++b)
    for (std::size_t t = 1; t < greedy.time; ++t) {
      if (!greedy.mask(b, t)) continue;
      Eigen::Index best;
      logits.row(Eigen::Index(b * greedy.time + t - 1)).maxCoeff(&best);
      CHECK(greedy.token(b, t) == best);
    }
}

TEST_CASE("gpt sampling: the first token's frequencies follow softmax(logits / temperature), top-k, top-p") {
  auto m = model<double>(10);
  const PromptBatch one{1, 2, {3, 4}, {2}};
  auto probe = TokenBatch::zeros(1, 2);
  probe.token(0, 0) = 3, probe.token(0, 1) = 4;
  const auto logits = m.logits(probe);  // row 1 predicts the first new token
  const auto p_of = [&](double temperature) {
    std::vector<double> p(20);
    double z = 0;
    for (int v = 0; v < 20; ++v) z += p[v] = std::exp(logits(1, v) / temperature);
    for (auto& x : p) x /= z;
    return p;
  };
  const int draws = 20000;
  const auto frequencies = [&](const SampleOptions& o, std::uint64_t seed) {
    std::vector<double> f(20, 0.0);
    rlhf::Rng rng(seed);
    // one batch of many identical prompts: one draw each
    PromptBatch many{std::size_t(draws), 2, {}, std::vector<std::size_t>(draws, 2)};
    for (int i = 0; i < draws; ++i) many.tokens.push_back(3), many.tokens.push_back(4);
    const auto out = m.sample(many, o, rng);
    for (int i = 0; i < draws; ++i) f[out.token(i, 2)] += 1.0 / draws;
    return f;
  };
  SUBCASE("temperature 0.7") {
    const auto p = p_of(0.7);
    const auto f = frequencies(SampleOptions{.max_new_tokens = 1, .temperature = 0.7f}, 11);
    for (int v = 0; v < 20; ++v) CHECK(std::abs(f[v] - p[v]) < 4 * std::sqrt(p[v] * (1 - p[v]) / draws) + 1e-9);
  }
  SUBCASE("top_k 3 keeps the three most likely tokens, renormalised") {
    auto p = p_of(1.0);
    std::vector<int> order(20);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
    const double kept = p[order[0]] + p[order[1]] + p[order[2]];
    const auto f = frequencies(SampleOptions{.max_new_tokens = 1, .top_k = 3}, 12);
    for (int i = 0; i < 20; ++i) {
      const int v = order[i];
      const double want = i < 3 ? p[v] / kept : 0.0;
      CHECK(std::abs(f[v] - want) < 4 * std::sqrt(want * (1 - want) / draws) + 1e-9);
    }
  }
  SUBCASE("top_p keeps the smallest set reaching p") {
    auto p = p_of(1.0);
    std::vector<int> order(20);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
    const float top_p = float(p[order[0]] + 0.5 * p[order[1]]);  // needs exactly the two most likely
    const double kept = p[order[0]] + p[order[1]];
    const auto f = frequencies(SampleOptions{.max_new_tokens = 1, .top_p = top_p}, 13);
    for (int i = 0; i < 20; ++i) {
      const int v = order[i];
      const double want = i < 2 ? p[v] / kept : 0.0;
      CHECK(std::abs(f[v] - want) < 4 * std::sqrt(want * (1 - want) / draws) + 1e-9);
    }
  }
}

TEST_CASE("gpt sampling: a stop token ends its row (and is kept); other rows go on") {
  auto m = model<float>(14);
  rlhf::Rng rng(15);
  const auto free_run = m.sample(prompts(), SampleOptions{.max_new_tokens = 10, .temperature = 0.0f}, rng);
  // greedy is deterministic: stop at the token row 0 generates third
  const rlhf::token_id stop = free_run.token(0, 3 + 2);
  const auto out = m.sample(prompts(), SampleOptions{.max_new_tokens = 10, .temperature = 0.0f, .stop_token = stop},
                            rng);
  for (std::size_t b = 0; b < out.batch; ++b) {
    const std::size_t P = prompts().prompt_length[b], n = out.response_length(b);
    CHECK(n >= 1);
    CHECK(n <= 10);
    for (std::size_t k = 0; k + 1 < n; ++k) CHECK(out.token(b, P + k) != stop);
    if (n < 10) CHECK(out.token(b, P + n - 1) == stop);
    for (std::size_t k = 0; k < n; ++k) CHECK(out.token(b, P + k) == free_run.token(b, P + k));
  }
  CHECK(out.response_length(0) <= 3);
}

TEST_CASE("gpt sampling: bad options and prompts are named") {
  auto m = model<float>(16);
  rlhf::Rng rng(17);
  CHECK_THROWS_WITH_AS(m.sample(prompts(), SampleOptions{.max_new_tokens = 0}, rng),
                       doctest::Contains("max_new_tokens"), rlhf::config_error);
  CHECK_THROWS_WITH_AS(m.sample(prompts(), SampleOptions{.temperature = -1.0f}, rng), doctest::Contains("temperature"),
                       rlhf::config_error);
  CHECK_THROWS_WITH_AS(m.sample(prompts(), SampleOptions{.top_p = 0.0f}, rng), doctest::Contains("top_p"),
                       rlhf::config_error);
  CHECK_THROWS_WITH_AS(m.sample(prompts(), SampleOptions{.stop_token = 20}, rng), doctest::Contains("stop_token"),
                       rlhf::config_error);
  CHECK_THROWS_WITH_AS(m.sample(prompts(), SampleOptions{.max_new_tokens = 28}, rng),
                       doctest::Contains("max_seq_len = 32"), rlhf::config_error);
  auto x = prompts();
  x.prompt_length[1] = 0;
  CHECK_THROWS_WITH_AS(m.sample(x, SampleOptions{.max_new_tokens = 4}, rng), doctest::Contains("prompt_length[1]"),
                       rlhf::value_error);
  x = prompts();
  x.tokens[1] = 99;
  CHECK_THROWS_WITH_AS(m.sample(x, SampleOptions{.max_new_tokens = 4}, rng),
                       doctest::Contains("outside the vocabulary"), rlhf::value_error);
  x.tokens.pop_back();
  CHECK_THROWS_AS(m.sample(x, SampleOptions{.max_new_tokens = 4}, rng), rlhf::shape_error);
}
