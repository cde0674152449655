#pragma once
// The settings of LoRA adapters, under PEFT's LoraConfig names (docs/models/lora.md has the TRL and PEFT keys
// side by side). Each adapted linear layer computes
//
//   y = x W + b + scale · dropout(x) Aᵀ Bᵀ        A [r, in], B [out, r] (PEFT's lora_A / lora_B layouts)
//   scale = lora_alpha / r,  or lora_alpha / √r with use_rslora
//
// with B zero at the start (the adapted model starts as the base model) and A drawn as PEFT draws it
// (kaiming-uniform with a = √5: U(−1/√in, 1/√in)).
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "rlhf/core/error.hpp"

namespace rlhf {

struct LoraSettings {
  std::size_t r = 8;          // rank
  double lora_alpha = 8;      // scale numerator
  double lora_dropout = 0;    // dropout on the adapter's input while training, in [0, 1)
  bool use_rslora = false;    // scale α/√r (rank-stabilised) instead of α/r
  // PEFT's names, matched as PEFT does: a name matches a module whose path is the name or ends with "." + name
  // (so GPT-2's "c_proj" names attn.c_proj and mlp.c_proj, "attn.c_proj" only the first), or "all-linear"
  // (every projection of the blocks). Empty: the family's PEFT default (q_proj, v_proj; GPT-2: c_attn).
  std::vector<std::string> target_modules;
  // Modules trained in full beside the adapters: "score", the scalar head of a reward or value model. The
  // adapters-off model (the reference) keeps the original head.
  std::vector<std::string> modules_to_save;
  std::string bias = "none";  // only "none": no bias is trained
  // Copied into adapter_config.json as they are.
  std::string task_type = "CAUSAL_LM";
  std::string base_model_name_or_path;

  double scale() const { return use_rslora ? lora_alpha / std::sqrt(double(r)) : lora_alpha / double(r); }

  void validate(const char* fn = "rlhf::LoraSettings") const {
    if (r == 0 || r > max_rank) fail<config_error>(fn, ": r must be in [1, ", max_rank, "] (got ", r, ")");
    if (!std::isfinite(lora_alpha) || lora_alpha <= 0)
      fail<config_error>(fn, ": lora_alpha must be a positive finite number (got ", lora_alpha, ")");
    if (!(lora_dropout >= 0 && lora_dropout < 1))
      fail<config_error>(fn, ": lora_dropout must be in [0, 1) (got ", lora_dropout, ")");
    if (bias != "none")
      fail<config_error>(fn, ": bias '", bias, "' is not supported; only 'none' (the adapters train no bias)");
  }

  static constexpr std::size_t max_rank = 4096;
};

}  // namespace rlhf
