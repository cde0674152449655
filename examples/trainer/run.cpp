// The training loop of rlhf-train: for each step, the rows of the step (session.hpp), the learning rate of the
// schedule, the method's step (methods.hpp); then logging, evaluation and checkpoints on their steps, and a
// checkpoint before stopping on SIGINT/SIGTERM. A step that meets a non-finite loss or gradient changes nothing
// and stops the run; the last checkpoint stays as it was.
#include "run.hpp"

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <optional>
#include <string>

#include "arguments.hpp"
#include "console.hpp"
#include "metrics_log.hpp"
#include "output_dir.hpp"
#include "resume.hpp"

namespace trainer {

namespace {

// Means of each metric over the steps since the last log line.
class Window {
 public:
  void add(const StepOutcome& o, double learning_rate) {
    add("loss", o.result.loss);
    add("grad_norm", o.result.grad_norm);
    add("learning_rate", learning_rate);
    for (const auto& [name, value] : o.result.metrics.items())
      if (name != "grad_norm") add(name, value);  // the PPO family's metrics carry it too; counted once above
    tokens_ += o.tokens;
  }
  Record take(std::size_t step, double epoch, double seconds) {
    Record r{{"step", double(step)}, {"epoch", epoch}};
    for (const auto& name : order_) r.emplace_back(name, sums_[name].first / double(sums_[name].second));
    r.emplace_back("tokens_per_second", seconds > 0 ? tokens_ / seconds : 0);
    order_.clear(), sums_.clear(), tokens_ = 0;
    return r;
  }

