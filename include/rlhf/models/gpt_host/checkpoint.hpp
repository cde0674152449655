#pragma once
// GPT checkpoints in the safetensors format, under Hugging Face's GPT-2 tensor names and layouts, so a GPT-2
// checkpoint a user brings (GPT2Model's names, or GPT2LMHeadModel's with the "transformer." prefix) loads as
// it is, and ours load in Python with safetensors/transformers. This is the host side that both models' loaders
// share (models/gpt/checkpoint.hpp for Gpt<T>, models/gpt_cuda/checkpoint.cuh for GptCuda), so one file loads
// on either model; it needs no Eigen and no CUDA.
//
//   wte.weight [V, C]   wpe.weight [T_max, C]   ln_f.weight/bias [C]
//   h.{i}.ln_1.weight/bias [C]              h.{i}.ln_2.weight/bias [C]
//   h.{i}.attn.c_attn.weight [C, 3C] + bias [3C]     h.{i}.attn.c_proj.weight [C, C] + bias [C]
//   h.{i}.mlp.c_fc.weight [C, 4C] + bias [4C]        h.{i}.mlp.c_proj.weight [4C, C] + bias [C]
//   score.weight [1, C], score.bias [1]     (the scalar head; HF's GPT2ForSequenceClassification name)
//
// HF's Conv1D stores its weight [in, out], which is our layout too (params.hpp), so no tensor is transposed:
// gpt_checkpoint_tensors() below is the one place that maps names and layouts. The config goes in
// __metadata__ (HF's GPT2Config names); a file without it (an HF export) gets V, T_max, C, L and the head
// from its shapes and NH = C / 64 (every GPT-2 size uses 64-wide heads), or pass the config explicitly.
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "rlhf/core/error.hpp"
#include "rlhf/io/safetensors.hpp"
#include "rlhf/models/gpt_host/config.hpp"
#include "rlhf/models/gpt_host/params.hpp"

namespace rlhf {

// One tensor of a checkpoint: HF name, HF shape, and the slice of our parameter buffer it fills.
struct GptCheckpointTensor {
  std::string name;
  std::vector<std::size_t> shape;
  std::size_t offset = 0, size = 0;
};

inline std::vector<GptCheckpointTensor> gpt_checkpoint_tensors(const GptConfig& c) {
  std::map<std::string, GptParamTensor> ours;
  for (auto& t : gpt_param_layout(c)) ours[t.name] = t;
  const std::size_t C = c.channels;
  std::vector<GptCheckpointTensor> out;
  const auto whole = [&](const char* hf, const char* name, std::vector<std::size_t> shape) {
    out.push_back({hf, std::move(shape), ours[name].offset, ours[name].size});
  };
  whole("wte.weight", "wte", {c.vocab_size, C});
  whole("wpe.weight", "wpe", {c.max_seq_len, C});
  const struct {
    const char *hf, *name;
    std::vector<std::size_t> shape;
  } per_layer[] = {{"ln_1.weight", "ln1w", {C}},          {"ln_1.bias", "ln1b", {C}},
                   {"attn.c_attn.weight", "qkvw", {C, 3 * C}}, {"attn.c_attn.bias", "qkvb", {3 * C}},
                   {"attn.c_proj.weight", "attprojw", {C, C}}, {"attn.c_proj.bias", "attprojb", {C}},
                   {"ln_2.weight", "ln2w", {C}},          {"ln_2.bias", "ln2b", {C}},
                   {"mlp.c_fc.weight", "fcw", {C, 4 * C}},     {"mlp.c_fc.bias", "fcb", {4 * C}},
                   {"mlp.c_proj.weight", "fcprojw", {4 * C, C}}, {"mlp.c_proj.bias", "fcprojb", {C}}};
  for (std::size_t l = 0; l < c.layers; ++l)
    for (const auto& t : per_layer) {
      const std::size_t slice = ours[t.name].size / c.layers;
      out.push_back({"h." + std::to_string(l) + "." + t.hf, t.shape, ours[t.name].offset + l * slice, slice});
    }
  whole("ln_f.weight", "lnfw", {C});
  whole("ln_f.bias", "lnfb", {C});
  if (c.scalar_head) {
    whole("score.weight", "headw", {1, C});
    whole("score.bias", "headb", {1});
  }
  return out;
}

namespace detail::gpt_checkpoint {

inline std::map<std::string, std::string> metadata_of(const GptConfig& c) {
  char eps[32];
  std::snprintf(eps, sizeof eps, "%.9g", double(c.layer_norm_eps));
  return {{"format", "pt"},
          {"model_type", "gpt2"},
          {"vocab_size", std::to_string(c.vocab_size)},
          {"n_positions", std::to_string(c.max_seq_len)},
          {"n_embd", std::to_string(c.channels)},
          {"n_layer", std::to_string(c.layers)},
          {"n_head", std::to_string(c.heads)},
          {"scalar_head", c.scalar_head ? "1" : "0"},
          {"layer_norm_epsilon", eps}};
}

inline std::string where(const io::Safetensors& st) { return "rlhf::load_checkpoint '" + st.path().string() + "': "; }

inline std::size_t to_size(const io::Safetensors& st, const std::string& key, const std::string& value) {
  std::size_t v = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec == std::errc::result_out_of_range)
    fail<io_error>(where(st), "metadata '", key, "' = '", io::detail::clip(value), "' is too large");
  if (ec != std::errc() || end != value.data() + value.size() || value.empty())
    fail<io_error>(where(st), "metadata '", key, "' = '", io::detail::clip(value), "' is not a non-negative integer");
  return v;
}

inline float to_float(const io::Safetensors& st, const std::string& key, const std::string& value) {
  float v = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || end != value.data() + value.size() || value.empty() || !std::isfinite(v))
    fail<io_error>(where(st), "metadata '", key, "' = '", io::detail::clip(value), "' is not a finite float32 number");
  return v;
}

