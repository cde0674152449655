#pragma once
// The one place that maps the Llama's parameter buffer (params.hpp) to Hugging Face's tensor names and layouts:
//
//   model.embed_tokens.weight [V, C]                    model.norm.weight [C]      lm_head.weight [V, C] (untied)
//   model.layers.{i}.input_layernorm.weight [C]         model.layers.{i}.post_attention_layernorm.weight [C]
//   model.layers.{i}.self_attn.{q,k,v}_proj.weight [NH·hd | KVH·hd, C]   (+ .bias with qkv_bias)
//   model.layers.{i}.self_attn.{q,k}_norm.weight [hd]   (qk_norm: Qwen3)
//   model.layers.{i}.self_attn.o_proj.weight [C, NH·hd] (+ .bias with o_bias)
//   model.layers.{i}.mlp.{gate,up}_proj.weight [F, C]   model.layers.{i}.mlp.down_proj.weight [C, F]
//   score.weight [1, C]                                 (scalar head: HF's *ForSequenceClassification, no bias)
//
// nn.Linear stores [out, in] and we store [in, out]: those tensors are `transposed`.
#include <cstddef>
#include <string>
#include <vector>

#include "rlhf/models/llama/config.hpp"
#include "rlhf/models/llama/params.hpp"

namespace rlhf {

struct LlamaCheckpointTensor {
  std::string name;                 // HF's
  std::vector<std::size_t> shape;   // HF's
  std::size_t offset = 0, size = 0; // the slice of our buffer it fills
  bool transposed = false;          // ours is shape reversed: [in, out] for HF's [out, in]
};

inline std::vector<LlamaCheckpointTensor> llama_checkpoint_tensors(const LlamaConfig& c) {
  const auto layout = llama_param_layout(c);
  const auto find = [&](std::size_t slot) -> const LlamaParamTensor* {
    for (const auto& t : layout)
      if (t.slot == slot) return &t;
    return nullptr;
  };
  const std::size_t C = c.hidden_size, V = c.vocab_size, F = c.intermediate_size, hd = c.head_size(),
                    Q = c.q_size(), K = c.kv_size(), L = c.layers;
  std::vector<LlamaCheckpointTensor> out;
  const auto whole = [&](const char* name, std::size_t slot, std::vector<std::size_t> shape) {
    if (const auto* t = find(slot)) out.push_back({name, std::move(shape), t->offset, t->size, false});
  };
  using namespace llama;
  whole("model.embed_tokens.weight", embed, {V, C});
  const struct {
    const char* name;
    std::size_t slot;
    std::vector<std::size_t> shape;
    bool transposed;
  } per_layer[] = {{"input_layernorm.weight", attn_norm, {C}, false},
                   {"self_attn.q_proj.weight", qw, {Q, C}, true},
                   {"self_attn.q_proj.bias", qb, {Q}, false},
                   {"self_attn.k_proj.weight", kw, {K, C}, true},
                   {"self_attn.k_proj.bias", kb, {K}, false},
                   {"self_attn.v_proj.weight", vw, {K, C}, true},
                   {"self_attn.v_proj.bias", vb, {K}, false},
                   {"self_attn.q_norm.weight", q_norm, {hd}, false},
                   {"self_attn.k_norm.weight", k_norm, {hd}, false},
                   {"self_attn.o_proj.weight", ow, {C, Q}, true},
                   {"self_attn.o_proj.bias", ob, {C}, false},
                   {"post_attention_layernorm.weight", mlp_norm, {C}, false},
                   {"mlp.gate_proj.weight", gate, {F, C}, true},
                   {"mlp.up_proj.weight", up, {F, C}, true},
                   {"mlp.down_proj.weight", down, {C, F}, true}};
  for (std::size_t l = 0; l < L; ++l)
    for (const auto& t : per_layer)
      if (const auto* ours = find(t.slot)) {
        const std::size_t slice = ours->size / L;
        out.push_back({"model.layers." + std::to_string(l) + "." + t.name, t.shape, ours->offset + l * slice, slice,
                       t.transposed});
      }
  whole("model.norm.weight", norm, {C});
  whole("lm_head.weight", lm_head, {V, C});  // absent when tied
  whole("score.weight", score, {1, C});
  return out;
}

}  // namespace rlhf
