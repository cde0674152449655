#pragma once
// Model folders as Hugging Face saves GPT-2: config.json (GPT2Config's keys), model.safetensors (the weights under
// GPT-2's tensor names, models/gpt_host/checkpoint.hpp) and the tokenizer's files. rlhf-train reads one as
// model_name_or_path and writes one as its output, so its output is its next input.
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "rlhf/core/error.hpp"
#include "rlhf/io/atomic_file.hpp"
#include "rlhf/io/checked_number.hpp"
#include "rlhf/io/json_file.hpp"
#include "rlhf/io/untrusted.hpp"
#include "rlhf/models/gpt/checkpoint.hpp"
#include "rlhf/models/gpt/model.hpp"
#include "text_codec.hpp"

namespace trainer {

using GptModel = rlhf::Gpt<float>;

// Every JSON file the trainer reads (configs, config.json, trainer_state.json) goes through io/json_file.hpp:
// regular files of at most 16 MiB, 64 levels deep, no duplicate key, every parser error named (rlhf::io_error).
inline constexpr rlhf::io::JsonLimits trainer_json_limits{.max_bytes = std::size_t(16) << 20};

inline nlohmann::json read_json_file(const fs::path& path) {
  return rlhf::io::read_json_file(path, trainer_json_limits);
}

// GPT2Config's keys → GptConfig. A reward model (GPT2ForSequenceClassification, num_labels 1) has the scalar head.
inline rlhf::GptConfig read_model_config(const fs::path& path) {
  const auto doc = read_json_file(path);
  const std::string where = rlhf::io::detail::quoted_path(path);
  if (!doc.is_object()) rlhf::fail<rlhf::io_error>(where, " must hold a JSON object, not a JSON ", doc.type_name());
  const auto size = [&](const char* key, const char* alias = nullptr) -> std::size_t {
    auto it = doc.find(key);
    if (it == doc.end() && alias) it = doc.find(alias);
    if (it == doc.end()) rlhf::fail<rlhf::io_error>(where, ": missing key '", key, "'");
    return rlhf::io::checked_number<std::size_t>(*it, where, key, {.lo = 1});
  };
  const auto brief = [](const nlohmann::json& j) { return rlhf::io::detail::json_brief(j); };
  if (auto t = doc.find("model_type"); t != doc.end() && *t != "gpt2")
    rlhf::fail<rlhf::io_error>(where, ": model_type ", brief(*t), " is not \"gpt2\"");
  rlhf::GptConfig c{.vocab_size = size("vocab_size"),
                    .max_seq_len = size("n_positions", "n_ctx"),
                    .channels = size("n_embd"),
                    .layers = size("n_layer"),
                    .heads = size("n_head")};
  if (auto e = doc.find("layer_norm_epsilon"); e != doc.end())
    c.layer_norm_eps = rlhf::io::checked_number<float>(*e, where, "layer_norm_epsilon", {.lo = 0, .hi = 1, .lo_open = true});
  // The bundled GPT is GPT-2's block: a 4C MLP with the tanh GELU. A config that says otherwise is refused.
  if (auto n = doc.find("n_inner"); n != doc.end() && !n->is_null() && *n != 4 * c.channels)
    rlhf::fail<rlhf::io_error>(where, ": n_inner ", brief(*n), " is not 4 * n_embd; the GPT here has a 4C MLP");
  if (auto f = doc.find("activation_function"); f != doc.end() && *f != "gelu_new")
    rlhf::fail<rlhf::io_error>(where, ": activation_function ", brief(*f),
                               " is not \"gelu_new\" (GPT-2's tanh GELU, the one the GPT here computes)");
  if (auto a = doc.find("architectures"); a != doc.end() && a->is_array())
    for (const auto& name : *a) c.scalar_head |= name == "GPT2ForSequenceClassification";
  c.validate(where.c_str());
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
  rlhf::io::write_file_atomic(to, rlhf::io::read_regular_file(from, std::size_t(1) << 30));
}

// Writes config.json, model.safetensors and the tokenizer's files into `folder` (created if needed).
// The tokenizer's files into a model folder, so that it is loadable on its own.
inline void copy_tokenizer_files(const TextCodec& codec, const fs::path& folder) {
  for (const auto& f : codec.files)
    if (fs::absolute(f).parent_path() != fs::absolute(folder)) copy_file_atomic(f, folder / f.filename());
}

inline void save_model_folder(const GptModel& model, const TextCodec& codec, const fs::path& folder) {
  fs::create_directories(folder);
  rlhf::save_checkpoint(model, folder / "model.safetensors");  // refuses NaN and Inf, writing nothing
  rlhf::io::write_file_atomic(folder / "config.json", model_config_json(model.config(), codec));
  copy_tokenizer_files(codec, folder);
}

namespace detail {

// Tensors a GPT-2 file may hold besides the weights: the causal-mask buffers of older Hugging Face exports, and
// lm_head.weight when it equals wte.weight (the GPT here ties them).
inline bool tolerated_extra(const rlhf::io::Safetensors& st, const std::string& prefix, const std::string& name) {
  const std::string rest = name.substr(name.rfind(prefix, 0) == 0 ? prefix.size() : 0);
  const auto ends_with = [&](std::string_view tail) {
    return rest.size() > tail.size() && rest.compare(rest.size() - tail.size(), tail.size(), tail) == 0;
  };
  if (rest.rfind("h.", 0) == 0 && (ends_with(".attn.bias") || ends_with(".attn.masked_bias"))) return true;
  if (name == "lm_head.weight" && st.contains(prefix + "wte.weight")) {
    const auto head = st.bytes(name), wte = st.bytes(prefix + "wte.weight");
    return st.info(name).dtype == st.info(prefix + "wte.weight").dtype &&
           std::equal(head.begin(), head.end(), wte.begin(), wte.end());
  }
  return false;
}

// Refuses (by name) a tensor the model does not have, so that no weight in the file is silently ignored.
inline void refuse_unknown_tensors(const rlhf::io::Safetensors& st, rlhf::GptConfig c) {
  c.scalar_head = true;  // a head the model lacks is check_file's refusal, with its own message
  const std::string prefix = rlhf::detail::gpt_checkpoint::prefix_of(st);
  std::set<std::string> known;
  for (const auto& t : rlhf::gpt_checkpoint_tensors(c)) known.insert(prefix + t.name);
  for (const auto& t : st.tensors())
    if (!known.count(t.name) && !tolerated_extra(st, prefix, t.name))
      rlhf::fail<rlhf::io_error>("'", st.path().string(), "': tensor '", rlhf::io::detail::clip(t.name),
                                 "' is not a weight of a GPT-2 model of this config (", c.layers, " layers); ",
                                 "refusing to ignore it");
}

// Refuses __metadata__ (written by save_checkpoint) that disagrees with config.json, naming the key.
inline void refuse_metadata_disagreement(const rlhf::io::Safetensors& st, const rlhf::GptConfig& c,
                                         const fs::path& config_json) {
  const auto& m = st.metadata();
  const auto differs = [&](const char* key, const std::string& ours) {
    const auto it = m.find(key);
    if (it == m.end() || it->second == ours) return;
    rlhf::fail<rlhf::io_error>("'", st.path().string(), "': metadata ", key, " = '", rlhf::io::detail::clip(it->second),
                               "' but ", rlhf::io::detail::quoted_path(config_json), " says ", ours);
  };
  differs("vocab_size", std::to_string(c.vocab_size));
  differs("n_positions", std::to_string(c.max_seq_len));
  differs("n_embd", std::to_string(c.channels));
  differs("n_layer", std::to_string(c.layers));
  differs("n_head", std::to_string(c.heads));
  differs("scalar_head", c.scalar_head ? "1" : "0");
  if (const auto it = m.find("layer_norm_epsilon"); it != m.end()) {
    const float file_eps = rlhf::detail::gpt_checkpoint::to_float(st, "layer_norm_epsilon", it->second);
    if (file_eps != c.layer_norm_eps)
      rlhf::fail<rlhf::io_error>("'", st.path().string(), "': metadata layer_norm_epsilon = '",
                                 rlhf::io::detail::clip(it->second), "' but ", rlhf::io::detail::quoted_path(config_json),
                                 " says ", c.layer_norm_eps);
  }
}

}  // namespace detail

// folder/model.safetensors, checked against `c` (read from folder/config.json): refuses (rlhf::io_error, by name)
// a tensor the model lacks and metadata that disagrees with config.json. Then rlhf::load_parameters fills a model.
inline rlhf::io::Safetensors load_model_file(const fs::path& folder, const rlhf::GptConfig& c) {
  auto st = rlhf::io::Safetensors::load(folder / "model.safetensors");
  detail::refuse_metadata_disagreement(st, c, folder / "config.json");
  detail::refuse_unknown_tensors(st, c);
  return st;
}

// A model folder's weights into a model of its config (with the scalar head when `scalar_head`: a language model's
// folder then gives the trunk, and the head keeps its seeded initialisation). Refuses (rlhf::io_error, by name) a
// tensor the model lacks and metadata that disagrees with config.json.
inline GptModel load_model_folder(const fs::path& folder, bool scalar_head, std::uint64_t seed) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec))
    rlhf::fail<rlhf::io_error>("model folder '", folder.string(), "' is not a folder");
  rlhf::GptConfig c = read_model_config(folder / "config.json");
  if (c.scalar_head && !scalar_head)
    rlhf::fail<rlhf::io_error>("'", folder.string(), "' holds a reward model (GPT2ForSequenceClassification); "
                               "a language model is needed here");
  const auto st = load_model_file(folder, c);
  c.scalar_head = scalar_head;
  GptModel model(c, seed);
  rlhf::load_parameters(model, st);
  return model;
}

}  // namespace trainer
