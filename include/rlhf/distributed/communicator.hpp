#pragma once
// Data-parallel training: the collective operations the steps call, behind one small interface.
//
//   SingleProcess      one rank; every operation leaves its data as it is (the default everywhere)
//   MpiCommunicator    CPU ranks over MPI (distributed/mpi.hpp; Open MPI, started by mpirun)
//   NcclCommunicator   GPU gradients over NCCL, host data over MPI (distributed/nccl.cuh)
//
// The algorithms call it at one point, rlhf::training_step: after the local backward and before the optimizer
// step, the gradient becomes the rows-weighted mean of every rank's (weighted_gradient_mean), and the loss and
// metrics become the whole global batch's (reduce_step_result). PPO's and REINFORCE++'s advantage whitening
// takes its mean and variance over every rank's tokens (ppo.hpp, critic_free.hpp). Every rank must make the same
// calls in the same order with the same sizes, as MPI requires. docs/distributed.md.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstddef>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "rlhf/core/error.hpp"
#include "rlhf/core/metrics.hpp"

namespace rlhf {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Element-wise sums over the ranks, in place, of host memory.
  virtual void all_reduce_sum(std::span<float> host) = 0;
  virtual void all_reduce_sum(std::span<double> host) = 0;
  // Rank `root`'s bytes to every rank.
  virtual void broadcast(std::span<std::byte> host, int root) = 0;
  virtual void barrier() = 0;
  // Device memory (a CUDA model's gradients): only a communicator that can reach it overrides these.
  virtual void all_reduce_sum_device(std::span<float> /*device*/) {
    if (size() > 1) fail<config_error>("rlhf::Communicator: this communicator cannot reduce device memory");
  }
  virtual void scale_device(std::span<float> /*device*/, float factor) {
    if (size() > 1 || factor != 1.0f) fail<config_error>("rlhf::Communicator: this communicator cannot scale device memory");
  }
};

// One process: the identity.
class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void all_reduce_sum(std::span<float>) override {}
  void all_reduce_sum(std::span<double>) override {}
  void broadcast(std::span<std::byte>, int) override {}
  void barrier() override {}
  void all_reduce_sum_device(std::span<float>) override {}
  void scale_device(std::span<float>, float) override {}
};

inline double all_reduce_sum(Communicator& c, double value) {
  c.all_reduce_sum(std::span<double>(&value, 1));
  return value;
}

// Rank `root`'s values of a host buffer of floats or doubles to every rank (parameters at the start of a run).
template <class T>
void broadcast(Communicator& c, std::span<T> host, int root = 0) {
  c.broadcast(std::as_writable_bytes(host), root);
}

// grads ← Σ_r w_r · grads_r / Σ_r w_r: the gradient of the global mean loss when each rank's gradient is that of
// the mean over its own part, of weight w_r (its rows for a mean over rows, its tokens for a token mean).
// Host memory, or device memory when `on_device`.
template <class T>
void weighted_gradient_mean(Communicator& c, std::span<T> grads, double weight, bool on_device) {
  if (c.size() == 1) return;
  const double total = all_reduce_sum(c, weight);
  if (!(total > 0)) fail<value_error>("rlhf::weighted_gradient_mean: the ranks' weights sum to ", total);
  const double w = weight / total;
  if (on_device) {
    if constexpr (std::is_same_v<T, float>) {
      c.scale_device(grads, static_cast<float>(w));
      c.all_reduce_sum_device(grads);
    } else {
      fail<config_error>("rlhf::weighted_gradient_mean: device gradients must be float");
    }
  } else {
    for (T& g : grads) g = static_cast<T>(g * w);
    c.all_reduce_sum(grads);
  }
}

// The loss (a mean over the part, of weight `weight`: its rows or its tokens) and the metrics of every rank's
// part, joined into the global batch's by each metric's rule: row means weighted by rows, token means by tokens,
// sums added. Every rank gets the same numbers.
// The ranks must hold the same metric names: they are joined in name order, after a check that fails alike on every
// rank when the names differ (a count and a hash h < 2^20, with h² summed too, so that equal sums mean equal values;
// exact in double up to 8192 ranks). The result keeps this rank's order of the names.
inline double reduce_step_result(Communicator& c, std::size_t rows, double weight, double loss, Metrics& metrics) {
  if (c.size() == 1) return loss;
  std::vector<std::string> names;
  for (const auto& item : metrics.items()) names.push_back(item.first);
  std::sort(names.begin(), names.end());
  std::uint64_t h = 1469598103934665603ULL;  // FNV-1a over the names
  for (const auto& n : names) {
    for (const char ch : n) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ULL;
    h = (h ^ 0xffu) * 1099511628211ULL;
  }
  const double hash = static_cast<double>(h >> 44), count = static_cast<double>(names.size());
  double check[4] = {count, count * count, hash, hash * hash};
  c.all_reduce_sum(std::span<double>(check, 4));
  const double R = c.size();
  if (check[0] != R * count || check[1] != R * count * count || check[2] != R * hash || check[3] != R * hash * hash)
    fail<error>("rlhf::reduce_step_result: the ranks' steps report different metrics (this rank: ", names.size(),
                " names); every rank must run the same method on the same kind of batch");
  std::vector<double> buffer{static_cast<double>(rows), loss * weight, weight};
  for (const auto& name : names) {
    const double value = metrics[name];
    const double tokens = metrics.tokens(name);
    switch (metrics.rule(name)) {
      case Combine::row_mean: buffer.push_back(value * static_cast<double>(rows)), buffer.push_back(0); break;
      case Combine::token_mean: buffer.push_back(value * tokens), buffer.push_back(tokens); break;
      case Combine::sum: buffer.push_back(value), buffer.push_back(0); break;
    }
  }
  c.all_reduce_sum(std::span<double>(buffer));
  const double total_rows = buffer[0];
  Metrics joined;  // in name order
  std::size_t i = 3;
  for (const auto& name : names) {
    const double value = buffer[i], tokens = buffer[i + 1];
    i += 2;
    switch (metrics.rule(name)) {
      case Combine::row_mean: joined.set(name, value / total_rows); break;
      case Combine::token_mean: joined.set(name, tokens > 0 ? value / tokens : 0.0, Combine::token_mean, tokens); break;
      case Combine::sum: joined.set(name, value, Combine::sum); break;
    }
  }
  Metrics out;
  for (const auto& item : metrics.items())
    out.set(item.first, joined[item.first], joined.rule(item.first), joined.tokens(item.first));
  metrics = std::move(out);
  return buffer[2] > 0 ? buffer[1] / buffer[2] : 0.0;
}

}  // namespace rlhf
