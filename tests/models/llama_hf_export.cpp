// What save_llama writes, read the way another program reads it: the PyTorch reference of tests/peers/
// llama_family.py loads the folder by HF's names and config.json keys alone (and asserts the exact set of names
// and shapes) and computes logits that must match ours within 1e-5 · max |ref|. Qwen3- and Llama-style configs
// with every option on. Skipped (exit 77, ctest "Skipped") without torch (apt-get install python3-torch).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/llama_support.hpp"
#include "rlhf/models/llama/checkpoint.hpp"
#include "support/python.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;

TEST_CASE("llama HF export: the PyTorch reference reads our folder and computes our logits") {
  rlhf::test::skip_without_python("torch", "python3-torch");
  const fs::path script = fs::path(__FILE__).parent_path().parent_path() / "peers" / "llama_family.py";
  for (const std::string type : {"qwen3", "llama", "qwen2"}) {
    CAPTURE(type);
    auto config = rlhf::testing::tiny_llama_config(false);
    config.model_type = type;
    config.qk_norm = type == "qwen3";
    config.o_bias = type != "qwen2";
    rlhf::Llama<float> model(config, 1);
    rlhf::testing::randomize(model, 2);
    rlhf::test::TempDir dir("rlhf-llama-export");
    rlhf::save_llama(model, dir.path);
    const std::size_t B = 2, T = 9, V = config.vocab_size;
    auto batch = rlhf::TokenBatch::zeros(B, T);
    nlohmann::json ids = nlohmann::json::array();
    for (std::size_t b = 0; b < B; ++b) {
      ids.push_back(nlohmann::json::array());
      for (std::size_t t = 0; t < T; ++t) ids.back().push_back(batch.token(b, t) = rlhf::token_id((3 * b + 5 * t) % V));
    }
    std::ofstream(dir.path / "tokens.json") << ids.dump();
    const std::string cmd = rlhf::test::python() + " '" + script.string() + "' --logits '" + dir.path.string() +
                            "' > '" + (dir.path / "log").string() + "' 2>&1";
    REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "llama_family.py --logits failed; see " << (dir.path / "log"));
    const auto ref = nlohmann::json::parse(std::ifstream(dir.path / "logits.json"));
    const auto ours = model.logits(batch);
    double diff = 0, scale = 0;
    for (std::size_t b = 0; b < B; ++b)
      for (std::size_t t = 0; t < T; ++t)
        for (std::size_t v = 0; v < V; ++v) {
          const double r = ref[b][t][v].get<double>();
          diff = std::max(diff, std::abs(double(ours(Eigen::Index(b * T + t), Eigen::Index(v))) - r));
          scale = std::max(scale, std::abs(r));
        }
    MESSAGE(type << ": max |ours − reference| / max |reference| = " << diff / scale);
    CHECK(scale > 0.1);
    CHECK(diff <= 1e-5 * scale);
  }
}
