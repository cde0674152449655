#include "rlhf/io/reference_cache.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <vector>

#include "rlhf/core/rng.hpp"
#include "support/temp_dir.hpp"

using namespace rlhf;

namespace {

PreferenceBatch pair_batch(std::size_t rows, Rng& rng) {
  PreferenceBatch b{TokenBatch::zeros(rows, 3), TokenBatch::zeros(rows, 4), {}, {}};
  for (std::size_t r = 0; r < rows; ++r) {
    b.reference_chosen.push_back(-100.0 * rng.uniform() - 1e-9 * rng.uniform());
    b.reference_rejected.push_back(-3000.0 * rng.uniform());
  }
  return b;
}

}  // namespace

TEST_CASE("reference cache: a dataset's reference log-probs survive the round trip to ~1e-14") {
  Rng rng(3);
  std::vector<PreferenceBatch> data{pair_batch(5, rng), pair_batch(2, rng)};
  const rlhf::test::TempDir dir("rlhf-reference-cache");
  const auto path = dir / "pairs.safetensors";
  io::save_reference_logps(path, std::span<const PreferenceBatch>(data));

  std::vector<PreferenceBatch> fresh{data[0], data[1]};
  for (auto& b : fresh) b.reference_chosen.clear(), b.reference_rejected.clear();
  io::load_reference_logps(path, std::span<PreferenceBatch>(fresh));
  double worst = 0, worst_float32 = 0;
  for (std::size_t i = 0; i < data.size(); ++i)
    for (std::size_t r = 0; r < data[i].chosen.batch; ++r) {
      worst = std::max(worst, std::abs(fresh[i].reference_chosen[r] - data[i].reference_chosen[r]) /
                                  std::abs(data[i].reference_chosen[r]));
      worst = std::max(worst, std::abs(fresh[i].reference_rejected[r] - data[i].reference_rejected[r]) /
                                  std::abs(data[i].reference_rejected[r]));
      const double v = data[i].reference_rejected[r];
      worst_float32 = std::max(worst_float32, std::abs(double(float(v)) - v) / std::abs(v));
    }
  CHECK(worst < 1e-13);
  CHECK(worst_float32 > 1e-9);  // float32 alone loses these digits: the (hi, lo) pair is what keeps them
}

TEST_CASE("reference cache: ranked batches") {
  RankedBatch b{2, TokenBatch::zeros(4, 3), {}, {-1.5, -2.25, -1e4 / 3.0, -7.0}};
  const rlhf::test::TempDir dir("rlhf-reference-cache");
  const auto path = dir / "ranked.safetensors";
  io::save_reference_logps(path, std::span<const RankedBatch>(&b, 1));
  RankedBatch fresh{2, TokenBatch::zeros(4, 3), {}, {}};
  io::load_reference_logps(path, std::span<RankedBatch>(&fresh, 1));
  CHECK(fresh.reference[2] == doctest::Approx(-1e4 / 3.0).epsilon(1e-14));
}

TEST_CASE("reference cache: refuses a batch without log-probs and a file for another dataset") {
  Rng rng(4);
  std::vector<PreferenceBatch> data{pair_batch(3, rng)};
  auto missing = data;
  missing[0].reference_rejected.pop_back();
  CHECK_THROWS_WITH_AS(io::save_reference_logps("unused.safetensors", std::span<const PreferenceBatch>(missing)),
                       doctest::Contains("batch 0 has no reference log-probs"), shape_error);

  const rlhf::test::TempDir dir("rlhf-reference-cache");
  const auto path = dir / "one.safetensors";
  io::save_reference_logps(path, std::span<const PreferenceBatch>(data));
  std::vector<PreferenceBatch> two{data[0], data[0]};
  CHECK_THROWS_WITH_AS(io::load_reference_logps(path, std::span<PreferenceBatch>(two)),
                       doctest::Contains("holds 1 batches but the dataset has 2"), io_error);
  std::vector<PreferenceBatch> wider{pair_batch(4, rng)};
  CHECK_THROWS_AS(io::load_reference_logps(path, std::span<PreferenceBatch>(wider)), io_error);
}
