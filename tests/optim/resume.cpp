// Exact resume: a run of 2N steps straight against N steps, everything saved (the model's checkpoint, the
// optimizer's state, the generator that picks the minibatches, the schedule), a fresh start from the files, and
// N more steps. The parameters must agree bit for bit, and so must the files the two runs save at the end:
// with one optimizer step per batch and with gradients accumulated over micro-batches, with minibatches drawn
// i.i.d. and from shuffled epochs stopped mid-epoch, on the tiny CPU GPT (float) and, for the double path, on a
// least-squares problem under RMSprop. docs/optim/state.md.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "rlhf/algorithms/dpo.hpp"
#include "rlhf/algorithms/sft.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/io/safetensors.hpp"
#include "rlhf/models/gpt/checkpoint.hpp"
#include "rlhf/models/gpt/model.hpp"
#include "rlhf/optim/adamw.hpp"
#include "rlhf/optim/rmsprop.hpp"
#include "rlhf/optim/schedule.hpp"
#include "rlhf/optim/state_file.hpp"
#include "support/bytes.hpp"
#include "support/temp_dir.hpp"
#include "support/tiny_gpt.hpp"

using namespace rlhf;
using rlhf::test::TempDir;
namespace fs = std::filesystem;

namespace {

const GptConfig& tiny = rlhf::test::tiny_gpt;
TokenBatch sequences(std::size_t rows, std::uint64_t seed) { return rlhf::test::short_responses(rows, seed); }

TokenBatch gather(const TokenBatch& all, const std::vector<std::size_t>& rows) {
  TokenBatch out = TokenBatch::zeros(rows.size(), all.time);
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (std::size_t t = 0; t < all.time; ++t) {
      out.token(i, t) = all.token(rows[i], t);
      out.mask(i, t) = all.mask(rows[i], t);
    }
  return out;
}

PreferenceBatch gather(const PreferenceBatch& all, const std::vector<std::size_t>& rows) {
  PreferenceBatch out{gather(all.chosen, rows), gather(all.rejected, rows), {}, {}, {}};
  for (const std::size_t r : rows) {
    out.reference_chosen.push_back(all.reference_chosen[r]);
    out.reference_rejected.push_back(all.reference_rejected[r]);
  }
  return out;
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size_bytes()) == 0;
}

enum class Data { iid, epochs };  // minibatches drawn with replacement, or from an epoch's shuffled order
enum class Method { sft, dpo };

// A training run as a trainer holds it: the model, the optimizer, the schedule, and the generator behind the data
// order. With Data::epochs, the generator is saved as it stood at the start of the current epoch (the order of
// that epoch is drawn again from it on resume) and the position inside the epoch follows from the step.
struct Run {
  static constexpr std::size_t rows = 12, batch = 4, per_epoch = rows / batch;

  Method method;
  Data data;
  StepOptions options;
  const PreferenceBatch* pairs;
  Gpt<float> model;
  AdamW<float> optimizer;
  LearningRateSchedule schedule;
  Rng rng;
  Rng::State epoch_start{};
  std::vector<std::size_t> order;

  // The start of a run from scratch (seeds 1, 7); a resumed run is built with other seeds and settings, which
  // the files must overwrite.
  Run(Method m, Data d, std::size_t micro_batches, const PreferenceBatch& p, std::uint64_t model_seed = 1,
      std::uint64_t data_seed = 7, float learning_rate = 1e-2f)
      : method(m),
        data(d),
        options{.micro_batches = micro_batches},
        pairs(&p),
        model(tiny, model_seed),
        optimizer({.learning_rate = learning_rate, .weight_decay = 0.1f}),
        schedule({.peak_learning_rate = learning_rate, .warmup_steps = 3, .total_steps = 10, .final_fraction = 0.1f}),
        rng(data_seed) {}

  std::vector<std::size_t> next_rows() {
    std::vector<std::size_t> picked;
    if (data == Data::iid) {
      for (std::size_t i = 0; i < batch; ++i) picked.push_back(rng.below(rows));
      return picked;
    }
    const std::size_t position = schedule.step() % per_epoch;
    if (position == 0) shuffle();
    const auto first = order.begin() + std::ptrdiff_t(position * batch);
    picked.assign(first, first + std::ptrdiff_t(batch));
    return picked;
  }

