#pragma once
// Phase 5c: the lecture's claims read off the evaluated checkpoints, each with a 95% interval and a verdict that
// says only what the interval allows:
//   1. DPO's reward–KL frontier dominates PPO's (learned and true reward);
//   2. preferred-FT and unlikelihood do worse than DPO;
//      for both: DPO's best reward minus the other method's, over the checkpoints with KL ≤ budget, per budget;
//   3. log KL falls linearly as log β rises: slope and R² of the fit over the DPO runs' last checkpoints.
// Where the intervals come from depends on the number of training seeds:
//   one     a bootstrap over the evaluation prompts; a difference of two checkpoints is resampled per prompt
//           (both were evaluated on the same prompts), so prompt-to-prompt variation cancels;
//   two     the hull of the two seeds' bootstrap intervals (prompt noise and the seed-to-seed spread, crudely);
//   ≥ three a t-interval over the seeds' values (training and evaluation noise together).
// The checkpoint that is "best within a budget" is chosen by its point KL; the choice itself is not resampled.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "eval_phase.hpp"
#include "hull.hpp"
#include "report.hpp"
#include "rlhf/eval/bootstrap.hpp"

namespace sentiment {

using rlhf::eval::Interval;

struct Estimate {
  double value = std::nan("");  // the seed's value, or the mean over seeds
  Interval ci;
  std::size_t seeds = 0;  // how many seeds it rests on
};

// One value per seed (and its bootstrap interval over prompts) to one estimate, as the header says.
inline Estimate over_seeds(const std::vector<double>& values, const std::vector<Interval>& per_seed) {
  Estimate e;
  e.seeds = values.size();
  if (values.empty()) return e;
  double mean = 0;
  for (const double v : values) mean += v / double(values.size());
  e.value = mean;
  if (values.size() == 1) {
    e.ci = per_seed[0];
  } else if (values.size() == 2) {
    e.ci = {std::min(per_seed[0].lo, per_seed[1].lo), std::max(per_seed[0].hi, per_seed[1].hi)};
  } else {
    double ss = 0;
    for (const double v : values) ss += (v - mean) * (v - mean);
    const double half = t975(values.size() - 1) * std::sqrt(ss / double(values.size() - 1) / double(values.size()));
    e.ci = {mean - half, mean + half};
  }
  return e;
}

inline std::string interval_method(std::size_t seeds, std::size_t prompts, std::size_t resamples) {
  std::ostringstream s;
  if (seeds <= 1)
    s << "percentile bootstrap over the " << prompts << " evaluation prompts, " << resamples << " resamples";
  else if (seeds == 2)
    s << "the hull of the 2 seeds' bootstrap intervals over the " << prompts << " evaluation prompts";
  else
    s << "t-interval over the " << seeds << " seeds";
  return s.str();
}

// The checkpoint of `method` and `seed` with the highest reward among those with KL ≤ budget (null when none).
inline const EvalResult* best_checkpoint(const std::vector<EvalResult>& rows, const std::string& method,
                                         std::uint64_t seed, double budget) {
  const EvalResult* best = nullptr;
  for (const auto& r : rows)
    if (r.checkpoint.run.method == method && r.checkpoint.run.seed == seed && r.kl <= budget &&
        (!best || r.reward > best->reward))
      best = &r;
  return best;
}

// a.reward − b.reward with the bootstrap interval of the per-prompt differences.
inline Interval paired_difference(const EvalResult& a, const EvalResult& b, const rlhf::eval::BootstrapConfig& boot) {
  if (a.prompt_reward.empty() || a.prompt_reward.size() != b.prompt_reward.size()) return {};
  std::vector<double> d(a.prompt_reward.size());  // [M]
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = a.prompt_reward[i] - b.prompt_reward[i];
  return rlhf::eval::bootstrap_mean(d, boot);
}

// DPO's best reward minus `other`'s within `budget`, over the seeds where both have a checkpoint that close.
inline Estimate dpo_advantage(const std::vector<EvalResult>& rows, const std::string& other, double budget,
                              const rlhf::eval::BootstrapConfig& boot) {
  std::vector<double> values;
  std::vector<Interval> per_seed;
  for (const auto seed : training_seeds(rows)) {
    const EvalResult* d = best_checkpoint(rows, "dpo", seed, budget);
    const EvalResult* o = best_checkpoint(rows, other, seed, budget);
    if (!d || !o) continue;
    values.push_back(d->reward - o->reward);
    per_seed.push_back(paired_difference(*d, *o, boot));
  }
  return over_seeds(values, per_seed);
}

// The log KL – log β fit of one seed's DPO runs, and its slope's and R²'s bootstrap intervals over prompts (each
// resample recomputes every run's mean KL on the same resampled prompts, then the fit).
struct SeedFit {
  LineFit fit;
  Interval slope, r2;
};

inline SeedFit dpo_seed_fit(const std::vector<EvalResult>& rows, std::uint64_t seed,
                            const rlhf::eval::BootstrapConfig& boot) {
  const auto finals = final_checkpoints(rows);
  std::vector<const EvalResult*> runs;  // into finals
  for (const auto& r : finals)
    if (r.checkpoint.run.method == "dpo" && r.checkpoint.run.seed == seed && r.kl > 0) runs.push_back(&r);
  SeedFit out;
  std::vector<double> x, y;
  for (const auto* r : runs) x.push_back(std::log(r->checkpoint.run.hyper)), y.push_back(std::log(r->kl));
  out.fit = line_fit(x, y);
  if (runs.size() < 2) return out;
  const std::size_t m = runs.front()->prompt_kl.size();
  for (const auto* r : runs)
    if (r->prompt_kl.size() != m || m == 0) return out;
  const auto fit_of = [&](std::span<const std::size_t> idx) {
    std::vector<double> bx, by;
    for (const auto* r : runs) {
      double kl = 0;
      for (const std::size_t i : idx) kl += r->prompt_kl[i] / double(idx.size());
      if (kl > 0) bx.push_back(std::log(r->checkpoint.run.hyper)), by.push_back(std::log(kl));
    }
    return line_fit(bx, by);
  };
  // the same seed in both calls: slope and R² come from the same resamples
  using Idx = std::span<const std::size_t>;
  out.slope = rlhf::eval::bootstrap_interval(m, [&](Idx idx) { return fit_of(idx).slope; }, boot);
  out.r2 = rlhf::eval::bootstrap_interval(m, [&](Idx idx) { return fit_of(idx).r2; }, boot);
  return out;
}

enum class Verdict { holds, fails, unclear };

inline const char* verdict_text(Verdict v) {
  switch (v) {
    case Verdict::holds: return "holds";
    case Verdict::fails: return "fails";
    default: return "unclear (interval includes 0)";
  }
}

// "value > 0" read off an interval.
inline Verdict positive(const Interval& ci) {
  if (!ci.valid()) return Verdict::unclear;
  return ci.lo > 0 ? Verdict::holds : ci.hi < 0 ? Verdict::fails : Verdict::unclear;
}

inline std::string signed_interval(const Estimate& e) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%+8.4f [%+7.4f, %+7.4f]", e.value, e.ci.lo, e.ci.hi);
  return buf;
}

