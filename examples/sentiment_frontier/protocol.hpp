#pragma once
// The pre-registered protocol (docs/experiments/sentiment.md#protocol-pre-registered), as two stages of the pipeline:
//   Stage A, tune  seed protocol.tune_seed, validation prompts: every confirmatory method at every optimizer ×
//                  learning rate × tune strength; each (optimizer, rate) setting scored by the normalised area of the
//                  upper concave hull of its runs' checkpoints (and the SFT point) over [0, max_kl] nats; the best
//                  one per method (ties within protocol.tie to the earlier) is written to the choices file
//   Stage B, test  protocol.test_seeds, test prompts: every method at its test strengths with its choice (the
//                  exploratory ones with their family's); per seed each method's hull area over all its runs, DPO
//                  minus each RL method with a t-interval over the seeds, called only when it clears ±margin
// Both write a csv of every checkpoint with its optimizer and rate, and a report (printed and saved).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "hull.hpp"
#include "pipeline.hpp"

namespace sentiment {

enum class Stage { tune, test };

struct ProtocolChoice {
  std::string method;
  OptimizerSettings optimizer;
  double area = std::nan("");
};

// One (method, optimizer, rate) setting of Stage A and its score.
struct SettingScore {
  std::string method;
  OptimizerSettings optimizer;
  double area = std::nan("");
  double cpu_seconds = 0;  // of its runs
};

inline bool is_confirmatory(const ProtocolMethod& m) { return m.tuned_like.empty(); }

inline std::vector<RunSpec> tune_runs(const ProtocolSettings& p) {
  std::vector<RunSpec> runs;
  for (const auto& m : p.methods) {
    if (!is_confirmatory(m)) continue;
    for (const auto& opt : p.optimizers)
      for (const float lr : p.learning_rates)
        for (const float s : m.tune_strengths)
          runs.push_back({m.method, s, p.tune_seed, {optimizer_named(opt), lr}});
  }
  return runs;
}

inline const ProtocolChoice& choice_for(const std::vector<ProtocolChoice>& choices, const std::string& method) {
  for (const auto& c : choices)
    if (c.method == method) return c;
  throw std::runtime_error("the choices file has no choice for '" + method + "': run Stage A (--stage tune) first");
}

inline std::vector<RunSpec> test_runs(const ProtocolSettings& p, const std::vector<ProtocolChoice>& choices) {
  std::vector<RunSpec> runs;
  for (const auto seed : p.test_seeds)
    for (const auto& m : p.methods) {
      const auto& c = choice_for(choices, is_confirmatory(m) ? m.method : m.tuned_like);
      for (const float s : m.test_strengths) runs.push_back({m.method, s, seed, c.optimizer});
    }
  return runs;
}

// The SFT point and every checkpoint of `method` and `seed` (and, when given, of one optimizer setting).
inline std::vector<KlPoint> method_points(const std::vector<EvalResult>& rows, const std::string& method,
                                          std::uint64_t seed, const OptimizerSettings* setting = nullptr) {
  std::vector<KlPoint> pts;
  for (const auto& r : rows) {
    const auto& run = r.checkpoint.run;
    const bool sft = run.method == "sft";
    const bool match = run.method == method && run.seed == seed &&
                       (!setting || (run.optimizer.kind == setting->kind &&
                                     run.optimizer.learning_rate == setting->learning_rate));
    if (sft || match) pts.push_back({r.kl, r.reward});
  }
  return pts;
}

inline std::string number_text(double v) {
  char s[32];
  std::snprintf(s, sizeof s, "%g", v);
  return s;
}

// Every checkpoint with its optimizer and rate: frontier.csv's columns and two more.
inline std::string protocol_csv(const std::vector<EvalResult>& rows) {
  std::ostringstream s;
  s << "method,optimizer,learning_rate,hyperparameter,step,reward,kl,seed,reward_lo,reward_hi,kl_lo,kl_hi\n";
  char line[280];
  for (const auto& r : rows) {
    const auto& run = r.checkpoint.run;
    const bool sft = run.method == "sft";
    std::snprintf(line, sizeof line, "%s,%s,%s,%s,%zu,%.6f,%.6f,%llu,%.6f,%.6f,%.6f,%.6f\n", run.method.c_str(),
                  sft ? "-" : optimizer_name(run.optimizer.kind),
                  sft ? "-" : number_text(run.optimizer.learning_rate).c_str(),
                  run.hyper_text().c_str(), r.checkpoint.step, r.reward, r.kl,
                  static_cast<unsigned long long>(run.seed), r.reward_ci.lo, r.reward_ci.hi, r.kl_ci.lo, r.kl_ci.hi);
    s << line;
  }
  return s.str();
}

// ---- the choices file -------------------------------------------------------------------------------------------
// "# ..." comments, then "choice <method> <optimizer> <learning rate> <area>" per confirmatory method and
// "setting <method> <optimizer> <learning rate> <area> <cpu seconds>" per Stage A setting.

inline std::string choices_text(const std::vector<ProtocolChoice>& choices, const std::vector<SettingScore>& scores,
                                const std::string& header) {
  std::ostringstream s;
  s.precision(9);
  s << header;
  for (const auto& c : choices)
    s << "choice " << c.method << ' ' << optimizer_name(c.optimizer.kind) << ' ' << c.optimizer.learning_rate << ' '
      << c.area << '\n';
  for (const auto& c : scores)
    s << "setting " << c.method << ' ' << optimizer_name(c.optimizer.kind) << ' ' << c.optimizer.learning_rate << ' '
      << c.area << ' ' << c.cpu_seconds << '\n';
  return s.str();
}

inline std::vector<ProtocolChoice> read_choices(const fs::path& path) {
  std::ifstream in(path);
  if (!in)
    throw std::runtime_error("no choices file '" + path.string() +
                             "': Stage B needs Stage A's choices (sentiment_frontier --stage tune), committed first");
  std::vector<ProtocolChoice> out;
  std::string line;
  for (std::size_t n = 1; std::getline(in, line); ++n) {
    if (line.empty() || line[0] == '#' || line.rfind("setting ", 0) == 0) continue;
    std::istringstream row(line);
    std::string tag, opt, rest;
    ProtocolChoice c;
    if (!(row >> tag >> c.method >> opt >> c.optimizer.learning_rate >> c.area) || tag != "choice" || (row >> rest) ||
        !(c.optimizer.learning_rate > 0))
      throw std::runtime_error(path.string() + ": line " + std::to_string(n) + " is not 'choice <method> <optimizer> "
                                                                               "<learning rate> <area>'");
    c.optimizer.kind = optimizer_named(opt);
    out.push_back(c);
  }
  return out;
}

// ---- Stage A ----------------------------------------------------------------------------------------------------

inline std::vector<SettingScore> score_settings(const std::vector<EvalResult>& rows, const std::vector<RunOutput>& runs,
                                                const ProtocolSettings& p) {
  std::vector<SettingScore> out;
  for (const auto& m : p.methods) {
    if (!is_confirmatory(m)) continue;
    for (const auto& opt : p.optimizers)
      for (const float lr : p.learning_rates) {
        SettingScore s{m.method, {optimizer_named(opt), lr}};
        s.area = hull_area(upper_hull(method_points(rows, m.method, p.tune_seed, &s.optimizer)), 0, p.max_kl);
        for (const auto& r : runs)
          if (r.spec.method == m.method && r.spec.optimizer.kind == s.optimizer.kind &&
              r.spec.optimizer.learning_rate == lr)
            s.cpu_seconds += r.cpu_seconds;
        out.push_back(s);
      }
  }
  return out;
}

// The best-scoring setting per method, in the grid's order; a later one wins only by more than `tie`.
inline std::vector<ProtocolChoice> choose(const std::vector<SettingScore>& scores, double tie) {
  std::vector<ProtocolChoice> out;
  for (const auto& s : scores) {
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& c) { return c.method == s.method; });
    if (it == out.end()) {
      out.push_back({s.method, s.optimizer, s.area});
    } else if (s.area > it->area + tie || std::isnan(it->area)) {
      *it = {s.method, s.optimizer, s.area};
    }
  }
  return out;
}

