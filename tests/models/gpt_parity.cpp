// Our GPT against a plain-PyTorch GPT-2 forward (tests/models/gpt2_reference.py) on the same weights, loaded
// from an HF-style safetensors file: logits within 1e-4. Skipped (exit 77, ctest "Skipped") when torch is missing
// (apt-get install python3-torch).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "rlhf/models/gpt/checkpoint.hpp"
#include "support/python.hpp"
#include "support/temp_dir.hpp"

using namespace rlhf::test;

namespace {

namespace fs = std::filesystem;

const fs::path script = fs::path(__FILE__).parent_path() / "gpt2_reference.py";

}  // namespace

TEST_CASE("gpt parity: logits equal a PyTorch GPT-2 forward on the same weights (1e-4)") {
  skip_without_python("torch", "python3-torch");
  TempDir dir("rlhf-gpt-parity");
  const std::string cmd =
      python() + " '" + script.string() + "' '" + dir.path.string() + "' > '" + (dir.path / "log").string() + "' 2>&1";
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "gpt2_reference.py failed; see its output in " << cmd);

  const rlhf::GptConfig config{.vocab_size = 96, .max_seq_len = 32, .channels = 64, .layers = 2, .heads = 4};
  auto model = rlhf::load_checkpoint(dir.path / "gpt2.safetensors", config);  // HF export: no metadata
  const auto expected = rlhf::io::Safetensors::load(dir.path / "expected.safetensors");
  const std::size_t B = 2, T = 12, V = 96;
  std::vector<float> tokens(B * T), want(B * T * V);
  expected.read_f32("tokens", {B, T}, tokens);
  expected.read_f32("logits", {B, T, V}, want);

  auto batch = rlhf::TokenBatch::zeros(B, T);
  for (std::size_t i = 0; i < B * T; ++i) batch.tokens[i] = static_cast<rlhf::token_id>(tokens[i]);
  const auto got = model.logits(batch);  // [B*T, V]
  double worst = 0, largest = 0;
  for (std::size_t i = 0; i < B * T * V; ++i) {
    worst = std::max(worst, double(std::abs(got.data()[i] - want[i])));
    largest = std::max(largest, double(std::abs(want[i])));
  }
  INFO("max |ours − torch| = ", worst, " over logits up to ", largest);
  CHECK(worst <= 1e-4);
  CHECK(largest > 1.0);  // not a vacuous comparison

  // the same rows left-padded by 5 (with an attention mask) give the same logits at their real positions
  const std::size_t P = 5;
  auto padded = rlhf::TokenBatch::zeros(B, T + P);
  padded.attention_mask.assign(B * (T + P), 0);
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t t = 0; t < T; ++t) {
      padded.token(b, P + t) = batch.token(b, t);
      padded.attention_mask[b * (T + P) + P + t] = 1;
    }
  const auto got_padded = model.logits(padded);
  double worst_padded = 0;
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t t = 0; t < T; ++t)
      for (std::size_t v = 0; v < V; ++v)
        worst_padded = std::max(worst_padded, double(std::abs(got_padded(b * (T + P) + P + t, v) -
                                                              want[(b * T + t) * V + v])));
  CHECK(worst_padded <= 1e-4);

  // and log_probs is the log-softmax of those logits at the next token
  for (std::size_t t = 6; t < T; ++t) batch.mask(0, t) = batch.mask(1, t) = 1;
  const auto lp = model.log_probs(batch);
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t t = 6; t < T; ++t) {
      const float* row = want.data() + (b * T + t - 1) * V;
      double z = 0;
      for (std::size_t v = 0; v < V; ++v) z += std::exp(double(row[v]));
      CHECK(std::abs(lp(b, t) - (row[batch.token(b, t)] - std::log(z))) <= 1e-4);
    }
}
