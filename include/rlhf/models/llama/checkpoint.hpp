#pragma once
// Hugging Face model folders for the Llama: config.json (hf_config.hpp) and the weights under HF's names
// (checkpoint_map.hpp), in model.safetensors or in shards listed by model.safetensors.index.json. Tensors may be
// F32, BF16, F16 or F64; each is converted to float32 on load (BF16 and F16 exactly; F64 rounded), then to the
// model's T. A folder is checked against its config before a model is allocated: every expected tensor present
// with its exact shape, nothing unexpected (each refusal names the tensor), every value finite.
//
//   auto policy = rlhf::load_llama("SmolLM2-135M");                       // Llama<float> of the folder's config
//   auto critic = rlhf::load_llama("SmolLM2-135M", {.scalar_head = true});  // + a score head (zeros if absent)
//   rlhf::save_llama(policy, "out/");                                      // config.json + model.safetensors (F32)
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/core/error.hpp"
#include "rlhf/io/atomic_file.hpp"
#include "rlhf/io/json_file.hpp"
#include "rlhf/io/safetensors.hpp"
#include "rlhf/models/llama/checkpoint_map.hpp"
#include "rlhf/models/llama/config.hpp"
#include "rlhf/models/llama/hf_config.hpp"
#include "rlhf/models/llama/model.hpp"

namespace rlhf {

struct LlamaLoadOptions {
  // Give the model a scalar head (reward model, critic). A folder with score.weight gets one anyway; without
  // it the head starts at zero.
  bool scalar_head = false;
};

namespace detail::llama_checkpoint {

// The weights of a folder: one safetensors file or the shards of an index, by tensor name.
class Weights {
 public:
  explicit Weights(const std::filesystem::path& folder) : folder_(folder) {
    namespace fs = std::filesystem;
    if (fs::exists(folder / "model.safetensors")) {
      files_.push_back(io::Safetensors::load(folder / "model.safetensors"));
      for (const auto& t : files_.back().tensors()) where_[t.name] = 0;
      return;
    }
    const fs::path index = folder / "model.safetensors.index.json";
    if (!fs::exists(index))
      fail<io_error>("rlhf::load_llama '", folder.string(), "': neither model.safetensors nor ",
                     "model.safetensors.index.json is there");
    const auto doc = io::read_json_file(index);
    const auto map = doc.find("weight_map");
    if (map == doc.end() || !map->is_object())
      fail<io_error>("rlhf::load_llama '", index.string(), "': no 'weight_map' object");
    std::map<std::string, std::size_t> file_of;
    for (const auto& [name, file] : map->items()) {
      if (!file.is_string()) fail<io_error>("rlhf::load_llama '", index.string(), "': '", name, "' maps to no file name");
      const std::string f = file.get<std::string>();
      if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
        fail<io_error>("rlhf::load_llama '", index.string(), "': shard '", f, "' is not a file name in the folder");
      if (!file_of.count(f)) {
        file_of[f] = files_.size();
        files_.push_back(io::Safetensors::load(folder / f));
      }
      const io::Safetensors& shard = files_[file_of[f]];
      if (!shard.contains(name))
        fail<io_error>("rlhf::load_llama '", index.string(), "': tensor '", name, "' is not in its shard '", f, "'");
      where_[name] = file_of[f];
    }
  }

  bool contains(const std::string& name) const { return where_.count(name) > 0; }
  const io::Safetensors& file_of(const std::string& name) const { return files_[where_.at(name)]; }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, file] : where_) out.push_back(name);
    return out;
  }
  std::string where() const { return "rlhf::load_llama '" + folder_.string() + "': "; }

 private:
  std::filesystem::path folder_;
  std::vector<io::Safetensors> files_;
  std::map<std::string, std::size_t> where_;  // tensor name → index into files_
};

// Old exports carry the rotary tables as buffers; they are recomputed here, and a tied model may still carry
// its lm_head: neither is a weight to load.
inline bool ignorable(const std::string& name, const LlamaConfig& c) {
  const std::string suffix = "rotary_emb.inv_freq";
  if (name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) return true;
  return c.tie_word_embeddings && name == "lm_head.weight";
}

// Every expected tensor present with its shape and a weight dtype; nothing unexpected.
inline void check(const Weights& w, const LlamaConfig& c, bool head_optional) {
  std::set<std::string> expected;
  for (const auto& t : llama_checkpoint_tensors(c)) {
    expected.insert(t.name);
    if (!w.contains(t.name)) {
      if (t.name == "score.weight" && head_optional) continue;
      fail<config_error>(w.where(), "tensor '", t.name, "' is missing (config: ", c.layers, " layers, model_type ",
                         c.model_type, ")");
    }
    const auto& info = w.file_of(t.name).info(t.name);
    if (info.shape != t.shape)
      fail<config_error>(w.where(), "tensor '", t.name, "' has shape ", io::detail::shape_str(info.shape),
                         " but config.json implies ", io::detail::shape_str(t.shape));
    if (info.dtype != io::Dtype::f32 && info.dtype != io::Dtype::bf16 && info.dtype != io::Dtype::f16 &&
        info.dtype != io::Dtype::f64)
      fail<io_error>(w.where(), "tensor '", t.name, "' has dtype ", io::dtype_name(info.dtype),
                     "; only F32, BF16, F16 and F64 hold weights");
  }
  for (const auto& name : w.names())
    if (!expected.count(name) && !ignorable(name, c))
      fail<config_error>(w.where(), "tensor '", name, "' is not a weight of the config's model (",
                         c.layers, " layers, model_type ", c.model_type,
                         c.tie_word_embeddings ? ", tied" : ", untied", c.qkv_bias ? ", q/k/v biases" : "",
                         c.qk_norm ? ", q/k norms" : "", ")");
}

