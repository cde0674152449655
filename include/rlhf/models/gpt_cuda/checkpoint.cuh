#pragma once
// Checkpoints of the CUDA GPT: the CPU model's safetensors files (models/gpt/checkpoint.hpp: Hugging Face GPT-2
// names and layouts, config in __metadata__), so one file loads on either model. The tensor map and the config
// parsing are the CPU header's own (gpt_checkpoint_tensors, detail::gpt_checkpoint); this file only stages the
// parameters through host memory. Including it needs the Eigen headers (rlhf::eigen), as the CPU header does.
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "rlhf/io/safetensors.hpp"
#include "rlhf/models/gpt/checkpoint.hpp"
#include "rlhf/models/gpt_cuda/model.cuh"

namespace rlhf {

// Writes the parameters (float32) and the config; through a temporary file and a rename.
inline void save_checkpoint(const GptCuda& model, const std::filesystem::path& path) {
  const GptConfig& c = model.config();
  const std::vector<float> host = model.parameters_to_host();
  std::vector<io::TensorView> views;
  for (const auto& t : gpt_checkpoint_tensors(c))
    views.push_back({.name = t.name, .shape = t.shape, .data = host.data() + t.offset});
  io::save_safetensors(path, views, detail::gpt_checkpoint::metadata_of(c));
}

// Fills the model's parameters from a checkpoint with the checks of load_parameters(Gpt<T>&, ...): every
// tensor's shape against the model's config, every value finite; a file with a scalar head the model lacks is
// refused; a model with a head the file lacks keeps its own. On any error the model is left unchanged.
inline void load_parameters(GptCuda& model, const io::Safetensors& st) {
  const GptConfig& c = model.config();
  detail::gpt_checkpoint::check_file(st, c);
  const std::string p = detail::gpt_checkpoint::prefix_of(st);
  std::vector<float> host = model.parameters_to_host();  // keeps a head the file lacks
  for (const auto& t : gpt_checkpoint_tensors(c))
    if (st.contains(p + t.name))
      detail::gpt_checkpoint::read_tensor(st, p, t, std::span<float>(host.data() + t.offset, t.size));
  model.set_parameters(host);
}

// A model of the file's own config (metadata, else shapes).
inline GptCuda load_checkpoint_cuda(const std::filesystem::path& path, const GptCudaOptions& options = {}) {
  const auto st = io::Safetensors::load(path);
  const GptConfig config = detail::gpt_checkpoint::config_of(st);
  detail::gpt_checkpoint::check_file(st, config);  // before allocating the model: its size is now the file's
  GptCuda model(config, 0, options);
  load_parameters(model, st);
  return model;
}

// A model of the given config; the file's tensors must have its shapes.
inline GptCuda load_checkpoint_cuda(const std::filesystem::path& path, const GptConfig& config,
                                    const GptCudaOptions& options = {}) {
  const auto st = io::Safetensors::load(path);
  config.validate("rlhf::load_checkpoint_cuda: 'config'");
  detail::gpt_checkpoint::check_file(st, config);
  GptCuda model(config, 0, options);
  load_parameters(model, st);
  return model;
}

}  // namespace rlhf
