#pragma once
// A small, fast, seedable generator (SplitMix64 seeding + xoshiro256**), identical on every platform,
// so a seed gives the same samples with any standard library. Its whole state is four 64-bit words: state()
// reads them and restore() puts them back, so a resumed run draws what the uninterrupted one would have
// (docs/optim/state.md; files: optim/state_file.hpp).
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "rlhf/core/error.hpp"

namespace rlhf {

class Rng {
 public:
  using State = std::array<std::uint64_t, 4>;  // xoshiro256**'s s[0..3]

  explicit Rng(std::uint64_t seed = 0x5eed) {
    for (auto& s : state_) {
      seed += 0x9e3779b97f4a7c15ULL;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      s = z ^ (z >> 31);
    }
  }
  std::uint64_t next() {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }
  // The generator's state: a copy restored later continues the same stream of numbers.
  State state() const { return state_; }
  // Continues from `s`, a state() of some Rng. The all-zero state is refused (value_error): xoshiro would
  // stay there, drawing 0 for ever, and no seed ever leads to it.
  void restore(const State& s) {
    if (s == State{})
      fail<value_error>("rlhf::Rng::restore: the state is all zero, which no generator ever reaches (it would only "
                        "ever draw 0); the generator is unchanged");
    state_ = s;
  }

  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(uniform() * static_cast<double>(n)); }
  double normal() {  // Box–Muller
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  // Index drawn with probability proportional to weights[i] (non-negative, not all zero).
  template <class Weights>
  std::size_t categorical(const Weights& weights, std::size_t n) {
    double total = 0;
    for (std::size_t i = 0; i < n; ++i) total += weights[i];
    double u = uniform() * total;
    for (std::size_t i = 0; i < n; ++i) {
      u -= weights[i];
      if (u < 0) return i;
    }
    return n - 1;
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  State state_{};
};

}  // namespace rlhf
