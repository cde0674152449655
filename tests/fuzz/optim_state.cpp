// libFuzzer target: the state files of a resumed run (rlhf/optim/state_file.hpp) on arbitrary bytes:
// load_adamw_state and load_rmsprop_state (float and double moments), load_rng_state and load_schedule_state.
// An accepted state is restored into a fresh optimizer, generator or schedule, which then takes a step or two.
#include <algorithm>
#include <cstddef>
#include <vector>

#include "fuzz_support.hpp"
#include "rlhf/optim/state_file.hpp"

namespace {

// One step on parameters of the state's size (capped: a state may claim millions of moments, all read).
template <class Optimizer, class T>
void step_once(Optimizer& opt, std::size_t n) {
  if (n > 4096) return;
  std::vector<T> params(n, T(0.5)), grads(n, T(-0.25));
  opt.step(params, grads);
}

template <class T>
void optimizers(const std::string& path) {
  fuzz::refuse_or_accept([&] {
    auto s = rlhf::load_adamw_state<T>(path);
    const std::size_t n = s.exp_avg.size();
    rlhf::AdamW<T> opt;
    opt.restore(std::move(s));
    step_once<rlhf::AdamW<T>, T>(opt, n);
  });
  fuzz::refuse_or_accept([&] {
    auto s = rlhf::load_rmsprop_state<T>(path);
    const std::size_t n = s.square_avg.size();
    rlhf::Rmsprop<T> opt;
    opt.restore(std::move(s));
    step_once<rlhf::Rmsprop<T>, T>(opt, n);
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = fuzz::input_file().write(data, size);
  optimizers<float>(path);
  optimizers<double>(path);
  fuzz::refuse_or_accept([&] {
    rlhf::Rng rng;
    rlhf::load_rng_state(path, rng);
    (void)rng.next();
  });
  fuzz::refuse_or_accept([&] {
    rlhf::LearningRateSchedule schedule;
    rlhf::load_schedule_state(path, schedule);
    for (int i = 0; i < 3; ++i, schedule.advance()) (void)schedule.learning_rate();
  });
  return 0;
}
