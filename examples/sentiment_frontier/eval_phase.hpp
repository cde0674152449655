#pragma once
// Phase 4: every saved checkpoint (and the SFT model itself, at KL 0) on the M held-out prompts, S samples each:
//   reward = mean VADER reward of sampled completions (temperature 1, the same seed for every checkpoint)
//   KL     = mean over completions of Σ_t KL(π(·|y_<t) ‖ π_ref(·|y_<t)) over the completion's tokens: the exact
//            per-token KL over the whole vocabulary (rlhf::exact_kl_from_logits) from the logits of π and
//            π_ref at the same positions of the same sampled sequence.
// Both are kept per prompt (the mean of its S samples) too, and each mean gets a 95% percentile bootstrap interval
// over prompts (rlhf/eval/bootstrap.hpp; the same resamples for reward and KL, and for every checkpoint).
// Each result is cached beside its checkpoint, keyed by the evaluation's settings.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cache.hpp"
#include "context.hpp"
#include "data.hpp"
#include "rlhf/eval/bootstrap.hpp"
#include "rlhf/losses/kl.hpp"
#include "rlhf/models/gpt/checkpoint.hpp"
#include "pairs_phase.hpp"
#include "sft_phase.hpp"
#include "train_phase.hpp"

namespace sentiment {

struct EvalResult {
  SavedCheckpoint checkpoint;
  double reward = 0, kl = 0;
  rlhf::eval::Interval reward_ci, kl_ci;        // 95% bootstrap intervals over prompts
  std::vector<double> prompt_reward, prompt_kl;  // [M] the mean over each prompt's samples
};

// Per row, Σ over response tokens of the exact KL(π ‖ π_ref) at that token's position.
inline std::vector<double> sequence_kls(rlhf::Gpt<float>& policy, rlhf::Gpt<float>& reference,
                                        const rlhf::TokenBatch& batch) {
  using Be = rlhf::Gpt<float>::backend;
  // the logits that score token t are those of position t-1 (rows are right-padded, prompt first)
  auto mask = Be::vector_of(batch.batch * batch.time);  // [B·T]
  for (std::size_t b = 0; b < batch.batch; ++b)
    for (std::size_t t = 1; t < batch.time; ++t)
      if (batch.mask(b, t)) mask[Eigen::Index(b * batch.time + t - 1)] = 1.0f;
  const auto r = rlhf::exact_kl_from_logits(policy.logits(batch), reference.logits(batch), mask);
  std::vector<double> out(batch.batch, 0.0);  // [B]
  for (Eigen::Index i = 0; i < r.per_row.size(); ++i)
    if (mask[i] != 0) out[std::size_t(i) / batch.time] += double(r.per_row[i]);
  return out;
}

// Mean over rows of sequence_kls.
inline double sequence_kl(rlhf::Gpt<float>& policy, rlhf::Gpt<float>& reference, const rlhf::TokenBatch& batch) {
  double total = 0;
  for (const double v : sequence_kls(policy, reference, batch)) total += v;
  return total / double(batch.batch);
}

inline double mean_of(const std::vector<double>& v) {
  double total = 0;
  for (const double x : v) total += x;
  return total / double(v.size());
}

// The cache file's text: "reward kl reward_lo reward_hi kl_lo kl_hi", "prompts M", then M lines "reward kl".
inline std::string eval_text(const EvalResult& r) {
  std::ostringstream s;
  s.precision(17);
  s << r.reward << ' ' << r.kl << ' ' << r.reward_ci.lo << ' ' << r.reward_ci.hi << ' ' << r.kl_ci.lo << ' '
    << r.kl_ci.hi << "\nprompts " << r.prompt_reward.size() << '\n';
  for (std::size_t i = 0; i < r.prompt_reward.size(); ++i) s << r.prompt_reward[i] << ' ' << r.prompt_kl[i] << '\n';
  return s.str();
}

// Reads eval_text back into *r; false when it is not that text for `prompts` prompts, every number finite.
inline bool parse_eval_text(const std::string& text, std::size_t prompts, EvalResult* r) {
  std::istringstream in(text);
  double v[6];
  for (double& x : v)
    if (!(in >> x) || !std::isfinite(x)) return false;
  std::string tag;
  std::size_t m = 0;
  if (!(in >> tag >> m) || tag != "prompts" || m != prompts) return false;
  std::vector<double> reward(m), kl(m);
  for (std::size_t i = 0; i < m; ++i)
    if (!(in >> reward[i] >> kl[i]) || !std::isfinite(reward[i]) || !std::isfinite(kl[i])) return false;
  if (std::string rest; in >> rest) return false;
  r->reward = v[0], r->kl = v[1], r->reward_ci = {v[2], v[3]}, r->kl_ci = {v[4], v[5]};
  r->prompt_reward = std::move(reward), r->prompt_kl = std::move(kl);
  return true;
}

class Evaluator {
 public:
  Evaluator(Context& ctx, const SftOutput& sft, const PairsOutput& pairs)
      : ctx_(ctx), reference_(rlhf::load_checkpoint<float>(sft.checkpoint)), key_("eval") {
    const auto& c = ctx.config;
    key_.add("sft", sft.key.hex()).add("M", c.pairs.eval_prompts).add("samples", c.eval.samples_per_prompt)
        .add("new_tokens", c.pairs.max_new_tokens).add("pairs", pairs.key.hex()).add("seed", c.data_seed)
        .add("format", "per-prompt+bootstrap").add("resamples", c.eval.bootstrap_resamples);
    if (c.eval.split != PromptSplit::all) key_.add("split", split_name(c.eval.split));
    for (std::size_t i = 0; i < pairs.eval_prompts.size(); ++i)  // never trained on, never a training prompt
      if (in_split(pairs.eval_sources[i], c.eval.split)) prompts_.push_back(pairs.eval_prompts[i]);
    if (prompts_.empty())
      throw std::runtime_error(std::string("no held-out review sentences are left for evaluation prompts (") +
                               split_name(c.eval.split) + " side)");
  }

