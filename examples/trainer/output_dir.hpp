#pragma once
// What a run may find in its output_dir, and what it does about it (with the folder locked, output_lock.hpp):
//
//   run_entries(dir)                      the names that show an earlier run there (empty: none)
//   prepare_fresh_output_dir(lock, overwrite)
//                                         a fresh run into a folder holding a run: refused, or with
//                                         overwrite_output_dir the whole folder is renamed aside (one rename, so
//                                         the old run is never mixed with the new one) and a new one locked
//   remove_strays(lock)                   what a killed run leaves: *.tmp-* files, .checkpoint-*.partial* folders;
//                                         a .checkpoint-N.previous is put back when checkpoint-N is missing
//   refuse_output_over_input(out, input, setting)
//                                         output_dir may not be an input folder (its weights would be replaced)
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "checkpoint_folders.hpp"
#include "output_lock.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/io/untrusted.hpp"

namespace trainer {

namespace fs = std::filesystem;

// The entries of `dir` that an rlhf-train run writes, sorted; empty when there are none (or no folder).
inline std::vector<std::string> run_entries(const fs::path& dir) {
  static const std::vector<std::string> files = {"metrics.jsonl", "metrics.csv", "trainer_config.json",
                                                 "model.safetensors"};
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (std::find(files.begin(), files.end(), name) != files.end() || checkpoint_step(e.path()) ||
        name.rfind(".checkpoint-", 0) == 0)
      out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace detail {

// <parent>/<name>.old-<UTC time>[-k]: a sibling, so that the rename stays on one file system.
inline fs::path aside_name(const fs::path& dir) {
  fs::path abs = fs::absolute(dir).lexically_normal();
  if (!abs.has_filename()) abs = abs.parent_path();
  char when[32] = {};
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  ::gmtime_r(&now, &utc);
  std::strftime(when, sizeof when, "%Y%m%d-%H%M%S", &utc);
  const std::string base = abs.filename().string() + ".old-" + when;
  fs::path candidate = abs.parent_path() / base;
  std::error_code ec;
  for (int k = 2; fs::exists(fs::symlink_status(candidate, ec)); ++k)
    candidate = abs.parent_path() / (base + "-" + std::to_string(k));
  return candidate;
}

inline std::string listing(const std::vector<std::string>& names) {
  std::string s;
  for (std::size_t i = 0; i < names.size() && i < 4; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > 4) s += ", ... (" + std::to_string(names.size()) + " entries)";
  return s;
}

}  // namespace detail

// For a fresh run (no resume_from_checkpoint). Returns where the old run was moved, or an empty path when the
// folder held none. Throws rlhf::config_error when it holds one and !overwrite, rlhf::io_error when the move fails.
inline fs::path prepare_fresh_output_dir(OutputDirLock& lock, bool overwrite) {
  const fs::path dir = lock.folder();
  const auto found = run_entries(dir);
  if (found.empty()) return {};
  const fs::path aside = detail::aside_name(dir);
  if (!overwrite)
    rlhf::fail<rlhf::config_error>("output_dir '", dir.string(), "' already holds a run (", detail::listing(found),
                                   "); resume it with resume_from_checkpoint latest, choose another output_dir, or "
                                   "give overwrite_output_dir true to move it aside (to a folder like '",
                                   aside.string(), "')");
  std::error_code ec;
  fs::rename(dir, aside, ec);
  if (ec)
    rlhf::fail<rlhf::io_error>("overwrite_output_dir: cannot move '", dir.string(), "' aside to '", aside.string(),
                               "': ", ec.message(), "; nothing was changed");
  lock = OutputDirLock(dir);  // a new, empty folder; the old lock file went aside with the run
  fs::remove(aside / output_lock_name, ec);
  return aside;
}

// Removes (or, for a .previous checkpoint whose replacement never arrived, restores) what a killed run left in
// the locked folder. Returns one line per entry, for the log.
inline std::vector<std::string> remove_strays(const OutputDirLock& lock) {
  const fs::path dir = lock.folder();
  std::vector<std::string> notes;
  std::vector<fs::path> entries;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) entries.push_back(e.path());
  std::sort(entries.begin(), entries.end());
  for (const auto& path : entries) {
    const std::string name = path.filename().string();
    const bool partial = name.rfind(".checkpoint-", 0) == 0 && name.find(".partial") != std::string::npos;
    const bool previous = name.rfind(".checkpoint-", 0) == 0 && name.size() > 9 &&
                          name.compare(name.size() - 9, 9, ".previous") == 0;
    if (previous) {
      const fs::path final_path = dir / name.substr(1, name.size() - 1 - 9);  // .checkpoint-N.previous -> checkpoint-N
      if (!fs::exists(fs::symlink_status(final_path, ec))) {
        fs::rename(path, final_path, ec);
        if (!ec) {
          notes.push_back("restored '" + final_path.filename().string() + "' from '" + name +
                          "' (a run was killed while replacing it)");
          continue;
        }
      }
    }
    if (partial || previous || name.find(".tmp-") != std::string::npos) {
      fs::remove_all(path, ec);
      notes.push_back((ec ? "could not remove '" + name + "': " + ec.message() : "removed '" + name + "'") +
                      " (left by a killed run)");
    }
  }
  return notes;
}

// Refuses output_dir when it is the folder `input` (given as `setting`, e.g. model_name_or_path): saving the run's
// model there would replace the input. Throws rlhf::config_error naming both.
inline void refuse_output_over_input(const fs::path& output_dir, const fs::path& input, std::string_view setting) {
  std::error_code ec;
  if (input.empty() || !fs::exists(output_dir, ec) || !fs::exists(input, ec)) return;
  if (fs::equivalent(output_dir, input, ec))
    rlhf::fail<rlhf::config_error>("output_dir '", output_dir.string(), "' is ", setting, " '", input.string(),
                                   "': the run would replace its files; choose another output_dir");
}

// What a run needs of its output_dir, before it reads any input: not an input folder; for a resume, an existing
// folder (a failed resume creates nothing); the lock; what a killed run left, cleaned up; for a fresh run, no
// earlier run there (or, with overwrite_output_dir, the earlier run moved aside whole). `resume`: the setting
// resume_from_checkpoint ("" for a fresh run). `inputs`: the folders the run reads, by setting name. Prints what it
// cleaned or moved; returns the lock, to be held for the whole run.
inline OutputDirLock claim_output_dir(const fs::path& output_dir, const std::string& resume, bool overwrite,
                                      const std::vector<std::pair<std::string, std::string>>& inputs) {
  for (const auto& [setting, folder] : inputs) refuse_output_over_input(output_dir, folder, setting);
  std::error_code ec;
  const bool resuming = !resume.empty(), latest = resume == "latest" || resume == "true";
  if (latest && !fs::is_directory(output_dir, ec))
    rlhf::fail<rlhf::config_error>("resume_from_checkpoint: output_dir '",
                                   rlhf::io::detail::clip(output_dir.string(), 256),
                                   "' is not a folder (no checkpoint to resume there)");
  if (resuming && !latest && !fs::is_directory(resume, ec))
    rlhf::fail<rlhf::config_error>("resume_from_checkpoint: '", rlhf::io::detail::clip(resume, 256),
                                   "' is not a folder");
  OutputDirLock lock(output_dir);
  for (const auto& note : remove_strays(lock)) std::printf("note: %s\n", note.c_str());
  if (!resuming)
    if (const fs::path aside = prepare_fresh_output_dir(lock, overwrite); !aside.empty())
      std::printf("overwrite_output_dir: the earlier run in '%s' was moved to '%s'\n", output_dir.string().c_str(),
                  aside.string().c_str());
  return lock;
}

}  // namespace trainer
