#pragma once
// Everything one run holds — the tokenizer, the tokenized data, the models, the optimizers, the schedule, the
// RNG, the KL coefficient — built from the Config, and the data order: step g takes the g-th block of
// per_device_train_batch_size × gradient_accumulation_steps rows of its epoch's permutation, a pure function of
// (seed, g), so the data position is the step itself and a resumed run takes the same rows.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "rlhf/distributed/communicator.hpp"
#include "model_folder.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/eval/vader.hpp"
#include "rlhf/io/tokenized_dataset.hpp"
#include "rlhf/optim/adamw.hpp"
#include "rlhf/optim/schedule.hpp"
#include "text_codec.hpp"

#ifndef RLHF_SOURCE_DIR
#define RLHF_SOURCE_DIR "."
#endif

namespace trainer {

using rlhf::io::DatasetType;
using rlhf::io::TokenizedDataset;

struct Session {
  Config cfg;
  rlhf::Communicator* comm = nullptr;  // never null once made: SingleProcess, or the MPI ranks (mpirun)
  TextCodec codec;
  TokenizedDataset train, eval;  // eval: empty without eval_file
  std::optional<Model> policy, reference, value, reward_model;  // policy: the reward model itself for `reward`
  std::optional<rlhf::eval::Vader> vader;
  std::optional<rlhf::AdamW<float>> optimizer, value_optimizer;
  std::optional<rlhf::LearningRateSchedule> schedule;
  rlhf::Rng rng;
  double kl_coef = 0;
  // precompute_ref_log_probs: Σ log π_ref of each row's chosen and rejected response, per dataset row.
  std::vector<double> train_ref_chosen, train_ref_rejected, eval_ref_chosen, eval_ref_rejected;
  std::size_t rows_per_step = 0, steps_per_epoch = 0, total_steps = 0;  // rows_per_step: over every rank

  int rank() const { return comm->rank(); }
  int ranks() const { return comm->size(); }
  bool writes() const { return comm->rank() == 0; }  // rank 0 writes the logs, checkpoints and the model