// ---- Stage B ----------------------------------------------------------------------------------------------------

struct MethodSeedHull {
  std::string method;
  std::uint64_t seed = 0;
  double area = std::nan("");
  std::vector<double> at;  // h(k) at protocol.hull_points
};

inline std::vector<MethodSeedHull> seed_hulls(const std::vector<EvalResult>& rows, const ProtocolSettings& p) {
  std::vector<MethodSeedHull> out;
  for (const auto& m : p.methods)
    for (const auto seed : p.test_seeds) {
      const auto hull = upper_hull(method_points(rows, m.method, seed));
      MethodSeedHull h{m.method, seed, hull_area(hull, 0, p.max_kl), {}};
      for (const double k : p.hull_points) h.at.push_back(hull_at(hull, k));
      out.push_back(h);
    }
  return out;
}

// DPO minus `other` per seed of one quantity (index -1: the area; else h at hull_points[index]).
inline std::vector<double> dpo_differences(const std::vector<MethodSeedHull>& hulls, const std::string& other,
                                           int index) {
  std::vector<double> d;
  for (const auto& a : hulls) {
    if (a.method != "dpo") continue;
    for (const auto& b : hulls)
      if (b.method == other && b.seed == a.seed) {
        const double x = index < 0 ? a.area : a.at[std::size_t(index)];
        const double y = index < 0 ? b.area : b.at[std::size_t(index)];
        if (!std::isnan(x) && !std::isnan(y)) d.push_back(x - y);
      }
  }
  return d;
}

