// LoRA's dropout kernels by finite differences (whole models: lora_gradcheck.cpp), its frozen base, the reference
// for free, the 3-second bandit, and the errors a user meets (tests/peers' parity is tests/models/lora_parity.cpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/io/safetensors.hpp"
#include "rlhf/models/lora/files.hpp"
#include "rlhf/models/toy/bandit.hpp"
#include "rlhf/optim/adamw.hpp"
#include "models/llama_support.hpp"
#include "models/lora_support.hpp"
#include "support/temp_dir.hpp"
#include "support/tiny_gpt.hpp"

namespace {

using rlhf::Gpt;
using rlhf::Llama;
using rlhf::Lora;
using rlhf::LoraSettings;
using rlhf::testing::batch_of;
using rlhf::testing::randomize_adapters;

}  // namespace

TEST_CASE("lora gradcheck: the dropout kernels, mask drawn again in the backward") {
  const std::size_t rows = 5, in = 6, out = 4, r = 3;
  const rlhf::lora::DropoutMask mask{12345, 0.4};
  rlhf::Rng rng(9);
  std::vector<double> x(rows * in), a(r * in), b(out * r), dy(rows * out);
  for (auto* v : {&x, &a, &b, &dy})
    for (auto& e : *v) e = 2 * rng.uniform() - 1;
  const double scale = 1.5;
  const auto f = [&] {  // Σ dy · lora(x)
    std::vector<double> xd(rows * in), xa(rows * r), y(rows * out, 0.0);
    rlhf::lora::dropout_rows(xd.data(), x.data(), 7, rows, in, mask);
    rlhf::lora::lora_forward(y.data(), xa.data(), xd.data(), a.data(), b.data(), rows, in, out, r, scale);
    double s = 0;
    for (std::size_t i = 0; i < y.size(); ++i) s += dy[i] * y[i];
    return s;
  };
  std::vector<double> xd(rows * in), xa(rows * r), y(rows * out, 0.0), dxd(rows * in, 0.0), da(r * in, 0.0),
      db(out * r, 0.0), dxa(rows * r);
  rlhf::lora::dropout_rows(xd.data(), x.data(), 7, rows, in, mask);
  rlhf::lora::lora_forward(y.data(), xa.data(), xd.data(), a.data(), b.data(), rows, in, out, r, scale);
  rlhf::lora::lora_backward(dxd.data(), da.data(), db.data(), dxa.data(), dy.data(), xd.data(), xa.data(), a.data(),
                            b.data(), rows, in, out, r, scale);
  std::size_t dropped = 0;
  for (std::size_t n = 0; n < rows; ++n)
    for (std::size_t i = 0; i < in; ++i) {
      dxd[n * in + i] *= mask.operator()<double>(7 + n, i);
      dropped += mask.operator()<double>(7 + n, i) == 0;
    }
  CHECK(dropped > 0);
  CHECK(dropped < rows * in);
  double worst = 0;
  for (auto [v, g] : {std::pair{&x, &dxd}, std::pair{&a, &da}, std::pair{&b, &db}})
    for (std::size_t i = 0; i < v->size(); ++i) {
      const double saved = (*v)[i];
      (*v)[i] = saved + 1e-6;
      const double up = f();
      (*v)[i] = saved - 1e-6;
      const double down = f();
      (*v)[i] = saved;
      worst = std::max(worst, std::abs((*g)[i] - (up - down) / 2e-6));
    }
  CHECK(worst < 1e-8);
}