// Claims 1 and 2: one line per budget, then the verdict over all budgets: "holds" when DPO is ahead at every
// budget both methods reach, "fails" when it is behind at one, "unclear" otherwise.
inline void dpo_versus(std::ostringstream& s, const std::vector<EvalResult>& rows, const std::string& other,
                       const std::vector<double>& budgets, const rlhf::eval::BootstrapConfig& boot) {
  char line[200];
  bool any = false, all_hold = true;
  std::string behind;
  for (const double b : budgets) {
    std::ostringstream label;
    label << "KL<=" << b;
    const Estimate e = dpo_advantage(rows, other, b, boot);
    if (e.seeds == 0) {
      std::snprintf(line, sizeof line, "    dpo - %-13s %-11s %27s  (one of them has no checkpoint this close)\n",
                    other.c_str(), label.str().c_str(), "-");
      s << line;
      continue;
    }
    const Verdict v = positive(e.ci);
    any = true;
    all_hold = all_hold && v == Verdict::holds;
    if (v == Verdict::fails && behind.empty()) behind = label.str();
    const char* word = v == Verdict::holds ? "DPO ahead" : v == Verdict::fails ? "DPO behind" : "unclear";
    std::snprintf(line, sizeof line, "    dpo - %-13s %-11s %s  %s%s\n", other.c_str(), label.str().c_str(),
                  signed_interval(e).c_str(), word,
                  e.seeds < training_seeds(rows).size() ? "  (fewer seeds reach it)" : "");
    s << line;
  }
  const Verdict overall = !any              ? Verdict::unclear
                          : !behind.empty() ? Verdict::fails
                          : all_hold        ? Verdict::holds
                                            : Verdict::unclear;
  s << "    => dpo over " << other << ": "
    << (!any ? "no budget both reach" : verdict_text(overall))
    << (overall == Verdict::fails ? " (DPO behind at " + behind + ")" : std::string()) << "\n";
}

