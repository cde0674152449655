#pragma once
// Phase 5a: the numbers. frontier.csv (one row per evaluated checkpoint, with the 95% bootstrap intervals of its
// reward and KL), the table printed at the end, the best reward each method reaches within a KL budget (the
// frontier, read off at a few budgets), and the least-squares line of log KL against log β over the DPO runs' last
// checkpoints. claims.hpp reads the lecture's claims off the same rows.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cache.hpp"
#include "eval_phase.hpp"

namespace sentiment {

inline const std::vector<std::string>& method_order() {
  static const std::vector<std::string> m{"sft",        "dpo",        "unlikelihood", "preferred_ft", "ppo_rm",
                                          "ppo_gt",     "ppo_rm_akl", "ppo_gt_akl",   "grpo_gt",      "rloo_gt",
                                          "dpo_data"};
  return m;
}

inline std::string frontier_csv(const std::vector<EvalResult>& rows) {
  std::ostringstream s;
  s << "method,hyperparameter,step,reward,kl,seed,reward_lo,reward_hi,kl_lo,kl_hi\n";
  char line[240];
  for (const auto& r : rows) {
    const auto& run = r.checkpoint.run;
    std::snprintf(line, sizeof line, "%s,%s,%zu,%.6f,%.6f,%llu,%.6f,%.6f,%.6f,%.6f\n", run.method.c_str(),
                  run.hyper_text().c_str(), r.checkpoint.step, r.reward, r.kl, static_cast<unsigned long long>(run.seed),
                  r.reward_ci.lo, r.reward_ci.hi, r.kl_ci.lo, r.kl_ci.hi);
    s << line;
  }
  return s.str();
}

// The last checkpoint of each run, in sweep order.
inline std::vector<EvalResult> final_checkpoints(const std::vector<EvalResult>& rows) {
  std::vector<EvalResult> out;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const bool last = i + 1 == rows.size() || rows[i + 1].checkpoint.run.label() != rows[i].checkpoint.run.label();
    if (last) out.push_back(rows[i]);
  }
  return out;
}

// The training seeds present, in order of first appearance (the SFT row is no training run).
inline std::vector<std::uint64_t> training_seeds(const std::vector<EvalResult>& rows) {
  std::vector<std::uint64_t> out;
  for (const auto& r : rows)
    if (r.checkpoint.run.method != "sft" && std::find(out.begin(), out.end(), r.checkpoint.run.seed) == out.end())
      out.push_back(r.checkpoint.run.seed);
  return out;
}

// The highest reward among a method's checkpoints with KL ≤ budget (NaN when none is that close to π_ref).
inline double best_within(const std::vector<EvalResult>& rows, const std::string& method, double budget) {
  double best = std::nan("");
  for (const auto& r : rows)
    if (r.checkpoint.run.method == method && r.kl <= budget && !(r.reward <= best)) best = r.reward;
  return best;
}

// The data-scaling curve: last checkpoints of dpo_data runs, and of the DPO runs at its β as the fraction 1.
struct DataPoint {
  double fraction;
  const EvalResult* row;
};
inline std::vector<DataPoint> data_scaling(const std::vector<EvalResult>& rows, float beta) {
  std::vector<DataPoint> out;
  bool any = false;
  for (const auto& r : final_checkpoints(rows)) any = any || r.checkpoint.run.method == "dpo_data";
  if (!any) return out;
  for (const auto& r : rows) {
    const auto& run = r.checkpoint.run;
    const bool last = &r == &rows.back() || (&r + 1)->checkpoint.run.label() != run.label();
    if (!last) continue;
    if (run.method == "dpo_data") out.push_back({run.hyper, &r});
    if (run.method == "dpo" && run.hyper == beta) out.push_back({1.0, &r});
  }
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.fraction < b.fraction; });
  return out;
}

struct LineFit {
  double slope = std::nan(""), intercept = std::nan(""), r2 = std::nan("");
  std::size_t points = 0;
};

// The least-squares line y = a + b x and its R².
inline LineFit line_fit(const std::vector<double>& x, const std::vector<double>& y) {
  LineFit f;
  f.points = x.size();
  if (x.size() < 2) return f;
  const double n = double(x.size());
  double mx = 0, my = 0;
  for (std::size_t i = 0; i < x.size(); ++i) mx += x[i] / n, my += y[i] / n;
  double sxx = 0, sxy = 0, syy = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    sxx += (x[i] - mx) * (x[i] - mx), sxy += (x[i] - mx) * (y[i] - my), syy += (y[i] - my) * (y[i] - my);
  if (sxx == 0) return f;
  f.slope = sxy / sxx;
  f.intercept = my - f.slope * mx;
  f.r2 = syy > 0 ? sxy * sxy / (sxx * syy) : 1.0;
  return f;
}

