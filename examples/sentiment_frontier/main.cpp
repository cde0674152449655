// The lecture's controlled-sentiment experiment, in miniature, on the CPU: a GPT trained here completes the
// start of a review; VADER rates completions; pairs of completions become preferences; DPO, unlikelihood,
// preferred-FT and PPO (with a learned reward model and with the true reward) train at several strengths;
// every checkpoint lands on a plot of reward against KL(π ‖ π_ref). docs/experiments/sentiment.md.
//
//   sentiment_frontier [--config reduced|full|tiny] [--out DIR] [--reviews DIR] [--lexicon FILE]
//                      [--fortunes DIR] [--seeds 1,2,3] [--quiet]
//
// Every phase is cached under --out (default out/sentiment/<config>): a re-run skips what is done.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "pipeline.hpp"

#ifndef RLHF_SOURCE_DIR
#define RLHF_SOURCE_DIR "."
#endif

namespace {

void usage() {
  std::fprintf(stderr,
               "usage: sentiment_frontier [--config reduced|full|tiny] [--out DIR] [--reviews DIR] [--lexicon FILE]\n"
               "                          [--fortunes DIR] [--seeds 1,2,3] [--quiet]\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string name = "reduced", out, seeds;
  const std::string npm = std::string(RLHF_SOURCE_DIR) + "/third_party/npm/node_modules";
  std::string reviews = npm + "/sentiment/test/fixtures", lexicon = npm + "/vader-sentiment/vader_lexicon.txt";
  std::string fortunes = "/usr/share/games/fortunes";
  bool quiet = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(), std::exit(2);
      return argv[++i];
    };
    if (a == "--config") name = value();
    else if (a == "--out") out = value();
    else if (a == "--reviews") reviews = value();
    else if (a == "--lexicon") lexicon = value();
    else if (a == "--fortunes") fortunes = value();
    else if (a == "--seeds") seeds = value();
    else if (a == "--quiet") quiet = true;
    else return usage(), a == "--help" || a == "-h" ? 0 : 2;
  }
  try {
    auto config = sentiment::config_named(name);
    config.data.reviews_dir = reviews;
    config.data.lexicon = lexicon;
    config.data.fortunes_dir = fortunes;
    if (!seeds.empty()) {
      config.seeds.clear();
      for (std::size_t pos = 0; pos < seeds.size();) {
        const std::size_t end = std::min(seeds.find(',', pos), seeds.size());
        config.seeds.push_back(std::stoull(seeds.substr(pos, end - pos)));
        pos = end + 1;
      }
    }
    if (out.empty()) out = "out/sentiment/" + name;
    std::printf("sentiment_frontier: %s sweep, output in %s\n", name.c_str(), out.c_str());
    const auto t0 = sentiment::Clock::now();
    const auto r = sentiment::run_pipeline(config, out, quiet);

    std::printf("\n%s\n", sentiment::summary_table(r.rows).c_str());
    if (r.reward_model.train_accuracy > 0)
      std::printf("Reward model pair accuracy: %.3f train, %.3f held out; %zu pairs from %zu completions\n\n",
                  r.reward_model.train_accuracy, r.reward_model.held_out_accuracy, r.pairs, r.completions);
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
