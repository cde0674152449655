#pragma once
// The command line of gpt_dpo and gpt_dpo_cuda. Parsed in options.cpp (g++, CLI11), so that nvcc never
// compiles the command-line library.
#include <cstddef>
#include <cstdint>
#include <string>

#include "rlhf/models/gpt_host/config.hpp"

namespace gpt_dpo {

struct Options {
  std::string device = "cpu";  // cpu | cuda
  int steps = 200;
  int log_every = 10;
  std::size_t batch = 16;       // B pairs per step
  std::size_t prompt_len = 6;   // P; sequences are 2P long
  std::size_t vocab = 32;       // V
  std::size_t channels = 64;    // C
  std::size_t layers = 2;       // L
  std::size_t heads = 4;        // NH
  float learning_rate = 1e-3f;
  float beta = 0.1f;
  std::uint64_t seed = 1;

  rlhf::GptConfig gpt() const {
    return {.vocab_size = vocab, .max_seq_len = 2 * prompt_len, .channels = channels, .layers = layers, .heads = heads};
  }
};

// Fills `o` from argv. Returns -1 to go on, or the code to exit with now (0 after --help, 2 on a bad argument,
// with one line on stderr naming the flag).
int parse_options(int argc, char** argv, Options& o);

}  // namespace gpt_dpo
