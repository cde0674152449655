#pragma once
// Precomputed reference log-probs of a whole dataset, cached on disk, so that a training run holds no
// reference model and a re-run does not recompute them. A safetensors file (written to a temporary
// file, then renamed): tensor "batch.<i>.<field>" of shape [rows, 2] holds each double as the float32
// pair (hi, lo) with hi + lo = the value to about 1e-14 relative, since the writer stores float32.
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "rlhf/core/batch.hpp"
#include "rlhf/io/safetensors.hpp"

namespace rlhf::io {

namespace detail {

inline constexpr const char* reference_cache_format = "rlhf.reference_logps.v1";

struct SplitColumn {
  std::string name;
  std::vector<std::size_t> shape;
  std::vector<float> pairs;  // [rows, 2]
};

inline SplitColumn split_column(std::size_t batch_index, const char* field, const std::vector<double>& values) {
  SplitColumn c{"batch." + std::to_string(batch_index) + "." + field, {values.size(), 2}, {}};
  c.pairs.reserve(values.size() * 2);
  for (std::size_t r = 0; r < values.size(); ++r) {
    const double v = values[r];
    if (!(v <= 0.0) || !std::isfinite(v))  // NaN fails both
      fail<value_error>("rlhf::io::save_reference_logps: batch ", batch_index, " '", field, "' row ", r, " is ", v,
                        ", not a log-probability (finite and <= 0); nothing is written");
    const float hi = static_cast<float>(v);
    c.pairs.push_back(hi);
    c.pairs.push_back(static_cast<float>(v - double(hi)));
  }
  return c;
}

inline void read_column(const Safetensors& file, std::size_t batch_index, const char* field, std::size_t rows,
                        std::vector<double>& out) {
  const std::string name = "batch." + std::to_string(batch_index) + "." + field;
  std::vector<float> pairs(rows * 2);
  file.read_f32(name, {rows, 2}, pairs);  // names the file, the tensor and both shapes on a mismatch
  out.resize(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    out[r] = double(pairs[2 * r]) + double(pairs[2 * r + 1]);
    if (!(out[r] <= 0.0) || !std::isfinite(out[r]))  // NaN fails both
      fail<value_error>("rlhf::io::load_reference_logps '", file.path().string(), "': tensor '", name, "' row ", r,
                        " is ", out[r], ", not a log-probability (finite and <= 0)");
  }
}

inline std::vector<SplitColumn> columns_of(std::size_t i, const PreferenceBatch& b) {
  if (b.reference_chosen.size() != b.chosen.batch || b.reference_rejected.size() != b.rejected.batch)
    fail<shape_error>("rlhf::io::save_reference_logps: batch ", i,
                      " has no reference log-probs for every row; run rlhf::precompute_reference_logps first");
  return {split_column(i, "reference_chosen", b.reference_chosen),
          split_column(i, "reference_rejected", b.reference_rejected)};
}
inline std::vector<SplitColumn> columns_of(std::size_t i, const RankedBatch& b) {
  if (b.reference.size() != b.responses.batch)
    fail<shape_error>("rlhf::io::save_reference_logps: batch ", i,
                      " has no reference log-probs for every row; run rlhf::precompute_reference_logps first");
  return {split_column(i, "reference", b.reference)};
}

inline void read_into(const Safetensors& f, std::size_t i, PreferenceBatch& b) {
  read_column(f, i, "reference_chosen", b.chosen.batch, b.reference_chosen);
  read_column(f, i, "reference_rejected", b.rejected.batch, b.reference_rejected);
}
inline void read_into(const Safetensors& f, std::size_t i, RankedBatch& b) {
  read_column(f, i, "reference", b.responses.batch, b.reference);
}

}  // namespace detail

// Writes the reference log-probs carried by every batch of a dataset (PreferenceBatch or RankedBatch).
template <class Batch>
void save_reference_logps(const std::filesystem::path& path, std::span<const Batch> dataset) {
  std::vector<detail::SplitColumn> columns;
  for (std::size_t i = 0; i < dataset.size(); ++i)
    for (auto& c : detail::columns_of(i, dataset[i])) columns.push_back(std::move(c));
  std::vector<TensorView> views;
  for (const auto& c : columns) views.push_back({c.name, Dtype::f32, c.shape, c.pairs.data()});
  save_safetensors(path, views,
                   {{"format", detail::reference_cache_format}, {"batches", std::to_string(dataset.size())}});
}

// Fills each batch's reference log-probs from a file written by save_reference_logps for the same dataset;
// a file for another dataset (batch count or row counts) is refused with a named error.
template <class Batch>
void load_reference_logps(const std::filesystem::path& path, std::span<Batch> dataset) {
  const Safetensors file = Safetensors::load(path);
  const auto& meta = file.metadata();
  const auto format = meta.find("format");
  if (format == meta.end() || format->second != detail::reference_cache_format)
    fail<io_error>("rlhf::io::load_reference_logps: '", path.string(), "' is not a reference log-prob cache (",
                   detail::reference_cache_format, ")");
  const auto batches = meta.find("batches");
  if (batches == meta.end() || batches->second != std::to_string(dataset.size()))
    fail<io_error>("rlhf::io::load_reference_logps: '", path.string(), "' holds ",
                   batches == meta.end() ? std::string("an unknown number of") : batches->second,
                   " batches but the dataset has ", dataset.size());
  for (std::size_t i = 0; i < dataset.size(); ++i) detail::read_into(file, i, dataset[i]);
}

}  // namespace rlhf::io