inline std::string interval_text(const TInterval& t) {
  char s[96];
  std::snprintf(s, sizeof s, "%+.4f [%+.4f, %+.4f]", t.mean, t.lo, t.hi);
  return s;
}

inline std::string test_report(const PipelineResult& r, const SweepConfig& config) {
  const auto& p = config.protocol;
  const auto hulls = seed_hulls(r.rows, p);
  std::ostringstream s;
  char line[240];
  std::snprintf(line, sizeof line,
                "Stage B (test): seeds %zu, %zu test prompts; hull area = mean of h(k) over [0, %g] nats\n",
                p.test_seeds.size(), r.eval_prompts, p.max_kl);
  s << line << "\nHull area and h(k) per method and seed\n";
  std::snprintf(line, sizeof line, "  %-13s %5s %8s", "method", "seed", "area");
  s << line;
  for (const double k : p.hull_points) {
    std::snprintf(line, sizeof line, " %8s", ("h(" + number_text(k) + ")").c_str());
    s << line;
  }
  s << '\n';
  for (const auto& h : hulls) {
    std::snprintf(line, sizeof line, "  %-13s %5llu %8.4f", h.method.c_str(), static_cast<unsigned long long>(h.seed),
                  h.area);
    s << line;
    for (const double v : h.at) {
      std::snprintf(line, sizeof line, " %8.4f", v);
      s << line;
    }
    s << '\n';
  }
  const auto block = [&](const char* title, int index, bool verdicts) {
    s << '\n' << title << '\n';
    for (const auto& m : p.methods) {
      if (m.method == "dpo") continue;
      const auto t = t_interval(dpo_differences(hulls, m.method, index));
      std::snprintf(line, sizeof line, "  dpo - %-13s %s  %s%s\n", m.method.c_str(), interval_text(t).c_str(),
                    verdicts && is_confirmatory(m) ? margin_verdict(t, p.margin).c_str() : "",
                    is_confirmatory(m) ? "" : "(exploratory)");
      s << line;
    }
  };
  std::snprintf(line, sizeof line,
                "Primary: DPO's hull area minus each method's, mean over %zu seeds [95%% t-interval, t %.3f]; called "
                "only if the interval clears +-%g",
                p.test_seeds.size(), t975(p.test_seeds.size() - 1), p.margin);
  block(line, -1, true);
  for (std::size_t i = 0; i < p.hull_points.size(); ++i) {
    std::snprintf(line, sizeof line, "Secondary: h(%g) of DPO minus each method's (same interval and rule)",
                  p.hull_points[i]);
    block(line, int(i), true);
  }
  if (!r.dpo_held_out_accuracy.empty()) {
    std::snprintf(line, sizeof line,
                  "\nDPO's implicit-reward accuracy on the %zu held-out pairs (last checkpoint of each run); the "
                  "reward model's: %.3f\n",
                  r.held_out_pairs, r.reward_model.held_out_accuracy);
    s << line;
    for (const auto& [label, acc] : r.dpo_held_out_accuracy) {
      std::snprintf(line, sizeof line, "  %-40s %.3f\n", label.c_str(), acc);
      s << line;
    }
  }
  return s.str();
}

