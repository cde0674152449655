#pragma once
// The model rlhf-train trains: a GPT-2 or a Llama-family decoder (Llama, Qwen2, Qwen3, Mistral), chosen by the
// model_type of the folder's (or model_config's) config.json. Model holds either and is itself a policy, value
// and reward model for the library's algorithms, so that every method runs on both families unchanged.
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <variant>

#include <nlohmann/json.hpp>

#include "model_folder.hpp"
#include "rlhf/io/atomic_file.hpp"
#include "rlhf/io/json_file.hpp"
#include "rlhf/models/llama/checkpoint.hpp"
#include "rlhf/models/llama/hf_config.hpp"
#include "rlhf/models/llama/model.hpp"
#include "text_codec.hpp"

namespace trainer {

using LlamaModel = rlhf::Llama<float>;

class Model {
  std::variant<GptModel, LlamaModel> m_;
  // Calls f with the model it holds (before its first use: the deduced return types need it).
  template <class F>
  decltype(auto) visit(F&& f) { return std::visit(std::forward<F>(f), m_); }
  template <class F>
  decltype(auto) visit(F&& f) const { return std::visit(std::forward<F>(f), m_); }

 public:
  using backend = rlhf::eigen<float>;
  using matrix = backend::matrix;
  using vector = backend::vector;

  explicit Model(GptModel m) : m_(std::move(m)) {}
  explicit Model(LlamaModel m) : m_(std::move(m)) {}

  // ---- the policy, value and reward model the algorithms call ----
  matrix log_probs(const rlhf::TokenBatch& b) { return visit([&](auto& m) { return m.log_probs(b); }); }
  void backward(const rlhf::TokenBatch& b, const matrix& g) { visit([&](auto& m) { m.backward(b, g); }); }
  matrix values(const rlhf::TokenBatch& b) { return visit([&](auto& m) { return m.values(b); }); }
  void backward_values(const rlhf::TokenBatch& b, const matrix& g) { visit([&](auto& m) { m.backward_values(b, g); }); }
  vector scores(const rlhf::TokenBatch& b) { return visit([&](auto& m) { return m.scores(b); }); }
  void backward_scores(const rlhf::TokenBatch& b, const vector& g) { visit([&](auto& m) { m.backward_scores(b, g); }); }
  rlhf::TokenBatch sample(const rlhf::PromptBatch& p, const rlhf::SampleOptions& o, rlhf::Rng& rng) {
    return visit([&](auto& m) { return m.sample(p, o, rng); });
  }
  void zero_grad() { visit([](auto& m) { m.zero_grad(); }); }
  std::span<float> parameters() { return visit([](auto& m) { return m.parameters(); }); }
  std::span<const float> parameters() const { return visit([](const auto& m) { return m.parameters(); }); }
  std::span<float> gradients() { return visit([](auto& m) { return m.gradients(); }); }
  std::span<const float> gradients() const { return visit([](const auto& m) { return m.gradients(); }); }
  void set_matmul_precision(rlhf::gpt::MatmulPrecision p) { visit([&](auto& m) { m.set_matmul_precision(p); }); }