TEST_CASE("lora: modules_to_save 'score' trains a copy of the head; the reference keeps the original") {
  Llama<double> base(rlhf::testing::tiny_llama_config(true), 1);
  rlhf::testing::randomize(base, 2);
  const std::vector<double> original(base.parameter_tensors().score, base.parameter_tensors().score + 8);
  rlhf::Rng rng(3);
  auto lora = rlhf::attach_lora(std::move(base), {.r = 2, .modules_to_save = {"score"}}, rng);
  REQUIRE(lora.saved_head_size() == 8);
  randomize_adapters(lora, 4);
  const auto batch = batch_of(11, 6);
  // d/dθ Σ_b w_b · score_b by central differences, the head copy included
  const std::vector<double> w = {0.7, -1.1, 0.4};
  const auto objective = [&] {
    const auto s = lora.scores(batch);
    return w[0] * s[0] + w[1] * s[1] + w[2] * s[2];
  };
  lora.zero_grad();
  lora.scores(batch);
  rlhf::eigen<double>::vector d(3);
  d << w[0], w[1], w[2];
  lora.backward_scores(batch, d);
  const std::vector<double> analytic(lora.gradients().begin(), lora.gradients().end());
  auto params = lora.parameters();
  double worst = 0;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const double saved = params[i];
    params[i] = saved + 1e-6;
    const double up = objective();
    params[i] = saved - 1e-6;
    const double down = objective();
    params[i] = saved;
    worst = std::max(worst, std::abs(analytic[i] - (up - down) / 2e-6));
  }
  CHECK(worst < 1e-6);
  CHECK(std::abs(analytic[lora.saved_head_offset()]) > 1e-3);  // the head copy has a gradient
  // the reference scores with the original head; merging takes the trained copy
  auto reference = lora.reference();
  auto plain = lora.base_copy();
  const auto ref_scores = reference.scores(batch), base_scores = plain.scores(batch);
  for (int b = 0; b < 3; ++b) CHECK(ref_scores[b] == doctest::Approx(base_scores[b]).epsilon(1e-12));
  CHECK(std::equal(original.begin(), original.end(), plain.parameter_tensors().score));
  auto merged = rlhf::merge_lora(lora);
  const auto adapted = lora.scores(batch), merged_scores = merged.scores(batch);
  for (int b = 0; b < 3; ++b) CHECK(merged_scores[b] == doctest::Approx(adapted[b]).epsilon(1e-10));
}

TEST_CASE("lora: the base is frozen (no gradient buffer, weights unchanged) and trainable parameters are A and B") {
  Llama<float> base(rlhf::testing::tiny_llama_config(false), 1);
  const std::vector<float> before(base.parameters().begin(), base.parameters().end());
  rlhf::Rng rng(3);
  auto lora = rlhf::attach_lora(std::move(base), {.r = 4, .target_modules = {"q_proj", "k_proj", "v_proj", "o_proj"}},
                                rng);
  CHECK(lora.base().gradients().empty());
  const auto& c = lora.base().config();
  const std::size_t per_layer = 4 * (c.hidden_size + c.q_size()) + 2 * 4 * (c.hidden_size + c.kv_size()) +
                                4 * (c.q_size() + c.hidden_size);
  CHECK(lora.parameters().size() == c.layers * per_layer);
  // B starts at zero: the adapted model is the base model
  const auto batch = batch_of(11, 6);
  const auto adapted = lora.log_probs(batch);
  rlhf::eigen<float>::matrix off;
  {
    rlhf::AdaptersOff scope(lora);
    off = lora.log_probs(batch);
  }
  CHECK(lora.adapters_enabled());
  CHECK((adapted - off).cwiseAbs().maxCoeff() == 0.0f);
  // a DPO step moves the adapters only
  rlhf::PreferenceBatch pairs{batch, batch_of(11, 7), {}, {}};
  pairs.rejected.attention_mask = pairs.chosen.attention_mask;
  pairs.rejected.response_mask = pairs.chosen.response_mask;
  auto reference = lora.reference();
  rlhf::AdamW<float> opt({.learning_rate = 0.01f});
  rlhf::dpo_step(lora, reference, opt, pairs, {.beta = 0.1f});
  CHECK(std::equal(before.begin(), before.end(), lora.base().parameters().begin()));
  double moved = 0;
  for (auto p : lora.parameters()) moved = std::max(moved, double(std::abs(p)));
  CHECK(moved > 0);
}

