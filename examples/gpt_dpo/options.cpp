#include "options.hpp"

#include "common/cli.hpp"

namespace gpt_dpo {

int parse_options(int argc, char** argv, Options& o) {
  CLI::App app{"DPO on a GPT with synthetic preference pairs: chosen = the prompt reversed, rejected = random tokens",
               "gpt_dpo"};
  app.add_option("--device", o.device, "where the model runs")->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--steps", o.steps, "DPO steps")->check(CLI::Range(1, 10'000'000))->capture_default_str();
  app.add_option("--log-every", o.log_every, "print a line every N steps")->check(CLI::Range(1, 10'000'000))
      ->capture_default_str();
  app.add_option("--batch", o.batch, "B, preference pairs per step")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--prompt-len", o.prompt_len, "P, prompt tokens; sequences are 2P long")
      ->check(CLI::Range(1, 512))->capture_default_str();
  app.add_option("--vocab", o.vocab, "V, vocabulary size")->check(CLI::Range(2, 65536))->capture_default_str();
  app.add_option("--channels", o.channels, "C, model width")->check(CLI::Range(1, 4096))->capture_default_str();
  app.add_option("--layers", o.layers, "L, transformer blocks")->check(CLI::Range(1, 64))->capture_default_str();
  app.add_option("--heads", o.heads, "NH, attention heads; must divide C")->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--lr", o.learning_rate, "AdamW learning rate")->check(examples::positive_at_most(1.0))
      ->capture_default_str();
  app.add_option("--beta", o.beta, "DPO beta")->check(examples::positive_at_most(1e4))->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the model and the data")->capture_default_str();
  if (const int code = examples::parse_command_line(app, argc, argv); code >= 0) return code;
  if (o.channels % o.heads != 0)
    return examples::refuse(app, "--heads", "must divide --channels (" + std::to_string(o.channels) + " channels, " +
                                                std::to_string(o.heads) + " heads)");
  return -1;
}

}  // namespace gpt_dpo
