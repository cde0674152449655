#pragma once
// Model folders as Hugging Face saves GPT-2: config.json (GPT2Config's keys), model.safetensors (the weights under
// GPT-2's tensor names, models/gpt_host/checkpoint.hpp) and the tokenizer's files. rlhf-train reads one as
// model_name_or_path and writes one as its output, so its output is its next input.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "rlhf/core/error.hpp"
#include "rlhf/io/atomic_file.hpp"
#include "rlhf/models/gpt/checkpoint.hpp"
#include "rlhf/models/gpt/model.hpp"
#include "text_codec.hpp"

namespace trainer {

using Model = rlhf::Gpt<float>;

inline nlohmann::json read_json_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) rlhf::fail<rlhf::io_error>("cannot open '", path.string(), "'");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::parse_error& e) {
    rlhf::fail<rlhf::io_error>("'", path.string(), "' is not valid JSON: ", e.what());
  }
}

// GPT2Config's keys → GptConfig. A reward model (GPT2ForSequenceClassification, num_labels 1) has the scalar head.
inline rlhf::GptConfig read_model_config(const fs::path& path) {
  const auto doc = read_json_file(path);
  if (!doc.is_object()) rlhf::fail<rlhf::io_error>("'", path.string(), "' must hold a JSON object");
  const auto size = [&](const char* key, const char* alias = nullptr) -> std::size_t {
    auto it = doc.find(key);
    if (it == doc.end() && alias) it = doc.find(alias);
    if (it == doc.end()) rlhf::fail<rlhf::io_error>("'", path.string(), "': missing key '", key, "'");
    if (!it->is_number_unsigned() || it->get<std::uint64_t>() == 0)
      rlhf::fail<rlhf::io_error>("'", path.string(), "': key '", key, "' must be a positive integer, got ", it->dump());
    return it->get<std::size_t>();
  };
  if (auto t = doc.find("model_type"); t != doc.end() && *t != "gpt2")
    rlhf::fail<rlhf::io_error>("'", path.string(), "': model_type ", t->dump(), " is not \"gpt2\"");
  rlhf::GptConfig c{.vocab_size = size("vocab_size"),
                    .max_seq_len = size("n_positions", "n_ctx"),
                    .channels = size("n_embd"),
                    .layers = size("n_layer"),
                    .heads = size("n_head")};
  if (auto e = doc.find("layer_norm_epsilon"); e != doc.end()) {
    if (!e->is_number()) rlhf::fail<rlhf::io_error>("'", path.string(), "': layer_norm_epsilon must be a number");
    c.layer_norm_eps = e->get<float>();
  }
  // The bundled GPT is GPT-2's block: a 4C MLP with the tanh GELU. A config that says otherwise is refused.
  if (auto n = doc.find("n_inner"); n != doc.end() && !n->is_null() && *n != 4 * c.channels)
    rlhf::fail<rlhf::io_error>("'", path.string(), "': n_inner ", n->dump(), " is not 4 * n_embd; the GPT here has a 4C MLP");
  if (auto f = doc.find("activation_function"); f != doc.end() && *f != "gelu_new")
    rlhf::fail<rlhf::io_error>("'", path.string(), "': activation_function ", f->dump(),
                               " is not \"gelu_new\" (GPT-2's tanh GELU, the one the GPT here computes)");
  if (auto a = doc.find("architectures"); a != doc.end() && a->is_array())
    for (const auto& name : *a) c.scalar_head |= name == "GPT2ForSequenceClassification";
  c.validate(("'" + path.string() + "'").c_str());
  return c;
}

inline std::string model_config_json(const rlhf::GptConfig& c, const TextCodec& codec) {
  nlohmann::json doc = {{"model_type", "gpt2"},
                        {"architectures", {c.scalar_head ? "GPT2ForSequenceClassification" : "GPT2LMHeadModel"}},
                        {"vocab_size", c.vocab_size},
                        {"n_positions", c.max_seq_len},
                        {"n_ctx", c.max_seq_len},
                        {"n_embd", c.channels},
                        {"n_layer", c.layers},
                        {"n_head", c.heads},
                        {"layer_norm_epsilon", c.layer_norm_eps},
                        {"activation_function", "gelu_new"},
                        {"torch_dtype", "float32"}};
  if (c.scalar_head) doc["num_labels"] = 1;
  if (codec.eos >= 0) doc["eos_token_id"] = codec.eos, doc["bos_token_id"] = codec.eos;
  return doc.dump(2) + "\n";
}

inline void copy_file_atomic(const fs::path& from, const fs::path& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) rlhf::fail<rlhf::io_error>("cannot read '", from.string(), "'");
  std::stringstream ss;
  ss << in.rdbuf();
  rlhf::io::write_file_atomic(to, ss.str());
}

// Writes config.json, model.safetensors and the tokenizer's files into `folder` (created if needed).
inline void save_model_folder(const Model& model, const TextCodec& codec, const fs::path& folder) {
  fs::create_directories(folder);
  rlhf::save_checkpoint(model, folder / "model.safetensors");  // refuses NaN and Inf, writing nothing
  rlhf::io::write_file_atomic(folder / "config.json", model_config_json(model.config(), codec));
  for (const auto& f : codec.files)
    if (fs::absolute(f).parent_path() != fs::absolute(folder)) copy_file_atomic(f, folder / f.filename());
}

// A model folder's weights into a model of its config (with the scalar head when `scalar_head`: a language model's
// folder then gives the trunk, and the head keeps its seeded initialisation).
inline Model load_model_folder(const fs::path& folder, bool scalar_head, std::uint64_t seed) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec))
    rlhf::fail<rlhf::io_error>("model folder '", folder.string(), "' is not a folder");
  rlhf::GptConfig c = read_model_config(folder / "config.json");
  if (c.scalar_head && !scalar_head)
    rlhf::fail<rlhf::io_error>("'", folder.string(), "' holds a reward model (GPT2ForSequenceClassification); "
                               "a language model is needed here");
  c.scalar_head = scalar_head;
  Model model(c, seed);
  rlhf::load_parameters(model, rlhf::io::Safetensors::load(folder / "model.safetensors"));
  return model;
}

}  // namespace trainer