  void shuffle() {  // Fisher–Yates from the generator, remembering where the epoch began
    epoch_start = rng.state();
    order.resize(rows);
    std::iota(order.begin(), order.end(), std::size_t{0});
    for (std::size_t i = rows - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
  }

  void steps(std::size_t n) {
    for (std::size_t s = 0; s < n; ++s) {
      const auto picked = next_rows();
      optimizer.set_learning_rate(schedule.learning_rate());
      if (method == Method::sft) {
        sft_step(model, optimizer, gather(pairs->chosen, picked), {}, options);
      } else {
        dpo_step(model, optimizer, gather(*pairs, picked), {.beta = 0.5f}, options);
      }
      schedule.advance();
    }
  }

  void save(const fs::path& dir) const {
    save_checkpoint(model, dir / "model.safetensors");
    save_optimizer_state(dir / "optimizer.safetensors", optimizer);
    save_schedule_state(dir / "schedule.safetensors", schedule);
    Rng data_rng = rng;
    if (data == Data::epochs && schedule.step() % per_epoch != 0) data_rng.restore(epoch_start);  // mid-epoch
    save_rng_state(dir / "rng.safetensors", data_rng);
  }

  void load(const fs::path& dir) {
    load_parameters(model, io::Safetensors::load(dir / "model.safetensors"));
    load_optimizer_state(dir / "optimizer.safetensors", optimizer, model.parameters().size());
    load_schedule_state(dir / "schedule.safetensors", schedule);
    load_rng_state(dir / "rng.safetensors", rng);
    if (data == Data::epochs && schedule.step() % per_epoch != 0) shuffle();  // the current epoch's order again
  }
};

void check_resume(Method method, Data data, std::size_t micro_batches, std::size_t n) {
  TempDir dir("rlhf-resume");
  PreferenceBatch pairs{sequences(Run::rows, 1), sequences(Run::rows, 2), {}, {}, {}};
  Gpt<float> reference(tiny, 1);
  precompute_reference_logps(reference, pairs);

  Run straight(method, data, micro_batches, pairs);
  straight.steps(2 * n);

  Run first(method, data, micro_batches, pairs);
  first.steps(n);
  fs::create_directories(dir / "stop");
  first.save(dir / "stop");

  Run resumed(method, data, micro_batches, pairs, /*model_seed=*/99, /*data_seed=*/123, /*learning_rate=*/0.5f);
  CHECK_FALSE(same_bits(resumed.model.parameters(), first.model.parameters()));
  resumed.load(dir / "stop");
  CHECK(same_bits(resumed.model.parameters(), first.model.parameters()));
  CHECK(resumed.optimizer.steps() == n);
  CHECK(resumed.schedule.step() == n);
  resumed.steps(n);

  CHECK(straight.optimizer.steps() == 2 * n);
  CHECK(resumed.optimizer.steps() == 2 * n);
  CHECK(same_bits(resumed.model.parameters(), straight.model.parameters()));
  CHECK(same_bits(resumed.optimizer.first_moment(), straight.optimizer.first_moment()));
  CHECK(same_bits(resumed.optimizer.second_moment(), straight.optimizer.second_moment()));
  CHECK(resumed.rng.state() == straight.rng.state());

  fs::create_directories(dir / "straight");
  fs::create_directories(dir / "resumed");
  straight.save(dir / "straight");
  resumed.save(dir / "resumed");
  for (const char* file : {"model.safetensors", "optimizer.safetensors", "schedule.safetensors", "rng.safetensors"}) {
    INFO(file);
    CHECK(test::read_bytes(dir / "straight" / file) == test::read_bytes(dir / "resumed" / file));
  }
  // The run moved: N steps changed the parameters, and the straight run differs from a run that stopped at N.
  CHECK_FALSE(same_bits(first.model.parameters(), straight.model.parameters()));
}

}  // namespace

TEST_CASE("resume: SFT on the tiny GPT, minibatches drawn by the generator, 2N straight = N, save, load, N") {
  check_resume(Method::sft, Data::iid, 1, 3);
}

TEST_CASE("resume: SFT with gradients accumulated over 2 micro-batches") { check_resume(Method::sft, Data::iid, 2, 4); }

