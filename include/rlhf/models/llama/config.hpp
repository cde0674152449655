#pragma once
// The sizes and options of a Llama-family decoder (Llama 2/3.x, SmolLM2, TinyLlama, Qwen2/2.5, Qwen3, Mistral
// without a sliding window), named as Hugging Face's LlamaConfig names them where a name exists. Defaults are
// SmolLM2-135M's. docs/models/llama.md has a table of the published models' values.
#include <cmath>
#include <cstddef>
#include <string>

#include "rlhf/core/error.hpp"

namespace rlhf {

// How the rotary frequencies are rescaled for long contexts (HF's rope_scaling.rope_type).
enum class RopeScaling { none, linear, llama3 };

struct LlamaConfig {
  std::size_t vocab_size = 49152;         // V
  std::size_t hidden_size = 576;          // C
  std::size_t intermediate_size = 1536;   // F: the SwiGLU MLP's width
  std::size_t layers = 30;                // L (num_hidden_layers)
  std::size_t heads = 9;                  // NH (num_attention_heads)
  std::size_t kv_heads = 3;               // KVH (num_key_value_heads); NH must be a multiple of it
  std::size_t head_dim = 0;               // hd; 0 means C / NH (Qwen3 sets it: 128 with C / NH = 64)
  std::size_t max_seq_len = 8192;         // max_position_embeddings: the longest row the model accepts
  float rms_norm_eps = 1e-5f;
  double rope_theta = 100000.0;
  RopeScaling rope_scaling = RopeScaling::none;
  double rope_factor = 1.0;               // rope_scaling.factor (linear and llama3)
  double rope_low_freq_factor = 1.0;      // llama3 only
  double rope_high_freq_factor = 4.0;     // llama3 only
  std::size_t rope_original_max_positions = 8192;  // llama3's original_max_position_embeddings
  bool qkv_bias = false;                  // biases on q/k/v_proj (Qwen2 always; Llama/Qwen3 attention_bias)
  bool o_bias = false;                    // a bias on o_proj (Llama/Qwen3 attention_bias; never Qwen2)
  bool qk_norm = false;                   // Qwen3: RMSNorm over each head's q and k, before RoPE
  bool tie_word_embeddings = true;        // the LM head is the token embedding
  bool scalar_head = false;               // add score.weight [1, C] (HF's *ForSequenceClassification, no bias)
  std::string model_type = "llama";       // written back into config.json

  std::size_t head_size() const { return head_dim != 0 ? head_dim : hidden_size / heads; }  // hd
  std::size_t q_size() const { return heads * head_size(); }                                 // NH·hd
  std::size_t kv_size() const { return kv_heads * head_size(); }                             // KVH·hd

  void validate(const char* fn = "rlhf::LlamaConfig") const {
    require_positive(fn, "vocab_size", double(vocab_size));
    require_positive(fn, "hidden_size", double(hidden_size));
    require_positive(fn, "intermediate_size", double(intermediate_size));
    require_positive(fn, "layers", double(layers));
    require_positive(fn, "heads", double(heads));
    require_positive(fn, "kv_heads", double(kv_heads));
    require_positive(fn, "max_seq_len", double(max_seq_len));
    require_positive(fn, "rms_norm_eps", rms_norm_eps);
    require_positive(fn, "rope_theta", rope_theta);
    // Upper bounds keep every product of the parameter layout far below size_t's range, so sizes read from a
    // file cannot wrap into a small allocation.
    at_most(fn, "vocab_size", vocab_size, std::size_t(1) << 24);
    at_most(fn, "hidden_size", hidden_size, std::size_t(1) << 16);
    at_most(fn, "intermediate_size", intermediate_size, std::size_t(1) << 18);
    at_most(fn, "layers", layers, 1024);
    at_most(fn, "heads", heads, 1024);
    at_most(fn, "head_dim", head_dim, 1024);
    at_most(fn, "max_seq_len", max_seq_len, std::size_t(1) << 22);
    if (heads % kv_heads != 0)
      fail<config_error>(fn, ": heads (", heads, ") must be a multiple of kv_heads (", kv_heads, ")");
    if (head_dim == 0 && hidden_size % heads != 0)
      fail<config_error>(fn, ": hidden_size (", hidden_size, ") must be a multiple of heads (", heads,
                         ") when head_dim is not given");
    if (head_size() % 2 != 0) fail<config_error>(fn, ": head_dim (", head_size(), ") must be even for RoPE");
    if (rope_scaling != RopeScaling::none) {
      if (!(rope_factor >= 1.0) || !std::isfinite(rope_factor))
        fail<config_error>(fn, ": rope_scaling factor must be >= 1 (got ", rope_factor, ")");
    }
    if (rope_scaling == RopeScaling::llama3) {
      if (!(rope_high_freq_factor > rope_low_freq_factor) || !(rope_low_freq_factor > 0))
        fail<config_error>(fn, ": llama3 rope_scaling needs high_freq_factor > low_freq_factor > 0 (got ",
                           rope_high_freq_factor, ", ", rope_low_freq_factor, ")");
      require_positive(fn, "rope_original_max_positions", double(rope_original_max_positions));
    }
  }

  bool operator==(const LlamaConfig&) const = default;

 private:
  static void at_most(const char* fn, const char* setting, std::size_t v, std::size_t max) {
    if (v > max) fail<config_error>(fn, ": ", setting, " = ", v, " is above the supported maximum ", max);
  }
};

}  // namespace rlhf
