// Data parallel on 2 MPI ranks (mpirun -np 2): each rank takes b rows of a 2b-row batch; after 5 steps the
// parameters equal those of one process stepping on the whole batch (≤ 1e-6 relative in float, ≤ 1e-12 in double),
// and are identical on both ranks. SFT (row and token means), DPO, a reward model and PPO (rollouts of given
// responses, so that one process and two ranks score the same samples; advantages whitened over both ranks).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/algorithms/kl_control.hpp"
#include "rlhf/algorithms/kto.hpp"
#include "rlhf/algorithms/orpo.hpp"
#include "rlhf/algorithms/ppo.hpp"
#include "rlhf/algorithms/reward_model.hpp"
#include "rlhf/algorithms/sft.hpp"
#include "rlhf/distributed/mpi.hpp"
#include "rlhf/models/gpt/model.hpp"
#include "rlhf/optim/adamw.hpp"
#include <span>
#include "support/tiny_gpt.hpp"

using namespace rlhf;

namespace {

MpiCommunicator* world = nullptr;
constexpr std::size_t rows_per_rank = 4, steps = 5;

template <class T>
double tolerance() {
  return sizeof(T) == 4 ? 1e-6 : 1e-12;
}

// max |a − b| / max |b|
template <class T>
double relative_difference(std::span<const T> a, std::span<const T> b) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i]))), scale = std::max(scale, std::abs(double(b[i])));
  return diff / scale;
}

// Rank 1's parameters, sent to every rank.
template <class T>
std::vector<T> rank1_copy(std::span<const T> p) {
  std::vector<T> out(p.begin(), p.end());
  broadcast(*world, std::span<T>(out), 1);
  return out;
}

std::pair<std::size_t, std::size_t> my_rows() {
  const std::size_t r = std::size_t(world->rank());
  return {r * rows_per_rank, (r + 1) * rows_per_rank};
}

PreferenceBatch my_part(const PreferenceBatch& whole) {
  const auto [lo, hi] = my_rows();
  PreferenceBatch part;
  part.chosen = slice_rows(whole.chosen, lo, hi);
  part.rejected = slice_rows(whole.rejected, lo, hi);
  return part;
}

// Checks the distributed model against the single-process one, and the two ranks against each other.
template <class T>
void check_equal(const Gpt<T>& distributed, const Gpt<T>& single, const char* what, std::uint64_t seed = 3) {
  const auto mine = distributed.parameters();
  const auto other = rank1_copy<T>(mine);
  const std::string name = what;
  CAPTURE(name);
  CHECK(std::equal(mine.begin(), mine.end(), other.begin()));  // every rank took the same steps
  const double rel = relative_difference<T>(mine, single.parameters());
  MESSAGE(name, ": parameters of 2 ranks vs 1 process after ", steps, " steps, max relative difference ", rel);
  CHECK(rel <= tolerance<T>());
  // Not vacuous: training moved the parameters well past the tolerance.
  Gpt<T> initial(distributed.config(), seed);
  CHECK(relative_difference<T>(initial.parameters(), single.parameters()) > 1e3 * tolerance<T>());
}

// In float the comparison uses a plain gradient step: AdamW divides each gradient by its own running scale, so a
// coordinate whose gradient is near 0 (its sign decided by float rounding, which the order of the sums over rows
// changes) moves by a full step either way. In double that rounding is far below the tolerance and AdamW is used.
const AdamWConfig adamw_config{.learning_rate = 1e-2f, .weight_decay = 0.0f};

template <class T>
struct Optimizer {
  double rate = 0.5;  // of the plain step
  AdamW<T> adamw{adamw_config};
  void step(std::span<T> params, std::span<const T> grads) {
    if constexpr (sizeof(T) == 8) {
      adamw.step(params, grads);
    } else {
      for (std::size_t i = 0; i < params.size(); ++i) params[i] -= T(rate) * grads[i];
    }
  }
};

template <class T>
void sft_case(Aggregation how) {
  const TokenBatch whole = test::short_responses(2 * rows_per_rank, 7);
  const auto [lo, hi] = my_rows();
  const TokenBatch part = slice_rows(whole, lo, hi);
  Gpt<T> distributed(test::tiny_gpt, 3), single(test::tiny_gpt, 3);
  Optimizer<T> opt_d, opt_s;
  const SftConfig config{how};
  for (std::size_t s = 0; s < steps; ++s) {
    sft_step(distributed, opt_d, part, config, {.communicator = world});
    sft_step(single, opt_s, whole, config);
  }
  check_equal(distributed, single, how == Aggregation::token_mean ? "sft, token mean" : "sft, row mean");
}

