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
    // Upper bounds keep every product of the parameter layout (params.hpp) far from overflowing size_t, so a
    // size read from a file cannot wrap into a small allocation.
    at_most(fn, "vocab_size", vocab_size, max_vocab_size);
    at_most(fn, "max_seq_len", max_seq_len, max_max_seq_len);
    at_most(fn, "channels", channels, max_channels);
    at_most(fn, "layers", layers, max_layers);
    if (channels % heads != 0)
      fail<config_error>(fn, ": channels (", channels, ") must be a multiple of heads (", heads, ")");
  }

  static constexpr std::size_t max_vocab_size = std::size_t(1) << 24, max_max_seq_len = std::size_t(1) << 20,
                               max_channels = std::size_t(1) << 16, max_layers = 1024;

  bool operator==(const GptConfig&) const = default;

 private:
  static void at_most(const char* fn, const char* setting, std::size_t v, std::size_t max) {
    if (v > max) fail<config_error>(fn, ": ", setting, " = ", v, " is above the supported maximum ", max);
  }
};

}  // namespace rlhf
