#pragma once
// The model rlhf-train trains: a GPT-2 or a Llama-family decoder (Llama, Qwen2, Qwen3, Mistral), chosen by the
// model_type of the folder's (or model_config's) config.json; with use_peft, either as a frozen base with LoRA
// adapters, and the reference as that base with the adapters off (adapters.hpp). Model holds any of these and is
// itself a policy, value and reward model for the library's algorithms, so that every method runs on all of them
// unchanged.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <variant>

#include <nlohmann/json.hpp>

#include "adapters.hpp"
#include "model_folder.hpp"
#include "rlhf/io/atomic_file.hpp"
#include "rlhf/io/json_file.hpp"
#include "rlhf/models/llama/checkpoint.hpp"
#include "rlhf/models/llama/hf_config.hpp"
#include "rlhf/models/llama/model.hpp"
#include "text_codec.hpp"

namespace trainer {

using LlamaModel = rlhf::Llama<float>;

inline std::string describe_config(const rlhf::GptConfig& c) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "gpt2: vocab_size %zu, n_positions %zu, n_embd %zu, n_layer %zu, n_head %zu%s",
                c.vocab_size, c.max_seq_len, c.channels, c.layers, c.heads, c.scalar_head ? ", scalar head" : "");
  return buf;
}
inline std::string describe_config(const rlhf::LlamaConfig& c) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "%s: vocab_size %zu, max_position_embeddings %zu, hidden_size %zu, num_hidden_layers %zu, "
                "num_attention_heads %zu, num_key_value_heads %zu%s",
                c.model_type.c_str(), c.vocab_size, c.max_seq_len, c.hidden_size, c.layers, c.heads, c.kv_heads,
                c.scalar_head ? ", scalar head" : "");
  return buf;
}

class Model {
  using Variant = std::variant<GptModel, LlamaModel, AdaptedModel<GptModel>, AdaptedModel<LlamaModel>,
                               AdaptersOffModel<GptModel>, AdaptersOffModel<LlamaModel>>;
  Variant m_;
  // Calls f with the model it holds (before its first use: the deduced return types need it).
  template <class F>
  decltype(auto) visit(F&& f) { return std::visit(std::forward<F>(f), m_); }
  template <class F>
  decltype(auto) visit(F&& f) const { return std::visit(std::forward<F>(f), m_); }
  [[noreturn]] static void frozen(const char* what) {
    rlhf::fail<rlhf::value_error>("rlhf-train: ", what, " on the reference (the base with its adapters off), which is "
                                  "never trained or sampled");
  }
  explicit Model(Variant m) : m_(std::move(m)) {}

 public:
  using backend = rlhf::eigen<float>;
  using matrix = backend::matrix;
  using vector = backend::vector;

  explicit Model(GptModel m) : m_(std::move(m)) {}
  explicit Model(LlamaModel m) : m_(std::move(m)) {}

  // `base` (a plain model) frozen, with LoRA adapters.
  static Model adapted(Model base, const rlhf::LoraSettings& settings, rlhf::Rng& rng) {
    if (auto* g = base.gpt()) return Model(Variant(AdaptedModel<GptModel>(std::move(*g), settings, rng)));
    if (auto* l = base.llama()) return Model(Variant(AdaptedModel<LlamaModel>(std::move(*l), settings, rng)));
    frozen("adapters attached twice");
  }
  // The reference of an adapted model: its base, adapters off, sharing its weights.
  Model adapters_off() const {
    if (const auto* a = std::get_if<AdaptedModel<GptModel>>(&m_)) return Model(Variant(AdaptersOffModel<GptModel>(a->shared())));
    if (const auto* a = std::get_if<AdaptedModel<LlamaModel>>(&m_)) return Model(Variant(AdaptersOffModel<LlamaModel>(a->shared())));
    frozen("adapters_off of a model without adapters");
  }
  bool adapted() const { return m_.index() == 2 || m_.index() == 3; }

