#pragma once
// checkpoint-<step>/ folders under output_dir: each written whole into a hidden partial folder (named per process,
// .checkpoint-<step>.partial-<pid>-<random>), given its manifest.json last (checkpoint_manifest.hpp) and renamed
// into place, so a folder named checkpoint-<step> is always complete; the oldest beyond save_total_limit are
// removed. A kill leaves at most a partial folder or a .previous one, which remove_strays (output_dir.hpp) clears.
#include <algorithm>
#include <charconv>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include "checkpoint_manifest.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/io/atomic_file.hpp"

namespace trainer {

namespace fs = std::filesystem;

inline std::optional<std::size_t> checkpoint_step(const fs::path& folder) {
  const std::string name = folder.filename().string();
  constexpr std::string_view prefix = "checkpoint-";
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return std::nullopt;
  std::size_t step = 0;
  const char* first = name.data() + prefix.size();
  const auto [end, ec] = std::from_chars(first, name.data() + name.size(), step);
  if (ec != std::errc() || end != name.data() + name.size()) return std::nullopt;
  return step;
}

// The complete checkpoints under output_dir, oldest first.
inline std::vector<std::pair<std::size_t, fs::path>> list_checkpoints(const fs::path& output_dir) {
  std::vector<std::pair<std::size_t, fs::path>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(output_dir, ec))
    if (const auto step = checkpoint_step(e.path()); step && e.is_directory()) out.emplace_back(*step, e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Writes checkpoint-<step> with `fill(folder)`, then its manifest; returns its path. If either throws, nothing
// named checkpoint-* is left behind (the partial folder is removed) and the exception goes on.
template <class Fill>
fs::path write_checkpoint(const fs::path& output_dir, std::size_t step, Fill&& fill) {
  const fs::path final_path = output_dir / ("checkpoint-" + std::to_string(step));
  const fs::path partial = output_dir / (".checkpoint-" + std::to_string(step) + ".partial-" +
                                         std::to_string(::getpid()) + "-" + rlhf::io::detail::random_suffix());
  fs::create_directories(partial);
  try {
    fill(partial);
    write_manifest(partial);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(partial, ignored);
    throw;
  }
  const fs::path previous = output_dir / (".checkpoint-" + std::to_string(step) + ".previous");
  if (fs::exists(final_path)) {
    fs::remove_all(previous);
    fs::rename(final_path, previous);
  }
  fs::rename(partial, final_path);
  rlhf::io::detail::fsync_folder(output_dir);
  fs::remove_all(previous);
  return final_path;
}

// Keeps the newest `limit` checkpoints (0: all).
inline void rotate_checkpoints(const fs::path& output_dir, std::size_t limit) {
  if (limit == 0) return;
  auto all = list_checkpoints(output_dir);
  for (std::size_t i = 0; i + limit < all.size(); ++i) fs::remove_all(all[i].second);
}

// resume_from_checkpoint: "latest" (or "true") is the newest under output_dir; anything else is a folder.
inline fs::path resolve_checkpoint(const std::string& setting, const fs::path& output_dir) {
  if (setting == "latest" || setting == "true") {
    const auto all = list_checkpoints(output_dir);
    if (all.empty())
      rlhf::fail<rlhf::io_error>("resume_from_checkpoint: no checkpoint-<step> folder under '", output_dir.string(), "'");
    return all.back().second;
  }
  std::error_code ec;
  if (!fs::is_directory(setting, ec))
    rlhf::fail<rlhf::io_error>("resume_from_checkpoint: '", setting, "' is not a folder");
  return setting;
}

}  // namespace trainer