inline std::string tune_report(const std::vector<SettingScore>& scores, const std::vector<ProtocolChoice>& choices,
                               const PipelineResult& r, const ProtocolSettings& p) {
  std::ostringstream s;
  char line[200];
  std::snprintf(line, sizeof line,
                "Stage A (tune): seed %llu, %zu validation prompts; each setting's hull area over [0, %g] nats "
                "(its runs' checkpoints and the SFT point)\n",
                static_cast<unsigned long long>(p.tune_seed), r.eval_prompts, p.max_kl);
  s << line;
  std::snprintf(line, sizeof line, "  %-13s %-8s %10s %8s %12s\n", "method", "optimizer", "lr", "area", "cpu seconds");
  s << line;
  std::map<std::string, double> cost;
  for (const auto& c : scores) {
    std::snprintf(line, sizeof line, "  %-13s %-8s %10g %8.4f %12.1f\n", c.method.c_str(), optimizer_name(c.optimizer.kind),
                  double(c.optimizer.learning_rate), c.area, c.cpu_seconds);
    s << line;
    cost[c.method] += c.cpu_seconds;
  }
  s << "Chosen (the largest area; ties within " << p.tie << " to the earlier setting)\n";
  for (const auto& c : choices) {
    std::snprintf(line, sizeof line, "  %-13s %-8s %10g %8.4f   tuning cost %.1f CPU-seconds\n", c.method.c_str(),
                  optimizer_name(c.optimizer.kind), double(c.optimizer.learning_rate), c.area, cost[c.method]);
    s << line;
  }
  for (const auto& [label, acc] : r.dpo_held_out_accuracy) {
    std::snprintf(line, sizeof line, "  held-out implicit-reward accuracy %-40s %.3f\n", label.c_str(), acc);
    s << line;
  }
  return s.str();
}

// Runs one stage into `out` (the cache it shares with the other stage). Stage A writes `choices`; Stage B reads it.
// `provenance`: the lines that open the choices file and the reports (commit, machine).
inline std::string run_protocol_stage(SweepConfig config, Stage stage, const fs::path& out, const fs::path& choices,
                                      const std::string& provenance, bool quiet) {
  const auto& p = config.protocol;
  std::vector<ProtocolChoice> chosen;
  if (stage == Stage::test) chosen = read_choices(choices);  // before any work: no choices, no Stage B
  config.eval.split = stage == Stage::tune ? PromptSplit::validation : PromptSplit::test;
  const auto runs = stage == Stage::tune ? tune_runs(p) : test_runs(p, chosen);
  const std::string name = stage == Stage::tune ? "protocol_tune" : "protocol_test";
  const auto r = run_pipeline(config, out, quiet, true, false, &runs, name + "_frontier.csv");
  write_file_atomic(out / (name + ".csv"), protocol_csv(r.rows));
  std::string report;
  if (stage == Stage::tune) {
    const auto scores = score_settings(r.rows, r.runs, p);
    const auto picks = choose(scores, p.tie);
    report = tune_report(scores, picks, r, p);
    write_file_atomic(choices, choices_text(picks, scores,
                                            "# The pre-registered protocol's Stage A choices "
                                            "(docs/experiments/sentiment.md#protocol-pre-registered)\n" +
                                                provenance));
    report += "choices written to " + choices.string() + " (commit it before Stage B)\n";
  } else {
    report = test_report(r, config);
    report += "\n" + summary_table(r.rows, config.train.dpo_data_beta) + "\n" +
              claims_text(r.rows, {.resamples = config.eval.bootstrap_resamples, .seed = config.data_seed + 33});
  }
  write_file_atomic(out / (name + "_report.txt"), provenance + report);  // printed once already, by main
  report += "\n" + timing_table(r.timings) + "report: " + (out / (name + "_report.txt")).string() +
            "\ncsv:    " + (out / (name + ".csv")).string() + "\n";
  for (const auto& plot : r.plots) report += "plot:   " + plot.string() + "\n";
  return report;
}

}  // namespace sentiment