  // ---- the policy, value and reward model the algorithms call ----
  matrix log_probs(const rlhf::TokenBatch& b) { return visit([&](auto& m) { return m.log_probs(b); }); }
  void backward(const rlhf::TokenBatch& b, const matrix& g) {
    visit([&](auto& m) { if constexpr (requires { m.backward(b, g); }) m.backward(b, g); else frozen("backward"); });
  }
  matrix values(const rlhf::TokenBatch& b) {
    return visit([&](auto& m) -> matrix { if constexpr (requires { m.values(b); }) return m.values(b); else frozen("values"); });
  }
  void backward_values(const rlhf::TokenBatch& b, const matrix& g) {
    visit([&](auto& m) { if constexpr (requires { m.backward_values(b, g); }) m.backward_values(b, g); else frozen("backward_values"); });
  }
  vector scores(const rlhf::TokenBatch& b) {
    return visit([&](auto& m) -> vector { if constexpr (requires { m.scores(b); }) return m.scores(b); else frozen("scores"); });
  }
  void backward_scores(const rlhf::TokenBatch& b, const vector& g) {
    visit([&](auto& m) { if constexpr (requires { m.backward_scores(b, g); }) m.backward_scores(b, g); else frozen("backward_scores"); });
  }
  rlhf::TokenBatch sample(const rlhf::PromptBatch& p, const rlhf::SampleOptions& o, rlhf::Rng& rng) {
    return visit([&](auto& m) -> rlhf::TokenBatch {
      if constexpr (requires { m.sample(p, o, rng); }) return m.sample(p, o, rng); else frozen("sample");
    });
  }
  void zero_grad() { visit([](auto& m) { if constexpr (requires { m.zero_grad(); }) m.zero_grad(); }); }
  std::span<float> parameters() {
    return visit([](auto& m) -> std::span<float> { if constexpr (requires { m.gradients(); }) return m.parameters(); else return {}; });
  }
  std::span<const float> parameters() const { return visit([](const auto& m) { return m.parameters(); }); }
  std::span<float> gradients() {
    return visit([](auto& m) -> std::span<float> { if constexpr (requires { m.gradients(); }) return m.gradients(); else return {}; });
  }
  std::span<const float> gradients() const {
    return visit([](const auto& m) -> std::span<const float> { if constexpr (requires { m.gradients(); }) return m.gradients(); else return {}; });
  }
  void set_matmul_precision(rlhf::gpt::MatmulPrecision p) {
    visit([&](auto& m) { if constexpr (requires { m.set_matmul_precision(p); }) m.set_matmul_precision(p); });
  }
  // Whether LoRA dropout acts (no-op without adapters).
  void set_training(bool on) {
    visit([&](auto& m) { if constexpr (requires { m.lora().set_training(on); }) m.lora().set_training(on); });
  }
  // LoRA dropout's masks from here on (no-op without adapters).
  void set_dropout_seed(std::uint64_t seed) {
    visit([&](auto& m) { if constexpr (requires { m.lora().set_dropout_seed(seed); }) m.lora().set_dropout_seed(seed); });
  }

