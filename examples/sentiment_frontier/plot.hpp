#pragma once
// Phase 5b: the two PNG plots, drawn by gnuplot (Debian gnuplot-nox) from data files written beside them:
//   frontier.png      reward against KL(π ‖ π_ref), one point per checkpoint, one colour per method
//   dpo_beta_kl.png   log KL against log β over the DPO runs' last checkpoints, with the least-squares line
// Returns the PNGs written; none (and a note on stderr) when gnuplot is missing or fails.
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "cache.hpp"
#include "report.hpp"

namespace sentiment {

inline bool have_gnuplot() { return std::system("command -v gnuplot >/dev/null 2>&1") == 0; }

inline std::vector<fs::path> draw_plots(const std::vector<EvalResult>& rows, const fs::path& dir,
                                        const std::string& title) {
  if (!have_gnuplot()) {
    std::fprintf(stderr, "note: gnuplot not found (Debian gnuplot-nox; scripts/setup.sh): no plots drawn\n");
    return {};
  }
  fs::create_directories(dir);
  // one data file per method: kl reward
  std::vector<std::string> present;
  for (const auto& m : method_order()) {
    std::ostringstream data;
    data.precision(9);
    for (const auto& r : rows)
      if (r.checkpoint.run.method == m) data << r.kl << ' ' << r.reward << '\n';
    if (data.str().empty()) continue;
    write_file_atomic(dir / ("frontier_" + m + ".dat"), data.str());
    present.push_back(m);
  }
  std::ostringstream dpo;
  dpo.precision(9);
  for (const auto& r : final_checkpoints(rows))
    if (r.checkpoint.run.method == "dpo" && r.kl > 0) dpo << r.checkpoint.run.hyper << ' ' << r.kl << '\n';
  write_file_atomic(dir / "dpo_beta_kl.dat", dpo.str());
  const auto fit = dpo_log_fit(rows);

  const std::string q = "'";
  std::ostringstream gp;
  gp << "set terminal pngcairo size 900,640 noenhanced font ',11'\n"
     << "set datafile separator whitespace\nset grid\nset key outside right top\n"
     << "set output " << q << (dir / "frontier.png").string() << q << "\n"
     << "set title " << q << "Reward vs KL(pi || pi_ref), " << title << q << "\n"
     << "set xlabel 'KL(pi || pi_ref), nats per completion (exact, summed over tokens)'\n"
     << "set ylabel 'mean VADER reward in [0, 1]'\n"
     << "plot ";
  const char* styles[] = {"pt 9 ps 2.2 lc rgb 'black'", "pt 7 ps 1.1 lc rgb '#1f77b4'", "pt 5 ps 1.0 lc rgb '#2ca02c'",
                          "pt 11 ps 1.3 lc rgb '#9467bd'", "pt 13 ps 1.3 lc rgb '#ff7f0e'", "pt 3 ps 1.3 lc rgb '#d62728'",
                          "pt 15 ps 1.3 lc rgb '#8c564b'", "pt 4 ps 1.3 lc rgb '#e377c2'"};
  static_assert(sizeof styles / sizeof styles[0] >= 8, "one style per method of method_order()");
  for (std::size_t i = 0; i < present.size(); ++i) {
    std::size_t style = 0;
    for (std::size_t k = 0; k < method_order().size(); ++k)
      if (method_order()[k] == present[i]) style = k;
    gp << (i ? ", " : "") << q << (dir / ("frontier_" + present[i] + ".dat")).string() << q
       << " using 1:2 with points " << styles[style] << " title " << q << present[i] << q;
  }
  gp << "\n";
  const bool draw_dpo = fit.points >= 2;
  if (draw_dpo) {
    gp << "set output " << q << (dir / "dpo_beta_kl.png").string() << q << "\n"
       << "set key inside top right\nset logscale xy\n"
       << "set title " << q << "DPO: KL at the last checkpoint vs beta (slope " << fit.slope << ", R^2 " << fit.r2
       << ")" << q << "\n"
       << "set xlabel 'beta (log scale)'\nset ylabel 'KL(pi || pi_ref), nats (log scale)'\n"
       << "f(x) = exp(" << fit.intercept << ") * x**(" << fit.slope << ")\n"
       << "plot " << q << (dir / "dpo_beta_kl.dat").string() << q
       << " using 1:2 with points pt 7 ps 1.5 title 'DPO runs', f(x) with lines lw 2 title 'least-squares line'\n";
  }
  write_file_atomic(dir / "plots.gp", gp.str());
  const std::string cmd = "gnuplot " + q + (dir / "plots.gp").string() + q + " 2>" + q + (dir / "gnuplot.log").string() + q;
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "note: gnuplot failed; see %s\n", (dir / "gnuplot.log").c_str());
    return {};
  }
  std::vector<fs::path> out{dir / "frontier.png"};
  if (draw_dpo) out.push_back(dir / "dpo_beta_kl.png");
  return out;
}

}  // namespace sentiment
