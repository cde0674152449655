#pragma once
// The learned reward of "PPO with a reward model": the SFT GPT with a scalar head (rlhf::Gpt, scalar_head),
// fitted to the preference pairs with the Bradley–Terry loss. Pairs of every tenth prompt are held out to
// measure its accuracy. Its scores over all completions give the mean and spread that PPO's reward is
// standardised with. Writes rm.safetensors and rm.txt (mean, std, train and held-out accuracy).
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <numeric>
#include <sstream>
#include <vector>

#include "cache.hpp"
#include "context.hpp"
#include "data.hpp"
#include "pairs_phase.hpp"
#include "progress.hpp"
#include "rlhf/algorithms/reward_model.hpp"
#include "rlhf/models/gpt/checkpoint.hpp"
#include "rlhf/optim/adamw.hpp"
#include "sft_phase.hpp"

namespace sentiment {

struct RewardModelOutput {
  CacheKey key{"reward_model"};
  fs::path checkpoint;
  double mean = 0, std = 1;              // of the scores of all completions
  double train_accuracy = 0, held_out_accuracy = 0;
};

inline rlhf::PreferenceBatch pair_batch(const PairsOutput& data, const std::vector<Pair>& pairs, std::size_t begin,
                                        std::size_t end) {
  std::vector<const Sequence*> chosen, rejected;
  rlhf::PreferenceBatch b;
  for (std::size_t i = begin; i < end; ++i) {
    const auto& p = pairs[i % pairs.size()];
    chosen.push_back(&data.completions[p.chosen].sequence);
    rejected.push_back(&data.completions[p.rejected].sequence);
    b.reference_chosen.push_back(data.completions[p.chosen].ref_logp);
    b.reference_rejected.push_back(data.completions[p.rejected].ref_logp);
  }
  b.chosen = response_batch(chosen);
  b.rejected = response_batch(rejected);
  return b;
}

// Scores of completions [begin, end) in batches.
inline std::vector<double> score_completions(rlhf::Gpt<float>& rm, const std::vector<Completion>& cs) {
  std::vector<double> out;
  for (std::size_t lo = 0; lo < cs.size(); lo += 64) {
    std::vector<const Sequence*> rows;
    for (std::size_t i = lo; i < std::min(cs.size(), lo + 64); ++i) rows.push_back(&cs[i].sequence);
    const auto s = rm.scores(response_batch(rows));
    for (Eigen::Index i = 0; i < s.size(); ++i) out.push_back(s[i]);
  }
  return out;
}

inline double pair_accuracy(const std::vector<double>& scores, const std::vector<Pair>& pairs) {
  if (pairs.empty()) return 0;
  double right = 0;
  for (const auto& p : pairs) right += scores[p.chosen] > scores[p.rejected];
  return right / double(pairs.size());
}

inline RewardModelOutput run_reward_model_phase(Context& ctx, const SftOutput& sft, const PairsOutput& data) {
  const auto& t = ctx.config.train;
  RewardModelOutput out;
  out.key.add("pairs", data.key.hex()).add("steps", t.reward_model_steps).add("batch", t.batch)
      .add("lr", t.reward_model_learning_rate).add("seed", ctx.config.data_seed);
  if (ctx.config.bf16) out.key.add("bf16", 1);
  const CacheEntry entry(ctx.out, out.key);
  out.checkpoint = entry.file("rm.safetensors");
  const auto t0 = Clock::now();
  if (entry.done()) {  // verified against its done marker; still, only four finite numbers and a spread > 0 are used
    std::istringstream in(read_file(entry.file("rm.txt")));
    std::string rest;
    if (in >> out.mean >> out.std >> out.train_accuracy >> out.held_out_accuracy && !(in >> rest) &&
        std::isfinite(out.mean) && std::isfinite(out.std) && out.std > 0) {
      ctx.record("reward model", seconds_since(t0), true);
      return out;
    }
    std::fprintf(stderr, "cache: '%s' is not four finite numbers (mean, std > 0, accuracies); recomputing it\n",
                 entry.file("rm.txt").string().c_str());
    out = RewardModelOutput{};
    out.key = entry.key();
    out.checkpoint = entry.file("rm.safetensors");
  }
  entry.begin();
  std::vector<Pair> train, held_out;
  for (const auto& p : data.pairs) (data.completions[p.chosen].prompt % 10 == 0 ? held_out : train).push_back(p);
  if (train.empty()) train = data.pairs;
  rlhf::Rng rng(ctx.config.data_seed + 20);
  for (std::size_t i = train.size(); i-- > 1;) std::swap(train[i], train[rng.below(i + 1)]);

  auto config = ctx.config.gpt(ctx.tokenizer->vocab_size());
  config.scalar_head = true;
  auto rm = rlhf::load_checkpoint<float>(sft.checkpoint, config);  // the head keeps its fresh initialisation
  for_training(ctx, rm);
  rlhf::AdamW<float> opt({.learning_rate = t.reward_model_learning_rate});
  Progress progress("reward model", t.reward_model_steps, ctx.quiet);
  for (std::size_t s = 0; s < t.reward_model_steps; ++s) {
    const std::size_t lo = s * t.batch;
    opt.set_learning_rate(scheduled_lr(t.reward_model_learning_rate, s, t.reward_model_steps));
    const auto r = rlhf::reward_model_step(rm, opt, pair_batch(data, train, lo, lo + t.batch));
    progress.update(s + 1, "loss", r.loss);
  }
  const auto scores = score_completions(rm, data.completions);
  const double n = double(scores.size());
  out.mean = std::accumulate(scores.begin(), scores.end(), 0.0) / n;
  double var = 0;
  for (const double x : scores) var += (x - out.mean) * (x - out.mean) / n;
  out.std = std::sqrt(var) > 1e-6 ? std::sqrt(var) : 1.0;
  out.train_accuracy = pair_accuracy(scores, train);
  out.held_out_accuracy = pair_accuracy(scores, held_out);
  if (!ctx.quiet)
    std::printf("  reward model: pair accuracy %.3f train, %.3f held out (%zu pairs)\n", out.train_accuracy,
                out.held_out_accuracy, held_out.size());
  rlhf::save_checkpoint(rm, out.checkpoint);
  std::ostringstream s;
  s.precision(17);
  s << out.mean << ' ' << out.std << ' ' << out.train_accuracy << ' ' << out.held_out_accuracy << '\n';
  write_file_atomic(entry.file("rm.txt"), s.str());
  entry.finish();
  ctx.record("reward model", seconds_since(t0), false);
  return out;
}

}  // namespace sentiment