// A policy that "samples" the given rows: one process and two ranks then score the same rollouts.
struct GivenSamples {
  using backend = Gpt<float>::backend;
  Gpt<float>& model;
  TokenBatch rows;
  backend::matrix log_probs(const TokenBatch& b) { return model.log_probs(b); }
  void backward(const TokenBatch& b, const backend::matrix& d) { model.backward(b, d); }
  void zero_grad() { model.zero_grad(); }
  std::span<float> parameters() { return model.parameters(); }
  std::span<float> gradients() { return model.gradients(); }
  TokenBatch sample(const PromptBatch&, const SampleOptions&, Rng&) const { return rows; }
};

}  // namespace

TEST_CASE("sft: 2 ranks x b rows equal 1 process x 2b rows (float and double, row and token means)") {
  sft_case<float>(Aggregation::sequence_sum);
  sft_case<float>(Aggregation::token_mean);
  sft_case<double>(Aggregation::sequence_sum);
  sft_case<double>(Aggregation::token_mean);
}

TEST_CASE("dpo: 2 ranks x b pairs equal 1 process x 2b pairs") {
  PreferenceBatch whole{.chosen = test::short_responses(2 * rows_per_rank, 1),
                        .rejected = test::short_responses(2 * rows_per_rank, 2)};
  const auto part = my_part(whole);
  Gpt<float> distributed(test::tiny_gpt, 3), single(test::tiny_gpt, 3), reference(test::tiny_gpt, 3);
  Optimizer<float> opt_d, opt_s;
  for (std::size_t s = 0; s < steps; ++s) {
    const auto r = dpo_step(distributed, reference, opt_d, part, {.beta = 0.5}, {.communicator = world});
    const auto q = dpo_step(single, reference, opt_s, whole, {.beta = 0.5});
    CHECK(r.loss == doctest::Approx(q.loss).epsilon(1e-5));  // the loss is the global batch's on every rank
    CHECK(r.metrics[metric::rewards_accuracies] == doctest::Approx(q.metrics[metric::rewards_accuracies]));
  }
  check_equal(distributed, single, "dpo");
}

TEST_CASE("orpo: 2 ranks equal 1 process (the NLL a token mean over every rank's chosen tokens)") {
  PreferenceBatch whole{.chosen = test::short_responses(2 * rows_per_rank, 12),
                        .rejected = test::short_responses(2 * rows_per_rank, 13)};
  const auto part = my_part(whole);
  Gpt<float> distributed(test::tiny_gpt, 3), single(test::tiny_gpt, 3);
  Optimizer<float> opt_d, opt_s;
  for (std::size_t s = 0; s < steps; ++s) {
    orpo_step(distributed, opt_d, part, {.lambda = 0.5}, {.communicator = world});
    orpo_step(single, opt_s, whole, {.lambda = 0.5});
  }
  check_equal(distributed, single, "orpo");
}

TEST_CASE("kto: 2 ranks equal 1 process (z0 over every rank's mismatched rows; one rank all desirable)") {
  const TokenBatch sequences = test::short_responses(2 * rows_per_rank, 14);
  const auto [lo, hi] = my_rows();
  UnpairedBatch part{.sequences = slice_rows(sequences, lo, hi)};
  part.desirable.assign(rows_per_rank, world->rank() == 0 ? 1 : 0);  // rank 0 desirable only, rank 1 undesirable only
  part.mismatched = mismatched_rows(part.sequences);
  // One process: the same examples, and as mismatched rows both ranks' (so that its z0 is over the same rows).
  UnpairedBatch whole{.sequences = sequences};
  whole.desirable.assign(rows_per_rank, 1);
  whole.desirable.resize(2 * rows_per_rank, 0);
  whole.mismatched = concat_rows(mismatched_rows(slice_rows(sequences, 0, rows_per_rank)),
                                 mismatched_rows(slice_rows(sequences, rows_per_rank, 2 * rows_per_rank)));
  Gpt<float> distributed(test::tiny_gpt, 3), single(test::tiny_gpt, 3), reference(test::tiny_gpt, 3);
  Optimizer<float> opt_d, opt_s;
  for (std::size_t s = 0; s < steps; ++s) {
    const auto r = kto_step(distributed, reference, opt_d, part, {.beta = 0.5}, {.communicator = world});
    const auto q = kto_step(single, reference, opt_s, whole, {.beta = 0.5});
    CHECK(r.metrics["kl"] == doctest::Approx(q.metrics["kl"]).epsilon(1e-5));
    CHECK(r.metrics["rewards/rejected"] == doctest::Approx(q.metrics["rewards/rejected"]).epsilon(1e-4).scale(1e-6));
    CHECK(r.metrics["count/chosen"] == q.metrics["count/chosen"]);
  }
  check_equal(distributed, single, "kto");
}

