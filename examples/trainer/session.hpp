#pragma once
// What every run holds, whatever its method — the tokenizer, the tokenized data, the policy and its optimizer,
// the schedule, the RNG — built from the TrainingArguments and the method, and the data order: step g takes the
// g-th block of per_device_train_batch_size × gradient_accumulation_steps rows of its epoch's permutation, a pure
// function of (seed, g), so the data position is the step itself and a resumed run takes the same rows. What a
// method needs beyond this (a reference, a critic, a reward) it holds itself.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "method.hpp"
#include "model_family.hpp"
#include "rlhf/models/cpu/isa.hpp"
#include "optimizer.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/distributed/communicator.hpp"
#include "rlhf/io/chat_template/conversation_renderer.hpp"
#include "rlhf/io/json_file.hpp"
#include "rlhf/io/tokenized_dataset.hpp"
#include "rlhf/optim/adamw.hpp"
#include "rlhf/optim/schedule.hpp"
#include "text_codec.hpp"

namespace trainer {

using rlhf::io::DatasetType;
using rlhf::io::TokenizedDataset;

struct Session {
  TrainingArguments args;
  Method* method = nullptr;
  rlhf::Communicator* comm = nullptr;  // never null once made: SingleProcess, or the MPI ranks (mpirun)
  TextCodec codec;
  // How conversational rows become text: the tokenizer's own chat template, else the one-message chat_template.
  std::shared_ptr<const rlhf::io::JinjaConversationRenderer> model_template;  // null: the tokenizer has none
  std::shared_ptr<const rlhf::io::ConversationRenderer> renderer;
  rlhf::token_id stop_token = -1;  // where sampling stops: eos, or the template's end-of-turn token
  TokenizedDataset train, eval;  // eval: empty without eval_file
  std::optional<Model> policy;   // the reward model itself for `reward`
  std::optional<Optimizer> optimizer;
  std::optional<rlhf::LearningRateSchedule> schedule;
  rlhf::Rng rng;
  std::size_t rows_per_step = 0, steps_per_epoch = 0, total_steps = 0;  // rows_per_step: over every rank

  int rank() const { return comm->rank(); }
  int ranks() const { return comm->size(); }
  bool writes() const { return comm->rank() == 0; }  // rank 0 writes the logs, checkpoints and the model
  bool ranked() const { return train.format.type == DatasetType::ranked; }

