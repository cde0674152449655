#pragma once
// What every phase is handed: the sweep's settings, the output folder, the tokenizer and the VADER scorer once
// loaded, and the record of what each phase cost (seconds, or served from the cache).
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "rlhf/eval/vader.hpp"
#include "rlhf/io/tokenizer.hpp"
#include "rlhf/models/gpt/model.hpp"

namespace sentiment {

struct PhaseTiming {
  std::string phase;
  double seconds = 0;
  bool cached = false;  // skipped: its `done` marker was there
};

struct Context {
  SweepConfig config;
  std::filesystem::path out;  // the cache root, e.g. out/sentiment/reduced
  bool quiet = false;
  std::vector<PhaseTiming> timings;
  std::optional<rlhf::io::Tokenizer> tokenizer;  // set by the SFT phase
  std::optional<rlhf::eval::Vader> vader;

  void record(std::string phase, double seconds, bool cached) {
    timings.push_back({std::move(phase), seconds, cached});
  }
  std::size_t computed_phases() const {
    std::size_t n = 0;
    for (const auto& t : timings) n += !t.cached;
    return n;
  }
};

// A model about to be trained: bf16 products when the sweep asks for them (rlhf::Gpt::set_matmul_precision).
inline rlhf::Gpt<float>& for_training(const Context& ctx, rlhf::Gpt<float>& model) {
  if (ctx.config.bf16) model.set_matmul_precision(rlhf::gpt::MatmulPrecision::bf16);
  return model;
}

// Ground truth: VADER's compound score of the text, mapped to [0, 1].
inline double reward_of_text(const Context& ctx, const std::string& text) {
  return rlhf::eval::sentiment_reward(ctx.vader->compound(text));
}

}  // namespace sentiment
