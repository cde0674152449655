#pragma once
// Sequence-level advantages of G responses sampled for the same prompt, from their rewards r [B·G] (the G
// responses of prompt p are rows p·G … p·G + G − 1):
//
//   mean          (GRPO)   A_i = r_i − mean_g r                     baseline includes r_i itself
//   leave_one_out (RLOO)   A_i = r_i − (Σ_g r − r_i) / (G − 1)       baseline independent of y_i: unbiased
//   scale_rewards          A_i ← A_i / (std_g r + ε)                 GRPO (std with n − 1, as torch.std); off
//                                                                     in Dr. GRPO and RLOO
//
// With the mean baseline the expected policy gradient is (1 − 1/G) times the true one; leave-one-out keeps it
// exact (tests/losses/group_advantage.cpp checks both by Monte Carlo). A group whose rewards are all equal has
// A = 0 everywhere and teaches nothing; it is flagged (uniform) so that a step may drop it (DAPO's dynamic
// sampling). Advantages carry no gradient (as in every peer). Host code over [B·G] doubles: a rollout's
// rewards are few. docs/losses/group_advantage.md.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "rlhf/core/error.hpp"
#include "rlhf/core/metrics.hpp"

namespace rlhf {

enum class GroupBaseline { mean, leave_one_out };

struct GroupAdvantageConfig {
  std::size_t group_size = 4;                    // G ≥ 1 (leave_one_out: ≥ 2)
  GroupBaseline baseline = GroupBaseline::mean;  // GRPO: mean; RLOO: leave_one_out
  bool scale_rewards = true;                     // divide by the group's standard deviation + eps (GRPO)
  double eps = 1e-4;                             // ε added to the std (TRL's GRPOTrainer: 1e-4)
};

struct GroupAdvantageResult {
  std::vector<double> advantages;      // [B·G]
  std::vector<std::uint8_t> uniform;   // [B] 1 where every reward of the group is equal
  Metrics metrics;                     // reward, reward_std (mean over groups), frac_reward_zero_std
};

inline GroupAdvantageResult group_advantages(std::span<const double> rewards, const GroupAdvantageConfig& config) {
  constexpr const char* fn = "rlhf::group_advantages";
  const std::size_t G = config.group_size;
  if (G == 0) fail<config_error>(fn, ": group_size must be >= 1 (got 0)");
  if (config.baseline == GroupBaseline::leave_one_out && G < 2)
    fail<config_error>(fn, ": a leave-one-out baseline needs group_size >= 2 (got ", G, ")");
  if (!(config.eps > 0) || !std::isfinite(config.eps)) fail<config_error>(fn, ": eps must be > 0 (got ", config.eps, ")");
  if (rewards.empty() || rewards.size() % G != 0)
    fail<shape_error>(fn, ": 'rewards' has ", rewards.size(), " entries, not a positive multiple of group_size ", G);
  for (std::size_t i = 0; i < rewards.size(); ++i)
    if (!std::isfinite(rewards[i])) fail<value_error>(fn, ": rewards[", i, "] is ", rewards[i], "; rewards must be finite");

  const std::size_t B = rewards.size() / G;
  GroupAdvantageResult out;
  out.advantages.resize(rewards.size());
  out.uniform.resize(B);
  double total = 0, std_total = 0, uniform = 0;
  for (std::size_t b = 0; b < B; ++b) {
    const double* r = rewards.data() + b * G;
    double sum = 0;
    for (std::size_t g = 0; g < G; ++g) sum += r[g];
    const double mean = sum / double(G);
    double squares = 0;
    bool equal = true;
    for (std::size_t g = 0; g < G; ++g) squares += (r[g] - mean) * (r[g] - mean), equal &= r[g] == r[0];
    const double std = G > 1 ? std::sqrt(squares / double(G - 1)) : 0.0;
    const double scale = config.scale_rewards ? 1.0 / (std + config.eps) : 1.0;
    for (std::size_t g = 0; g < G; ++g) {
      const double baseline = config.baseline == GroupBaseline::mean ? mean : (sum - r[g]) / double(G - 1);
      out.advantages[b * G + g] = equal ? 0.0 : (r[g] - baseline) * scale;
    }
    out.uniform[b] = equal;
    total += sum, std_total += std, uniform += equal;
  }
  out.metrics.set("reward", total / double(rewards.size()));
  out.metrics.set("reward_std", std_total / double(B));
  out.metrics.set("frac_reward_zero_std", uniform / double(B));
  return out;
}

}  // namespace rlhf