TEST_CASE("lora: the 3-second bandit — DPO on adapters reaches the closed-form optimum pi* ∝ pi_ref exp(r / beta)") {
  // A one-token bandit on a tiny Llama: prompts x ∈ {0, 1, 2}, responses y ∈ {0 … 3} (the whole vocabulary), rows
  // [x, y]. The reward is one the adapters can represent: r = β log(π_T / π_ref) for a teacher π_T, the same model
  // with other adapter values, so that π* = π_T. The data: every pair of responses of every prompt, K = 200 times,
  // chosen in the Bradley–Terry proportion σ(r(x, y) − r(x, y')) rounded: the population DPO loss, whose minimiser
  // is π* up to that rounding (it leaves 0.007 of max TV here; K = 400: 0.002). The student starts from B = 0, the
  // reference. About 5 s of one loaded core here.
  const std::size_t P = 3, N = 4, K = 200;
  const double beta = 0.5;
  rlhf::LlamaConfig c = rlhf::testing::tiny_llama_config(false);
  c.vocab_size = N;
  Llama<double> base(c, 1);
  rlhf::testing::randomize(base, 2);
  rlhf::Rng rng(3);
  auto lora = rlhf::attach_lora(std::move(base), {.r = 4, .lora_alpha = 8, .target_modules = {"all-linear"}}, rng);

  std::vector<rlhf::token_id> all_x, all_y;
  for (std::size_t x = 0; x < P; ++x)
    for (std::size_t y = 0; y < N; ++y) all_x.push_back(rlhf::token_id(x)), all_y.push_back(rlhf::token_id(y));
  const auto table = rlhf::toy::bandit_batch(all_x, all_y);
  const auto probabilities = [&](auto& policy) {
    const auto lp = policy.log_probs(table);
    std::vector<double> p(P * N);
    for (std::size_t i = 0; i < P * N; ++i) p[i] = std::exp(lp(i, 1));
    return p;
  };
  auto reference = lora.reference();
  const auto ref_probs = probabilities(reference);
  const std::vector<double> start_params(lora.parameters().begin(), lora.parameters().end());
  randomize_adapters(lora, 11);
  const auto teacher = probabilities(lora);
  std::copy(start_params.begin(), start_params.end(), lora.parameters().begin());
  std::vector<double> reward(P * N);
  for (std::size_t i = 0; i < P * N; ++i) reward[i] = beta * std::log(teacher[i] / ref_probs[i]);
  const auto optimum = rlhf::toy::kl_optimum(ref_probs, reward, N, beta);  // = teacher

  std::vector<rlhf::token_id> xs, ws, ls;
  for (std::size_t x = 0; x < P; ++x)
    for (std::size_t i = 0; i < N; ++i)
      for (std::size_t j = i + 1; j < N; ++j) {
        const double p = 1 / (1 + std::exp(-(reward[x * N + i] - reward[x * N + j])));
        const std::size_t first = std::size_t(std::lround(p * K));
        for (std::size_t k = 0; k < K; ++k) {
          xs.push_back(rlhf::token_id(x));
          ws.push_back(rlhf::token_id(k < first ? i : j));
          ls.push_back(rlhf::token_id(k < first ? j : i));
        }
      }
  rlhf::PreferenceBatch data{rlhf::toy::bandit_batch(xs, ws), rlhf::toy::bandit_batch(xs, ls), {}, {}};
  rlhf::precompute_reference_logps(reference, data);

  const auto max_tv = [&](const std::vector<double>& p) {
    const auto tv = rlhf::toy::total_variation(p, optimum, N);
    return *std::max_element(tv.begin(), tv.end());
  };
  const double start = max_tv(probabilities(lora));
  rlhf::AdamW<double> opt({.learning_rate = 0.08f, .weight_decay = 0.0f});
  const int steps = 80;
  for (int step = 0; step < steps; ++step) {
    opt.set_learning_rate(0.08f * float(steps - step) / steps);
    rlhf::dpo_step(lora, opt, data, {.beta = float(beta)});
  }
  const double end = max_tv(probabilities(lora));
  MESSAGE("max TV to pi*: " << start << " -> " << end);
  CHECK(start > 0.1);
  CHECK(end < 0.01);
  // the reference did not move: it is the frozen base
  const auto ref_after = probabilities(reference);
  for (std::size_t i = 0; i < P * N; ++i) CHECK(ref_after[i] == ref_probs[i]);
}

