#pragma once
// GPT-2's initialisation from a seed, on the host, for both models (Gpt<T>::initialize and GptCuda's, which
// uploads the result): weights N(0, 0.02) (the two residual projections 0.02/√(2L)), biases 0, LayerNorm
// weights 1. One seed gives the same parameters on either model.
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "rlhf/core/error.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/models/gpt_host/config.hpp"
#include "rlhf/models/gpt_host/params.hpp"

namespace rlhf {

// Fills `params` (gpt_param_count(config) values, layout of params.hpp).
template <class T>
void gpt_initialize_parameters(std::span<T> params, const GptConfig& config, std::uint64_t seed) {
  require_size("rlhf::gpt_initialize_parameters", "params", params.size(), gpt_param_count(config),
               "gpt_param_count(config)");
  Rng rng(seed);
  const double std_w = 0.02, std_proj = 0.02 / std::sqrt(2.0 * double(config.layers));
  for (const auto& t : gpt_param_layout(config)) {
    T* p = params.data() + t.offset;
    const bool ln_weight = t.name == "ln1w" || t.name == "ln2w" || t.name == "lnfw";
    const bool bias = t.name.back() == 'b';
    const double sd = (t.name == "attprojw" || t.name == "fcprojw") ? std_proj : std_w;
    for (std::size_t i = 0; i < t.size; ++i) p[i] = ln_weight ? T(1) : bias ? T(0) : T(sd * rng.normal());
  }
}

// The same, as a new float32 buffer.
inline std::vector<float> gpt_initial_parameters(const GptConfig& config, std::uint64_t seed) {
  std::vector<float> params(gpt_param_count(config), 0.0f);
  gpt_initialize_parameters<float>(params, config, seed);
  return params;
}

}  // namespace rlhf
