#pragma once
// The Llama's parameters: one contiguous buffer (so an optimizer, LoRA and checkpoints see one array) and named
// views into it. Per-layer tensors are stacked over L. Projection weights are stored [in, out] (y = x W + b),
// the GPT's layout, so the GPT's matrix kernels apply as they are; HF's nn.Linear stores [out, in], and the
// checkpoint map (checkpoint_map.hpp) transposes. Embedding, LM head and score keep HF's layout.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "rlhf/core/rng.hpp"
#include "rlhf/models/gpt_host/param_layout.hpp"
#include "rlhf/models/llama/config.hpp"

namespace rlhf {

template <class T>
struct LlamaTensors {
  T* embed;      // [V, C]           model.embed_tokens
  T* attn_norm;  // [L, C]           input_layernorm
  T* qw;         // [L, C, NH·hd]    q_proj
  T* kw;         // [L, C, KVH·hd]   k_proj
  T* vw;         // [L, C, KVH·hd]   v_proj
  T* qb;         // [L, NH·hd]       (qkv_bias; else null)
  T* kb;         // [L, KVH·hd]
  T* vb;         // [L, KVH·hd]
  T* q_norm;     // [L, hd]          (qk_norm; else null)
  T* k_norm;     // [L, hd]
  T* ow;         // [L, NH·hd, C]    o_proj
  T* ob;         // [L, C]           (o_bias; else null)
  T* mlp_norm;   // [L, C]           post_attention_layernorm
  T* gate;       // [L, C, F]        mlp.gate_proj
  T* up;         // [L, C, F]        mlp.up_proj
  T* down;       // [L, F, C]        mlp.down_proj
  T* norm;       // [C]              model.norm
  T* lm_head;    // [V, C]           lm_head (embed itself when tied)
  T* score;      // [C]              score (scalar_head; else null)
};

// One stacked tensor of the buffer: its slot (the order of LlamaTensors' members), shape (L first when per
// layer) and place.
struct LlamaParamTensor {
  std::size_t slot = 0;
  std::vector<std::size_t> shape;
  std::size_t offset = 0, size = 0;
  bool per_layer = false;
};

namespace llama {
enum Slot : std::size_t {
  embed, attn_norm, qw, kw, vw, qb, kb, vb, q_norm, k_norm, ow, ob, mlp_norm, gate, up, down, norm, lm_head, score,
  slot_count
};
}  // namespace llama

inline std::vector<LlamaParamTensor> llama_param_layout(const LlamaConfig& c) {
  c.validate("rlhf::llama_param_layout");  // its bounds keep every product and sum below 2^56
  const std::size_t V = c.vocab_size, C = c.hidden_size, L = c.layers, F = c.intermediate_size, hd = c.head_size(),
                    Q = c.q_size(), K = c.kv_size();
  gpt_host::ParamLayout<LlamaParamTensor> out;
  const auto add = [&](std::size_t slot, std::vector<std::size_t> shape, bool per_layer) {
    out.add(slot, std::move(shape), per_layer);
  };
  using namespace llama;
  add(embed, {V, C}, false);
  add(attn_norm, {L, C}, true);
  add(qw, {L, C, Q}, true);
  add(kw, {L, C, K}, true);
  add(vw, {L, C, K}, true);
  if (c.qkv_bias) add(qb, {L, Q}, true), add(kb, {L, K}, true), add(vb, {L, K}, true);
  if (c.qk_norm) add(q_norm, {L, hd}, true), add(k_norm, {L, hd}, true);
  add(ow, {L, Q, C}, true);
  if (c.o_bias) add(ob, {L, C}, true);
  add(mlp_norm, {L, C}, true);
  add(gate, {L, C, F}, true);
  add(up, {L, C, F}, true);
  add(down, {L, F, C}, true);
  add(norm, {C}, false);
  if (!c.tie_word_embeddings) add(lm_head, {V, C}, false);
  if (c.scalar_head) add(score, {C}, false);
  return out.tensors;
}

inline std::size_t llama_param_count(const LlamaConfig& c) { return gpt_host::param_count(llama_param_layout(c)); }

// Views into a buffer of llama_param_count(c) elements (parameters or their gradients).
template <class T>
LlamaTensors<T> llama_tensors(T* base, const LlamaConfig& c) {
  std::array<T*, llama::slot_count> p{};
  for (const auto& t : llama_param_layout(c)) p[t.slot] = base + t.offset;
  if (c.tie_word_embeddings) p[llama::lm_head] = p[llama::embed];
  return gpt_host::views_of<LlamaTensors<T>>(p);
}

// HF's initialisation (LlamaPreTrainedModel._init_weights): every weight N(0, 0.02), biases 0, RMSNorm weights 1.
template <class T>
void llama_initialize_parameters(T* params,  // [llama_param_count(c)]
                                 const LlamaConfig& c, std::uint64_t seed) {
  Rng rng(seed);
  for (const auto& t : llama_param_layout(c)) {
    using namespace llama;
    const bool norm_weight = t.slot == attn_norm || t.slot == mlp_norm || t.slot == norm || t.slot == q_norm ||
                             t.slot == k_norm;
    const bool bias = t.slot == qb || t.slot == kb || t.slot == vb || t.slot == ob;
    for (std::size_t i = 0; i < t.size; ++i)
      params[t.offset + i] = norm_weight ? T(1) : bias ? T(0) : T(0.02 * rng.normal());
  }
}

}  // namespace rlhf
