#pragma once
// A Hugging Face config.json ↔ LlamaConfig, for model_type llama, qwen2, qwen3 and mistral (without a sliding
// window). What the model does not implement is refused by name rather than ignored: another hidden_act,
// mlp_bias, a sliding window, a rope_scaling other than linear or llama3.
//
//   HF key                              LlamaConfig
//   vocab_size, hidden_size, intermediate_size, rms_norm_eps, rope_theta, head_dim, tie_word_embeddings  (same)
//   num_hidden_layers / num_attention_heads / num_key_value_heads     layers / heads / kv_heads
//   max_position_embeddings                                          max_seq_len
//   attention_bias        qkv_bias and o_bias (llama, qwen3, mistral); qwen2: qkv_bias always, o_bias never
//   rope_scaling {rope_type | type, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings}
//   model_type qwen3                                                 qk_norm
// Defaults where a key is absent are transformers' (LlamaConfig: rope_theta 10000, rms_norm_eps 1e-6,
// num_key_value_heads = num_attention_heads, tie_word_embeddings false).
#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

#include "rlhf/core/error.hpp"
#include "rlhf/models/llama/config.hpp"

namespace rlhf {

namespace detail::llama_config {

inline std::size_t size_at(const nlohmann::json& j, const char* key, const std::string& where, std::size_t fallback,
                           bool required) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) fail<config_error>(where, ": config.json has no '", key, "'");
    return fallback;
  }
  if (!it->is_number_unsigned()) fail<config_error>(where, ": config.json '", key, "' is not a non-negative integer");
  return it->get<std::size_t>();
}

inline double number_at(const nlohmann::json& j, const char* key, const std::string& where, double fallback) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) fail<config_error>(where, ": config.json '", key, "' is not a number");
  return it->get<double>();
}

inline bool flag_at(const nlohmann::json& j, const char* key, const std::string& where, bool fallback) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) fail<config_error>(where, ": config.json '", key, "' is not true or false");
  return it->get<bool>();
}

}  // namespace detail::llama_config

// The config of an HF config.json (`where` names it in messages). scalar_head is left false: a folder's
// score.weight decides it (llama/checkpoint.hpp).
inline LlamaConfig llama_config_from_json(const nlohmann::json& j, const std::string& where) {
  using namespace detail::llama_config;
  if (!j.is_object()) fail<config_error>(where, ": config.json is not a JSON object");
  const auto type_it = j.find("model_type");
  if (type_it == j.end() || !type_it->is_string()) fail<config_error>(where, ": config.json has no 'model_type'");
  const std::string type = type_it->get<std::string>();
  if (type != "llama" && type != "qwen2" && type != "qwen3" && type != "mistral")
    fail<config_error>(where, ": model_type '", type, "' is not a Llama-family decoder (llama, qwen2, qwen3, mistral)");
  LlamaConfig c;
  c.model_type = type;
  c.vocab_size = size_at(j, "vocab_size", where, 0, true);
  c.hidden_size = size_at(j, "hidden_size", where, 0, true);
  c.intermediate_size = size_at(j, "intermediate_size", where, 0, true);
  c.layers = size_at(j, "num_hidden_layers", where, 0, true);
  c.heads = size_at(j, "num_attention_heads", where, 0, true);
  c.kv_heads = size_at(j, "num_key_value_heads", where, c.heads, false);
  c.head_dim = size_at(j, "head_dim", where, 0, false);
  c.max_seq_len = size_at(j, "max_position_embeddings", where, 2048, false);
  c.rms_norm_eps = float(number_at(j, "rms_norm_eps", where, 1e-6));
  c.rope_theta = number_at(j, "rope_theta", where, 10000.0);
  c.tie_word_embeddings = flag_at(j, "tie_word_embeddings", where, false);
  const bool attention_bias = flag_at(j, "attention_bias", where, false);
  c.qkv_bias = type == "qwen2" ? true : attention_bias;
  c.o_bias = type == "qwen2" ? false : attention_bias;
  c.qk_norm = type == "qwen3";
  if (const auto act = j.find("hidden_act"); act != j.end() && !(act->is_string() && *act == "silu"))
    fail<config_error>(where, ": hidden_act ", act->dump(), " is not supported (only \"silu\", SwiGLU)");
  if (flag_at(j, "mlp_bias", where, false)) fail<config_error>(where, ": mlp_bias true is not supported");
  if (flag_at(j, "use_sliding_window", where, false))
    fail<config_error>(where, ": use_sliding_window true is not supported (full causal attention only)");
  if (type == "mistral")
    if (const auto w = j.find("sliding_window"); w != j.end() && !w->is_null())
      fail<config_error>(where, ": mistral's sliding_window ", w->dump(),
                         " is not supported (full causal attention only; null is)");
  if (const auto s = j.find("rope_scaling"); s != j.end() && !s->is_null()) {
    if (!s->is_object()) fail<config_error>(where, ": rope_scaling is neither null nor an object");
    const auto kind_it = s->contains("rope_type") ? s->find("rope_type") : s->find("type");
    const std::string kind = kind_it != s->end() && kind_it->is_string() ? kind_it->get<std::string>() : "";
    if (kind == "default") {
    } else if (kind == "linear") {
      c.rope_scaling = RopeScaling::linear;
    } else if (kind == "llama3") {
      c.rope_scaling = RopeScaling::llama3;
      c.rope_low_freq_factor = number_at(*s, "low_freq_factor", where, 1.0);
      c.rope_high_freq_factor = number_at(*s, "high_freq_factor", where, 4.0);
      c.rope_original_max_positions = size_at(*s, "original_max_position_embeddings", where, 8192, false);
    } else {
      fail<config_error>(where, ": rope_scaling type '", kind, "' is not supported (linear and llama3 are)");
    }
    if (c.rope_scaling != RopeScaling::none) c.rope_factor = number_at(*s, "factor", where, 1.0);
  }
  c.validate(where.c_str());
  return c;
}

// config.json for a config: the keys above under HF's names, readable by transformers' Auto classes.
inline nlohmann::ordered_json llama_config_to_json(const LlamaConfig& c) {
  nlohmann::ordered_json j;
  const bool qwen2 = c.model_type == "qwen2", qwen3 = c.model_type == "qwen3";
  const std::string family = qwen2 ? "Qwen2" : qwen3 ? "Qwen3" : c.model_type == "mistral" ? "Mistral" : "Llama";
  j["architectures"] = {family + (c.scalar_head ? "ForSequenceClassification" : "ForCausalLM")};
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.layers;
  j["num_attention_heads"] = c.heads;
  j["num_key_value_heads"] = c.kv_heads;
  j["head_dim"] = c.head_size();
  j["max_position_embeddings"] = c.max_seq_len;
  j["rms_norm_eps"] = double(c.rms_norm_eps);
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling == RopeScaling::linear) {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.rope_factor}};
  } else if (c.rope_scaling == RopeScaling::llama3) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", c.rope_factor},
                         {"low_freq_factor", c.rope_low_freq_factor},
                         {"high_freq_factor", c.rope_high_freq_factor},
                         {"original_max_position_embeddings", c.rope_original_max_positions}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  if (!qwen2) j["attention_bias"] = c.qkv_bias;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["hidden_act"] = "silu";
  if (c.scalar_head) j["num_labels"] = 1;
  j["torch_dtype"] = "float32";
  return j;
}

}  // namespace rlhf
