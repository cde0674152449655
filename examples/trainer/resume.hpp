#pragma once
// What a checkpoint-<step>/ folder holds, and putting it back:
//
//   config.json, model.safetensors, tokenizer files   the model, loadable as model_name_or_path
//   optimizer.safetensors                              AdamW's or RMSprop's step count and buffers (optim/state_file.hpp)
//   scheduler.safetensors, rng_state.safetensors       the schedule's step, the sampling RNG
//   trainer_state.json                                 global_step (the data position), epoch, the data's shape
//   what the method adds (Method::save)                PPO: value_model/, value_optimizer.safetensors, kl_coef
//   trainer_config.json                                the settings of the run that wrote it
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "checkpoint_folders.hpp"
#include "checkpoint_manifest.hpp"
#include "rlhf/optim/state_file.hpp"
#include "arguments.hpp"
#include "session.hpp"

namespace trainer {

// The sampling RNG of rank r is in rng_state.safetensors (r = 0) or rng_state_rank<r>.safetensors.
inline std::string rng_file(int rank) {
  return rank == 0 ? "rng_state.safetensors" : "rng_state_rank" + std::to_string(rank) + ".safetensors";
}

inline constexpr const char* unlogged_file = "unlogged_metrics.jsonl";

// Every rank's RNG state, on every rank (each rank broadcasts its own in turn).
inline std::vector<rlhf::Rng::State> gather_rng_states(const Session& s) {
  std::vector<rlhf::Rng::State> out(std::size_t(s.ranks()));
  for (int r = 0; r < s.ranks(); ++r) {
    if (r == s.rank()) out[std::size_t(r)] = s.rng.state();
    s.comm->broadcast(std::as_writable_bytes(std::span(out[std::size_t(r)])), r);
  }
  return out;
}

// `unlogged`: metrics records a failed write kept out of metrics.jsonl (a full disk), which a resume appends.
inline void fill_checkpoint(const Session& s, std::size_t step, const fs::path& folder,
                            const std::vector<rlhf::Rng::State>& rngs, const std::string& unlogged = {}) {
  save_model(*s.policy, s.codec, folder);
  s.optimizer->save(folder / "optimizer.safetensors");
  rlhf::save_schedule_state(folder / "scheduler.safetensors", *s.schedule);
  for (std::size_t r = 0; r < rngs.size(); ++r) {
    rlhf::Rng rng;
    rng.restore(rngs[r]);
    rlhf::save_rng_state(folder / rng_file(int(r)), rng);
  }
  nlohmann::json state = {{"method", s.method->name()},
                          {"global_step", step},
                          {"total_steps", s.total_steps},
                          {"epoch", double(step) / double(s.steps_per_epoch)},
                          {"seed", s.args.seed},
                          {"train_rows", s.train.size()},
                          {"train_file_fingerprint", file_fingerprint(s.args.train_file)},
                          {"rows_per_step", s.rows_per_step},
                          {"ranks", s.ranks()}};
  s.method->save(s, folder, state);
  if (!unlogged.empty()) rlhf::io::write_file_atomic(folder / unlogged_file, unlogged);
  rlhf::io::write_file_atomic(folder / "trainer_state.json", state.dump(2) + "\n");
  rlhf::io::write_file_atomic(folder / "trainer_config.json", settings_json(s.args, *s.method));
}

namespace detail {

template <class T>
T state_value(const nlohmann::json& state, const fs::path& file, const char* key) {
  const auto it = state.find(key);
  if (it == state.end()) rlhf::fail<rlhf::io_error>("'", file.string(), "': missing key '", key, "'");
  try {
    return it->get<T>();
  } catch (const nlohmann::json::exception&) {
    rlhf::fail<rlhf::io_error>("'", file.string(), "': key '", key, "' has the wrong type (",
                               rlhf::io::detail::json_brief(*it), ")");
  }
}

// The settings a resume may change: where the run writes, how often it logs, evaluates and saves, how long it
// trains, and its evaluation. Any other change would make the continuation differ from the run it continues
// (train_file may move: its contents are compared by fingerprint).
inline bool may_change_on_resume(const std::string& key) {
  static const char* const keys[] = {"resume_from_checkpoint", "output_dir", "overwrite_output_dir", "max_steps",
                                     "num_train_epochs", "logging_steps", "eval_steps", "save_steps",
                                     "save_total_limit", "disable_tqdm", "eval_file", "per_device_eval_batch_size",
                                     "train_file"};
  for (const char* k : keys)
    if (key == k) return true;
  return false;
}

// Refuses a setting that differs from the checkpoint's run (its trainer_config.json), naming it.
inline void require_same_settings(const Session& s, const fs::path& folder) {
  const fs::path file = folder / "trainer_config.json";
  const auto then = read_json_file(file);
  const auto now = nlohmann::json::parse(settings_json(s.args, *s.method));
  for (const auto& [key, value] : now.items()) {
    if (may_change_on_resume(key)) continue;
    const auto it = then.find(key);
    if (it == then.end() || *it != value)
      rlhf::fail<rlhf::config_error>(
          "resume_from_checkpoint: ", key, " is ", rlhf::io::detail::json_brief(value), " now but ",
          it == then.end() ? std::string("absent") : rlhf::io::detail::json_brief(*it), " in '", file.string(),
          "'; an exact resume needs the same (start a fresh run to change it)");
  }
}

}  // namespace detail

// Puts the checkpoint's state into a freshly made session; returns the step to continue from. Refuses (naming the
// setting) a checkpoint whose files are not as written (manifest.json), or of another method, seed, data or
// settings, with which the continuation would not be exact.
inline std::size_t restore_checkpoint(Session& s, const fs::path& folder) {
  verify_manifest(folder);  // every file whole, as written
  const fs::path state_file = folder / "trainer_state.json";
  const auto state = read_json_file(state_file);
  const auto method = detail::state_value<std::string>(state, state_file, "method");
  if (method != s.method->name())
    rlhf::fail<rlhf::config_error>("resume_from_checkpoint: '", folder.string(), "' was written by rlhf-train ", method,
                                   ", not ", s.method->name());
  const auto same = [&](const char* key, std::uint64_t now, const char* setting) {
    const auto then = detail::state_value<std::uint64_t>(state, state_file, key);
    if (then != now)
      rlhf::fail<rlhf::config_error>("resume_from_checkpoint: ", setting, " differs from the checkpoint's run (", key, " ",
                                     then, " then, ", now, " now); an exact resume needs the same");
  };
  same("seed", s.args.seed, "seed");
  same("train_rows", s.train.size(), "train_file");
  same("rows_per_step", s.rows_per_step, "per_device_train_batch_size x gradient_accumulation_steps x ranks");
  if (state.contains("ranks")) same("ranks", std::uint64_t(s.ranks()), "the number of ranks (mpirun -np)");
  const auto fingerprint = detail::state_value<std::string>(state, state_file, "train_file_fingerprint");
  if (fingerprint != file_fingerprint(s.args.train_file))
    rlhf::fail<rlhf::config_error>("resume_from_checkpoint: train_file '", s.args.train_file,
                                   "' is not the file the checkpoint's run trained on (", fingerprint, " then, ",
                                   file_fingerprint(s.args.train_file), " now); an exact resume needs the same data");
  detail::require_same_settings(s, folder);
  const auto step = detail::state_value<std::size_t>(state, state_file, "global_step");

  restore_model(*s.policy, folder);
  s.optimizer->load(folder / "optimizer.safetensors", s.policy->parameters().size());
  const auto schedule = rlhf::load_schedule_state(folder / "scheduler.safetensors");
  s.schedule->restore({s.schedule->config(), schedule.step});  // the step; the config is this run's (max_steps may grow)
  rlhf::load_rng_state(folder / rng_file(s.rank()), s.rng);
  s.method->restore(s, folder, state);
  if (step != schedule.step)
    rlhf::fail<rlhf::io_error>("'", folder.string(), "': global_step ", step, " but the scheduler is at step ", schedule.step);
  return step;
}

}  // namespace trainer
