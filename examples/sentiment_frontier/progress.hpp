#pragma once
// Progress lines for the long phases — "  [dpo β=0.1 seed 1] step 40/160  loss 0.6123  12.3s  ETA 37s" — at
// most one every `every_s` seconds (and always the last step), plus a wall clock per phase.
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>

namespace sentiment {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

class Progress {
 public:
  Progress(std::string label, std::size_t total, bool quiet = false, double every_s = 5.0)
      : label_(std::move(label)), total_(total), quiet_(quiet), every_s_(every_s), start_(Clock::now()) {}

  // After step `done` (1-based) of total; `what`/`value`: a number to watch (loss, reward).
  void update(std::size_t done, const char* what, double value) {
    const double elapsed = seconds_since(start_);
    if (quiet_ || (done < total_ && elapsed - last_ < every_s_)) return;
    last_ = elapsed;
    const double eta = done ? elapsed / double(done) * double(total_ - done) : 0.0;
    std::printf("  [%s] step %zu/%zu  %s %.4f  %.1fs  ETA %.0fs\n", label_.c_str(), done, total_, what, value, elapsed,
                eta);
    std::fflush(stdout);
  }
  double elapsed() const { return seconds_since(start_); }

 private:
  std::string label_;
  std::size_t total_;
  bool quiet_;
  double every_s_, last_ = 0;
  Clock::time_point start_;
};

}  // namespace sentiment
