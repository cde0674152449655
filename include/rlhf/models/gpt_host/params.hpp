#pragma once
// The GPT's parameters: one contiguous buffer, and named views into it (as llm.c lays them out), so the
// optimizer, the CUDA model and checkpoints can treat them as one array.
//
// Order in the buffer: the 16 tensors below, then the optional scalar head. Per-layer tensors are stacked
// over L. Weight matrices are stored [in, out] (y = x W + b), the layout of Hugging Face's GPT-2 Conv1D,
// so a GPT-2 checkpoint is copied in without any transpose; the LM head is wte itself (logits = h wteᵀ).
#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "rlhf/models/gpt_host/config.hpp"
#include "rlhf/models/gpt_host/param_layout.hpp"

namespace rlhf {

template <class T>
struct GptTensors {
  T* wte;       // [V, C]        token embedding, also the LM head
  T* wpe;       // [T_max, C]    position embedding
  T* ln1w;      // [L, C]
  T* ln1b;      // [L, C]
  T* qkvw;      // [L, C, 3C]    attn.c_attn: q, k, v side by side in the output
  T* qkvb;      // [L, 3C]
  T* attprojw;  // [L, C, C]     attn.c_proj
  T* attprojb;  // [L, C]
  T* ln2w;      // [L, C]
  T* ln2b;      // [L, C]
  T* fcw;       // [L, C, 4C]    mlp.c_fc
  T* fcb;       // [L, 4C]
  T* fcprojw;   // [L, 4C, C]    mlp.c_proj
  T* fcprojb;   // [L, C]
  T* lnfw;      // [C]
  T* lnfb;      // [C]
  T* headw;     // [C]           scalar head (null without one)
  T* headb;     // [1]
};

// One stacked tensor of the buffer: its name (the GptTensors member), shape (with L first when per-layer)
// and where it lives.
struct GptParamTensor {
  std::string name;
  std::vector<std::size_t> shape;
  std::size_t offset = 0, size = 0;
  bool per_layer = false;
};

inline std::vector<GptParamTensor> gpt_param_layout(const GptConfig& c) {
  c.validate("rlhf::gpt_param_layout");  // its bounds keep every product and sum below 2^48
  const std::size_t V = c.vocab_size, Tm = c.max_seq_len, C = c.channels, L = c.layers;
  gpt_host::ParamLayout<GptParamTensor> out;
  const auto add = [&](const char* name, std::vector<std::size_t> shape, bool per_layer) {
    out.add(name, std::move(shape), per_layer);
  };
  add("wte", {V, C}, false);
  add("wpe", {Tm, C}, false);
  add("ln1w", {L, C}, true);
  add("ln1b", {L, C}, true);
  add("qkvw", {L, C, 3 * C}, true);
  add("qkvb", {L, 3 * C}, true);
  add("attprojw", {L, C, C}, true);
  add("attprojb", {L, C}, true);
  add("ln2w", {L, C}, true);
  add("ln2b", {L, C}, true);
  add("fcw", {L, C, 4 * C}, true);
  add("fcb", {L, 4 * C}, true);
  add("fcprojw", {L, 4 * C, C}, true);
  add("fcprojb", {L, C}, true);
  add("lnfw", {C}, false);
  add("lnfb", {C}, false);
  if (c.scalar_head) {
    add("headw", {C}, false);
    add("headb", {1}, false);
  }
  return out.tensors;
}

inline std::size_t gpt_param_count(const GptConfig& c) { return gpt_host::param_count(gpt_param_layout(c)); }

// Views into a buffer of gpt_param_count(c) elements (parameters or their gradients).
template <class T>
GptTensors<T> gpt_tensors(T* base, const GptConfig& c) {
  const auto layout = gpt_param_layout(c);
  std::array<T*, 18> p{};
  for (std::size_t i = 0; i < layout.size(); ++i) p[i] = base + layout[i].offset;
  return gpt_host::views_of<GptTensors<T>>(p);
}

}  // namespace rlhf