 private:
  void add(const std::string& name, double v) {
    auto& [sum, count] = sums_[name];
    if (count == 0 && std::find(order_.begin(), order_.end(), name) == order_.end()) order_.push_back(name);
    sum += v, count += 1;
  }
  std::vector<std::string> order_;
  std::map<std::string, std::pair<double, std::size_t>> sums_;
  double tokens_ = 0;
};

std::string summary_of(const Record& r, const Method& m) {
  const auto shown = m.shown_metrics();
  std::string s;
  char buf[64];
  for (const auto& [name, value] : r) {
    const bool show = name == "loss" || name == "learning_rate" || std::find(shown.begin(), shown.end(), name) != shown.end();
    if (!show) continue;
    std::snprintf(buf, sizeof buf, "%s%s %.4g", s.empty() ? "" : "  ", name == "learning_rate" ? "lr" : name.c_str(), value);
    s += buf;
  }
  return s;
}

void print_start(const Session& s, std::size_t start, const fs::path& out) {
  std::printf("rlhf-train %s: %s data '%s': %s\n", s.method->name(), rlhf::io::to_string(s.train.format).c_str(),
              s.args.train_file.c_str(), s.train.stats.summary().c_str());
  if (s.eval.size()) std::printf("  eval '%s': %s\n", s.args.eval_file.c_str(), s.eval.stats.summary().c_str());
  std::printf("  model: %zu parameters (%s), tokenizer %s\n", s.policy->parameters().size(),
              s.policy->describe().c_str(), s.codec.kind.c_str());
  std::printf("  %s\n", describe_eos(s.codec).c_str());
  if (s.train.format.conversational) std::printf("  %s\n", s.renderer->describe().c_str());
  if (s.method->samples() && s.stop_token != s.codec.eos)
    std::printf("  sampling stops at the chat template's end of turn (id %d)\n", int(s.stop_token));
  std::printf("  %zu steps of %zu rows (%zu micro-batches of %zu), %zu steps per epoch%s; output: %s\n", s.total_steps,
              s.rows_per_step, s.args.gradient_accumulation_steps, s.args.per_device_train_batch_size, s.steps_per_epoch,
              start ? (", resuming at step " + std::to_string(start)).c_str() : "", out.string().c_str());
  std::fflush(stdout);
}

// The evaluation pass over eval_file: every row once, in file order, in batches of per_device_eval_batch_size
// (a last batch too small for the method joins the one before); metrics combined over the batches by their own
// rules.
Evaluation evaluation_pass(Session& s, std::size_t step) {
  const std::size_t n = s.eval.size(), bs = s.args.per_device_eval_batch_size, least = s.method->min_rows();
  Evaluation total;
  for (std::size_t lo = 0, hi = 0; lo < n; lo = hi) {
    hi = std::min(n, lo + bs);
    if (n - hi > 0 && n - hi < least) hi = n;
    std::vector<std::size_t> rows;
    for (std::size_t i = lo; i < hi; ++i) rows.push_back(i);
    const double share = double(rows.size()) / double(n);
    s.policy->set_training(false);  // no LoRA dropout while evaluating
    const Evaluation e = s.method->evaluate(s, rows, step);
    s.policy->set_training(true);
    total.metrics.combine(e.metrics, share);
    total.loss += share * e.loss;
  }
  return total;
}

}  // namespace

int run(const TrainingArguments& config, Method& method, rlhf::Communicator& comm) {
  const fs::path out = config.output_dir;
  // Rank 0 owns output_dir, locked for the whole run before any input is read.
  std::optional<OutputDirLock> lock;
  if (comm.rank() == 0)
    lock.emplace(claim_output_dir(out, config.resume_from_checkpoint, config.overwrite_output_dir,
                                  {{"model_name_or_path", config.model_name_or_path},
                                   {"tokenizer_name_or_path", config.tokenizer_name_or_path}}));
  comm.barrier();
  Session s = make_session(config, method, comm);

  std::size_t start = 0;
  std::string last_checkpoint = "none";
  fs::path from;
  if (!config.resume_from_checkpoint.empty()) {
    from = resolve_checkpoint(config.resume_from_checkpoint, out);
    start = restore_checkpoint(s, from);
    last_checkpoint = from.string();
    if (start > s.total_steps)
      rlhf::fail<rlhf::config_error>("resume_from_checkpoint: the checkpoint is at step ", start, ", past this run's ",
                                     s.total_steps, " steps (raise max_steps or num_train_epochs)");
  }
  if (s.writes()) rlhf::io::write_file_atomic(out / "trainer_config.json", settings_json(s.args, method));
  method.prepare(s);
  if (s.writes()) print_start(s, start, out);

  // Rank 0 writes and prints; the others train in step with it.
  std::optional<MetricsLog> log;
  if (s.writes()) {
    log.emplace(out, config.resume_from_checkpoint.empty() ? -1 : static_cast<long long>(start));
    for (const auto& repair : log->repairs()) std::printf("note: %s\n", repair.c_str());
    if (!from.empty()) log->append_from(from / unlogged_file);
  }
  install_stop_handlers();
  Progress progress(start, s.total_steps, config.disable_tqdm || !s.writes(), !s.writes());
  Window window;
  double window_start = progress.seconds();
  Record shown;

  std::vector<Record> unlogged;  // records a failed write kept out of the log, for the checkpoint to carry
  const auto save = [&](std::size_t step) {
    const auto rngs = gather_rng_states(s);  // every rank takes part
    fs::path path = out / ("checkpoint-" + std::to_string(step));
    if (s.writes()) {
      path = write_checkpoint(out, step, [&](const fs::path& f) {
        fill_checkpoint(s, step, f, rngs, MetricsLog::lines_of(unlogged));
      });
      rotate_checkpoints(out, config.save_total_limit);
    }
    comm.barrier();  // the checkpoint is whole before any rank goes on
    last_checkpoint = path.string();
    return path;
  };
  // A record that cannot be written (a full disk) stops the run, with a checkpoint first where one can still be
  // written (one process: with several, the others would wait for rank 0 in the checkpoint's collectives); the
  // checkpoint carries the record, and a resume from it appends the record to the log.
  const auto record = [&](const Record& r, std::size_t step) {
    try {
      log->append(r);
    } catch (const rlhf::io_error& e) {
      progress.break_line();
      unlogged.push_back(r);
      std::string saved = "no checkpoint was written";
      if (comm.size() == 1) {
        try {
          saved = "wrote " + save(step).string();
        } catch (const std::exception& again) {
          saved = std::string("the checkpoint could not be written either: ") + again.what();
        }
      }
      rlhf::fail<rlhf::io_error>(e.what(), "; the run stopped after step ", step, "; ", saved);
    }
  };
  const auto evaluate_now = [&](std::size_t step) {
    if (!s.eval.size()) return;
    const Evaluation e = evaluation_pass(s, step);
    Record r{{"step", double(step)}, {"epoch", double(step) / double(s.steps_per_epoch)}, {"eval_loss", e.loss}};
    for (const auto& [name, value] : e.metrics.items()) r.emplace_back("eval_" + name, value);
    if (!s.writes()) return;
    record(r, step);
    progress.break_line();
    std::printf("eval at step %zu: %s\n", step, summary_of({{"loss", e.loss}}, method).c_str());
  };

  // A test hook (docs/trainer.md#testing): RLHF_TRAIN_FAULT_NAN_STEP=k puts a NaN into the weights before step k,
  // so that the divergence path runs on a real model.
  const char* fault = std::getenv("RLHF_TRAIN_FAULT_NAN_STEP");
  const std::size_t nan_step = fault ? std::strtoull(fault, nullptr, 10) : 0;

  for (std::size_t g = start; g < s.total_steps; ++g) {
    const auto rows = rows_of_step(s, g);
    if (g + 1 == nan_step) s.policy->parameters()[0] = std::numeric_limits<float>::quiet_NaN();
    const float lr = s.schedule->learning_rate();
    s.optimizer->set_learning_rate(lr);
    const rlhf::StepOptions options{.micro_batches = std::min(config.gradient_accumulation_steps, rows.size()),
                                    .max_grad_norm = config.max_grad_norm,
                                    .communicator = &comm};
    StepOutcome o;
    s.policy->set_dropout_seed(s.args.seed ^ (0xd6e8feb86659fd93ULL * (g + 1)));  // LoRA's masks: a function of the step
    try {
      o = method.train_step(s, rows, options);
    } catch (const rlhf::value_error& e) {
      // With several ranks a non-finite loss is seen by all of them (it is the global batch's), but an error raised
      // on one rank's rows alone is not: main then stops every rank (MPI_Abort) rather than leave them waiting.
      progress.break_line();
      if (s.writes())
        std::fprintf(stderr,
                     "rlhf-train: stopped at step %zu of %zu: %s\n  nothing of step %zu is saved; the last good "
                     "checkpoint is %s\n",
                     g + 1, s.total_steps, e.what(), g + 1, last_checkpoint.c_str());
      if (comm.size() > 1) throw;
      return 1;
    }
    s.schedule->advance();
    const std::size_t done = g + 1;
    window.add(o, lr);

    const bool log_now = done % config.logging_steps == 0 || done == s.total_steps;
    if (log_now) {
      const double now = progress.seconds();
      shown = window.take(done, double(done) / double(s.steps_per_epoch), now - window_start);
      window_start = now;
      if (s.writes()) record(shown, done);
    }
    progress.update(done, summary_of(shown, method), log_now);
    if (done == s.total_steps) break;
    if (config.eval_steps && done % config.eval_steps == 0) evaluate_now(done);
    const bool saved = config.save_steps && done % config.save_steps == 0;
    if (saved) save(done);
    // Every rank stops after the same step: a signal seen by any rank stops them all.
    const double signal = comm.size() > 1 ? rlhf::all_reduce_sum(comm, double(stop_signal)) : double(stop_signal);
    if (signal > 0) {
      if (!stop_signal) stop_signal = SIGTERM;  // this rank heard of it from another
      progress.break_line();
      const auto path = saved ? fs::path(last_checkpoint) : save(done);
      if (s.writes())
        std::printf("stopped by signal %d after step %zu of %zu; wrote %s (resume with --resume_from_checkpoint %s)\n",
                    int(stop_signal), done, s.total_steps, path.string().c_str(), path.string().c_str());
      return 128 + int(stop_signal);
    }
  }

  const auto path = save(s.total_steps);  // before the last evaluation, so that an error there loses nothing
  if (s.writes()) save_model(*s.policy, s.codec, out);
  evaluate_now(s.total_steps);
  if (!s.writes()) return 0;
  std::printf("wrote %s (the last checkpoint), the model in %s (%s, tokenizer files; loadable as model_name_or_path%s), "
              "and the metrics in %s and %s\n",
              path.string().c_str(), out.string().c_str(),
              s.policy->adapted() ? "PEFT's adapter_config.json, adapter_model.safetensors" : "config.json, model.safetensors",
              s.policy->adapted() ? ", or as a full model after rlhf-train merge" : "", log->jsonl().string().c_str(),
              log->csv().string().c_str());
  return 0;
}

}  // namespace trainer
