#include "config.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace trainer {

namespace {

using json = nlohmann::json;
constexpr int bad_usage = 2;
constexpr double unbounded = std::numeric_limits<double>::max();

enum class Kind { text, count, signed_count, real, boolean, seed, choice };

// One setting: its TRL name, where it lives in Config, its type and the values it accepts.
struct Key {
  const char* name;
  Kind kind;
  void* field;
  const char* help;
  double lo = 0, hi = unbounded;       // count, signed_count, real: the closed range accepted
  std::vector<std::string> choices{};  // choice
  bool for_all = true;                 // false: only the methods in `methods`
  std::vector<Method> methods{};
};

// Thrown while reading a value; becomes the one-line message.
struct Refusal : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::vector<Key> keys_of(Config& c) {
  using M = Method;
  const std::vector<M> dpo{M::dpo}, ppo{M::ppo}, online{M::ppo, M::grpo, M::rloo, M::reinforce_pp},
      critic_free{M::grpo, M::rloo, M::reinforce_pp};
  return {
      {"model_name_or_path", Kind::text, &c.model_name_or_path, "model folder: config.json + model.safetensors"},
      {"model_config", Kind::text, &c.model_config, "a GPT-2 config.json, to train a fresh model instead"},
      {"tokenizer_name_or_path", Kind::text, &c.tokenizer_name_or_path,
       "tokenizer folder or SentencePiece .model (default: the model folder)"},
      {"train_file", Kind::text, &c.train_file, "training data, JSON Lines in a TRL format"},
      {"eval_file", Kind::text, &c.eval_file, "evaluation data, same format (optional)"},
      {"output_dir", Kind::text, &c.output_dir, "where the model, checkpoints and metrics go"},
      {"resume_from_checkpoint", Kind::text, &c.resume_from_checkpoint,
       "a checkpoint folder, or 'latest' (the newest under output_dir)"},
      {"chat_template", Kind::text, &c.chat_template, "one message's template for conversational rows, {role} {content}"},
      {"learning_rate", Kind::real, &c.learning_rate, "peak AdamW learning rate (default: the method's)", 0, 10},
      {"per_device_train_batch_size", Kind::count, &c.per_device_train_batch_size, "rows per micro-batch", 1, 1 << 20},
      {"per_device_eval_batch_size", Kind::count, &c.per_device_eval_batch_size, "rows per evaluation batch", 1, 1 << 20},
      {"gradient_accumulation_steps", Kind::count, &c.gradient_accumulation_steps, "micro-batches per optimizer step", 1,
       1 << 20},
      {"num_train_epochs", Kind::real, &c.num_train_epochs, "passes over train_file (fractions allowed)", 0, 1e6},
      {"max_steps", Kind::signed_count, &c.max_steps, "> 0: this many optimizer steps, overriding num_train_epochs", -1,
       1e12},
      {"max_grad_norm", Kind::real, &c.max_grad_norm, "clip the gradient's global norm to this; 0: no clipping", 0, 1e12},
      {"warmup_ratio", Kind::real, &c.warmup_ratio, "share of the steps spent warming up", 0, 1},
      {"warmup_steps", Kind::count, &c.warmup_steps, "> 0: warm-up steps, overriding warmup_ratio", 0, 1e12},
      {"lr_scheduler_type", Kind::choice, &c.lr_scheduler_type, "learning-rate schedule", 0, 0,
       {"linear", "cosine", "constant", "constant_with_warmup"}},
      {"weight_decay", Kind::real, &c.weight_decay, "AdamW's decoupled weight decay", 0, 10},
      {"adam_beta1", Kind::real, &c.adam_beta1, "AdamW beta1", 0, 0.999999},
      {"adam_beta2", Kind::real, &c.adam_beta2, "AdamW beta2", 0, 0.999999999},
      {"adam_epsilon", Kind::real, &c.adam_epsilon, "AdamW epsilon", 1e-30, 1},
      {"seed", Kind::seed, &c.seed, "seed of the model's initialisation, the data order and sampling"},
      {"bf16", Kind::boolean, &c.bf16,
       "matrix products in bf16 with float32 sums and float32 weights (AVX-512 BF16, else float32 speed)"},
      {"logging_steps", Kind::count, &c.logging_steps, "a metrics line every N steps", 1, 1e12},
      {"eval_steps", Kind::count, &c.eval_steps, "an evaluation every N steps; 0: only at the end", 0, 1e12},
      {"save_steps", Kind::count, &c.save_steps, "a checkpoint every N steps; 0: only the last", 0, 1e12},
      {"save_total_limit", Kind::count, &c.save_total_limit, "keep at most N checkpoints (the newest); 0: all", 0, 1e12},
      {"disable_tqdm", Kind::boolean, &c.disable_tqdm, "plain progress lines even on a terminal"},
      {"max_length", Kind::count, &c.max_length, "tokens per sequence, prompt included", 2, 1 << 20},
      {"max_prompt_length", Kind::count, &c.max_prompt_length, "prompt tokens kept; 0: no limit", 0, 1 << 20},
      {"max_completion_length", Kind::count, &c.max_completion_length, "completion tokens kept; 0: no limit", 0, 1 << 20},
      {"truncation_mode", Kind::choice, &c.truncation_mode, "which end of a long prompt is kept", 0, 0,
       {"keep_end", "keep_start"}},
      {"beta", Kind::real, &c.beta,
       "dpo, kto: beta; orpo: the weight of the odds-ratio term (lambda); grpo: the KL coefficient (k3 loss term)", 0,
       1e6, {}, false, {M::dpo, M::grpo, M::kto, M::orpo}},
      {"desirable_weight", Kind::real, &c.desirable_weight, "KTO's lambda_D", 0, 1e6, {}, false, {M::kto}},
      {"undesirable_weight", Kind::real, &c.undesirable_weight, "KTO's lambda_U", 0, 1e6, {}, false, {M::kto}},
      {"loss_type", Kind::choice, &c.loss_type, "dpo: sigmoid robust hinge ipo; grpo: grpo bnpo dr_grpo", 0, 0,
       {"sigmoid", "robust", "hinge", "ipo", "grpo", "bnpo", "dr_grpo"}, false, {M::dpo, M::grpo}},
      {"label_smoothing", Kind::real, &c.label_smoothing, "assumed label-flip probability", 0, 0.4999, {}, false,
       {M::dpo, M::reward}},
      {"precompute_ref_log_probs", Kind::boolean, &c.precompute_ref_log_probs,
       "score the data with the reference once, before training", 0, 0, {}, false, dpo},
      {"reference_free", Kind::boolean, &c.reference_free, "DPO without the reference (uniform)", 0, 0, {}, false, dpo},
      {"rpo_alpha", Kind::real, &c.rpo_alpha, "weight of the chosen response's NLL in DPO", 0, 1e6, {}, false, dpo},
      {"center_rewards_coefficient", Kind::real, &c.center_rewards_coefficient, "weight of (r_w + r_l)^2", 0, 1e6, {},
       false, {M::reward}},
      {"alpha", Kind::real, &c.alpha, "weight of the unlikelihood term", 0, 1e6, {}, false, {M::unlikelihood}},
      {"reward_model_path", Kind::text, &c.reward_model_path, "reward-model folder, or 'vader'", 0, 0, {}, false, online},
      {"vader_lexicon", Kind::text, &c.vader_lexicon, "VADER's vader_lexicon.txt", 0, 0, {}, false, online},
      {"num_ppo_epochs", Kind::count, &c.num_ppo_epochs, "passes over each rollout", 1, 1e6, {}, false, ppo},
      {"num_mini_batches", Kind::count, &c.num_mini_batches, "optimizer steps per pass", 1, 1e6, {}, false, online},
      {"kl_coef", Kind::real, &c.kl_coef, "KL coefficient in the reward (ppo: the start, when adaptive)", 0, 1e6, {},
       false, {M::ppo, M::rloo, M::reinforce_pp}},
      {"adaptive_kl", Kind::boolean, &c.adaptive_kl, "steer kl_coef towards kl_target", 0, 0, {}, false, ppo},
      {"kl_target", Kind::real, &c.kl_target, "the adaptive controller's KL target (nats)", 1e-12, 1e6, {}, false, ppo},
      {"kl_horizon", Kind::real, &c.kl_horizon, "the adaptive controller's horizon", 1, 1e12, {}, false, ppo},
      {"kl_estimator", Kind::choice, &c.kl_estimator, "per-token KL estimator", 0, 0, {"k1", "k3"}, false, ppo},
      {"cliprange", Kind::real, &c.cliprange, "PPO's policy clip", 1e-12, 10, {}, false, ppo},
      {"cliprange_value", Kind::real, &c.cliprange_value, "value clip; 0: none", 0, 1e6, {}, false, ppo},
      {"gamma", Kind::real, &c.gamma, "discount", 0, 1, {}, false, {M::ppo, M::reinforce_pp}},
      {"lam", Kind::real, &c.lam, "GAE lambda", 0, 1, {}, false, ppo},
      {"response_length", Kind::count, &c.response_length, "tokens sampled per prompt", 1, 1 << 20, {}, false, online},
      {"temperature", Kind::real, &c.temperature, "sampling temperature", 1e-6, 1e3, {}, false, online},
      {"num_generations", Kind::count, &c.num_generations, "completions sampled per prompt (G)", 1, 1 << 16, {}, false,
       critic_free},
      {"scale_rewards", Kind::boolean, &c.scale_rewards, "GRPO: divide advantages by the group's std", 0, 0, {}, false,
       {M::grpo}},
      {"epsilon", Kind::real, &c.epsilon, "clip of the ratio below 1 (and above, unless epsilon_high)", 1e-12, 10, {},
       false, critic_free},
      {"epsilon_high", Kind::real, &c.epsilon_high, "clip above 1 (DAPO's clip-higher); 0: epsilon", 0, 10, {}, false,
       critic_free},
      {"num_iterations", Kind::count, &c.num_iterations, "passes over each rollout (mu)", 1, 1e6, {}, false, critic_free},
      {"drop_uniform_groups", Kind::boolean, &c.drop_uniform_groups,
       "skip groups whose rewards are all equal (DAPO's dynamic sampling)", 0, 0, {}, false, critic_free},
  };
}

std::string text_of(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

std::string range_text(const Key& k) {
  if (k.kind == Kind::choice) {
    std::string s = "one of";
    for (const auto& c : k.choices) s += " " + c;
    return s;
  }
  if (k.kind == Kind::boolean) return "true or false";
  if (k.kind == Kind::text) return "a string";
  if (k.kind == Kind::seed) return "an integer in [0, 2^64)";
  return "in [" + text_of(k.lo) + ", " + (k.hi == unbounded ? std::string("inf") : text_of(k.hi)) + "]";
}

// Sets k's field from a JSON value (from the file, or made from the command line's text by its kind).
void assign(const Key& k, const json& v) {
  const auto refuse = [&](const std::string& why) { throw Refusal(std::string(k.name) + ": " + why); };
  switch (k.kind) {
    case Kind::text:
    case Kind::choice: {
      if (!v.is_string()) refuse("must be a string, got " + v.dump());
      const auto s = v.get<std::string>();
      if (k.kind == Kind::choice && std::find(k.choices.begin(), k.choices.end(), s) == k.choices.end())
        refuse("'" + s + "' is not " + range_text(k));
      *static_cast<std::string*>(k.field) = s;
      return;
    }
    case Kind::boolean:
      if (!v.is_boolean()) refuse("must be true or false, got " + v.dump());
      *static_cast<bool*>(k.field) = v.get<bool>();
      return;
    case Kind::seed:
      if (!v.is_number_unsigned()) refuse("must be an integer in [0, 2^64), got " + v.dump());
      *static_cast<std::uint64_t*>(k.field) = v.get<std::uint64_t>();
      return;
    case Kind::count:
    case Kind::signed_count: {
      if (!v.is_number_integer()) refuse("must be an integer, got " + v.dump());
      const double d = v.is_number_unsigned() ? double(v.get<std::uint64_t>()) : double(v.get<std::int64_t>());
      if (d < k.lo || d > k.hi) refuse(v.dump() + " is not " + range_text(k));
      if (k.kind == Kind::count)
        *static_cast<std::size_t*>(k.field) = static_cast<std::size_t>(v.get<std::int64_t>());
      else
        *static_cast<long long*>(k.field) = v.get<std::int64_t>();
      return;
    }
    case Kind::real: {
      if (!v.is_number()) refuse("must be a number, got " + v.dump());
      const double d = v.get<double>();
      if (!std::isfinite(d) || d < k.lo || d > k.hi) refuse(v.dump() + " is not " + range_text(k));
      *static_cast<double*>(k.field) = d;
      return;
    }
  }
}

// The command line's text as the JSON value the key's kind expects ("2.5" stays a number and is refused by a
// count; "3x" is refused here).
json value_from_text(const Key& k, const std::string& text) {
  const auto refuse = [&](const std::string& why) { throw Refusal(std::string(k.name) + ": " + why); };
  switch (k.kind) {
    case Kind::text:
    case Kind::choice: return text;
    case Kind::boolean:
      if (text == "true" || text == "1") return true;
      if (text == "false" || text == "0") return false;
      refuse("'" + text + "' is not true or false");
    default: break;
  }
  json v;
  try {
    v = json::parse(text);
  } catch (const json::parse_error&) {
    refuse("'" + text + "' is not a number");
  }
  if (!v.is_number()) refuse("'" + text + "' is not a number");
  return v;
}

const Key* find_key(const std::vector<Key>& keys, std::string_view name) {
  for (const auto& k : keys)
    if (name == k.name) return &k;
  return nullptr;
}

bool applies(const Key& k, Method m) {
  return k.for_all || std::find(k.methods.begin(), k.methods.end(), m) != k.methods.end();
}

void set_key(Config& c, const std::vector<Key>& keys, const std::string& name, const json& value, bool from_text,
             const std::string& where) {
  const Key* k = find_key(keys, name);
  if (!k) throw Refusal("unknown key '" + name + "'" + where + " (rlhf-train " + name_of(c.method) + " --help lists them)");
  if (!applies(*k, c.method))
    throw Refusal(std::string(k->name) + ": not a setting of rlhf-train " + name_of(c.method) + where);
  assign(*k, from_text ? value_from_text(*k, value.get<std::string>()) : value);
  c.set_keys.push_back(name);
}

void read_config_file(Config& c, const std::vector<Key>& keys, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Refusal("--config: cannot open '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  json doc;
  try {
    doc = json::parse(ss.str());
  } catch (const json::parse_error& e) {
    throw Refusal("--config: '" + path + "' is not valid JSON (" + e.what() + ")");
  }
  if (!doc.is_object()) throw Refusal("--config: '" + path + "' must hold one JSON object of settings");
  for (const auto& [name, value] : doc.items()) set_key(c, keys, name, value, false, " in " + path);
}

// The combinations no single key's range can say.
void check_combinations(const Config& c) {
  const auto refuse = [](const std::string& key, const std::string& why) { throw Refusal(key + ": " + why); };
  if (c.train_file.empty()) refuse("train_file", "is required");
  if (c.model_name_or_path.empty() == c.model_config.empty())
    refuse("model_name_or_path", "give exactly one of model_name_or_path (a model folder) and model_config (a fresh model)");
  if (!c.model_config.empty() && c.tokenizer_name_or_path.empty())
    refuse("tokenizer_name_or_path", "is required with model_config (a fresh model has no tokenizer files)");
  if (c.output_dir.empty()) refuse("output_dir", "must not be empty");
  if (c.max_steps == 0) refuse("max_steps", "must be > 0, or -1 to use num_train_epochs");
  if (c.max_steps < 0 && !(c.num_train_epochs > 0)) refuse("num_train_epochs", "must be > 0 when max_steps is -1");
  if (c.max_prompt_length >= c.max_length && c.max_prompt_length != 0 && !is_online(c.method))
    refuse("max_prompt_length", "must be below max_length (" + std::to_string(c.max_length) + ") to leave room for a completion");
  if (is_online(c.method) && c.reward_model_path.empty())
    refuse("reward_model_path", std::string("is required for ") + name_of(c.method) + ": a reward-model folder or 'vader'");
  if (c.method == Method::dpo && (c.loss_type == "grpo" || c.loss_type == "bnpo" || c.loss_type == "dr_grpo"))
    refuse("loss_type", "'" + c.loss_type + "' is a GRPO loss; dpo takes sigmoid, robust, hinge or ipo");
  if (c.method == Method::grpo && c.loss_type != "grpo" && c.loss_type != "bnpo" && c.loss_type != "dr_grpo")
    refuse("loss_type", "'" + c.loss_type + "' is not a GRPO loss: grpo, bnpo or dr_grpo");
  if (c.method == Method::rloo && c.num_generations < 2)
    refuse("num_generations", "rloo's leave-one-out baseline needs at least 2 completions per prompt");
  if (c.method == Method::grpo && c.num_generations < 2)
    refuse("num_generations", "grpo's group baseline needs at least 2 completions per prompt (with 1 every advantage is 0)");
  if (c.method == Method::kto && c.per_device_eval_batch_size < 2)
    refuse("per_device_eval_batch_size", "kto needs at least 2 rows per evaluation batch (its reference point pairs "
                                         "each prompt with another row's completion)");
  if ((c.method == Method::dpo || c.method == Method::kto) && c.beta <= 0)
    refuse("beta", std::string("must be > 0 for ") + name_of(c.method));
  if (c.method == Method::kto && c.per_device_train_batch_size * c.gradient_accumulation_steps < 2)
    refuse("per_device_train_batch_size", "kto needs at least 2 rows per step (its reference point pairs each "
                                          "prompt with another row's completion)");
  if (c.method == Method::ppo && c.num_mini_batches > c.per_device_train_batch_size * c.gradient_accumulation_steps)
    refuse("num_mini_batches", "must be at most the prompts per step (per_device_train_batch_size x "
                               "gradient_accumulation_steps = " +
                                   std::to_string(c.per_device_train_batch_size * c.gradient_accumulation_steps) + ")");
  if (c.method == Method::dpo && c.reference_free && c.precompute_ref_log_probs)
    refuse("precompute_ref_log_probs", "has nothing to compute with reference_free");
}

void print_help(const Config& c, const std::vector<Key>& keys) {
  std::printf(
      "rlhf-train %s: train the bundled GPT on JSON Lines data in TRL's formats.\n\n"
      "usage: rlhf-train METHOD [--config FILE.json] [--key value ...]\n  METHOD: %s\n\n"
      "Settings come from FILE.json (one object) and then from --key value (or --key=value) pairs, which win.\n"
      "Every key is checked before any work; an unknown key or a bad value exits with status 2.\n"
      "docs/trainer.md lists each key beside TRL's.\n\n  --help  this text\n  --config FILE.json\n",
      name_of(c.method), method_list);
  Config defaults;
  defaults.method = c.method;
  apply_method_defaults(defaults);
  const auto default_keys = keys_of(defaults);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const Key& k = keys[i];
    if (!applies(k, c.method)) continue;
    const Key& d = default_keys[i];
    std::string now;
    switch (d.kind) {
      case Kind::text:
      case Kind::choice: now = *static_cast<std::string*>(d.field); break;
      case Kind::boolean: now = *static_cast<bool*>(d.field) ? "true" : "false"; break;
      case Kind::count: now = std::to_string(*static_cast<std::size_t*>(d.field)); break;
      case Kind::signed_count: now = std::to_string(*static_cast<long long*>(d.field)); break;
      case Kind::seed: now = std::to_string(*static_cast<std::uint64_t*>(d.field)); break;
      case Kind::real: now = text_of(*static_cast<double*>(d.field)); break;
    }
    std::printf("  --%-28s %s (%s; default %s)\n", k.name, k.help, range_text(k).c_str(),
                now.empty() ? "none" : now.c_str());
  }
}

}  // namespace

bool Config::was_set(const std::string& key) const {
  return std::find(set_keys.begin(), set_keys.end(), key) != set_keys.end();
}

void apply_method_defaults(Config& c) {
  if (!c.was_set("learning_rate")) {
    switch (c.method) {
      case Method::sft: c.learning_rate = 2e-5; break;
      case Method::dpo: c.learning_rate = 1e-6; break;
      case Method::reward: c.learning_rate = 1e-5; break;
      case Method::unlikelihood: c.learning_rate = 1e-5; break;
      case Method::ppo: c.learning_rate = 3e-6; break;
      case Method::grpo:
      case Method::rloo:
      case Method::reinforce_pp:
      case Method::kto:
      case Method::orpo: c.learning_rate = 1e-6; break;
    }
  }
  if (c.method == Method::grpo) {
    if (!c.was_set("beta")) c.beta = 0.04;
    if (!c.was_set("loss_type")) c.loss_type = "grpo";
  }
  if (c.method == Method::rloo && !c.was_set("num_generations")) c.num_generations = 4;
  if (c.method == Method::reinforce_pp && !c.was_set("num_generations")) c.num_generations = 1;
  if (c.method == Method::reinforce_pp && !c.was_set("kl_coef")) c.kl_coef = 0.01;
  if (c.method == Method::sft && !c.was_set("max_prompt_length")) c.max_prompt_length = 0;
}

Parsed parse_arguments(int argc, char** argv) {
  Parsed out;
  Config& c = out.config;
  const auto fail = [&](const std::string& line) {
    std::fprintf(stderr, "rlhf-train: %s\n", line.c_str());
    out.exit_code = bad_usage;
    return out;
  };
  if (argc < 2) return fail(std::string("the first argument must be the method: ") + method_list + " (--help)");
  const std::string method = argv[1];
  if (method == "--help" || method == "-h") {
    std::printf("usage: rlhf-train METHOD [--config FILE.json] [--key value ...]\n  METHOD: %s\n"
                "rlhf-train METHOD --help lists the settings of that method; docs/trainer.md describes them.\n",
                method_list);
    out.exit_code = 0;
    return out;
  }
  bool known = false;
  for (int m = 0; m < int(std::size(method_names)); ++m)
    if (method == method_names[m]) c.method = static_cast<Method>(m), known = true;
  if (!known) return fail("unknown method '" + method + "': use " + method_list);

  const auto keys = keys_of(c);
  try {
    // The file first, wherever --config stands, so that the command line's keys win.
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        apply_method_defaults(c);
        print_help(c, keys);
        out.exit_code = 0;
        return out;
      }
    }
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--config" || a.rfind("--config=", 0) == 0) {
        std::string path;
        if (a == "--config") {
          if (i + 1 >= argc) throw Refusal("--config: needs a file");
          path = argv[++i];
        } else {
          path = a.substr(9);
        }
        read_config_file(c, keys, path);
      }
    }
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--config") {
        ++i;
        continue;
      }
      if (a.rfind("--config=", 0) == 0) continue;
      if (a.rfind("--", 0) != 0) throw Refusal("'" + a + "': expected --key value");
      std::string name = a.substr(2), value;
      if (const auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
      } else {
        if (!find_key(keys, name)) set_key(c, keys, name, json(), true, " on the command line");  // names it
        if (i + 1 >= argc) throw Refusal(name + ": needs a value");
        value = argv[++i];
      }
      set_key(c, keys, name, json(value), true, " on the command line");
    }
    apply_method_defaults(c);
    check_combinations(c);
  } catch (const Refusal& r) {
    return fail(r.what());
  }
  return out;
}

std::string to_json(const Config& c) {
  Config copy = c;
  const auto keys = keys_of(copy);
  json doc = json::object();
  doc["method"] = name_of(c.method);
  for (const auto& k : keys) {
    if (!applies(k, c.method)) continue;
    switch (k.kind) {
      case Kind::text:
      case Kind::choice: doc[k.name] = *static_cast<std::string*>(k.field); break;
      case Kind::boolean: doc[k.name] = *static_cast<bool*>(k.field); break;
      case Kind::count: doc[k.name] = *static_cast<std::size_t*>(k.field); break;
      case Kind::signed_count: doc[k.name] = *static_cast<long long*>(k.field); break;
      case Kind::seed: doc[k.name] = *static_cast<std::uint64_t*>(k.field); break;
      case Kind::real: doc[k.name] = *static_cast<double*>(k.field); break;
    }
  }
  return doc.dump(2) + "\n";
}

}  // namespace trainer