  // A model as the run starts from (before any resume): the folder's weights, or a fresh model of model_config;
  // with the run's matrix-product precision.
  Model initial_model(bool scalar_head, std::uint64_t seed) const {
    return with_precision(args.model_name_or_path.empty() ? fresh_model(args.model_config, scalar_head, seed)
                                                          : load_model(args.model_name_or_path, scalar_head, seed));
  }
  Model with_precision(Model m) const {
    if (args.bf16) m.set_matmul_precision(rlhf::gpt::MatmulPrecision::bf16);
    return m;
  }
  // The frozen reference a method compares the policy with: the policy's base with its adapters off (use_peft), or
  // the model as the run starts from.
  Model reference_model() const {
    return policy && policy->adapted() ? policy->adapters_off() : initial_model(false, args.seed);
  }
  // PEFT's LoraConfig from TRL's keys; a reward model's score head is trained in full (PEFT's SEQ_CLS task).
  rlhf::LoraSettings lora_settings(bool scalar_head) const {
    const auto names = [](const std::string& joined) {
      std::vector<std::string> out;
      for (std::size_t at = 0; at < joined.size();) {
        const std::size_t comma = std::min(joined.find(',', at), joined.size());
        out.push_back(joined.substr(at, comma - at));
        at = comma + 1;
      }
      return out;
    };
    rlhf::LoraSettings l{.r = args.lora_r, .lora_alpha = args.lora_alpha, .lora_dropout = args.lora_dropout,
                         .use_rslora = args.use_rslora, .target_modules = names(args.lora_target_modules),
                         .modules_to_save = names(args.lora_modules_to_save),
                         .base_model_name_or_path = args.model_name_or_path};
    if (scalar_head) {
      l.task_type = "SEQ_CLS";
      if (std::find(l.modules_to_save.begin(), l.modules_to_save.end(), "score") == l.modules_to_save.end())
        l.modules_to_save.push_back("score");
    }
    return l;
  }
  // An optimizer of the run's kind (`optim`) and settings, for the policy and for PPO's critic.
  Optimizer make_optimizer() const {
    if (args.optim == "rmsprop")
      return Optimizer(rlhf::Rmsprop<float>({.learning_rate = float(args.learning_rate),
                                             .weight_decay = float(args.weight_decay)}));
    return Optimizer(rlhf::AdamW<float>({.learning_rate = float(args.learning_rate),
                                         .beta1 = float(args.adam_beta1),
                                         .beta2 = float(args.adam_beta2),
                                         .epsilon = float(args.adam_epsilon),
                                         .weight_decay = float(args.weight_decay)}));
  }
};

// This rank's rows of step g (0-based), in the order the step takes them: the step's block of the epoch's
// permutation, cut into one equal slice per rank (several ranks take only whole blocks).
inline std::vector<std::size_t> rows_of_step(const Session& s, std::size_t g) {
  const std::size_t n = s.train.size(), epoch = g / s.steps_per_epoch, block = g % s.steps_per_epoch;
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  rlhf::Rng shuffle(s.args.seed ^ (0x9e3779b97f4a7c15ULL * (epoch + 1)));
  for (std::size_t i = n; i-- > 1;) std::swap(order[i], order[shuffle.below(i + 1)]);
  const std::size_t lo = block * s.rows_per_step, hi = std::min(n, lo + s.rows_per_step);
  const std::size_t R = std::size_t(s.ranks()), r = std::size_t(s.rank()), part = (hi - lo) / R;
  const std::size_t mine = R == 1 ? lo : lo + r * part, end = R == 1 ? hi : mine + part;
  return {order.begin() + std::ptrdiff_t(mine), order.begin() + std::ptrdiff_t(end)};
}

namespace detail {

inline TokenizedDataset load_data(const Session& s, const Method& method, const std::string& path,
                                  std::size_t n_positions) {
  const TrainingArguments& a = s.args;
  const TextCodec& codec = s.codec;
  rlhf::io::TokenizeConfig t;
  t.truncation_mode = a.truncation_mode == "keep_start" ? rlhf::io::TruncationMode::keep_start
                                                        : rlhf::io::TruncationMode::keep_end;
  if (method.samples()) {  // prompts only; the sampled response must fit after them
    const std::size_t response_length = method.response_length();
    if (response_length >= n_positions)
      rlhf::fail<rlhf::config_error>("response_length (", response_length, ") must be below the model's n_positions (",
                                     n_positions, ")");
    const std::size_t room = n_positions - response_length;
    t.max_prompt_length = a.max_prompt_length ? std::min(a.max_prompt_length, room) : room;
  } else {
    t.max_length = a.max_length;
    t.max_prompt_length = a.max_prompt_length;
    t.max_completion_length = a.max_completion_length;
    t.eos = codec.eos;
    t.eos_after_conversations = !s.model_template || method.eos_after_template_turns();
  }
  rlhf::io::DatasetReadOptions read{.renderer = s.renderer, .assistant_only_loss = method.assistant_only_loss()};
  auto data = rlhf::io::load_dataset(path, codec, t, read);
  if (data.size() == 0)
    rlhf::fail<rlhf::io_error>("'", path, "': no row is left after truncation (", data.stats.summary(), ")");
  const DataNeed need = method.data();
  if (std::find(need.types.begin(), need.types.end(), data.format.type) == need.types.end())
    rlhf::fail<rlhf::io_error>("'", data.source, "' is a ", rlhf::io::to_string(data.format), " dataset; rlhf-train ",
                               method.name(), " needs ", need.description);
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

// The tokenizer folder's own chat template (tokenizer_config.json's chat_template), unless `chat_template` sets
// the one-message template; null when there is none.
inline std::shared_ptr<const rlhf::io::JinjaConversationRenderer> model_template(const TrainingArguments& a,
                                                                                const std::string& tokenizer) {
  std::error_code ec;
  const fs::path config = fs::path(tokenizer) / "tokenizer_config.json";
  if (!a.chat_template.empty() || !fs::is_regular_file(config, ec)) return nullptr;
  const auto doc = rlhf::io::read_json_file<nlohmann::ordered_json>(config, {.max_bytes = std::size_t(16) << 20});
  if (!doc.is_object() || !doc.contains("chat_template") || doc["chat_template"].is_null()) return nullptr;
  return std::make_shared<const rlhf::io::JinjaConversationRenderer>(
      rlhf::io::JinjaChatTemplate::from_tokenizer_config(doc, config.string()), config.string());
}

// Where sampling stops after a conversational prompt: the first token of what the template writes after an
// assistant's turn ("<|im_end|>" of "<|im_end|>\n"), leading spaces aside; the eos token otherwise.
inline rlhf::token_id stop_token(const Session& s) {
  if (!s.model_template || !s.train.format.conversational) return s.codec.eos;
  std::string end = s.model_template->chat_template().end_of_turn_text();
  end.erase(0, end.find_first_not_of(" \t\n"));
  const auto ids = s.codec.encode(end);
  return ids.empty() ? s.codec.eos : ids.front();
}

inline rlhf::LearningRateSchedule make_schedule(const TrainingArguments& a, std::size_t total_steps) {
  rlhf::ScheduleConfig sc{.peak_learning_rate = float(a.learning_rate), .total_steps = total_steps};
  const std::size_t warmup =
      a.warmup_steps ? a.warmup_steps : std::size_t(std::ceil(a.warmup_ratio * double(total_steps)));
  sc.warmup_steps = std::min(warmup, total_steps);
  if (a.lr_scheduler_type == "linear") sc.decay = rlhf::Decay::linear;
  else if (a.lr_scheduler_type == "cosine") sc.decay = rlhf::Decay::cosine;
  else sc.decay = rlhf::Decay::constant;
  if (a.lr_scheduler_type == "constant") sc.warmup_steps = 0;
  return rlhf::LearningRateSchedule(sc);
}

}  // namespace detail

// Builds the session of a fresh run (resume.hpp then overwrites what a checkpoint holds).
inline Session make_session(const TrainingArguments& args, Method& method, rlhf::Communicator& comm) {
  Session s;
  s.args = args;
  s.method = &method;
  s.comm = &comm;
  s.rng = rlhf::Rng(args.seed + 0x632be59bd9b4e019ULL * std::uint64_t(comm.rank()));  // each rank samples its own
  const std::string tokenizer = args.tokenizer_name_or_path.empty() ? args.model_name_or_path : args.tokenizer_name_or_path;
  s.codec = load_text_codec(tokenizer);
  s.model_template = detail::model_template(args, tokenizer);
  if (s.model_template) {
    s.renderer = s.model_template;
    const fs::path config = fs::path(tokenizer) / "tokenizer_config.json";  // saved folders carry the template
    if (std::find(s.codec.files.begin(), s.codec.files.end(), config) == s.codec.files.end()) s.codec.files.push_back(config);
  } else {
    rlhf::io::ChatTemplate one;
    if (!args.chat_template.empty()) one.message = args.chat_template;
    s.renderer = std::make_shared<const rlhf::io::OneMessageRenderer>(one);
  }

  if (comm.rank() == 0) std::printf("%s\n", rlhf::cpu::isa_summary().c_str());
  if (args.bf16 && comm.rank() == 0)
    std::printf("bf16: matrix products in bf16 with float32 sums, %s\n",
                rlhf::gpt::bf16::hardware_available()
                    ? (std::string("on ") + rlhf::gpt::bf16::hardware_name()).c_str()
                    : "no AVX-512 BF16 in use: the products run in float32, which no bf16 product beats here "
                      "(results within bf16's bound of a bf16 run)");
  s.policy.emplace(s.initial_model(method.scalar_head(), args.seed));
  if (args.use_peft) {  // A drawn from its own stream, so that the base's initialisation is the same as without
    rlhf::Rng adapter_rng(args.seed ^ 0x4c6f52414c6f5241ULL);
    s.policy.emplace(Model::adapted(std::move(*s.policy), s.lora_settings(method.scalar_head()), adapter_rng));
  }
  const std::size_t positions = s.policy->max_seq_len(), vocab = s.policy->vocab_size();
  if (!method.samples() && s.args.max_length > positions) {
    if (comm.rank() == 0)
      std::printf("note: max_length %zu is above the model's %zu positions; using %zu\n", s.args.max_length,
                  positions, positions);
    s.args.max_length = positions;
    if (s.args.max_prompt_length >= s.args.max_length) s.args.max_prompt_length = s.args.max_length / 2;
  }
  s.train = detail::load_data(s, method, args.train_file, positions);
  detail::require_vocabulary(s.train, vocab);
  s.stop_token = detail::stop_token(s);
  if (!args.eval_file.empty()) {
    s.eval = detail::load_data(s, method, args.eval_file, positions);
    detail::require_vocabulary(s.eval, vocab);
    if (s.eval.size() < method.min_rows())
      rlhf::fail<rlhf::io_error>("eval_file '", args.eval_file, "': ", method.name(), " needs at least ",
                                 method.min_rows(), " rows to evaluate");
    if (s.eval.format.type != s.train.format.type)
      rlhf::fail<rlhf::io_error>("eval_file '", args.eval_file, "' is ", rlhf::io::to_string(s.eval.format),
                                 " but train_file is ", rlhf::io::to_string(s.train.format));
  }
  method.load_models(s);
  s.optimizer.emplace(s.make_optimizer());

  s.rows_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * std::size_t(comm.size());
  s.steps_per_epoch = (s.train.size() + s.rows_per_step - 1) / s.rows_per_step;
  if (comm.size() > 1) {  // whole blocks only, so that every rank has its share of every step
    s.steps_per_epoch = s.train.size() / s.rows_per_step;
    if (s.steps_per_epoch == 0)
      rlhf::fail<rlhf::config_error>("'", args.train_file, "' has ", s.train.size(), " rows, fewer than one step of ",
                                     s.rows_per_step, " over ", comm.size(), " ranks");
    if (s.train.size() % s.rows_per_step && comm.rank() == 0)
      std::printf("note: each epoch leaves out its last %zu rows (%zu ranks take whole steps of %zu rows)\n",
                  s.train.size() % s.rows_per_step, std::size_t(comm.size()), s.rows_per_step);
  }
  const std::size_t tail = s.train.size() % s.rows_per_step;
  if (comm.size() == 1 && tail > 0 && tail < method.min_rows()) {  // no step of too few rows
    if (s.steps_per_epoch == 1)
      rlhf::fail<rlhf::io_error>("'", args.train_file, "': ", method.name(), " needs at least ", method.min_rows(), " rows");
    s.steps_per_epoch -= 1;
    std::printf("note: each epoch leaves out its last %zu row%s (%s cannot take a step of fewer than %zu rows)\n", tail,
                tail == 1 ? "" : "s", method.name(), method.min_rows());
  }
  s.total_steps = args.max_steps > 0 ? std::size_t(args.max_steps)
                                     : std::size_t(std::ceil(args.num_train_epochs * double(s.steps_per_epoch)));
  s.total_steps = std::max<std::size_t>(s.total_steps, 1);
  s.schedule.emplace(detail::make_schedule(args, s.total_steps));
  return s;
}

}  // namespace trainer
