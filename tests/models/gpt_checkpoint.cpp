// GPT checkpoints: round trips, Hugging Face names and shapes, files without our metadata, and every way a
// file can disagree with the config.
#include "rlhf/models/gpt/checkpoint.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "models/gpt_support.hpp"
#include "support/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using rlhf::Gpt;
using rlhf::GptConfig;
using rlhf::io::Safetensors;
using rlhf::io::TensorView;

using rlhf::test::TempDir;

GptConfig config(bool head = false) {
  return {.vocab_size = 17, .max_seq_len = 10, .channels = 16, .layers = 2, .heads = 4, .scalar_head = head};
}

// Rewrites a checkpoint under other names / without metadata / with extra tensors, as an HF export would.
void rewrite(const fs::path& from, const fs::path& to, const std::string& prefix, bool keep_metadata,
             const std::vector<std::string>& drop = {}, bool add_attn_bias = false) {
  const auto st = Safetensors::load(from);
  std::vector<std::vector<float>> data;
  std::vector<TensorView> views;
  data.reserve(st.tensors().size() + 1);
  for (const auto& t : st.tensors()) {
    if (std::find(drop.begin(), drop.end(), t.name) != drop.end()) continue;
    data.emplace_back(t.numel());
    st.read_f32(t.name, t.shape, data.back());
    views.push_back({.name = prefix + t.name, .shape = t.shape, .data = data.back().data()});
  }
  if (add_attn_bias) {  // HF's causal-mask buffer, which loaders skip
    data.emplace_back(100, 1.0f);
    views.push_back({.name = prefix + "h.0.attn.bias", .shape = {1, 1, 10, 10}, .data = data.back().data()});
  }
  rlhf::io::save_safetensors(to, views, keep_metadata ? st.metadata() : std::map<std::string, std::string>{});
}

rlhf::TokenBatch some_batch() {
  return rlhf::testing::pad_rows({{{1, 2, 3, 4, 5}, 2}, {{9, 8, 7}, 1}}, rlhf::testing::Pad::left);
}

}  // namespace

TEST_CASE("gpt checkpoint: a round trip restores the config and every parameter bit for bit") {
  TempDir dir;
  Gpt<float> model(config(true), 1);
  rlhf::testing::randomize(model, 2);
  rlhf::save_checkpoint(model, dir / "m.safetensors");
  auto back = rlhf::load_checkpoint(dir / "m.safetensors");
  CHECK(back.config() == model.config());
  CHECK(std::equal(back.parameters().begin(), back.parameters().end(), model.parameters().begin()));
  const auto b = some_batch();
  CHECK((back.log_probs(b) - model.log_probs(b)).cwiseAbs().maxCoeff() == 0.0f);
  CHECK((back.scores(b) - model.scores(b)).cwiseAbs().maxCoeff() == 0.0f);
  // a double model writes float32 and reads back to float precision
  Gpt<double> md(config(), 3);
  rlhf::testing::randomize(md, 4);
  rlhf::save_checkpoint(md, dir / "d.safetensors");
  const auto bd = rlhf::load_checkpoint<double>(dir / "d.safetensors");
  for (std::size_t i = 0; i < md.parameters().size(); ++i)
    CHECK(bd.parameters()[i] == double(float(md.parameters()[i])));
}

TEST_CASE("gpt checkpoint: the file uses Hugging Face GPT-2 names, shapes and config keys") {
  TempDir dir;
  Gpt<float> model(config(true), 5);
  rlhf::testing::randomize(model, 6);
  rlhf::save_checkpoint(model, dir / "m.safetensors");
  const auto st = Safetensors::load(dir / "m.safetensors");
  CHECK(st.tensors().size() == 2 + 12 * 2 + 2 + 2);
  CHECK(st.info("wte.weight").shape == std::vector<std::size_t>{17, 16});
  CHECK(st.info("wpe.weight").shape == std::vector<std::size_t>{10, 16});
  CHECK(st.info("h.1.attn.c_attn.weight").shape == std::vector<std::size_t>{16, 48});
  CHECK(st.info("h.1.attn.c_attn.bias").shape == std::vector<std::size_t>{48});
  CHECK(st.info("h.0.attn.c_proj.weight").shape == std::vector<std::size_t>{16, 16});
  CHECK(st.info("h.0.mlp.c_fc.weight").shape == std::vector<std::size_t>{16, 64});
  CHECK(st.info("h.0.mlp.c_proj.weight").shape == std::vector<std::size_t>{64, 16});
  CHECK(st.info("ln_f.bias").shape == std::vector<std::size_t>{16});
  CHECK(st.info("score.weight").shape == std::vector<std::size_t>{1, 16});
  CHECK(st.metadata().at("n_head") == "4");
  CHECK(st.metadata().at("n_layer") == "2");
  CHECK(st.metadata().at("format") == "pt");
  // Conv1D layout [in, out]: element [i, j] of layer 1's c_attn is qkvw[1][i][j]
  std::vector<float> w(16 * 48);
  st.read_f32("h.1.attn.c_attn.weight", {16, 48}, w);
  const auto p = model.parameter_tensors();
  CHECK(w[3 * 48 + 40] == p.qkvw[16 * 48 + 3 * 48 + 40]);
}

