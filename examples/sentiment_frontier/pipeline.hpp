#pragma once
// The whole experiment, phase by phase; main.cpp and the tests call run_pipeline.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "claims.hpp"
#include "context.hpp"
#include "data.hpp"
#include "eval_phase.hpp"
#include "pairs_phase.hpp"
#include "plot.hpp"
#include "report.hpp"
#include "reward_model_phase.hpp"
#include "sft_phase.hpp"
#include "train_phase.hpp"

namespace sentiment {

struct PipelineResult {
  std::vector<EvalResult> rows;  // every evaluated checkpoint, the SFT model first
  std::size_t pairs = 0, completions = 0;
  double sft_perplexity = 0;  // on the held-out review sentences
  std::string setup;          // the data, prompt, pair and step counts of this run, as printed; also setup.txt
  RewardModelOutput reward_model;
  std::size_t eval_prompts = 0;   // the evaluation prompts of this sweep's split
  std::size_t held_out_pairs = 0; // hold_out_pairs: the pairs kept out of the pair methods' training
  std::vector<RunOutput> runs;
  std::map<std::string, double> dpo_held_out_accuracy;  // hold_out_pairs: each DPO run's last checkpoint, by label
  std::vector<PhaseTiming> timings;
  std::size_t evaluations_computed = 0, evaluations_cached = 0;
  fs::path csv;
  std::vector<fs::path> plots;
};

inline void say(const Context& ctx, const char* text) {
  if (!ctx.quiet) std::printf("%s\n", text), std::fflush(stdout);
}

// A line of the run's setup: printed (unless quiet) and kept.
template <class... Args>
void setup_line(const Context& ctx, std::string& setup, const char* format, Args... args) {
  char line[400];
  std::snprintf(line, sizeof line, format, args...);
  setup += line;
  if (!ctx.quiet) std::printf("%s", line), std::fflush(stdout);
}

// The fraction of held-out pairs whose chosen completion has the higher DPO implicit reward
// β (log π − log π_ref) at `checkpoint` (β > 0 does not change the order).
inline double implicit_reward_accuracy(const fs::path& checkpoint, const PairsOutput& data,
                                       const std::vector<Pair>& held_out) {
  if (held_out.empty()) return std::nan("");
  auto policy = rlhf::load_checkpoint<float>(checkpoint);
  std::size_t right = 0;
  for (std::size_t lo = 0; lo < held_out.size(); lo += 64) {
    const std::size_t hi = std::min(held_out.size(), lo + 64);
    const auto batch = pair_batch(data, held_out, lo, hi);
    const auto chosen = rlhf::sequence_logps(policy, batch.chosen);
    const auto rejected = rlhf::sequence_logps(policy, batch.rejected);
    for (std::size_t i = 0; i < hi - lo; ++i)
      right += chosen[i] - batch.reference_chosen[i] > rejected[i] - batch.reference_rejected[i];
  }
  return double(right) / double(held_out.size());
}

// Another run holding `out` makes this one throw (a message naming it), or with wait_for_lock wait for it to end.
// `runs`: the training runs (default: the sweep's lists, sweep_runs).
inline PipelineResult run_pipeline(const SweepConfig& config, const fs::path& out, bool quiet = false,
                                   bool plots = true, bool wait_for_lock = false,
                                   const std::vector<RunSpec>* runs_to_train = nullptr,
                                   const std::string& csv_name = "frontier.csv") {
  Context ctx{config, out, quiet};
  fs::create_directories(out);
  const OutputLock lock(out, wait_for_lock);  // held to the end of the run
  if (const std::size_t stale = clean_stale_temporaries(out); stale > 0 && !quiet)
    std::printf("removed %zu temporary file(s) left by an interrupted run\n", stale);
  ctx.vader = rlhf::eval::Vader::load(config.data.lexicon);
  const Texts texts = load_texts(config.data);
  PipelineResult result;
  setup_line(ctx, result.setup,
             "data: %zu SFT fortunes, %zu SFT review sentences; held out for prompts: %zu review sentences, %zu "
             "fortunes\n",
             texts.fortunes.size(), texts.train_reviews.size(), texts.prompt_reviews.size(),
             texts.prompt_fortunes.size());

  say(ctx, "phase 1: tokenizer + SFT (fortunes, then reviews)");
  SftOutput sft = run_sft_phase(ctx, texts);
  result.sft_perplexity = sft.held_out_perplexity = held_out_perplexity(ctx, texts, sft);
  setup_line(ctx, result.setup, "  SFT model: held-out perplexity %.2f on %zu review sentences\n",
             result.sft_perplexity, texts.prompt_reviews.size());
  say(ctx, "phase 2: sampling completions and labelling pairs with VADER");
  const PairsOutput pairs = run_pairs_phase(ctx, texts, sft);
  result.pairs = pairs.pairs.size();
  result.completions = pairs.completions.size();
  setup_line(ctx, result.setup,
             "  prompts: %zu for training (%zu review prefixes of %zu available, %zu fortune prefixes), %zu for "
             "evaluation (one each of %zu held-out sentences)\n",
             pairs.prompts.size(), pairs.from_reviews, pairs.review_candidates, pairs.from_fortunes,
             pairs.eval_prompts.size(), pairs.eval_sentences);
  setup_line(ctx, result.setup, "  %zu completions, %zu pairs with distinct rewards\n", result.completions,
             result.pairs);
  if (pairs.pairs.empty()) throw std::runtime_error("every completion of every prompt tied: no preference pairs");
  // the pair methods' data: all pairs, or (hold_out_pairs) all but those of every 10th prompt, as the reward model
  PairsOutput train_pairs = pairs;
  std::vector<Pair> held_out;
  if (config.train.hold_out_pairs) {
    train_pairs.pairs.clear();
    for (const auto& p : pairs.pairs)
      (pairs.completions[p.chosen].prompt % 10 == 0 ? held_out : train_pairs.pairs).push_back(p);
    result.held_out_pairs = held_out.size();
    setup_line(ctx, result.setup, "  %zu pairs held out of the pair methods' training (every 10th prompt's)\n",
               held_out.size());
  }
  ctx.config.train = resolved_steps(config.train, train_pairs.pairs.size());
  const auto& t = ctx.config.train;
  setup_line(ctx, result.setup,
             "  steps: %zu of %zu pairs for DPO, unlikelihood, preferred-FT (%.2f passes); %zu of %zu prompts for "
             "PPO, %zu of %zu prompts x %zu samples for GRPO/RLOO; a checkpoint every %zu / %zu steps\n",
             t.steps, t.batch, double(t.steps * t.batch) / double(train_pairs.pairs.size()), t.ppo_steps, t.ppo_batch,
             t.ppo_steps, std::max<std::size_t>(1, t.ppo_batch / config.pairs.completions), config.pairs.completions,
             t.checkpoint_every, t.ppo_checkpoint_every);

  say(ctx, "phase 3: training (reward model, then every method, setting and seed)");
  const bool need_rm = !config.train.ppo_rm_kl_coefs.empty() || !config.train.ppo_rm_kl_targets.empty();
  if (need_rm) result.reward_model = run_reward_model_phase(ctx, sft, pairs);
  std::vector<RunOutput> runs;
  for (const auto& spec : runs_to_train ? *runs_to_train : sweep_runs(ctx.config))
    runs.push_back(run_training(ctx, spec, sft, train_pairs, result.reward_model));

  say(ctx, "phase 4: evaluating every checkpoint on held-out prompts");
  const auto t0 = Clock::now();
  Evaluator evaluator(ctx, sft, pairs);
  result.eval_prompts = evaluator.prompt_count();
  setup_line(ctx, result.setup, "  evaluation: %zu prompts (%s)\n", result.eval_prompts, split_name(config.eval.split));
  std::size_t total = 1;
  for (const auto& r : runs) total += r.checkpoints.size();
  Progress progress("eval", total, quiet);
  result.rows.push_back(evaluator.evaluate({{"sft", 0, config.data_seed}, 0, sft.checkpoint}));
  for (const auto& r : runs)
    for (const auto& c : r.checkpoints) {
      result.rows.push_back(evaluator.evaluate(c));
      progress.update(result.rows.size(), "reward", result.rows.back().reward);
    }
  if (config.train.hold_out_pairs)
    for (const auto& r : runs)
      if (r.spec.method == "dpo" && !r.checkpoints.empty())
        result.dpo_held_out_accuracy[r.spec.label()] =
            implicit_reward_accuracy(r.checkpoints.back().path, pairs, held_out);
  result.runs = runs;
  result.evaluations_computed = evaluator.computed();
  result.evaluations_cached = evaluator.cached();
  ctx.record("eval", seconds_since(t0), evaluator.computed() == 0);

  say(ctx, "phase 5: frontier.csv and plots");
  write_file_atomic(out / "setup.txt", result.setup);
  result.csv = out / csv_name;
  write_file_atomic(result.csv, frontier_csv(result.rows));
  // the sweeps' plots in plots/; a protocol stage's (csv "<stage>_frontier.csv") in plots_<stage>/
  const std::string stem = csv_name.substr(0, csv_name.find("_frontier.csv"));
  const fs::path plot_dir = csv_name == "frontier.csv" ? out / "plots" : out / ("plots_" + stem);
  if (plots) result.plots = draw_plots(result.rows, plot_dir, config.name + " sweep", config.train.dpo_data_beta);
  result.timings = ctx.timings;
  return result;
}

// Seconds per phase, training runs summed by method; "(cached)" when nothing of it ran.
inline std::string timing_table(const std::vector<PhaseTiming>& timings) {
  std::vector<std::pair<std::string, PhaseTiming>> groups;
  for (const auto& t : timings) {
    std::string name = t.phase;
    if (name.rfind("train ", 0) == 0) name = "train " + name.substr(6, name.find(' ', 6) - 6);
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == name; });
    if (it == groups.end()) {
      groups.push_back({name, t});
    } else {
      it->second.seconds += t.seconds;
      it->second.cached = it->second.cached && t.cached;
    }
  }
  std::string s = "Time per phase (wall clock)\n";
  char line[120];
  for (const auto& [name, t] : groups) {
    std::snprintf(line, sizeof line, "  %-22s %8.1fs%s\n", name.c_str(), t.seconds, t.cached ? "  (cached)" : "");
    s += line;
  }
  return s;
}

}  // namespace sentiment