  // ---- what the trainer reads ----
  GptModel* gpt() { return std::get_if<GptModel>(&m_); }
  const GptModel* gpt() const { return std::get_if<GptModel>(&m_); }
  LlamaModel* llama() { return std::get_if<LlamaModel>(&m_); }
  const LlamaModel* llama() const { return std::get_if<LlamaModel>(&m_); }
  // Calls f with the rlhf::Lora of an adapted model (GPT-2's or a Llama's); false when it has none.
  template <class F>
  bool with_lora(F&& f) {
    return visit([&](auto& m) { if constexpr (requires { m.lora(); }) { f(m.lora()); return true; } else return false; });
  }
  template <class F>
  bool with_lora(F&& f) const {
    return visit([&](const auto& m) { if constexpr (requires { m.lora(); }) { f(m.lora()); return true; } else return false; });
  }
  std::size_t vocab_size() const { return visit([](const auto& m) { return m.config().vocab_size; }); }
  std::size_t max_seq_len() const { return visit([](const auto& m) { return m.config().max_seq_len; }); }
  bool scalar_head() const { return visit([](const auto& m) { return m.config().scalar_head; }); }
  bool same_shape(const Model& other) const {
    if (gpt() && other.gpt()) return gpt()->config() == other.gpt()->config();
    if (llama() && other.llama()) return llama()->config() == other.llama()->config();
    return false;
  }
  // For the start of the log: the family and its sizes under config.json's names, and the adapters.
  std::string describe() const {
    std::string out = visit([](const auto& m) { return describe_config(m.config()); });
    char buf[256];
    with_lora([&](const auto& lora) {
      const auto& st = lora.settings();
      std::string targets;
      for (const auto& t : st.target_modules) targets += (targets.empty() ? "" : ",") + t;
      std::snprintf(buf, sizeof buf, "; LoRA r %zu, alpha %g%s, dropout %g on %s: %zu adapted layers", st.r,
                    st.lora_alpha, st.use_rslora ? " (rsLoRA)" : "", st.lora_dropout, targets.c_str(),
                    lora.adapters().size());
      out += buf;
    });
    return out;
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

// Whether a folder holds LoRA adapters alone (PEFT's adapter_config.json, no config.json of its own).
inline bool is_adapter_folder(const fs::path& folder) {
  std::error_code ec;
  return fs::is_regular_file(folder / "adapter_config.json", ec) && !fs::exists(folder / "config.json", ec);
}

inline Model load_model(const fs::path& folder, bool scalar_head, std::uint64_t seed);

// An adapter folder as a plain model: its base (`base_override`, else adapter_config.json's base_model_name_or_path)
// with the adapters merged in (PEFT's merge_and_unload).
inline Model load_merged_adapter(const fs::path& folder, bool scalar_head, std::uint64_t seed,
                                 const std::string& base_override = {}) {
  auto settings = rlhf::load_adapter_settings(folder);
  if (!base_override.empty()) settings.base_model_name_or_path = base_override;
  if (settings.base_model_name_or_path.empty())
    rlhf::fail<rlhf::io_error>("'", (folder / "adapter_config.json").string(), "' names no base_model_name_or_path, "
                               "so its base model is not known (give it: --base_model_name_or_path)");
  if (is_adapter_folder(settings.base_model_name_or_path))
    rlhf::fail<rlhf::io_error>("'", (folder / "adapter_config.json").string(), "': its base '",
                               settings.base_model_name_or_path, "' is itself an adapter folder; merge that one first");
  Model base = load_model(settings.base_model_name_or_path, scalar_head, seed);
  if (auto* g = base.gpt()) return Model(rlhf::merge_lora(rlhf::load_adapter(folder, std::move(*g))));
  return Model(rlhf::merge_lora(rlhf::load_adapter(folder, std::move(*base.llama()))));
}

// A model folder's weights into a model of its config (with the scalar head when `scalar_head`: a language
// model's folder then gives the trunk, and the head keeps its seeded initialisation). An adapter folder gives its
// base with the adapters merged.
inline Model load_model(const fs::path& folder, bool scalar_head, std::uint64_t seed) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) rlhf::fail<rlhf::io_error>("model folder '", folder.string(), "' is not a folder");
  if (is_adapter_folder(folder)) return load_merged_adapter(folder, scalar_head, seed);
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
// tokenizer's files, loadable as model_name_or_path; an adapted model's is PEFT's adapter folder
// (adapter_config.json, adapter_model.safetensors) and the tokenizer's files.
inline void save_model(const Model& model, const TextCodec& codec, const fs::path& folder) {
  if (model.with_lora([&](const auto& lora) { rlhf::save_adapter(lora, folder); })) return copy_tokenizer_files(codec, folder);
  if (const auto* g = model.gpt()) return save_model_folder(*g, codec, folder);
  rlhf::save_llama(*model.llama(), folder);
  auto config = rlhf::llama_config_to_json(model.llama()->config());
  if (codec.eos >= 0) config["eos_token_id"] = codec.eos, config["bos_token_id"] = codec.eos;
  rlhf::io::write_file_atomic(folder / "config.json", config.dump(2) + "\n");
  copy_tokenizer_files(codec, folder);
}

// A checkpoint's weights into a model of the run (refused, naming the folder, when the shapes differ); an adapted
// model's adapters from its adapter folder.
inline void restore_model(Model& model, const fs::path& folder) {
  if (model.with_lora([&](auto& lora) {
        const auto saved = rlhf::load_adapter(folder, lora.base_copy());  // checks every tensor's name and shape
        if (saved.parameters().size() != lora.parameters().size() || saved.adapters().size() != lora.adapters().size())
          rlhf::fail<rlhf::config_error>("resume_from_checkpoint: the adapters in '", folder.string(),
                                         "' are not the run's (lora_r / lora_target_modules changed?)");
        std::copy(saved.parameters().begin(), saved.parameters().end(), lora.parameters().begin());
      }))
    return;
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