inline bool to_flag(const io::Safetensors& st, const std::string& key, const std::string& value) {
  if (value != "0" && value != "1")
    fail<io_error>(where(st), "metadata '", key, "' = '", io::detail::clip(value), "' is not 0 or 1");
  return value == "1";
}

inline std::string prefix_of(const io::Safetensors& st) {
  if (st.contains("wte.weight")) return "";
  if (st.contains("transformer.wte.weight")) return "transformer.";
  fail<io_error>("rlhf::load_checkpoint '", st.path().string(),
                 "': no 'wte.weight' (or 'transformer.wte.weight'): not a GPT-2 checkpoint");
}

inline std::size_t dim(const io::Safetensors& st, const std::string& name, std::size_t rank, std::size_t i) {
  const auto& info = st.info(name);
  if (info.shape.size() != rank)
    fail<io_error>("rlhf::load_checkpoint '", st.path().string(), "': tensor '", name, "' has rank ",
                   info.shape.size(), " but ", rank, " was expected");
  return info.shape[i];
}

// The config a file describes: from __metadata__ where present, else from its shapes.
inline GptConfig config_of(const io::Safetensors& st) {
  const auto& m = st.metadata();
  const std::string p = prefix_of(st);
  const auto get = [&](const char* key, std::size_t fallback) {
    const auto it = m.find(key);
    return it == m.end() ? fallback : to_size(st, key, it->second);
  };
  GptConfig c;
  c.vocab_size = get("vocab_size", dim(st, p + "wte.weight", 2, 0));
  c.channels = get("n_embd", dim(st, p + "wte.weight", 2, 1));
  c.max_seq_len = get("n_positions", dim(st, p + "wpe.weight", 2, 0));
  std::size_t layers = 0;
  while (st.contains(p + "h." + std::to_string(layers) + ".ln_1.weight")) ++layers;
  c.layers = get("n_layer", layers);
  if (m.count("n_head")) {
    c.heads = get("n_head", 0);
  } else if (c.channels % 64 == 0) {
    c.heads = c.channels / 64;
  } else {
    fail<config_error>("rlhf::load_checkpoint '", st.path().string(), "': no 'n_head' in the metadata and n_embd = ",
                       c.channels, " is not a multiple of GPT-2's head size 64; pass the GptConfig explicitly");
  }
  const auto head = m.find("scalar_head");
  c.scalar_head = head != m.end() ? to_flag(st, "scalar_head", head->second) : st.contains(p + "score.weight");
  if (const auto eps = m.find("layer_norm_epsilon"); eps != m.end())
    c.layer_norm_eps = to_float(st, "layer_norm_epsilon", eps->second);
  c.validate((where(st) + "config").c_str());
  return c;
}

