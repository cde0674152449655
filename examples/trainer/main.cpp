// rlhf-train {sft,dpo,reward,ppo,unlikelihood} [--config FILE.json] [--key value ...]: the library's methods on
// JSON Lines data in TRL's formats, with a GPT-2 model folder or a fresh model, evaluation, metrics files,
// checkpoints and an exact resume. docs/trainer.md.
#include <cstdio>
#include <exception>

#include "config.hpp"
#include "rlhf/core/error.hpp"
#include "run.hpp"

int main(int argc, char** argv) {
  const auto parsed = trainer::parse_arguments(argc, argv);
  if (parsed.exit_code >= 0) return parsed.exit_code;
  try {
    return trainer::run(parsed.config);
  } catch (const rlhf::error& e) {
    std::fprintf(stderr, "rlhf-train: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rlhf-train: %s\n", e.what());
    return 1;
  }
}