  std::size_t prompt_count() const { return prompts_.size(); }

  EvalResult evaluate(const SavedCheckpoint& ckpt) {
    const fs::path cached = ckpt.path.string() + ".eval-" + key_.hex();
    EvalResult out{ckpt};
    if (fs::exists(cached)) {  // used only when its checksum matches and it holds eval_text's finite numbers
      std::string why;
      if (const auto text = read_checked_file(cached, &why)) {
        if (parse_eval_text(*text, prompts_.size(), &out)) {
          ++cached_;
          return out;
        }
        why = "not the means, their intervals and " + std::to_string(prompts_.size()) + " prompts' values";
      }
      std::fprintf(stderr, "cache: '%s' is not used: %s; recomputing it\n", cached.string().c_str(), why.c_str());
    }
    auto policy = rlhf::load_checkpoint<float>(ckpt.path);
    const auto& c = ctx_.config;
    rlhf::Rng rng(c.data_seed + 31);
    const std::size_t chunk = 32, S = c.eval.samples_per_prompt;
    out.prompt_reward.assign(prompts_.size(), 0.0);
    out.prompt_kl.assign(prompts_.size(), 0.0);
    for (std::size_t lo = 0; lo < prompts_.size(); lo += chunk) {
      const std::size_t hi = std::min(prompts_.size(), lo + chunk);
      // [(hi - lo)·S rows], prompt-major: row (i - lo)·S + s is sample s of prompt i
      const auto batch = policy.sample(prompt_batch(prompts_, lo, hi, S),
                                       {.max_new_tokens = c.pairs.max_new_tokens, .stop_token = ctx_.tokenizer->eos()},
                                       rng);
      const auto kls = sequence_kls(policy, reference_, batch);
      for (std::size_t b = 0; b < batch.batch; ++b) {
        const double reward = reward_of_text(ctx_, sequence_text(*ctx_.tokenizer, row_sequence(batch, b).tokens));
        out.prompt_reward[lo + b / S] += reward / double(S);
        out.prompt_kl[lo + b / S] += kls[b] / double(S);
      }
    }
    out.reward = mean_of(out.prompt_reward);
    out.kl = mean_of(out.prompt_kl);
    const rlhf::eval::BootstrapConfig boot{.resamples = c.eval.bootstrap_resamples, .seed = c.data_seed + 32};
    out.reward_ci = rlhf::eval::bootstrap_mean(out.prompt_reward, boot);
    out.kl_ci = rlhf::eval::bootstrap_mean(out.prompt_kl, boot);
    write_checked_file(cached, eval_text(out));
    ++computed_;
    return out;
  }

  std::size_t computed() const { return computed_; }
  std::size_t cached() const { return cached_; }

 private:
  Context& ctx_;
  rlhf::Gpt<float> reference_;
  CacheKey key_;
  std::vector<std::vector<rlhf::token_id>> prompts_;
  std::size_t computed_ = 0, cached_ = 0;
};

}  // namespace sentiment
