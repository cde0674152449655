#pragma once
// Shared by the Llama tests: a tiny config with every option on, and parameters far from the initialisation.
#include <cstdint>

#include "rlhf/core/rng.hpp"
#include "rlhf/models/llama/model.hpp"

namespace rlhf::testing {

// GQA 2:1, head_dim 4 ≠ C / NH, q/k/v and o biases, q/k norms, untied head, llama3 rope scaling whose bands
// put one frequency in the blend and one scaled at this head_dim, and a scalar head.
inline LlamaConfig tiny_llama_config(bool head = true) {
  return {.vocab_size = 11, .hidden_size = 8, .intermediate_size = 12, .layers = 2, .heads = 4, .kv_heads = 2,
          .head_dim = 4, .max_seq_len = 24, .rms_norm_eps = 1e-5f, .rope_theta = 100.0,
          .rope_scaling = RopeScaling::llama3, .rope_factor = 4.0, .rope_low_freq_factor = 1.0,
          .rope_high_freq_factor = 4.0, .rope_original_max_positions = 16, .qkv_bias = true, .o_bias = true,
          .qk_norm = true, .tie_word_embeddings = false, .scalar_head = head};
}

// Every parameter uniform in ±scale around 0 (norm weights around 1), so attention is peaked and every path
// carries signal.
template <class T>
void randomize(Llama<T>& model, std::uint64_t seed, double scale = 0.5) {
  Rng rng(seed);
  for (const auto& t : llama_param_layout(model.config())) {
    using namespace llama;
    const bool norm_weight =
        t.slot == attn_norm || t.slot == mlp_norm || t.slot == norm || t.slot == q_norm || t.slot == k_norm;
    T* p = model.parameters().data() + t.offset;
    for (std::size_t i = 0; i < t.size; ++i) p[i] = T((norm_weight ? 1.0 : 0.0) + scale * (2 * rng.uniform() - 1));
  }
}

}  // namespace rlhf::testing