TEST_CASE("reward model: 2 ranks x b pairs equal 1 process x 2b pairs") {
  PreferenceBatch whole{.chosen = test::short_responses(2 * rows_per_rank, 4),
                        .rejected = test::short_responses(2 * rows_per_rank, 5)};
  const auto part = my_part(whole);
  GptConfig c = test::tiny_gpt;
  c.scalar_head = true;
  Gpt<float> distributed(c, 3), single(c, 3);
  Optimizer<float> opt_d, opt_s;
  for (std::size_t s = 0; s < steps; ++s) {
    reward_model_step(distributed, opt_d, part, {}, {.communicator = world});
    reward_model_step(single, opt_s, whole);
  }
  check_equal(distributed, single, "reward model");
}

TEST_CASE("ppo: 2 ranks x b rollouts equal 1 process x 2b rollouts (global whitening, policy and critic)") {
  const TokenBatch whole = test::short_responses(2 * rows_per_rank, 9);
  const auto [lo, hi] = my_rows();
  std::vector<token_id> prompt_ids(hi - lo, 1);
  const PromptBatch prompts = [&] {
    PromptBatch p;
    p.batch = hi - lo, p.time = 1, p.tokens = prompt_ids, p.prompt_length.assign(hi - lo, 1);
    return p;
  }();
  PromptBatch all_prompts = prompts;
  all_prompts.batch = whole.batch, all_prompts.tokens.assign(whole.batch, 1), all_prompts.prompt_length.assign(whole.batch, 1);
  const auto reward = [](const TokenBatch& b) {
    std::vector<double> out;
    for (std::size_t r = 0; r < b.batch; ++r) {
      double n = 0;
      for (std::size_t t = 0; t < b.time; ++t) n += b.mask(r, t) && b.token(r, t) == 3;
      out.push_back(n);
    }
    return out;
  };
  GptConfig vc = test::tiny_gpt;
  vc.scalar_head = true;
  Gpt<float> policy_d(test::tiny_gpt, 3), policy_s(test::tiny_gpt, 3), reference(test::tiny_gpt, 3);
  Gpt<float> value_d(vc, 4), value_s(vc, 4);
  GivenSamples sampler_d{policy_d, slice_rows(whole, lo, hi)}, sampler_s{policy_s, whole};
  Optimizer<float> po_d{0.02}, vo_d{0.02}, po_s{0.02}, vo_s{0.02};
  FixedKlController kl_d{.coef = 0.1}, kl_s{.coef = 0.1};
  Rng rng_d(11 + std::uint64_t(world->rank())), rng_s(11);  // rank-dependent seeds, as for real sampling
  const PpoStepConfig config{.epochs = 2, .minibatches = 1};
  for (std::size_t s = 0; s < steps; ++s) {
    const auto r = ppo_step(PpoModels{.policy = sampler_d, .reference = reference, .value_model = value_d, .reward = reward},
                            PpoOptimizers{.policy = po_d, .value = vo_d}, kl_d, prompts, rng_d, config,
                            {.communicator = world});
    const auto q = ppo_step(PpoModels{.policy = sampler_s, .reference = reference, .value_model = value_s, .reward = reward},
                            PpoOptimizers{.policy = po_s, .value = vo_s}, kl_s, all_prompts, rng_s, config);
    CHECK(r.metrics[metric::objective_scores] == doctest::Approx(q.metrics[metric::objective_scores]));
  }
  check_equal(policy_d, policy_s, "ppo policy");
  check_equal(value_d, value_s, "ppo value model", 4);
}

int main(int argc, char** argv) {
  MpiSession mpi(argc, argv);
  static MpiCommunicator communicator;  // static: `world` points at it while the tests run
  world = &communicator;
  if (communicator.size() != 2) {
    if (communicator.rank() == 0) std::fprintf(stderr, "run with mpirun -np 2 (got %d ranks)\n", communicator.size());
    return 2;
  }
  doctest::Context context(argc, argv);
  if (communicator.rank() != 0) context.setOption("out", "/dev/null");  // one report, from rank 0
  const int failed = context.run();
  // A failure on either rank fails the test on both.
  const double any = all_reduce_sum(communicator, failed ? 1.0 : 0.0);
  return any > 0 ? 1 : 0;
}
