#pragma once
// The sizes of a GPT-2 model. Defaults are GPT-2 small (124M), as Hugging Face's GPT2Config names them:
// vocab_size, n_positions, n_embd, n_layer, n_head.
#include <cstddef>

#include "rlhf/core/error.hpp"

namespace rlhf {

struct GptConfig {
  std::size_t vocab_size = 50257;   // V
  std::size_t max_seq_len = 1024;   // T_max: learned positions (n_positions)
  std::size_t channels = 768;       // C (n_embd)
  std::size_t layers = 12;          // L (n_layer)
  std::size_t heads = 12;           // NH (n_head); C must be a multiple of NH
  bool scalar_head = false;         // add a Linear C → 1 on the final hidden state (reward model, value function)
  float layer_norm_eps = 1e-5f;     // GPT-2's layer_norm_epsilon

  std::size_t head_size() const { return channels / heads; }  // hs = C / NH

  void validate(const char* fn = "rlhf::GptConfig") const {
    require_positive(fn, "vocab_size", static_cast<double>(vocab_size));
    require_positive(fn, "max_seq_len", static_cast<double>(max_seq_len));
    require_positive(fn, "channels", static_cast<double>(channels));
    require_positive(fn, "layers", static_cast<double>(layers));
    require_positive(fn, "heads", static_cast<double>(heads));
    require_positive(fn, "layer_norm_eps", layer_norm_eps);
    if (channels % heads != 0)
      fail<config_error>(fn, ": channels (", channels, ") must be a multiple of heads (", heads, ")");
    if (vocab_size > 0x7fffffffULL) fail<config_error>(fn, ": vocab_size ", vocab_size, " does not fit int32 ids");
  }

  bool operator==(const GptConfig&) const = default;
};

}  // namespace rlhf