  // ---- what the trainer reads ----
  GptModel* gpt() { return std::get_if<GptModel>(&m_); }
  const GptModel* gpt() const { return std::get_if<GptModel>(&m_); }
  LlamaModel* llama() { return std::get_if<LlamaModel>(&m_); }
  const LlamaModel* llama() const { return std::get_if<LlamaModel>(&m_); }
  std::size_t vocab_size() const { return visit([](const auto& m) { return m.config().vocab_size; }); }
  std::size_t max_seq_len() const { return visit([](const auto& m) { return m.config().max_seq_len; }); }
  bool scalar_head() const { return visit([](const auto& m) { return m.config().scalar_head; }); }
  bool same_shape(const Model& other) const {
    if (gpt() && other.gpt()) return gpt()->config() == other.gpt()->config();
    if (llama() && other.llama()) return llama()->config() == other.llama()->config();
    return false;
  }
  // For the start of the log: the family and its sizes under config.json's names.
  std::string describe() const {
    char buf[256];
    if (const auto* g = gpt()) {
      const auto& c = g->config();
      std::snprintf(buf, sizeof buf, "gpt2: vocab_size %zu, n_positions %zu, n_embd %zu, n_layer %zu, n_head %zu%s",
                    c.vocab_size, c.max_seq_len, c.channels, c.layers, c.heads, c.scalar_head ? ", scalar head" : "");
    } else {
      const auto& c = llama()->config();
      std::snprintf(buf, sizeof buf,
                    "%s: vocab_size %zu, max_position_embeddings %zu, hidden_size %zu, num_hidden_layers %zu, "
                    "num_attention_heads %zu, num_key_value_heads %zu%s",
                    c.model_type.c_str(), c.vocab_size, c.max_seq_len, c.hidden_size, c.layers, c.heads, c.kv_heads,
                    c.scalar_head ? ", scalar head" : "");
    }
    return buf;
  }
};

// ---- folders and config files of either family ----

// Whether a config.json describes a Llama-family model (else GPT-2, whose files may have no model_type).
inline bool is_llama_config(const fs::path& config_json) {
  const auto doc = read_json_file(config_json);
  const auto t = doc.is_object() ? doc.find("model_type") : doc.end();
  if (t == doc.end() || !t->is_string()) return false;
  const auto& type = t->get_ref<const std::string&>();
  return type == "llama" || type == "qwen2" || type == "qwen3" || type == "mistral";
}

// Whether a model folder holds a reward model (a scalar head).
inline bool is_reward_model_folder(const fs::path& folder) {
  if (is_llama_config(folder / "config.json")) return rlhf::load_llama_config(folder).scalar_head;
  return read_model_config(folder / "config.json").scalar_head;
}

// A model folder's weights into a model of its config (with the scalar head when `scalar_head`: a language
// model's folder then gives the trunk, and the head keeps its seeded initialisation).
inline Model load_model(const fs::path& folder, bool scalar_head, std::uint64_t seed) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) rlhf::fail<rlhf::io_error>("model folder '", folder.string(), "' is not a folder");
  if (!is_llama_config(folder / "config.json")) return Model(load_model_folder(folder, scalar_head, seed));
  rlhf::LlamaConfig c = rlhf::load_llama_config(folder);
  if (c.scalar_head && !scalar_head)
    rlhf::fail<rlhf::io_error>("'", folder.string(), "' holds a reward model (score.weight); a language model is "
                               "needed here");
  c.scalar_head = scalar_head;
  LlamaModel m(c, seed);
  rlhf::load_llama_parameters(m, folder);
  return Model(std::move(m));
}

// A fresh model of a config.json (GPT2Config's or a Llama family's keys), seeded.
inline Model fresh_model(const fs::path& config_json, bool scalar_head, std::uint64_t seed) {
  if (is_llama_config(config_json)) {
    rlhf::LlamaConfig c = rlhf::llama_config_from_json(read_json_file(config_json), "'" + config_json.string() + "'");
    c.scalar_head = scalar_head;
    return Model(LlamaModel(c, seed));
  }
  rlhf::GptConfig g = read_model_config(config_json);
  g.scalar_head = scalar_head;
  return Model(GptModel(g, seed));
}

// Writes the model's folder: config.json (with the tokenizer's end-of-sequence id), model.safetensors and the
// tokenizer's files, loadable as model_name_or_path.
inline void save_model(const Model& model, const TextCodec& codec, const fs::path& folder) {
  if (const auto* g = model.gpt()) return save_model_folder(*g, codec, folder);
  rlhf::save_llama(*model.llama(), folder);
  auto config = rlhf::llama_config_to_json(model.llama()->config());
  if (codec.eos >= 0) config["eos_token_id"] = codec.eos, config["bos_token_id"] = codec.eos;
  rlhf::io::write_file_atomic(folder / "config.json", config.dump(2) + "\n");
  copy_tokenizer_files(codec, folder);
}

// A checkpoint's weights into a model of the run (refused, naming the folder, when the shapes differ).
inline void restore_model(Model& model, const fs::path& folder) {
  const Model saved_shape = [&] {
    const bool head = model.scalar_head();
    if (is_llama_config(folder / "config.json")) {
      rlhf::LlamaConfig c = rlhf::load_llama_config(folder);
      c.scalar_head = head;
      return Model(LlamaModel(c));
    }
    rlhf::GptConfig g = read_model_config(folder / "config.json");
    return Model(GptModel(g));
  }();
  if (!saved_shape.same_shape(model))
    rlhf::fail<rlhf::config_error>("resume_from_checkpoint: the model in '", folder.string(),
                                   "' has another shape than the run's model (model_name_or_path / model_config ",
                                   "changed?)");
  if (auto* g = model.gpt())
    rlhf::load_parameters(*g, load_model_file(folder, g->config()));  // unknown tensors and metadata refused
  else
    rlhf::load_llama_parameters(*model.llama(), folder);
}

}  // namespace trainer