TEST_CASE("lora: bad settings, bad files and misuse name the problem") {
  rlhf::Rng rng(1);
  const auto base = [] { return Llama<float>(rlhf::testing::tiny_llama_config(false), 1); };
  const auto message = [](auto&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const auto contains = [](const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; };
  CHECK(contains(message([&] { rlhf::attach_lora(base(), {.target_modules = {"c_attn"}}, rng); }), "'c_attn' matches no"));
  CHECK(contains(message([&] { rlhf::attach_lora(base(), {.r = 0}, rng); }), "r must be"));
  CHECK(contains(message([&] { rlhf::attach_lora(base(), {.lora_dropout = 1.0}, rng); }), "lora_dropout"));
  CHECK(contains(message([&] { rlhf::attach_lora(base(), {.modules_to_save = {"score"}}, rng); }), "no scalar head"));
  CHECK(contains(message([&] { rlhf::attach_lora(base(), {.bias = "all"}, rng); }), "bias 'all'"));

  // a backward after the reference's forward is refused
  auto lora = rlhf::attach_lora(base(), {}, rng);
  CHECK(lora.settings().target_modules == std::vector<std::string>{"q_proj", "v_proj"});  // PEFT's default
  const auto batch = batch_of(11, 6);
  lora.log_probs(batch);
  auto reference = lora.reference();
  const auto d = reference.log_probs(batch);
  CHECK(contains(message([&] { lora.backward(batch, d); }), "adapters off"));

  // files: write a good folder, then break one thing at a time
  rlhf::test::TempDir dir("rlhf-lora-bad");
  rlhf::save_adapter(lora, dir.path);
  const auto config_text = [&] {
    std::ifstream in(dir / "adapter_config.json");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  const auto with_config = [&](const std::string& from, const std::string& to) {
    std::string t = config_text;
    const auto at = t.find(from);
    REQUIRE(at != std::string::npos);
    t.replace(at, from.size(), to);
    std::ofstream(dir / "adapter_config.json") << t;
    return message([&] { rlhf::load_adapter(dir.path, base()); });
  };
  CHECK(contains(with_config("\"LORA\"", "\"IA3\""), "'peft_type' must be \"LORA\""));
  CHECK(contains(with_config("\"use_dora\": false", "\"use_dora\": true"), "DoRA"));
  CHECK(contains(with_config("\"fan_in_fan_out\": false", "\"fan_in_fan_out\": true"), "fan_in_fan_out"));
  const std::string shape_error = with_config("\"r\": 8", "\"r\": 4");
  CHECK(contains(shape_error, "adapter_model.safetensors"));
  CHECK(contains(shape_error, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
  CHECK(contains(shape_error, "[8, 8]"));
  CHECK(contains(with_config("\"q_proj\",", "\"q_proj\", \"o_proj\","), "no tensor named 'base_model.model.model.layers.0.self_attn.o_proj.lora_A.weight'"));
  CHECK(contains(with_config("[\n    \"q_proj\",\n    \"v_proj\"\n  ]", "[\"q_proj\"]"),
                 "unexpected tensor 'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight' of shape [8, 8]"));
  CHECK(contains(with_config("[\n    \"q_proj\",\n    \"v_proj\"\n  ]", "\"q_proj\""), "regular expression"));
  std::ofstream(dir / "adapter_config.json") << config_text;
  CHECK(contains(message([&] { rlhf::load_adapter(dir.path, base()); }), "no error"));
}