// log KL = a + b log β over the DPO runs' final checkpoints (runs with KL ≤ 0 are left out).
inline LineFit dpo_log_fit(const std::vector<EvalResult>& rows) {
  std::vector<double> x, y;
  for (const auto& r : final_checkpoints(rows))
    if (r.checkpoint.run.method == "dpo" && r.kl > 0) x.push_back(std::log(r.checkpoint.run.hyper)), y.push_back(std::log(r.kl));
  return line_fit(x, y);
}

// Whether the sweep trained (and evaluated) any run of `method`.
inline bool has_method(const std::vector<EvalResult>& rows, const std::string& method) {
  return std::any_of(rows.begin(), rows.end(), [&](const auto& r) { return r.checkpoint.run.method == method; });
}

// KL budgets to read the frontier at: quantiles of the KLs seen (not the data-scaling runs'), rounded.
inline std::vector<double> kl_budgets(const std::vector<EvalResult>& rows) {
  std::vector<double> kls;
  for (const auto& r : rows)
    if (r.kl > 0 && r.checkpoint.run.method != "dpo_data") kls.push_back(r.kl);
  if (kls.empty()) return {};
  std::sort(kls.begin(), kls.end());
  std::vector<double> out;
  for (const double q : {0.25, 0.5, 0.75, 1.0}) {
    const double v = kls[std::min(kls.size() - 1, std::size_t(q * double(kls.size() - 1)))];
    const double p = std::pow(10.0, std::floor(std::log10(v)) - 1);  // two significant digits
    const double rounded = std::ceil(v / p) * p;
    if (out.empty() || rounded > out.back()) out.push_back(rounded);
  }
  return out;
}

inline std::string summary_table(const std::vector<EvalResult>& rows, float data_beta = 0.1f) {
  std::ostringstream s;
  char line[200];
  s << "Last checkpoint of each run (reward: mean VADER reward in [0, 1]; KL: nats per completion; [95% bootstrap\n"
       "interval over the evaluation prompts])\n";
  std::snprintf(line, sizeof line, "  %-13s %7s %5s %6s %8s %-16s %8s %-16s %11s\n", "method", "hyper", "seed", "step",
                "reward", "", "KL", "", "best reward");
  s << line;
  for (const auto& r : final_checkpoints(rows)) {
    const auto& run = r.checkpoint.run;
    double best = -1;
    for (const auto& q : rows)
      if (q.checkpoint.run.label() == run.label()) best = std::max(best, q.reward);
    std::snprintf(line, sizeof line, "  %-13s %7s %5llu %6zu %8.4f [%6.4f, %6.4f] %8.3f [%6.3f, %6.3f] %11.4f\n",
                  run.method.c_str(), run.hyper_text().c_str(), static_cast<unsigned long long>(run.seed),
                  r.checkpoint.step, r.reward, r.reward_ci.lo, r.reward_ci.hi, r.kl, r.kl_ci.lo, r.kl_ci.hi, best);
    s << line;
  }
  if (const auto points = data_scaling(rows, data_beta); !points.empty()) {
    s << "\nData scaling: DPO (beta " << data_beta << ") on a fraction of the pairs, the same steps; last checkpoints\n";
    for (const auto& p : points) {
      std::snprintf(line, sizeof line, "  fraction %-7g seed %-3llu reward %.4f [%.4f, %.4f]  KL %.3f [%.3f, %.3f]\n",
                    p.fraction, static_cast<unsigned long long>(p.row->checkpoint.run.seed), p.row->reward,
                    p.row->reward_ci.lo, p.row->reward_ci.hi, p.row->kl, p.row->kl_ci.lo, p.row->kl_ci.hi);
      s << line;
    }
  }
  const auto budgets = kl_budgets(rows);
  if (!budgets.empty()) {
    s << "\nFrontier: best reward over all checkpoints with KL <= budget\n  ";
    std::snprintf(line, sizeof line, "%-13s", "method");
    s << line;
    for (const double b : budgets) {
      std::ostringstream label;
      label << "KL<=" << b;
      std::snprintf(line, sizeof line, " %9s", label.str().c_str());
      s << line;
    }
    s << "\n";
    for (const auto& m : method_order()) {
      if (m == "sft" || !has_method(rows, m)) continue;  // a method this sweep does not train has no row
      std::snprintf(line, sizeof line, "  %-13s", m.c_str());
      s << line;
      for (const double b : budgets) {
        const double v = best_within(rows, m, b);
        if (std::isnan(v)) std::snprintf(line, sizeof line, " %9s", "-");
        else std::snprintf(line, sizeof line, " %9.4f", v);
        s << line;
      }
      s << "\n";
    }
  }
  const auto fit = dpo_log_fit(rows);
  if (fit.points >= 2) {
    std::snprintf(line, sizeof line, "\nDPO: log KL = %.3f %+.3f log beta  (R^2 = %.3f, %zu runs)\n", fit.intercept,
                  fit.slope, fit.r2, fit.points);
    s << line;
  }
  return s.str();
}

}  // namespace sentiment