// Everything about the file that can be checked before a model of config `c` is allocated: the layer count,
// the head, n_head, and every tensor's presence, shape and dtype. A file that passes holds all the model's
// parameters, so their count is bounded by the file's size.
inline void check_file(const io::Safetensors& st, const GptConfig& c) {
  const std::string p = prefix_of(st);
  if (st.contains(p + "h." + std::to_string(c.layers) + ".ln_1.weight"))
    fail<config_error>(where(st), "the file has more than the config's ", c.layers, " layers");
  if (!c.scalar_head && st.contains(p + "score.weight"))
    fail<config_error>(where(st), "the file has a scalar head ('score.weight') but the config has none");
  const auto& m = st.metadata();
  if (const auto it = m.find("n_head"); it != m.end() && to_size(st, "n_head", it->second) != c.heads)
    fail<config_error>(where(st), "the file's n_head is ", it->second, " but the config's heads is ", c.heads);
  for (const auto& t : gpt_checkpoint_tensors(c)) {
    if (!st.contains(p + t.name)) {
      if (t.name.rfind("score.", 0) == 0) continue;  // a model with a head the file lacks keeps its own
      fail<io_error>(where(st), "tensor '", p + t.name, "' is missing");
    }
    const auto& info = st.info(p + t.name);
    if (info.shape != t.shape)
      fail<io_error>(where(st), "tensor '", p + t.name, "' has shape ", io::detail::shape_str(info.shape), " but ",
                     io::detail::shape_str(t.shape), " was expected");
    if (info.dtype != io::Dtype::f32 && info.dtype != io::Dtype::f16 && info.dtype != io::Dtype::bf16 &&
        info.dtype != io::Dtype::f64)
      fail<io_error>(where(st), "tensor '", p + t.name, "' has dtype ", io::dtype_name(info.dtype),
                     "; only F32, F16, BF16 and F64 hold weights");
  }
}

// Reads tensor `t` (present in the file) into `out`, refusing NaN and ±Inf (an F64 value beyond float32's
// range becomes Inf here, and is refused too).
inline void read_tensor(const io::Safetensors& st, const std::string& prefix, const GptCheckpointTensor& t,
                        std::span<float> out) {
  st.read_f32(prefix + t.name, t.shape, out);
  for (std::size_t i = 0; i < out.size(); ++i)
    if (!std::isfinite(out[i]))
      fail<value_error>(where(st), "tensor '", prefix + t.name, "' of shape ", io::detail::shape_str(t.shape),
                        " holds ", out[i], " at flat index ", i, "; a checkpoint's weights must be finite");
}

// The config of the file `st` to load: its own (config_of), checked against the file, before a model of it is
// allocated; its size is then the file's.
inline GptConfig checked_config_of(const io::Safetensors& st) {
  const GptConfig config = config_of(st);
  check_file(st, config);
  return config;
}

// The given config of a model to load from `st` (fn names the loader), checked on its own and against the file.
inline void check_config(const io::Safetensors& st, const GptConfig& config, const char* fn) {
  config.validate((std::string(fn) + ": 'config'").c_str());
  check_file(st, config);
}

// Writes `params` (float32, gpt_param_count(c) values on the host) and the config, through a temporary file and a
// rename; refuses NaN and Inf, writing nothing.
inline void save(const GptConfig& c, const float* params, const std::filesystem::path& path) {
  std::vector<io::TensorView> views;
  for (const auto& t : gpt_checkpoint_tensors(c)) {
    std::size_t bad = 0;  // never write NaN or Inf (a double model's values past float's range included)
    for (std::size_t i = 0; i < t.size; ++i) bad += std::isfinite(params[t.offset + i]) ? 0 : 1;
    if (bad > 0)
      fail<value_error>("rlhf::save_checkpoint: tensor '", t.name, "' holds ", bad, " NaN or Inf value(s) among ",
                        t.size, " (as float32); nothing is written to ", path);
    views.push_back({.name = t.name, .shape = t.shape, .data = params + t.offset});
  }
  io::save_safetensors(path, views, metadata_of(c));
}

}  // namespace detail::gpt_checkpoint

}  // namespace rlhf
