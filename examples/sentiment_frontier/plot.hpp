#pragma once
// Phase 5b: the PNG plots, drawn by gnuplot (Debian gnuplot-nox) from data files written beside them:
//   frontier.png        reward against KL(π ‖ π_ref), one point per checkpoint, one colour per method, with error
//                       bars on both axes: the 95% bootstrap intervals over the evaluation prompts
//   dpo_beta_kl.png     log KL against log β over the DPO runs' last checkpoints (KL error bars), with the
//                       least-squares line
//   frontier_seeds.png  only with more than one training seed: each method's frontier (its checkpoints that reach a
//                       reward none of lower KL reached), one line per seed (colour: method; dash: seed)
// Returns the PNGs written; none (and a note on stderr) when gnuplot is missing or fails.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cache.hpp"
#include "report.hpp"

namespace sentiment {

inline bool have_gnuplot() { return std::system("command -v gnuplot >/dev/null 2>&1") == 0; }

inline std::vector<fs::path> draw_plots(const std::vector<EvalResult>& rows, const fs::path& dir,
                                        const std::string& title, float data_beta = 0.1f) {
  if (!have_gnuplot()) {
    std::fprintf(stderr, "note: gnuplot not found (Debian gnuplot-nox; scripts/setup.sh): no plots drawn\n");
    return {};
  }
  fs::create_directories(dir);
  // one data file per method: kl reward kl_lo kl_hi reward_lo reward_hi
  std::vector<std::string> present;
  for (const auto& m : method_order()) {
    std::ostringstream data;
    data.precision(9);
    for (const auto& r : rows)
      if (r.checkpoint.run.method == m)
        data << r.kl << ' ' << r.reward << ' ' << r.kl_ci.lo << ' ' << r.kl_ci.hi << ' ' << r.reward_ci.lo << ' '
             << r.reward_ci.hi << '\n';
    if (data.str().empty()) continue;
    write_file_atomic(dir / ("frontier_" + m + ".dat"), data.str());
    present.push_back(m);
  }
  // beta kl kl_lo kl_hi
  std::ostringstream dpo;
  dpo.precision(9);
  for (const auto& r : final_checkpoints(rows))
    if (r.checkpoint.run.method == "dpo" && r.kl > 0)
      dpo << r.checkpoint.run.hyper << ' ' << r.kl << ' ' << r.kl_ci.lo << ' ' << r.kl_ci.hi << '\n';
  write_file_atomic(dir / "dpo_beta_kl.dat", dpo.str());
  const auto fit = dpo_log_fit(rows);
  // fraction reward reward_lo reward_hi, one line per run
  const auto scaling = data_scaling(rows, data_beta);
  std::ostringstream scaled;
  scaled.precision(9);
  for (const auto& p : scaling)
    scaled << p.fraction << ' ' << p.row->reward << ' ' << p.row->reward_ci.lo << ' ' << p.row->reward_ci.hi << '\n';
  write_file_atomic(dir / "dpo_data.dat", scaled.str());
  // per method and seed: kl reward of the checkpoints on that seed's frontier, in order of KL
  const auto seeds = training_seeds(rows);
  std::vector<std::pair<std::string, std::uint64_t>> seed_lines;
  if (seeds.size() > 1)
    for (const auto& m : method_order())
      for (const auto seed : seeds) {
        std::vector<const EvalResult*> points;
        for (const auto& r : rows)
          if (r.checkpoint.run.method == m && (m == "sft" || r.checkpoint.run.seed == seed)) points.push_back(&r);
        if (points.empty()) continue;
        std::stable_sort(points.begin(), points.end(), [](const auto* a, const auto* b) { return a->kl < b->kl; });
        std::ostringstream data;
        data.precision(9);
        double best = -1;
        for (const auto* r : points)
          if (r->reward > best) best = r->reward, data << r->kl << ' ' << r->reward << '\n';
        const std::string name = "frontier_" + m + "_seed" + std::to_string(seed) + ".dat";
        write_file_atomic(dir / name, data.str());
        seed_lines.emplace_back(m, seed);
        if (m == "sft") break;  // the SFT model is no training run: one point, drawn once
      }

  // A run that goes far (GRPO with a small beta: hundreds of nats) would squeeze every other method against the
  // axis: the KL axis stops at 4x the third KL budget, and the title says how many checkpoints lie beyond.
  std::string cut_note, xrange = "set autoscale x\n";
  if (const auto budgets = kl_budgets(rows); budgets.size() >= 3) {
    const double cut = 4 * budgets[2];
    const auto beyond = std::count_if(rows.begin(), rows.end(), [&](const EvalResult& r) { return r.kl > cut; });
    if (beyond > 0) {
      std::ostringstream value;
      value << cut;
      xrange = "set xrange [0:" + value.str() + "]\n";
      cut_note = " (" + std::to_string(beyond) + " checkpoints beyond KL " + value.str() + ", off the plot)";
    }
  }
  const std::string q = "'";
  std::ostringstream gp;
  gp << "set terminal pngcairo size 900,640 noenhanced font ',11'\n"
     << "set datafile separator whitespace\nset grid\nset key outside right top\n" << xrange
     << "set output " << q << (dir / "frontier.png").string() << q << "\n"
     << "set title " << q << "Reward vs KL(pi || pi_ref), " << title << cut_note << q << "\n"
     << "set xlabel 'KL(pi || pi_ref), nats per completion (exact, summed over tokens)'\n"
     << "set ylabel 'mean VADER reward in [0, 1]'\n"
     << "set errorbars small\n"
     << "plot ";
  const char* points[] = {"pt 9 ps 2.2", "pt 7 ps 1.1",  "pt 5 ps 1.0", "pt 11 ps 1.3", "pt 13 ps 1.3", "pt 3 ps 1.3",
                          "pt 10 ps 1.3", "pt 12 ps 1.3", "pt 15 ps 1.3", "pt 4 ps 1.3", "pt 6 ps 1.0"};
  const char* colours[] = {"lc rgb 'black'",   "lc rgb '#1f77b4'", "lc rgb '#2ca02c'", "lc rgb '#9467bd'",
                           "lc rgb '#ff7f0e'", "lc rgb '#d62728'", "lc rgb '#bcbd22'", "lc rgb '#17becf'",
                           "lc rgb '#8c564b'", "lc rgb '#e377c2'", "lc rgb '#7f7f7f'"};
  static_assert(sizeof points / sizeof points[0] >= 11 && sizeof colours / sizeof colours[0] >= 11,
                "one style per method of method_order()");
  const auto style_of = [](const std::string& m) {
    std::size_t style = 0;
    for (std::size_t k = 0; k < method_order().size(); ++k)
      if (method_order()[k] == m) style = k;
    return style;
  };
  for (std::size_t i = 0; i < present.size(); ++i) {
    const std::size_t style = style_of(present[i]);
    gp << (i ? ", " : "") << q << (dir / ("frontier_" + present[i] + ".dat")).string() << q
       << " using 1:2:3:4:5:6 with xyerrorbars " << points[style] << ' ' << colours[style] << " title " << q
       << present[i] << q;
  }
  gp << "\n";
  const bool draw_seeds = !seed_lines.empty();
  if (draw_seeds) {
    gp << "set output " << q << (dir / "frontier_seeds.png").string() << q << "\n"
       << "set title " << q << "Frontier of each method per training seed, " << title << cut_note << q << "\n"
       << "plot ";
    for (std::size_t i = 0; i < seed_lines.size(); ++i) {
      const auto& [m, seed] = seed_lines[i];
      const std::size_t style = style_of(m);
      const auto dash = std::size_t(std::find(seeds.begin(), seeds.end(), seed) - seeds.begin());
      const std::string name = "frontier_" + m + "_seed" + std::to_string(seed) + ".dat";
      gp << (i ? ", " : "") << q << (dir / name).string() << q << " using 1:2 with linespoints " << points[style]
         << ' ' << colours[style] << " lw 1.5 dt " << (dash % 5) + 1 << " title " << q
         << (m == "sft" ? m : m + " seed " + std::to_string(seed)) << q;
    }
    gp << "\n";
  }
  const bool draw_dpo = fit.points >= 2;
  if (draw_dpo) {
    gp << "set output " << q << (dir / "dpo_beta_kl.png").string() << q << "\n"
       << "set autoscale x\nset key inside top right\nset logscale xy\n"
       << "set title " << q << "DPO: KL at the last checkpoint vs beta (slope " << fit.slope << ", R^2 " << fit.r2
       << ")" << q << "\n"
       << "set xlabel 'beta (log scale)'\nset ylabel 'KL(pi || pi_ref), nats (log scale)'\n"
       << "f(x) = exp(" << fit.intercept << ") * x**(" << fit.slope << ")\n"
       << "plot " << q << (dir / "dpo_beta_kl.dat").string() << q
       << " using 1:2:3:4 with yerrorbars pt 7 ps 1.5 title 'DPO runs (95% bootstrap interval of KL)', f(x) with lines lw 2"
          " title 'least-squares line'\n";
  }
  const bool draw_data = !scaling.empty();
  if (draw_data) {
    gp << "set output " << q << (dir / "dpo_data.png").string() << q << "\n"
       << "unset logscale\nset logscale x\nset key inside bottom right\n"
       << "set title " << q << "DPO (beta " << data_beta << ") on a fraction of the pairs: last checkpoints" << q
       << "\nset xlabel 'fraction of the preference pairs (log scale)'\nset ylabel 'mean VADER reward in [0, 1]'\n"
       << "plot " << q << (dir / "dpo_data.dat").string() << q
       << " using 1:2:3:4 with yerrorbars pt 7 ps 1.5 title 'one run per seed (95% bootstrap interval)'\n";
  }
  write_file_atomic(dir / "plots.gp", gp.str());
  const std::string cmd = "gnuplot " + q + (dir / "plots.gp").string() + q + " 2>" + q + (dir / "gnuplot.log").string() + q;
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "note: gnuplot failed; see %s\n", (dir / "gnuplot.log").c_str());
    return {};
  }
  std::vector<fs::path> out{dir / "frontier.png"};
  if (draw_dpo) out.push_back(dir / "dpo_beta_kl.png");
  if (draw_seeds) out.push_back(dir / "frontier_seeds.png");
  if (draw_data) out.push_back(dir / "dpo_data.png");
  return out;
}

}  // namespace sentiment