// Reads every tensor the file has into params (T), transposing nn.Linear weights; refuses NaN and ±Inf.
template <class T>
void read(const Weights& w, const LlamaConfig& c, std::span<T> params) {
  std::vector<float> buffer;
  for (const auto& t : llama_checkpoint_tensors(c)) {
    if (!w.contains(t.name)) continue;  // only an absent head, after check()
    buffer.resize(t.size);
    w.file_of(t.name).read_f32(t.name, t.shape, buffer);
    for (std::size_t i = 0; i < t.size; ++i)
      if (!std::isfinite(buffer[i]))
        fail<value_error>(w.where(), "tensor '", t.name, "' holds ", buffer[i], " at flat index ", i,
                          "; a checkpoint's weights must be finite");
    T* out = params.data() + t.offset;
    if (!t.transposed) {
      std::copy(buffer.begin(), buffer.end(), out);
      continue;
    }
    const std::size_t rows = t.shape[0], cols = t.shape[1];  // HF [out, in] → ours [in, out]
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t k = 0; k < cols; ++k) out[k * rows + r] = T(buffer[r * cols + k]);
  }
}

}  // namespace detail::llama_checkpoint

// The config of an HF folder's config.json; scalar_head from options or the folder's score.weight.
inline LlamaConfig load_llama_config(const std::filesystem::path& folder, const LlamaLoadOptions& options = {}) {
  const auto path = folder / "config.json";
  LlamaConfig c = llama_config_from_json(io::read_json_file(path), "rlhf::load_llama '" + path.string() + "'");
  const detail::llama_checkpoint::Weights w(folder);
  c.scalar_head = options.scalar_head || w.contains("score.weight");
  return c;
}

// Overwrites `model`'s parameters from an HF folder whose tensors match the model's config (checked first; a
// missing score.weight leaves the model's head as it is).
template <class T>
void load_llama_parameters(Llama<T>& model, const std::filesystem::path& folder) {
  const detail::llama_checkpoint::Weights w(folder);
  detail::llama_checkpoint::check(w, model.config(), true);
  detail::llama_checkpoint::read(w, model.config(), model.parameters());
}

// A model of an HF folder's config with its weights. A scalar head absent from the folder starts at zero.
template <class T = float>
Llama<T> load_llama(const std::filesystem::path& folder, const LlamaLoadOptions& options = {}) {
  const LlamaConfig c = load_llama_config(folder, options);
  const detail::llama_checkpoint::Weights w(folder);
  detail::llama_checkpoint::check(w, c, true);
  Llama<T> model(c);
  if (c.scalar_head && !w.contains("score.weight"))
    std::fill_n(model.parameter_tensors().score, c.hidden_size, T(0));
  detail::llama_checkpoint::read(w, c, model.parameters());
  return model;
}

// Writes an HF folder (created if absent): config.json and model.safetensors, F32 under HF's names, each file
// through a temporary and a rename. Refuses NaN and Inf (value_error naming the tensor), writing nothing.
template <class T>
void save_llama(const Llama<T>& model, const std::filesystem::path& folder) {
  const LlamaConfig& c = model.config();
  if (c.model_type != "qwen2" && c.qkv_bias != c.o_bias)
    fail<config_error>("rlhf::save_llama: model_type '", c.model_type, "' has one attention_bias for q/k/v and o_proj,",
                       " but this model has qkv_bias ", c.qkv_bias, " and o_bias ", c.o_bias);
  const auto params = model.parameters();
  const auto tensors = llama_checkpoint_tensors(c);
  std::vector<std::vector<float>> data(tensors.size());
  std::vector<io::TensorView> views;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    auto& d = data[i];
    d.resize(t.size);
    const T* in = params.data() + t.offset;
    for (std::size_t j = 0; j < t.size; ++j) {
      const std::size_t from = t.transposed ? (j % t.shape[1]) * t.shape[0] + j / t.shape[1] : j;
      d[j] = float(in[from]);
      if (!std::isfinite(d[j]))
        fail<value_error>("rlhf::save_llama: tensor '", t.name, "' holds ", d[j], " (as float32) at flat index ", j,
                          "; nothing is written to ", folder.string());
    }
    views.push_back({.name = t.name, .shape = t.shape, .data = d.data()});
  }
  std::filesystem::create_directories(folder);
  io::save_safetensors(folder / "model.safetensors", views, {{"format", "pt"}});
  io::write_file_atomic(folder / "config.json", llama_config_to_json(c).dump(2) + "\n");
}

}  // namespace rlhf
