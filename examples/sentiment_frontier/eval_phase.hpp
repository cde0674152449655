#pragma once
// Phase 4: every saved checkpoint (and the SFT model itself, at KL 0) on the M held-out prompts:
//   reward = mean VADER reward of sampled completions (temperature 1, the same seed for every checkpoint)
//   KL     = mean over completions of Σ_t KL(π(·|y_<t) ‖ π_ref(·|y_<t)) over the completion's tokens: the exact
//            per-token KL over the whole vocabulary (rlhf::exact_kl_from_logits) from the logits of π and
//            π_ref at the same positions of the same sampled sequence.
// Each result is cached beside its checkpoint, keyed by the evaluation's settings.
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cache.hpp"
#include "context.hpp"
#include "data.hpp"
#include "rlhf/losses/kl.hpp"
#include "rlhf/models/gpt/checkpoint.hpp"
#include "pairs_phase.hpp"
#include "sft_phase.hpp"
#include "train_phase.hpp"

namespace sentiment {

struct EvalResult {
  SavedCheckpoint checkpoint;
  double reward = 0, kl = 0;
};

// Mean over rows of Σ over response tokens of the exact KL(π ‖ π_ref) at that token's position.
inline double sequence_kl(rlhf::Gpt<float>& policy, rlhf::Gpt<float>& reference, const rlhf::TokenBatch& batch) {
  using Be = rlhf::Gpt<float>::backend;
  // the logits that score token t are those of position t-1 (rows are right-padded, prompt first)
  auto mask = Be::vector_of(batch.batch * batch.time);  // [B·T]
  for (std::size_t b = 0; b < batch.batch; ++b)
    for (std::size_t t = 1; t < batch.time; ++t)
      if (batch.mask(b, t)) mask[Eigen::Index(b * batch.time + t - 1)] = 1.0f;
  const auto r = rlhf::exact_kl_from_logits(policy.logits(batch), reference.logits(batch), mask);
  double total = 0;
  for (Eigen::Index i = 0; i < r.per_row.size(); ++i) total += mask[i] != 0 ? double(r.per_row[i]) : 0.0;
  return total / double(batch.batch);
}

class Evaluator {
 public:
  Evaluator(Context& ctx, const Texts& texts, const SftOutput& sft, const PairsOutput& pairs)
      : ctx_(ctx), reference_(rlhf::load_checkpoint<float>(sft.checkpoint)), key_("eval") {
    const auto& c = ctx.config;
    key_.add("sft", sft.key.hex()).add("M", c.pairs.eval_prompts).add("samples", c.eval.samples_per_prompt)
        .add("new_tokens", c.pairs.max_new_tokens).add("pairs", pairs.key.hex()).add("seed", c.data_seed);
    // the prompts after the N training prompts' sentences: never trained on, never a training prompt
    std::size_t cursor = pairs.sentences_used;
    prompts_ = make_prompts(*ctx.tokenizer, texts.prompt_reviews, cursor, c.pairs.eval_prompts, c.pairs,
                            c.data_seed + 30);
    if (prompts_.empty()) throw std::runtime_error("no held-out review sentences are left for evaluation prompts");
  }

  std::size_t prompt_count() const { return prompts_.size(); }

  EvalResult evaluate(const SavedCheckpoint& ckpt) {
    const fs::path cached = ckpt.path.string() + ".eval-" + key_.hex();
    EvalResult out{ckpt};
    if (fs::exists(cached)) {  // used only when its checksum matches and it holds two finite numbers
      std::string why;
      if (const auto text = read_checked_file(cached, &why)) {
        std::istringstream in(*text);
        std::string rest;
        if (in >> out.reward >> out.kl && !(in >> rest) && std::isfinite(out.reward) && std::isfinite(out.kl)) {
          ++cached_;
          return out;
        }
        why = "not two finite numbers";
      }
      std::fprintf(stderr, "cache: '%s' is not used: %s; recomputing it\n", cached.string().c_str(), why.c_str());
    }
    auto policy = rlhf::load_checkpoint<float>(ckpt.path);
    const auto& c = ctx_.config;
    rlhf::Rng rng(c.data_seed + 31);
    const std::size_t chunk = 32;
    double reward = 0, kl = 0;
    std::size_t rows = 0;
    for (std::size_t lo = 0; lo < prompts_.size(); lo += chunk) {
      const std::size_t hi = std::min(prompts_.size(), lo + chunk);
      const auto batch = policy.sample(prompt_batch(prompts_, lo, hi, c.eval.samples_per_prompt),
                                       {.max_new_tokens = c.pairs.max_new_tokens, .stop_token = ctx_.tokenizer->eos()},
                                       rng);
      for (std::size_t b = 0; b < batch.batch; ++b)
        reward += reward_of_text(ctx_, sequence_text(*ctx_.tokenizer, row_sequence(batch, b).tokens));
      kl += sequence_kl(policy, reference_, batch) * double(batch.batch);
      rows += batch.batch;
    }
    out.reward = reward / double(rows);
    out.kl = kl / double(rows);
    std::ostringstream s;
    s.precision(17);
    s << out.reward << ' ' << out.kl << '\n';
    write_checked_file(cached, s.str());
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
