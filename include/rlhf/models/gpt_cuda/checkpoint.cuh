#pragma once
// Checkpoints of the CUDA GPT: the CPU model's safetensors files (Hugging Face GPT-2 names and layouts, config in
// __metadata__), so one file loads on either model. The format, the tensor map, the config parsing and the checks
// are the host code both models share (models/gpt_host/checkpoint.hpp); this file only stages the parameters
// through host memory. It needs no Eigen headers.
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "rlhf/io/safetensors.hpp"
#include "rlhf/models/gpt_cuda/model.cuh"
#include "rlhf/models/gpt_host/checkpoint.hpp"
#include "rlhf/models/gpt_host/config.hpp"

namespace rlhf {

// Writes the parameters (float32) and the config; through a temporary file and a rename. Refuses NaN and Inf
// (value_error naming the tensor), writing nothing, as save_checkpoint(const Gpt<T>&, ...) does.
inline void save_checkpoint(const GptCuda& model, const std::filesystem::path& path) {
  const std::vector<float> host = model.parameters_to_host();
  detail::gpt_checkpoint::save(model.config(), host.data(), path);
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
  GptCuda model(detail::gpt_checkpoint::checked_config_of(st), 0, options);
  load_parameters(model, st);
  return model;
}

// A model of the given config; the file's tensors must have its shapes.
inline GptCuda load_checkpoint_cuda(const std::filesystem::path& path, const GptConfig& config,
                                    const GptCudaOptions& options = {}) {
  const auto st = io::Safetensors::load(path);
  detail::gpt_checkpoint::check_config(st, config, "rlhf::load_checkpoint_cuda");
  GptCuda model(config, 0, options);
  load_parameters(model, st);
  return model;
}

}  // namespace rlhf
