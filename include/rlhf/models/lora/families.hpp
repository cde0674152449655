#pragma once
// What LoRA needs to know of each model family, in one place: the projections a hook site names (the module
// order of the model's set_linear_hook), their PEFT module paths and shapes, where their frozen weights live
// (our layout, [in, out]), and the scalar head that modules_to_save may name.
//
//   Llama family (PEFT paths model.layers.{l}.self_attn.{q,k,v,o}_proj, model.layers.{l}.mlp.{gate,up,down}_proj):
//     module 0 … 6 = q_proj [C → NH·hd], k_proj, v_proj [C → KVH·hd], o_proj [NH·hd → C], gate_proj, up_proj
//     [C → F], down_proj [F → C]; nn.Linear: fan_in_fan_out false.
//   GPT-2 (PEFT paths transformer.h.{l}.attn.c_attn, transformer.h.{l}.attn.c_proj, transformer.h.{l}.mlp.c_fc,
//     transformer.h.{l}.mlp.c_proj): module 0 … 3 = c_attn [C → 3C], attn.c_proj [C → C], c_fc [C → 4C],
//     mlp.c_proj [4C → C]; Conv1D stores [in, out]: fan_in_fan_out true.
//   Scalar head: "score" (score.weight [1, C]; GPT-2's also score.bias [1]).
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "rlhf/models/gpt/model.hpp"
#include "rlhf/models/llama/model.hpp"

namespace rlhf {

template <class Model>
struct LoraFamily;  // specialised for each family below

template <class T>
struct LoraFamily<Llama<T>> {
  static constexpr bool fan_in_fan_out = false;
  static std::vector<std::string> module_names() {
    return {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  }
  static std::vector<std::string> default_targets() { return {"q_proj", "v_proj"}; }  // PEFT's for llama, qwen2
  static std::size_t layers(const Llama<T>& m) { return m.config().layers; }
  static std::string module_path(std::size_t module, std::size_t layer) {
    return "model.layers." + std::to_string(layer) + (module < 4 ? ".self_attn." : ".mlp.") + module_names()[module];
  }
  static std::pair<std::size_t, std::size_t> in_out(const Llama<T>& m, std::size_t module) {
    const auto& c = m.config();
    const std::size_t C = c.hidden_size, Q = c.q_size(), K = c.kv_size(), F = c.intermediate_size;
    const std::pair<std::size_t, std::size_t> shapes[] = {{C, Q}, {C, K}, {C, K}, {Q, C}, {C, F}, {C, F}, {F, C}};
    return shapes[module];
  }
  // The frozen weight [in, out] of a site.
  template <class M>
  static auto* weight(M& m, std::size_t module, std::size_t layer) {
    const auto p = m.parameter_tensors();
    const auto [in, out] = in_out(m, module);
    decltype(p.qw) w[] = {p.qw, p.kw, p.vw, p.ow, p.gate, p.up, p.down};
    return w[module] + layer * in * out;
  }
  // The scalar head: its values, its gradient while frozen, and its tensors under HF's names and shapes.
  static bool has_head(const Llama<T>& m) { return m.config().scalar_head; }
  static std::size_t head_size(const Llama<T>& m) { return m.config().hidden_size; }
  static T* head(Llama<T>& m) { return m.parameter_tensors().score; }
  static T* head_gradient(Llama<T>& m) { return m.gradient_tensors().score; }
  static std::vector<std::pair<std::string, std::vector<std::size_t>>> head_tensors(const Llama<T>& m) {
    return {{"score.weight", {1, m.config().hidden_size}}};
  }
};

template <class T>
struct LoraFamily<Gpt<T>> {
  static constexpr bool fan_in_fan_out = true;
  static std::vector<std::string> module_names() { return {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}; }
  static std::vector<std::string> default_targets() { return {"c_attn"}; }  // PEFT's for gpt2
  static std::size_t layers(const Gpt<T>& m) { return m.config().layers; }
  static std::string module_path(std::size_t module, std::size_t layer) {
    return "transformer.h." + std::to_string(layer) + "." + module_names()[module];
  }
  static std::pair<std::size_t, std::size_t> in_out(const Gpt<T>& m, std::size_t module) {
    const std::size_t C = m.config().channels;
    const std::pair<std::size_t, std::size_t> shapes[] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}};
    return shapes[module];
  }
  template <class M>
  static auto* weight(M& m, std::size_t module, std::size_t layer) {
    const auto p = m.parameter_tensors();
    const auto [in, out] = in_out(m, module);
    decltype(p.qkvw) w[] = {p.qkvw, p.attprojw, p.fcw, p.fcprojw};
    return w[module] + layer * in * out;
  }
  static bool has_head(const Gpt<T>& m) { return m.config().scalar_head; }
  static std::size_t head_size(const Gpt<T>& m) { return m.config().channels + 1; }  // headw, headb: contiguous
  static T* head(Gpt<T>& m) { return m.parameter_tensors().headw; }
  static T* head_gradient(Gpt<T>& m) { return m.gradient_tensors().headw; }
  static std::vector<std::pair<std::string, std::vector<std::size_t>>> head_tensors(const Gpt<T>& m) {
    return {{"score.weight", {1, m.config().channels}}, {"score.bias", {1}}};
  }
};

}  // namespace rlhf