  bool ranked() const { return train.format.type == DatasetType::ranked; }
  bool uses_reference() const {
    switch (cfg.method) {
      case Method::dpo: return !cfg.reference_free;
      case Method::kto: return true;
      case Method::ppo: return true;
      case Method::grpo: return cfg.beta > 0;
      case Method::rloo:
      case Method::reinforce_pp: return cfg.kl_coef > 0;
      default: return false;
    }
  }
};

// This rank's rows of step g (0-based), in the order the step takes them: the step's block of the epoch's
// permutation, cut into one equal slice per rank (several ranks take only whole blocks).
inline std::vector<std::size_t> rows_of_step(const Session& s, std::size_t g) {
  const std::size_t n = s.train.size(), epoch = g / s.steps_per_epoch, block = g % s.steps_per_epoch;
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  rlhf::Rng shuffle(s.cfg.seed ^ (0x9e3779b97f4a7c15ULL * (epoch + 1)));
  for (std::size_t i = n; i-- > 1;) std::swap(order[i], order[shuffle.below(i + 1)]);
  const std::size_t lo = block * s.rows_per_step, hi = std::min(n, lo + s.rows_per_step);
  const std::size_t R = std::size_t(s.ranks()), r = std::size_t(s.rank()), part = (hi - lo) / R;
  const std::size_t mine = R == 1 ? lo : lo + r * part, end = R == 1 ? hi : mine + part;
  return {order.begin() + std::ptrdiff_t(mine), order.begin() + std::ptrdiff_t(end)};
}

namespace detail {

inline void require_type(const Config& c, const TokenizedDataset& d, std::initializer_list<DatasetType> ok,
                         const char* what) {
  if (std::find(ok.begin(), ok.end(), d.format.type) == ok.end())
    rlhf::fail<rlhf::io_error>("'", d.source, "' is a ", rlhf::io::to_string(d.format), " dataset; rlhf-train ",
                               name_of(c.method), " needs ", what);
}

inline TokenizedDataset load_data(const Config& c, const TextCodec& codec, const std::string& path,
                                  std::size_t n_positions) {
  rlhf::io::TokenizeConfig t;
  t.truncation_mode = c.truncation_mode == "keep_start" ? rlhf::io::TruncationMode::keep_start
                                                        : rlhf::io::TruncationMode::keep_end;
  if (is_online(c.method)) {  // prompts only; the sampled response must fit after them
    if (c.response_length >= n_positions)
      rlhf::fail<rlhf::config_error>("response_length (", c.response_length, ") must be below the model's n_positions (",
                                     n_positions, ")");
    const std::size_t room = n_positions - c.response_length;
    t.max_prompt_length = c.max_prompt_length ? std::min(c.max_prompt_length, room) : room;
  } else {
    t.max_length = c.max_length;
    t.max_prompt_length = c.max_prompt_length;
    t.max_completion_length = c.max_completion_length;
    t.eos = codec.eos;
  }
  rlhf::io::DatasetReadOptions read;
  if (!c.chat_template.empty()) read.chat_template.message = c.chat_template;
  auto data = rlhf::io::load_dataset(path, codec, t, read);
  if (data.size() == 0)
    rlhf::fail<rlhf::io_error>("'", path, "': no row is left after truncation (", data.stats.summary(), ")");
  using T = DatasetType;
  switch (c.method) {
    case Method::sft: break;  // every type has a sequence to learn (the chosen one, the best one)
    case Method::dpo: require_type(c, data, {T::preference, T::implicit_preference, T::ranked}, "preference pairs or rankings"); break;
    case Method::reward: require_type(c, data, {T::preference, T::implicit_preference, T::ranked}, "preference pairs or rankings"); break;
    case Method::unlikelihood:
    case Method::orpo: require_type(c, data, {T::preference, T::implicit_preference}, "preference pairs"); break;
    case Method::kto: require_type(c, data, {T::unpaired_preference}, "unpaired preference rows ({prompt, completion, label})"); break;
    case Method::ppo:
    case Method::grpo:
    case Method::rloo:
    case Method::reinforce_pp:
      require_type(c, data, {T::prompt_only, T::prompt_completion, T::preference, T::ranked}, "rows with a prompt");
      break;
  }
  return data;
}

inline void require_vocabulary(const TokenizedDataset& d, std::size_t vocab) {
  for (const auto& r : d.rows) {
    const auto check = [&](const std::vector<rlhf::token_id>& ids) {
      for (const auto id : ids)
        if (id < 0 || std::size_t(id) >= vocab)
          rlhf::fail<rlhf::config_error>("'", d.source, "' line ", r.line, ": token id ", id,
                                         " is outside the model's vocabulary (vocab_size ", vocab,
                                         "); the tokenizer and the model do not match");
    };
    check(r.prompt);
    for (const auto& c : r.completions) check(c);
  }
}

}  // namespace detail

// The model the run starts from (before any resume): the folder's weights, or a fresh model of model_config.
inline Model initial_model(const Config& c, bool scalar_head, std::uint64_t seed) {
  if (!c.model_name_or_path.empty()) return load_model_folder(c.model_name_or_path, scalar_head, seed);
  rlhf::GptConfig g = read_model_config(c.model_config);
  g.scalar_head = scalar_head;
  return Model(g, seed);
}

// Builds the session of a fresh run (resume.hpp then overwrites what a checkpoint holds).
inline Session make_session(const Config& cfg, rlhf::Communicator& comm) {
  Session s;
  s.cfg = cfg;
  s.comm = &comm;
  s.rng = rlhf::Rng(cfg.seed + 0x632be59bd9b4e019ULL * std::uint64_t(comm.rank()));  // each rank samples its own
  s.kl_coef = cfg.kl_coef;
  const std::string tokenizer = cfg.tokenizer_name_or_path.empty() ? cfg.model_name_or_path : cfg.tokenizer_name_or_path;
  s.codec = load_text_codec(tokenizer);

  const bool head = cfg.method == Method::reward;
  s.policy.emplace(initial_model(cfg, head, cfg.seed));
  const rlhf::GptConfig& g = s.policy->config();
  if (!is_online(cfg.method) && s.cfg.max_length > g.max_seq_len) {
    if (comm.rank() == 0)
      std::printf("note: max_length %zu is above the model's n_positions %zu; using %zu\n", s.cfg.max_length,
                  g.max_seq_len, g.max_seq_len);
    s.cfg.max_length = g.max_seq_len;
    if (s.cfg.max_prompt_length >= s.cfg.max_length) s.cfg.max_prompt_length = s.cfg.max_length / 2;
  }
  s.train = detail::load_data(s.cfg, s.codec, cfg.train_file, g.max_seq_len);
  detail::require_vocabulary(s.train, g.vocab_size);
  if (!cfg.eval_file.empty()) {
    s.eval = detail::load_data(s.cfg, s.codec, cfg.eval_file, g.max_seq_len);
    detail::require_vocabulary(s.eval, g.vocab_size);
    if (cfg.method == Method::kto && s.eval.size() < 2)
      rlhf::fail<rlhf::io_error>("eval_file '", cfg.eval_file, "': kto needs at least 2 rows to evaluate");
    if (s.eval.format.type != s.train.format.type)
      rlhf::fail<rlhf::io_error>("eval_file '", cfg.eval_file, "' is ", rlhf::io::to_string(s.eval.format),
                                 " but train_file is ", rlhf::io::to_string(s.train.format));
  }

  if (s.uses_reference()) s.reference.emplace(initial_model(cfg, false, cfg.seed));
  if (is_online(cfg.method)) {
    const bool critic = cfg.method == Method::ppo;
    if (cfg.reward_model_path == "vader") {
      const std::string lexicon = cfg.vader_lexicon.empty()
                                      ? std::string(RLHF_SOURCE_DIR) + "/third_party/npm/node_modules/vader-sentiment/vader_lexicon.txt"
                                      : cfg.vader_lexicon;
      s.vader = rlhf::eval::Vader::load(lexicon);
      // The critic starts from the policy's trunk and a fresh head.
      if (critic) s.value.emplace(initial_model(cfg, true, cfg.seed + 1));
    } else {
      if (!read_model_config(fs::path(cfg.reward_model_path) / "config.json").scalar_head)
        rlhf::fail<rlhf::io_error>("reward_model_path '", cfg.reward_model_path,
                                   "' is a language model; train one with rlhf-train reward, or use 'vader'");
      s.reward_model.emplace(load_model_folder(cfg.reward_model_path, true, cfg.seed));
      if (critic) s.value.emplace(load_model_folder(cfg.reward_model_path, true, cfg.seed));  // as TRL: the critic starts as the RM
      if (s.reward_model->config().vocab_size != g.vocab_size)
        rlhf::fail<rlhf::config_error>("reward_model_path '", cfg.reward_model_path, "' has vocab_size ",
                                       s.reward_model->config().vocab_size, ", the policy ", g.vocab_size);
    }
  }

  if (cfg.bf16) {
    for (auto* m : {&s.policy, &s.reference, &s.value, &s.reward_model})
      if (*m) (*m)->set_matmul_precision(rlhf::gpt::MatmulPrecision::bf16);
    if (comm.rank() == 0)
      std::printf("bf16: matrix products in bf16 with float32 sums, %s\n",
                  rlhf::gpt::bf16::hardware_available()
                      ? "on AVX-512 BF16"
                      : "portable path (this CPU has no AVX-512 BF16: bf16 rounding at float32 speed)");
  }

  const rlhf::AdamWConfig adam{.learning_rate = float(cfg.learning_rate),
                               .beta1 = float(cfg.adam_beta1),
                               .beta2 = float(cfg.adam_beta2),
                               .epsilon = float(cfg.adam_epsilon),
                               .weight_decay = float(cfg.weight_decay)};
  s.optimizer.emplace(adam);
  if (s.value) s.value_optimizer.emplace(adam);

  s.rows_per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * std::size_t(comm.size());
  s.steps_per_epoch = (s.train.size() + s.rows_per_step - 1) / s.rows_per_step;
  if (comm.size() > 1) {  // whole blocks only, so that every rank has its share of every step
    s.steps_per_epoch = s.train.size() / s.rows_per_step;
    if (s.steps_per_epoch == 0)
      rlhf::fail<rlhf::config_error>("'", cfg.train_file, "' has ", s.train.size(), " rows, fewer than one step of ",
                                     s.rows_per_step, " over ", comm.size(), " ranks");
    if (s.train.size() % s.rows_per_step && comm.rank() == 0)
      std::printf("note: each epoch leaves out its last %zu rows (%zu ranks take whole steps of %zu rows)\n",
                  s.train.size() % s.rows_per_step, std::size_t(comm.size()), s.rows_per_step);
  }
  if (cfg.method == Method::kto && comm.size() == 1 && s.train.size() % s.rows_per_step == 1) {  // no step of one row
    if (s.steps_per_epoch == 1) rlhf::fail<rlhf::io_error>("'", cfg.train_file, "': kto needs at least 2 rows");
    s.steps_per_epoch -= 1;
    if (comm.rank() == 0) std::printf("note: each epoch leaves out its last row (kto cannot take a step of one row)\n");
  }
  s.total_steps = cfg.max_steps > 0 ? std::size_t(cfg.max_steps)
                                    : std::size_t(std::ceil(cfg.num_train_epochs * double(s.steps_per_epoch)));
  s.total_steps = std::max<std::size_t>(s.total_steps, 1);

  rlhf::ScheduleConfig sc{.peak_learning_rate = float(cfg.learning_rate), .total_steps = s.total_steps};
  const std::size_t warmup = cfg.warmup_steps ? cfg.warmup_steps : std::size_t(std::ceil(cfg.warmup_ratio * double(s.total_steps)));
  sc.warmup_steps = std::min(warmup, s.total_steps);
  if (cfg.lr_scheduler_type == "linear") sc.decay = rlhf::Decay::linear;
  else if (cfg.lr_scheduler_type == "cosine") sc.decay = rlhf::Decay::cosine;
  else sc.decay = rlhf::Decay::constant;
  if (cfg.lr_scheduler_type == "constant") sc.warmup_steps = 0;
  s.schedule.emplace(sc);
  return s;
}

}  // namespace trainer
