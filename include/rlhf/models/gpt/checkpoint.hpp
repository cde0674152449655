#pragma once
// Checkpoints of the CPU GPT: safetensors files under Hugging Face's GPT-2 names and layouts, the config in
// __metadata__ (the format, the tensor map and the checks: models/gpt_host/checkpoint.hpp, shared with the CUDA
// model, so one file loads on either). A non-float model is saved and loaded through float32.
#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "rlhf/io/safetensors.hpp"
#include "rlhf/models/gpt/model.hpp"
#include "rlhf/models/gpt_host/checkpoint.hpp"
#include "rlhf/models/gpt_host/config.hpp"

namespace rlhf {

// Writes the parameters (as float32) and the config; through a temporary file and a rename. Refuses NaN and Inf
// (value_error naming the tensor), writing nothing.
template <class T>
void save_checkpoint(const Gpt<T>& model, const std::filesystem::path& path) {
  const GptConfig& c = model.config();
  const auto params = model.parameters();
  std::vector<float> converted;  // only for non-float models
  const float* base = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    base = params.data();
  } else {
    converted.assign(params.begin(), params.end());
    base = converted.data();
  }
  detail::gpt_checkpoint::save(c, base, path);
}

// Fills `model`'s parameters from a checkpoint, checking every tensor's shape against the model's config.
// A file with a scalar head the model lacks is refused; a model with a head the file lacks keeps its own
// (so a reward model starts from a language model's checkpoint).
// Every tensor is checked for NaN and ±Inf (value_error naming it). The file's layout is checked before any
// parameter is written; a non-finite value leaves the tensors before it already overwritten.
template <class T>
void load_parameters(Gpt<T>& model, const io::Safetensors& st) {
  const GptConfig& c = model.config();
  detail::gpt_checkpoint::check_file(st, c);
  const std::string p = detail::gpt_checkpoint::prefix_of(st);
  std::vector<float> buffer;
  auto params = model.parameters();
  for (const auto& t : gpt_checkpoint_tensors(c)) {
    if (!st.contains(p + t.name)) continue;  // only an absent head, after check_file
    buffer.resize(t.size);
    detail::gpt_checkpoint::read_tensor(st, p, t, buffer);
    std::copy(buffer.begin(), buffer.end(), params.begin() + std::ptrdiff_t(t.offset));
  }
}

// A model of the file's own config (metadata, else shapes; see gpt_host/checkpoint.hpp).
template <class T = float>
Gpt<T> load_checkpoint(const std::filesystem::path& path) {
  const auto st = io::Safetensors::load(path);
  Gpt<T> model(detail::gpt_checkpoint::checked_config_of(st));
  load_parameters(model, st);
  return model;
}

// A model of the given config; the file's tensors must have its shapes.
template <class T = float>
Gpt<T> load_checkpoint(const std::filesystem::path& path, const GptConfig& config) {
  const auto st = io::Safetensors::load(path);
  detail::gpt_checkpoint::check_config(st, config, "rlhf::load_checkpoint");
  Gpt<T> model(config);
  load_parameters(model, st);
  return model;
}

}  // namespace rlhf
