// HF model folders for the Llama: what save_llama writes loads back bit for bit (every option on, tied and
// untied), config.json round-trips, and folders that disagree with their config are refused naming the tensor.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/llama_support.hpp"
#include "rlhf/io/json_file.hpp"
#include "rlhf/io/safetensors.hpp"
#include "rlhf/models/llama/checkpoint.hpp"
#include "support/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using rlhf::Llama;
using rlhf::test::TempDir;

const fs::path smollm2 = fs::path(__FILE__).parent_path().parent_path() / "data" / "peers" / "llama" / "smollm2";

// A copy of the smollm2 folder whose config.json has `key` set to `value` (or removed when null).
fs::path with_config(const TempDir& dir, const std::string& key, const nlohmann::json& value) {
  const fs::path out = dir.path / "edited";
  fs::create_directories(out);
  fs::copy_file(smollm2 / "model.safetensors", out / "model.safetensors", fs::copy_options::overwrite_existing);
  auto j = rlhf::io::read_json_file(smollm2 / "config.json");
  if (value.is_null())
    j.erase(key);
  else
    j[key] = value;
  std::ofstream(out / "config.json") << j.dump(2);
  return out;
}

std::string error_of(const fs::path& folder) {
  try {
    rlhf::load_llama(folder);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("llama checkpoint: save_llama then load_llama gives the same model, bit for bit") {
  for (const bool tied : {false, true}) {
    CAPTURE(tied);
    auto config = rlhf::testing::tiny_llama_config(true);
    config.tie_word_embeddings = tied;
    config.model_type = "qwen3";
    Llama<float> model(config, 1);
    rlhf::testing::randomize(model, 2);
    TempDir dir("rlhf-llama-checkpoint");
    rlhf::save_llama(model, dir.path / "out");
    CHECK(fs::exists(dir.path / "out" / "config.json"));
    const auto st = rlhf::io::Safetensors::load(dir.path / "out" / "model.safetensors");
    CHECK(st.contains("model.layers.1.self_attn.q_proj.weight"));
    CHECK(st.contains("model.layers.0.self_attn.k_norm.weight"));
    CHECK(st.contains("score.weight"));
    CHECK(st.contains("lm_head.weight") == !tied);
    CHECK(st.info("model.layers.0.self_attn.q_proj.weight").shape == std::vector<std::size_t>{16, 8});  // [out, in]
    auto loaded = rlhf::load_llama(dir.path / "out");
    CHECK(loaded.config() == model.config());
    const auto a = model.parameters(), b = loaded.parameters();
    REQUIRE(a.size() == b.size());
    CHECK(std::equal(a.begin(), a.end(), b.begin()));
  }
}

TEST_CASE("llama checkpoint: a reward model starts from a causal LM's folder with a zero head") {
  auto critic = rlhf::load_llama(smollm2, {.scalar_head = true});
  CHECK(critic.config().scalar_head);
  auto policy = rlhf::load_llama(smollm2);
  CHECK(!policy.config().scalar_head);
  const auto score = critic.parameter_tensors().score;
  for (std::size_t i = 0; i < critic.config().hidden_size; ++i) CHECK(score[i] == 0.0f);
  const auto a = policy.parameters(), b = critic.parameters();
  CHECK(std::equal(a.begin(), a.end(), b.begin()));  // the head comes last in the buffer
}

TEST_CASE("llama checkpoint: folders that disagree with their config are refused, naming the tensor") {
  TempDir dir("rlhf-llama-refusals");
  CHECK(error_of(with_config(dir, "num_hidden_layers", 3)).find("'model.layers.2.input_layernorm.weight' is missing") !=
        std::string::npos);
  CHECK(error_of(with_config(dir, "num_hidden_layers", 1)).find("'model.layers.1.") != std::string::npos);
  CHECK(error_of(with_config(dir, "num_key_value_heads", 6)).find("'model.layers.0.self_attn.k_proj.weight' has shape") !=
        std::string::npos);
  CHECK(error_of(with_config(dir, "intermediate_size", 65)).find("'model.layers.0.mlp.gate_proj.weight' has shape") !=
        std::string::npos);
  CHECK(error_of(with_config(dir, "tie_word_embeddings", false)).find("'lm_head.weight' is missing") !=
        std::string::npos);
  CHECK(error_of(with_config(dir, "attention_bias", true)).find("'model.layers.0.self_attn.q_proj.bias' is missing") !=
        std::string::npos);
  CHECK(error_of(with_config(dir, "model_type", "gpt2")).find("model_type 'gpt2'") != std::string::npos);
  CHECK(error_of(with_config(dir, "hidden_act", "gelu")).find("hidden_act") != std::string::npos);
  CHECK(error_of(with_config(dir, "rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}})).find("'yarn'") !=
        std::string::npos);
  CHECK(error_of(with_config(dir, "vocab_size", nullptr)).find("'vocab_size'") != std::string::npos);
  CHECK(error_of(dir.path / "nothing-here").find("config.json") != std::string::npos);
}

TEST_CASE("llama checkpoint: a non-finite weight is refused by name, and so is saving one") {
  auto config = rlhf::testing::tiny_llama_config(false);
  Llama<float> model(config, 1);
  model.parameter_tensors().down[3] = std::numeric_limits<float>::quiet_NaN();
  TempDir dir("rlhf-llama-nonfinite");
  try {
    rlhf::save_llama(model, dir.path / "out");
    FAIL("saved a NaN");
  } catch (const rlhf::value_error& e) {
    CHECK(std::string(e.what()).find("mlp.down_proj.weight") != std::string::npos);
  }
  CHECK(!fs::exists(dir.path / "out" / "model.safetensors"));
}