TEST_CASE("resume: DPO over 2 micro-batches from shuffled epochs, stopped in the middle of an epoch") {
  check_resume(Method::dpo, Data::epochs, 2, 4);  // 3 batches an epoch: step 4 is the 2nd batch of the 2nd epoch
}

TEST_CASE("resume: DPO stopped at an epoch's end") { check_resume(Method::dpo, Data::epochs, 1, 3); }

// The double path: a least-squares fit under centred RMSprop with momentum, samples drawn by the generator, the
// parameters kept in an F64 tensor of their own file.
namespace {

struct LeastSquares {
  static constexpr std::size_t dims = 5, samples = 32;
  std::vector<double> x, y;  // [samples, dims], [samples]
  LeastSquares() {
    Rng data(3);
    for (std::size_t i = 0; i < samples * dims; ++i) x.push_back(data.normal());
    for (std::size_t i = 0; i < samples; ++i) y.push_back(data.normal());
  }
};

struct DoubleRun {
  const LeastSquares* problem;
  std::vector<double> w = std::vector<double>(LeastSquares::dims, 0.0);
  Rmsprop<double> optimizer;
  Rng rng;
  DoubleRun(const LeastSquares& p, std::uint64_t seed, float lr)
      : problem(&p), optimizer({.learning_rate = lr, .momentum = 0.9f, .centered = true}), rng(seed) {}

  void steps(std::size_t n) {
    std::vector<double> g(LeastSquares::dims);
    for (std::size_t s = 0; s < n; ++s) {
      std::fill(g.begin(), g.end(), 0.0);
      for (int k = 0; k < 4; ++k) {
        const std::size_t i = rng.below(LeastSquares::samples);
        double r = -problem->y[i];
        for (std::size_t d = 0; d < LeastSquares::dims; ++d) r += problem->x[i * LeastSquares::dims + d] * w[d];
        for (std::size_t d = 0; d < LeastSquares::dims; ++d) g[d] += r * problem->x[i * LeastSquares::dims + d];
      }
      optimizer.step(w, g);
    }
  }
  void save(const fs::path& dir) const {
    const io::TensorView views[] = {{.name = "w", .dtype = io::Dtype::f64, .shape = {w.size()}, .bytes = w.data()}};
    io::save_safetensors(dir / "w.safetensors", views);
    save_optimizer_state(dir / "optimizer.safetensors", optimizer);
    save_rng_state(dir / "rng.safetensors", rng);
  }
  void load(const fs::path& dir) {
    const auto st = io::Safetensors::load(dir / "w.safetensors");
    const auto bytes = st.bytes("w");
    REQUIRE(bytes.size() == w.size() * sizeof(double));
    std::memcpy(w.data(), bytes.data(), bytes.size());
    load_optimizer_state(dir / "optimizer.safetensors", optimizer, w.size());
    load_rng_state(dir / "rng.safetensors", rng);
  }
};

}  // namespace

TEST_CASE("resume: double parameters under centred RMSprop with momentum, bit for bit") {
  TempDir dir("rlhf-resume");
  const LeastSquares problem;
  DoubleRun straight(problem, 5, 0.01f), first(problem, 5, 0.01f), resumed(problem, 77, 0.3f);
  straight.steps(40);
  first.steps(20);
  first.save(dir.path);
  resumed.load(dir.path);
  resumed.steps(20);
  CHECK(std::memcmp(resumed.w.data(), straight.w.data(), straight.w.size() * sizeof(double)) == 0);
  const auto a = straight.optimizer.state(), b = resumed.optimizer.state();
  CHECK(a.step == 40);
  CHECK(b.step == 40);
  CHECK(b.config.learning_rate == 0.01f);
  CHECK(std::memcmp(a.square_avg.data(), b.square_avg.data(), a.square_avg.size() * sizeof(double)) == 0);
  CHECK(std::memcmp(a.grad_avg.data(), b.grad_avg.data(), a.grad_avg.size() * sizeof(double)) == 0);
  CHECK(std::memcmp(a.momentum_buffer.data(), b.momentum_buffer.data(), a.momentum_buffer.size() * sizeof(double)) ==
        0);
  CHECK(a.momentum_buffer.size() == LeastSquares::dims);
}
