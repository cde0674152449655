#pragma once
// What the person running rlhf-train sees and does: a progress line with an ETA (redrawn in place on a terminal,
// plain lines otherwise), and SIGINT/SIGTERM, which ask the loop to write a checkpoint and stop; a second signal
// exits at once.
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>

namespace trainer {

// ---- signals ----
inline volatile std::sig_atomic_t stop_signal = 0;  // the first signal's number; 0: none yet

extern "C" inline void on_stop_signal(int sig) {
  if (stop_signal != 0) _exit(128 + sig);  // the second: now, without a checkpoint
  stop_signal = sig;
}

inline void install_stop_handlers() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}

// ---- progress ----
inline std::string clock_text(double seconds) {
  const long s = seconds < 0 ? 0 : static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

class Progress {
 public:
  using Clock = std::chrono::steady_clock;
  Progress(std::size_t first_step, std::size_t total, bool plain, bool silent = false)
      : first_(first_step), total_(total), tty_(!plain && isatty(STDOUT_FILENO)), silent_(silent), start_(Clock::now()) {}

  // After step `done` (1-based); `summary` is the metrics to show. On a terminal the line is redrawn at most
  // 4 times a second; otherwise a line is printed when `log_line` (the logging steps) and at the end.
  void update(std::size_t done, const std::string& summary, bool log_line) {
    if (silent_) return;
    const double elapsed = seconds();
    const bool last = done == total_;
    if (tty_ && !last && elapsed - last_draw_ < 0.25) return;
    if (!tty_ && !log_line && !last) return;
    last_draw_ = elapsed;
    const double rate = double(done - first_) / (elapsed > 0 ? elapsed : 1e-9);
    const double eta = rate > 0 ? double(total_ - done) / rate : 0;
    std::printf("%sstep %zu/%zu (%3.0f%%)  %s  %.2f steps/s  elapsed %s  ETA %s%s", tty_ ? "\r\033[K" : "", done, total_,
                100.0 * double(done) / double(total_), summary.c_str(), rate, clock_text(elapsed).c_str(),
                clock_text(eta).c_str(), tty_ && !last ? "" : "\n");
    std::fflush(stdout);
  }
  // Before printing any other line, so that it does not land on the progress line.
  void break_line() {
    if (silent_) return;
    if (tty_ && last_draw_ > 0) std::printf("\n");
    last_draw_ = 0;
  }
  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  std::size_t first_, total_;
  bool tty_, silent_;
  Clock::time_point start_;
  double last_draw_ = 0;
};

}  // namespace trainer
