// Crafted GPT checkpoints (issue 10): sizes near 2^64, negative, unparsable or merely huge in the config, and
// NaN/Inf weights. Each gives the named rlhf error, naming the file and the field; none allocates the model.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "rlhf/models/gpt/checkpoint.hpp"
#include "support/temp_dir.hpp"
#include "support/text.hpp"

using rlhf::test::has;

namespace {

namespace fs = std::filesystem;
using rlhf::test::TempDir;
using rlhf::GptConfig;
using rlhf::io::TensorView;

// A ~300-byte checkpoint: wte [2, 4] and wpe [2, 4] only, with the given metadata over a sane default.
fs::path tiny_checkpoint(const TempDir& dir, const std::map<std::string, std::string>& overrides) {
  std::map<std::string, std::string> meta = {{"vocab_size", "2"}, {"n_positions", "2"}, {"n_embd", "4"},
                                             {"n_layer", "1"},    {"n_head", "1"}};
  for (const auto& [k, v] : overrides) meta[k] = v;
  static const std::vector<float> values(8, 0.5f);
  const TensorView views[] = {{.name = "wte.weight", .shape = {2, 4}, .data = values.data()},
                              {.name = "wpe.weight", .shape = {2, 4}, .data = values.data()}};
  const auto path = dir / "crafted.safetensors";
  rlhf::io::save_safetensors(path, views, meta);
  return path;
}

// The message of the E that load_checkpoint(path) throws; any other exception fails the test.
template <class E>
std::string load_error(const fs::path& path) {
  try {
    rlhf::load_checkpoint(path);
  } catch (const E& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace

TEST_CASE("hostile checkpoint: a config size near 2^64 is a config_error, not a heap overflow") {
  TempDir dir;
  for (const char* key : {"vocab_size", "n_positions", "n_embd", "n_layer"}) {
    const auto path = tiny_checkpoint(dir, {{key, "18446744073709551615"}});
    CHECK(fs::file_size(path) < 400);
    const auto msg = load_error<rlhf::config_error>(path);
    CHECK_MESSAGE(has(msg, path.string()), msg);
    CHECK_MESSAGE(has(msg, "above the supported maximum"), msg);
  }
  // Products that would wrap: 2^32 x 2^32.
  const auto wrap = tiny_checkpoint(dir, {{"vocab_size", "4294967296"}, {"n_embd", "4294967296"}});
  CHECK_MESSAGE(has(load_error<rlhf::config_error>(wrap), "vocab_size = 4294967296"),
                load_error<rlhf::config_error>(wrap));
}

TEST_CASE("hostile checkpoint: negative, too large and unparsable numbers are io_errors naming the field") {
  TempDir dir;
  const struct {
    const char *key, *value, *why;
  } cases[] = {{"n_layer", "-1", "not a non-negative integer"},
               {"vocab_size", "99999999999999999999999999", "too large"},
               {"n_embd", "4x", "not a non-negative integer"},
               {"n_head", "", "not a non-negative integer"},
               {"layer_norm_epsilon", "abc", "not a finite float32"},
               {"layer_norm_epsilon", "1e999", "not a finite float32"},
               {"layer_norm_epsilon", "nan", "not a finite float32"},
               {"scalar_head", "yes", "not 0 or 1"}};
  for (const auto& c : cases) {
    const auto path = tiny_checkpoint(dir, {{c.key, c.value}});
    const auto msg = load_error<rlhf::io_error>(path);
    CHECK_MESSAGE(has(msg, path.string()), msg);
    CHECK_MESSAGE(has(msg, std::string("metadata '") + c.key + "'"), msg);
    CHECK_MESSAGE(has(msg, c.why), msg);
  }
  const auto long_value = tiny_checkpoint(dir, {{"n_embd", std::string(100'000, '7')}});
  const auto msg = load_error<rlhf::io_error>(long_value);
  CHECK_MESSAGE(has(msg, "(100000 bytes)"), msg);
  CHECK(msg.size() < 400);
}

TEST_CASE("hostile checkpoint: a legal but huge config is checked against the file before allocating") {
  TempDir dir;
  // 2^24 x 2^16 floats would be 4 TiB: the file's wte.weight [2, 4] is compared first.
  const auto huge = tiny_checkpoint(dir, {{"vocab_size", "16777216"}, {"n_embd", "65536"}, {"n_head", "1024"}});
  const auto msg = load_error<rlhf::io_error>(huge);
  CHECK_MESSAGE(has(msg, "'wte.weight' has shape [2, 4] but [16777216, 65536] was expected"), msg);
  const auto layers = tiny_checkpoint(dir, {{"n_layer", "1024"}});
  CHECK_MESSAGE(has(load_error<rlhf::io_error>(layers), "'h.0.ln_1.weight' is missing"),
                load_error<rlhf::io_error>(layers));
  const auto heads = tiny_checkpoint(dir, {{"n_head", "3"}});
  CHECK_MESSAGE(has(load_error<rlhf::config_error>(heads), "multiple of heads (3)"),
                load_error<rlhf::config_error>(heads));
  const auto no_heads = tiny_checkpoint(dir, {{"n_head", "0"}});
  CHECK_MESSAGE(has(load_error<rlhf::config_error>(no_heads), "heads must be > 0"),
                load_error<rlhf::config_error>(no_heads));
}

TEST_CASE("hostile checkpoint: an explicit GptConfig is bounded too") {
  TempDir dir;
  const auto path = tiny_checkpoint(dir, {});
  GptConfig c{.vocab_size = 2, .max_seq_len = 2, .channels = 4, .layers = 1, .heads = 1};
  c.layers = std::numeric_limits<std::size_t>::max();
  CHECK_THROWS_WITH_AS(rlhf::load_checkpoint(path, c), doctest::Contains("layers = 18446744073709551615"),
                       rlhf::config_error);
  c.layers = 1;
  c.channels = std::size_t(1) << 40;
  CHECK_THROWS_WITH_AS(rlhf::Gpt<float>{c}, doctest::Contains("channels"), rlhf::config_error);
  CHECK_THROWS_AS(rlhf::gpt_param_layout(c), rlhf::config_error);
}

TEST_CASE("hostile checkpoint: NaN and Inf weights are refused on load, naming the tensor") {
  TempDir dir;
  const GptConfig c{.vocab_size = 5, .max_seq_len = 4, .channels = 8, .layers = 2, .heads = 2};
  rlhf::Gpt<float> model(c, 3);
  const auto params = model.parameters();
  const auto tensors = rlhf::gpt_checkpoint_tensors(c);
  const float bad_values[] = {std::nanf(""), std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity()};
  for (const float bad : bad_values) {
    // Written with save_safetensors directly: save_checkpoint may itself refuse non-finite weights.
    std::vector<float> values(params.begin(), params.end());
    std::vector<TensorView> views;
    for (const auto& t : tensors) views.push_back({.name = t.name, .shape = t.shape, .data = values.data() + t.offset});
    const auto& target = *std::find_if(tensors.begin(), tensors.end(),
                                       [](const auto& t) { return t.name == "h.1.mlp.c_fc.weight"; });
    values[target.offset + 7] = bad;
    const auto path = dir / "nan.safetensors";
    rlhf::io::save_safetensors(path, views, rlhf::detail::gpt_checkpoint::metadata_of(c));
    const auto msg = load_error<rlhf::value_error>(path);
    CHECK_MESSAGE(has(msg, path.string()), msg);
    CHECK_MESSAGE(has(msg, "'h.1.mlp.c_fc.weight'"), msg);
    CHECK_MESSAGE(has(msg, "flat index 7"), msg);
    rlhf::Gpt<float> other(c, 4);
    CHECK_THROWS_AS(rlhf::load_parameters(other, rlhf::io::Safetensors::load(path)), rlhf::value_error);
  }
}