inline std::string claims_text(const std::vector<EvalResult>& rows, const rlhf::eval::BootstrapConfig& boot = {}) {
  std::ostringstream s;
  const auto seeds = training_seeds(rows);
  const std::size_t prompts = rows.empty() ? 0 : rows.front().prompt_reward.size();
  s << "The lecture's claims, with 95% intervals (" << interval_method(seeds.size(), prompts, boot.resamples)
    << ")\n";
  const auto budgets = kl_budgets(rows);
  s << "1. DPO's reward-KL frontier dominates PPO's, even with the true reward (and GRPO's and RLOO's where the sweep\n"
       "   has them). DPO's best reward minus the other's over checkpoints with KL <= budget; holds if DPO is ahead at\n"
       "   every budget both reach, fails if behind at one\n";
  for (const char* other : {"ppo_rm", "ppo_gt", "ppo_rm_akl", "ppo_gt_akl", "grpo_gt", "rloo_gt"})
    if (other == std::string("ppo_rm") || other == std::string("ppo_gt") || has_method(rows, other))
      dpo_versus(s, rows, other, budgets, boot);
  s << "2. Preferred-FT and unlikelihood do worse than DPO (the same differences)\n";
  for (const char* other : {"preferred_ft", "unlikelihood"}) dpo_versus(s, rows, other, budgets, boot);

  std::vector<double> slopes, r2s;
  std::vector<Interval> slope_cis, r2_cis;
  for (const auto seed : seeds) {
    const SeedFit f = dpo_seed_fit(rows, seed, boot);
    if (f.fit.points < 3) continue;  // two points always lie on a line
    slopes.push_back(f.fit.slope), r2s.push_back(f.fit.r2), slope_cis.push_back(f.slope), r2_cis.push_back(f.r2);
  }
  s << "3. log KL falls linearly as log beta rises (DPO runs' last checkpoints); holds if the slope's interval is\n"
       "   below 0 and R^2's above 0.9, fails if the slope's is above 0 or R^2's below 0.9\n";
  if (slopes.empty()) {
    s << "    fewer than 3 DPO runs per seed: no fit\n";
    return s.str();
  }
  const Estimate slope = over_seeds(slopes, slope_cis);
  Estimate r2 = over_seeds(r2s, r2_cis);
  r2.ci = {std::max(0.0, r2.ci.lo), std::min(1.0, r2.ci.hi)};  // R² lies in [0, 1]
  const Verdict v = !slope.ci.valid() || !r2.ci.valid() ? Verdict::unclear
                    : slope.ci.hi < 0 && r2.ci.lo >= 0.9 ? Verdict::holds
                    : slope.ci.lo > 0 || r2.ci.hi < 0.9   ? Verdict::fails
                                                          : Verdict::unclear;
  char line[200];
  std::snprintf(line, sizeof line, "    slope %+.3f [%+.3f, %+.3f]   R^2 %.3f [%.3f, %.3f]   (%zu seed%s)\n",
                slope.value, slope.ci.lo, slope.ci.hi, r2.value, r2.ci.lo, r2.ci.hi, slope.seeds,
                slope.seeds == 1 ? "" : "s");
  s << line << "    => " << (v == Verdict::unclear ? "unclear (the intervals straddle the thresholds)" : verdict_text(v))
    << "\n";
  return s.str();
}

}  // namespace sentiment
