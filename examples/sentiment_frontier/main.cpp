// The lecture's controlled-sentiment experiment, in miniature, on the CPU: a GPT trained here completes the
// start of a review; VADER rates completions; pairs of completions become preferences; DPO, unlikelihood,
// preferred-FT and PPO (with a learned reward model and with the true reward) train at several strengths;
// every checkpoint lands on a plot of reward against KL(π ‖ π_ref). docs/experiments/sentiment.md.
//
//   sentiment_frontier [--config reduced|full|tiny] [--out DIR] [--reviews DIR] [--lexicon FILE]
//                      [--fortunes DIR] [--seeds 1,2,3] [--quiet]
//   sentiment_frontier --config protocol --stage tune|test [--choices FILE]   the pre-registered protocol
//                      (Stage A writes the choices file, Stage B reads it; --config tiny --stage ... is its dry run)
//
// It prints the commit and the machine first, and keeps them in <out>/provenance.txt.
// Every phase is cached under --out (default out/sentiment/<config>): a re-run skips what is done.
#include <cstdint>
#include <cstdio>
#include <exception>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "pipeline.hpp"
#include "protocol.hpp"
#include "provenance.hpp"
#include "rlhf/models/cpu/isa.hpp"

#ifndef RLHF_SOURCE_DIR
#define RLHF_SOURCE_DIR "."
#endif

int main(int argc, char** argv) {
  std::string name = "reduced", out;
  std::vector<std::uint64_t> seeds;
  const std::string npm = std::string(RLHF_SOURCE_DIR) + "/third_party/npm/node_modules";
  std::string reviews = npm + "/sentiment/test/fixtures", lexicon = npm + "/vader-sentiment/vader_lexicon.txt";
  std::string fortunes = "/usr/share/games/fortunes";
  bool quiet = false;

  CLI::App app{"The controlled-sentiment experiment: DPO, unlikelihood, preferred-FT and PPO on the reward-KL "
               "frontier (docs/experiments/sentiment.md)",
               "sentiment_frontier"};
  app.add_option("--config", name, "sweep size (protocol: the pre-registered protocol's base, with --stage)")
      ->check(CLI::IsMember({"reduced", "full", "tiny", "protocol"}))
      ->capture_default_str();
  std::string stage, choices;
  app.add_option("--stage", stage,
                 "run a stage of the pre-registered protocol (docs/experiments/sentiment.md): tune (Stage A: writes "
                 "--choices) or test (Stage B: reads it)")
      ->check(CLI::IsMember({"tune", "test"}));
  app.add_option("--choices", choices,
                 "Stage A's choices file (default: docs/experiments/sentiment_protocol_choices.txt for --config "
                 "protocol, <out>/protocol_choices.txt otherwise)");
  app.add_option("--out", out, "output folder; a re-run skips what is done there (default out/sentiment/<config>)");
  app.add_option("--reviews", reviews, "folder of npm sentiment@5.0.2's review fixtures")->check(CLI::ExistingDirectory);
  app.add_option("--lexicon", lexicon, "VADER's vader_lexicon.txt")->check(CLI::ExistingFile);
  app.add_option("--fortunes", fortunes, "folder of fortune files")->check(CLI::ExistingDirectory)
      ->capture_default_str();
  app.add_option("--seeds", seeds, "training seeds, comma-separated (default: the sweep's)")->delimiter(',');
  app.add_flag("--quiet", quiet, "no progress lines");
  bool bf16 = false;
  app.add_flag("--bf16", bf16,
               "train with bf16 matrix products and float32 sums (AVX-512 BF16, else a portable path at float32 "
               "speed); evaluation stays float32");
  if (const int code = examples::parse_command_line(app, argc, argv); code >= 0) return code;
  if (std::set<std::uint64_t>(seeds.begin(), seeds.end()).size() != seeds.size())
    return examples::refuse(app, "--seeds", "a seed is given twice");
  if (name == "protocol" && stage.empty())
    return examples::refuse(app, "--stage", "--config protocol runs one stage: --stage tune or --stage test");
  if (!stage.empty() && !seeds.empty())
    return examples::refuse(app, "--seeds", "the protocol's seeds are fixed in advance (config.hpp); not with --stage");
  if (!choices.empty() && stage.empty()) return examples::refuse(app, "--choices", "only with --stage");
  try {  // a bad RLHF_CPU_ISA is refused before any work, as a bad flag is
    rlhf::cpu::active_isa();
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "sentiment_frontier: %s\n", e.what());
    return 2;
  }

  try {
    auto config = sentiment::config_named(name);
    config.data.reviews_dir = reviews;
    config.data.lexicon = lexicon;
    config.data.fortunes_dir = fortunes;
    if (!seeds.empty()) config.seeds = seeds;
    config.bf16 = config.bf16 || bf16;  // the full sweep trains with bf16 products anyway
    if (out.empty()) out = "out/sentiment/" + name;
    std::printf("sentiment_frontier: %s sweep%s, output in %s\n", name.c_str(),
                stage.empty() ? "" : (", stage " + stage).c_str(), out.c_str());
    const std::string provenance = sentiment::provenance_text(RLHF_SOURCE_DIR);
    std::printf("%s", provenance.c_str());
    sentiment::fs::create_directories(out);
    sentiment::write_file_atomic(sentiment::fs::path(out) / "provenance.txt", provenance);
    std::printf("%s\n", rlhf::cpu::isa_summary().c_str());
    if (config.bf16)
      std::printf("bf16: training with bf16 products, %s\n",
                  rlhf::gpt::bf16::hardware_available()
                      ? (std::string("on ") + rlhf::gpt::bf16::hardware_name()).c_str()
                      : "no AVX-512 BF16 in use: float32 products");
    const auto t0 = sentiment::Clock::now();
    if (!stage.empty()) {
      if (choices.empty())
        choices = name == "protocol" ? std::string(RLHF_SOURCE_DIR) + "/docs/experiments/sentiment_protocol_choices.txt"
                                     : out + "/protocol_choices.txt";
      const auto report = sentiment::run_protocol_stage(
          config, stage == "tune" ? sentiment::Stage::tune : sentiment::Stage::test, out, choices, provenance, quiet);
      std::printf("\n%s  %-22s %8.1fs\n", report.c_str(), "total", sentiment::seconds_since(t0));
      return 0;
    }
    const auto r = sentiment::run_pipeline(config, out, quiet);

    std::printf("\n%s\n", sentiment::summary_table(r.rows, config.train.dpo_data_beta).c_str());
    std::printf("%s\n", sentiment::claims_text(r.rows, {.resamples = config.eval.bootstrap_resamples,
                                                        .seed = config.data_seed + 33}).c_str());
    if (r.reward_model.train_accuracy > 0)
      std::printf("Reward model pair accuracy: %.3f train, %.3f held out; %zu pairs from %zu completions\n\n",
                  r.reward_model.train_accuracy, r.reward_model.held_out_accuracy, r.pairs, r.completions);
    std::printf("SFT model's held-out perplexity: %.2f\n\n", r.sft_perplexity);
    std::printf("%s", sentiment::timing_table(r.timings).c_str());
    std::printf("  %-22s %8.1fs\n\n", "total", sentiment::seconds_since(t0));
    std::printf("frontier table: %s\n", r.csv.c_str());
    for (const auto& p : r.plots) std::printf("plot:           %s\n", p.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sentiment_frontier: %s\n", e.what());
    return 1;
  }
  return 0;
}