TEST_CASE("gpt checkpoint: an HF export (no metadata, 'transformer.' prefix, mask buffers) loads") {
  TempDir dir;
  GptConfig c = config();
  c.channels = 64, c.heads = 1;  // without n_head the loader assumes GPT-2's 64-wide heads
  Gpt<float> model(c, 7);
  rlhf::testing::randomize(model, 8);
  rlhf::save_checkpoint(model, dir / "ours.safetensors");
  rewrite(dir / "ours.safetensors", dir / "hf.safetensors", "transformer.", false, {}, true);
  const auto back = rlhf::load_checkpoint(dir / "hf.safetensors");
  CHECK(back.config() == c);
  CHECK(std::equal(back.parameters().begin(), back.parameters().end(), model.parameters().begin()));
  // with the config given, any head count works
  Gpt<float> m4(config(), 9);
  rlhf::save_checkpoint(m4, dir / "c16.safetensors");
  rewrite(dir / "c16.safetensors", dir / "c16_hf.safetensors", "", false);
  CHECK_THROWS_WITH_AS(rlhf::load_checkpoint(dir / "c16_hf.safetensors"), doctest::Contains("n_head"),
                       rlhf::config_error);
  const auto b4 = rlhf::load_checkpoint(dir / "c16_hf.safetensors", config());
  CHECK(std::equal(b4.parameters().begin(), b4.parameters().end(), m4.parameters().begin()));
}

TEST_CASE("gpt checkpoint: a reward model starts from a language model's checkpoint") {
  TempDir dir;
  Gpt<float> lm(config(), 10);
  rlhf::testing::randomize(lm, 11);
  rlhf::save_checkpoint(lm, dir / "lm.safetensors");
  auto rm = rlhf::load_checkpoint(dir / "lm.safetensors", config(true));
  CHECK(rm.config().scalar_head);
  const auto b = some_batch();
  CHECK((rm.log_probs(b) - lm.log_probs(b)).cwiseAbs().maxCoeff() == 0.0f);
  CHECK(rm.scores(b).size() == 2);
}

TEST_CASE("gpt checkpoint: a file that disagrees with the config is refused with a named error") {
  TempDir dir;
  Gpt<float> model(config(true), 12);
  rlhf::save_checkpoint(model, dir / "m.safetensors");
  const auto file = dir / "m.safetensors";
  GptConfig bigger_vocab = config(true);
  bigger_vocab.vocab_size = 18;
  CHECK_THROWS_WITH_AS(rlhf::load_checkpoint(file, bigger_vocab),
                       doctest::Contains("'wte.weight' has shape [17, 16] but [18, 16] was expected"),
                       rlhf::io_error);
  GptConfig fewer_layers = config(true);
  fewer_layers.layers = 1;
  CHECK_THROWS_WITH_AS(rlhf::load_checkpoint(file, fewer_layers), doctest::Contains("more than the config's 1 layers"),
                       rlhf::config_error);
  CHECK_THROWS_WITH_AS(rlhf::load_checkpoint(file, config(false)), doctest::Contains("has a scalar head"),
                       rlhf::config_error);
  GptConfig other_heads = config(true);
  other_heads.heads = 2;
  CHECK_THROWS_WITH_AS(rlhf::load_checkpoint(file, other_heads), doctest::Contains("n_head is 4"), rlhf::config_error);
  rewrite(file, dir / "missing.safetensors", "", true, {"h.1.mlp.c_fc.bias"});
  CHECK_THROWS_WITH_AS(rlhf::load_checkpoint(dir / "missing.safetensors"),
                       doctest::Contains("'h.1.mlp.c_fc.bias' is missing"), rlhf::io_error);
  rewrite(file, dir / "no_wte.safetensors", "", true, {"wte.weight"});
  CHECK_THROWS_WITH_AS(rlhf::load_checkpoint(dir / "no_wte.safetensors"), doctest::Contains("not a GPT-2 checkpoint"),
                       rlhf::io_error);
  CHECK_THROWS_AS(rlhf::load_checkpoint(dir / "absent.safetensors"), rlhf::io_error);
}
