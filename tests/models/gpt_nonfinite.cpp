// Non-finite numbers around the GPT: a checkpoint is never written with NaN or Inf in it, and sampling from
// logits that are NaN or Inf (parameters that overflow) is refused with a named error instead of emitting a token.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>

#include "models/gpt_support.hpp"
#include "rlhf/models/gpt/checkpoint.hpp"
#include "rlhf/models/gpt/model.hpp"
#include "support/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;

using rlhf::test::TempDir;

rlhf::PromptBatch prompts() { return {2, 3, {1, 2, 3, 4, 0, 0}, {3, 1}}; }

}  // namespace

TEST_CASE("gpt: weights of 1e30 save (finite) but sampling from their NaN logits is refused, naming the row") {
  TempDir dir;
  rlhf::Gpt<float> model(rlhf::testing::tiny_gpt_config(), 1);
  for (float& p : model.parameters()) p = 1e30f;
  const fs::path file = dir.path / "huge.safetensors";
  rlhf::save_checkpoint(model, file);  // every value is a float: written
  auto back = rlhf::load_checkpoint(file);
  for (const float temperature : {1.0f, 0.0f}) {
    rlhf::Rng rng(2);
    CHECK_THROWS_WITH_AS(back.sample(prompts(), {.max_new_tokens = 2, .temperature = temperature}, rng),
                         doctest::Contains("the logits for row 0 at position 3 hold"),
                         rlhf::value_error);
  }
}

TEST_CASE("gpt: a checkpoint holding NaN or Inf is not written, and the error names the tensor") {
  TempDir dir;
  rlhf::Gpt<float> model(rlhf::testing::tiny_gpt_config(true), 3);
  const auto layout = rlhf::gpt_checkpoint_tensors(model.config());
  const auto fc = *std::find_if(layout.begin(), layout.end(), [](const auto& t) { return t.name == "h.0.mlp.c_fc.weight"; });
  for (const float bad : {NAN, INFINITY}) {
    const float saved = model.parameters()[fc.offset + 5];
    model.parameters()[fc.offset + 5] = bad;
    const fs::path file = dir.path / "bad.safetensors";
    CHECK_THROWS_WITH_AS(rlhf::save_checkpoint(model, file),
                         doctest::Contains("tensor 'h.0.mlp.c_fc.weight' holds 1 NaN or Inf value(s)"),
                         rlhf::value_error);
    CHECK_FALSE(fs::exists(file));
    model.parameters()[fc.offset + 5] = saved;
  }
  // A double model whose value is finite in double but past float32's range.
  rlhf::Gpt<double> md(rlhf::testing::tiny_gpt_config(), 4);
  md.parameters()[0] = 1e300;
  CHECK_THROWS_WITH_AS(rlhf::save_checkpoint(md, dir.path / "d.safetensors"), doctest::Contains("'wte.weight'"),
                       rlhf::value_error);
  CHECK_FALSE(fs::exists(dir.path / "d.safetensors"));
}
