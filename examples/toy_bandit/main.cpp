// The algorithms of rlhf-cpp on a toy contextual bandit (3 prompts x 4 responses), where the answer is known
// in closed form: the policy maximising E[r] - beta KL(pi || pi_ref) is pi* ∝ pi_ref · exp(r / beta).
// DPO, listwise DPO and PPO each train a tabular policy from pi_ref and should end at pi*; a Bradley-Terry
// reward model should recover r up to a constant per prompt. Every step is the same generic code that
// trains a transformer. docs/examples/toy_bandit.md derives pi* and shows this program's output.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "common/cli.hpp"
#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/algorithms/kl_control.hpp"
#include "rlhf/algorithms/ppo.hpp"
#include "rlhf/algorithms/reward_model.hpp"
#include "rlhf/models/toy/bandit.hpp"
#include "rlhf/optim/adamw.hpp"

namespace {

constexpr std::size_t P = 3, N = 4;  // prompts, responses
constexpr double beta = 2.0;         // KL coefficient
using Policy = rlhf::toy::BanditPolicy<double>;

struct Problem {
  std::vector<double> reference_logits, reward, optimum;  // [P, N] each
  explicit Problem(rlhf::Rng& rng) {
    for (std::size_t i = 0; i < P * N; ++i) reference_logits.push_back(2 * rng.uniform() - 1);
    for (std::size_t i = 0; i < P * N; ++i) reward.push_back(beta * (2 * rng.uniform() - 1));
    optimum = rlhf::toy::kl_optimum(reference().probabilities(), reward, N, beta);
  }
  Policy reference() const { return {P, N, reference_logits}; }
};

// One line of a table: steps done, a number to watch (loss, KL), and the total-variation distance to pi*
// averaged over prompts and the largest over prompts.
void print_row(int step, double watch, const Problem& problem, const Policy& policy) {
  const auto tv = rlhf::toy::total_variation(policy.probabilities(), problem.optimum, N);
  double mean = 0;
  for (const double d : tv) mean += d / static_cast<double>(tv.size());
  std::printf("  %6d  %8.4f  %8.4f  %8.4f\n", step, watch, mean, *std::max_element(tv.begin(), tv.end()));
}
void print_header(const char* title, const char* watch) {
  std::printf("\n%s\n  %6s  %8s  %8s  %8s\n", title, "step", watch, "TV mean", "TV max");
}
bool report(int done, int last) { return done == 10 || done % 25 == 0 || done == last; }

rlhf::PreferenceBatch pairs_from(const std::vector<rlhf::toy::Comparison>& data) {
  std::vector<rlhf::token_id> x, w, l;
  for (const auto& c : data) x.push_back(c.prompt), w.push_back(c.chosen), l.push_back(c.rejected);
  return {rlhf::toy::bandit_batch(x, w), rlhf::toy::bandit_batch(x, l), {}, {}};
}
rlhf::RankedBatch rankings_from(const std::vector<rlhf::toy::Ranking>& data) {
  std::vector<rlhf::token_id> x, y;
  for (const auto& r : data)
    for (const auto id : r.ranked) x.push_back(r.prompt), y.push_back(id);
  return {data.front().ranked.size(), rlhf::toy::bandit_batch(x, y), {}, {}};
}

// Pearson correlation of two [P, N] tables after removing each prompt's mean from both.
double centered_correlation(const std::vector<double>& a, std::span<const double> b) {
  double ab = 0, aa = 0, bb = 0;
  for (std::size_t x = 0; x < P; ++x) {
    double ma = 0, mb = 0;
    for (std::size_t y = 0; y < N; ++y) ma += a[x * N + y] / N, mb += b[x * N + y] / N;
    for (std::size_t y = 0; y < N; ++y) {
      const double da = a[x * N + y] - ma, db = b[x * N + y] - mb;
      ab += da * db, aa += da * da, bb += db * db;
    }
  }
  return ab / std::sqrt(aa * bb);
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t seed = 7;
  int steps = 100;
  CLI::App app{"DPO, listwise DPO, a Bradley-Terry reward model and PPO on a toy bandit whose optimum is known "
               "(docs/examples/toy_bandit.md)",
               "toy_bandit"};
  app.add_option("--seed", seed, "seed of the problem and the data")->capture_default_str();
  app.add_option("--steps", steps, "steps of DPO, listwise DPO and the reward model")->check(CLI::Range(1, 100'000))
      ->capture_default_str();
  if (const int code = examples::parse_command_line(app, argc, argv); code >= 0) return code;

  rlhf::Rng rng(seed);
  const Problem problem(rng);
  auto reference = problem.reference();
  const auto decay = [&](rlhf::AdamW<double>& opt, float lr, int step) {  // linear decay to 0
    opt.set_learning_rate(lr * float(steps - step) / steps);
  };
  std::printf("bandit: %zu prompts x %zu responses, beta = %.1f, pi* = pi_ref exp(r / beta) / Z\n", P, N, beta);

  // DPO on 24000 pairs drawn from the Bradley-Terry model of r, reference log-probs precomputed once.
  auto pairs = pairs_from(rlhf::toy::sample_comparisons(problem.reward, N, 24000, rng));
  rlhf::precompute_reference_logps(reference, pairs);
  {
    print_header("DPO (24000 pairs, AdamW, the whole set each step in 2 micro-batches)", "loss");
    Policy policy = problem.reference();
    print_row(0, std::log(2.0), problem, policy);
    rlhf::AdamW<double> opt({.learning_rate = 0.1f, .weight_decay = 0.0f});
    for (int step = 0; step < steps; ++step) {
      decay(opt, 0.1f, step);
      const auto r = rlhf::dpo_step(policy, opt, pairs, {.beta = float(beta)}, {.micro_batches = 2});
      if (report(step + 1, steps)) print_row(step + 1, r.loss, problem, policy);
    }
  }

  // Listwise DPO on 10000 rankings of 3 responses drawn from the Plackett-Luce model of r.
  {
    auto ranked = rankings_from(rlhf::toy::sample_rankings(problem.reward, N, 3, 10000, rng));
    rlhf::precompute_reference_logps(reference, ranked);
    print_header("Listwise DPO (10000 rankings of K = 3 drawn from Plackett-Luce(r), AdamW)", "loss");
    Policy policy = problem.reference();
    print_row(0, std::log(6.0), problem, policy);
    rlhf::AdamW<double> opt({.learning_rate = 0.1f, .weight_decay = 0.0f});
    for (int step = 0; step < steps; ++step) {
      decay(opt, 0.1f, step);
      const auto r = rlhf::listwise_dpo_step(policy, opt, ranked, {.beta = float(beta)}, {.micro_batches = 2});
      if (report(step + 1, steps)) print_row(step + 1, r.loss, problem, policy);
    }
  }

  // A Bradley-Terry reward model on the same pairs, then PPO against the true reward and against it.
  rlhf::toy::BanditRewardModel<double> reward_model(P, N);
  {
    std::printf("\nBradley-Terry reward model (the DPO pairs, AdamW)\n  %6s  %8s  %8s\n", "step", "loss", "corr");
    std::printf("  %6d  %8.4f  %8s\n", 0, std::log(2.0), "-");
    rlhf::AdamW<double> opt({.learning_rate = 0.1f, .weight_decay = 0.0f});
    for (int step = 0; step < steps; ++step) {
      decay(opt, 0.1f, step);
      const auto r = rlhf::reward_model_step(reward_model, opt, pairs, {}, {.micro_batches = 2});
      if (report(step + 1, steps))
        std::printf("  %6d  %8.4f  %8.4f\n", step + 1, r.loss,
                    centered_correlation(problem.reward, reward_model.parameters()));
    }
    std::printf("  corr: Pearson correlation with r, after removing each prompt's mean from both\n");
  }
  const auto true_reward = [&](const rlhf::TokenBatch& b) {
    std::vector<double> s;
    for (std::size_t i = 0; i < b.batch; ++i) s.push_back(problem.reward[b.token(i, 0) * N + b.token(i, 1)]);
    return s;
  };
  std::vector<rlhf::token_id> prompt_ids;
  for (std::size_t i = 0; i < 128 * P; ++i) prompt_ids.push_back(static_cast<rlhf::token_id>(i % P));
  const auto prompts = rlhf::toy::bandit_prompts(prompt_ids);
  const auto run_ppo = [&](const char* title, auto& reward) {
    print_header(title, "KL");
    Policy policy = problem.reference();
    print_row(0, 0.0, problem, policy);
    rlhf::toy::BanditValueModel<double> critic(P, N);
    rlhf::AdamW<double> policy_opt({.learning_rate = 0.01f, .weight_decay = 0.0f});
    rlhf::AdamW<double> value_opt({.learning_rate = 0.1f, .weight_decay = 0.0f});
    rlhf::FixedKlController kl{.coef = float(beta)};
    const int ppo_steps = 200;
    for (int step = 0; step < ppo_steps; ++step) {
      policy_opt.set_learning_rate(0.01f * float(ppo_steps - step) / ppo_steps);
      const auto r = rlhf::ppo_step(rlhf::PpoModels{.policy = policy, .reference = reference, .value_model = critic, .reward = reward},
                         rlhf::PpoOptimizers{.policy = policy_opt, .value = value_opt}, kl, prompts, rng,
                         {.epochs = 4, .minibatches = 4});
      if (report(step + 1, ppo_steps)) print_row(step + 1, r.metrics["objective/kl"], problem, policy);
    }
  };
  run_ppo("PPO, the true reward (384 rollouts a step, 4 epochs x 4 minibatches, KL coef = beta)", true_reward);
  run_ppo("PPO, the Bradley-Terry reward model above as the reward", reward_model);
  return 0;
}
