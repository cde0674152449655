#pragma once
// Phase 1: a SentencePiece BPE tokenizer trained on the SFT text, then the GPT trained from scratch by SFT on
// the fortunes and then on the train side of the review sentences. Writes tokenizer.model and sft.safetensors
// (the reference policy π_ref of every later phase).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "cache.hpp"
#include "context.hpp"
#include "data.hpp"
#include "progress.hpp"
#include "rlhf/algorithms/sequence.hpp"
#include "rlhf/algorithms/sft.hpp"
#include "rlhf/models/gpt/checkpoint.hpp"
#include "rlhf/optim/adamw.hpp"

namespace sentiment {

struct SftOutput {
  CacheKey key{"sft"};
  fs::path tokenizer_model, checkpoint;
  double held_out_perplexity = 0;  // on the held-out review sentences (held_out_perplexity)
};

inline std::uint64_t hash_texts(const std::vector<std::string>& texts) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const auto& t : texts) {
    for (const char c : t) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
    h = (h ^ 0xffu) * 0x100000001b3ull;
  }
  return h;
}

// Learning rate at step s of n: linear warm-up over the first 5%, then cosine decay to 10%.
inline float scheduled_lr(float peak, std::size_t s, std::size_t n) {
  const double warm = std::max<double>(1.0, 0.05 * double(n));
  if (double(s) < warm) return float(peak * (double(s) + 1) / warm);
  const double progress = (double(s) - warm) / std::max(1.0, double(n) - warm);
  return float(peak * (0.1 + 0.45 * (1 + std::cos(3.141592653589793 * progress))));
}

// `steps` SFT steps on batches of `batch` texts drawn without replacement (a new shuffle each epoch).
inline void sft_stage(rlhf::Gpt<float>& model, rlhf::AdamW<float>& opt, const std::vector<std::vector<rlhf::token_id>>& rows,
                      std::size_t steps, std::size_t batch, float lr, std::uint64_t seed, const std::string& label,
                      bool quiet) {
  rlhf::Rng rng(seed);
  std::vector<std::size_t> order(rows.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::size_t next = order.size();
  Progress progress(label, steps, quiet);
  for (std::size_t s = 0; s < steps; ++s) {
    std::vector<std::vector<rlhf::token_id>> part;
    while (part.size() < std::min(batch, rows.size())) {
      if (next == order.size()) {
        for (std::size_t i = order.size(); i-- > 1;) std::swap(order[i], order[rng.below(i + 1)]);
        next = 0;
      }
      part.push_back(rows[order[next++]]);
    }
    opt.set_learning_rate(scheduled_lr(lr, s, steps));
    const auto r = rlhf::sft_step(model, opt, lm_batch(part), {.aggregation = rlhf::Aggregation::sequence_mean});
    progress.update(s + 1, "nll/token", r.metrics["nll/token"]);
  }
}

inline SftOutput run_sft_phase(Context& ctx, const Texts& texts) {
  const auto& c = ctx.config;
  SftOutput out;
  out.key.add("fortunes", hash_texts(texts.fortunes))
      .add("reviews", hash_texts(texts.train_reviews))
      .add("vocab", c.sft.vocab_size)
      .add("C", c.sft.channels)
      .add("L", c.sft.layers)
      .add("NH", c.sft.heads)
      .add("T", c.sft.max_seq_len)
      .add("fortune_steps", c.sft.fortune_steps)
      .add("review_steps", c.sft.review_steps)
      .add("batch", c.sft.batch)
      .add("lr", c.sft.learning_rate)
      .add("seed", c.data_seed);
  if (c.bf16) out.key.add("bf16", 1);
  const CacheEntry entry(ctx.out, out.key);
  out.tokenizer_model = entry.file("tokenizer.model");
  out.checkpoint = entry.file("sft.safetensors");
  const auto t0 = Clock::now();
  if (entry.done()) {
    ctx.tokenizer = rlhf::io::Tokenizer::load(out.tokenizer_model);
    ctx.record("sft", seconds_since(t0), true);
    return out;
  }
  entry.begin();
  std::vector<std::string> corpus = texts.fortunes;
  corpus.insert(corpus.end(), texts.train_reviews.begin(), texts.train_reviews.end());
  ctx.tokenizer = rlhf::io::Tokenizer::train(corpus, entry.file("tokenizer"),
                                             {.vocab_size = int(c.sft.vocab_size), .seed = unsigned(c.data_seed)});
  if (!ctx.quiet) std::printf("  tokenizer: %zu pieces, %.1fs\n", ctx.tokenizer->vocab_size(), seconds_since(t0));
  ctx.record("tokenizer", seconds_since(t0), false);

  const auto t1 = Clock::now();
  const auto encode_all = [&](const std::vector<std::string>& in) {
    std::vector<std::vector<rlhf::token_id>> rows;
    for (const auto& t : in) rows.push_back(framed(*ctx.tokenizer, t, c.sft.max_seq_len));
    return rows;
  };
  rlhf::Gpt<float> model(c.gpt(ctx.tokenizer->vocab_size()), c.data_seed);
  for_training(ctx, model);
  rlhf::AdamW<float> opt({.learning_rate = c.sft.learning_rate, .weight_decay = 0.01f});
  sft_stage(model, opt, encode_all(texts.fortunes), c.sft.fortune_steps, c.sft.batch, c.sft.learning_rate,
            c.data_seed + 1, "sft fortunes", ctx.quiet);
  rlhf::AdamW<float> opt2({.learning_rate = c.sft.learning_rate, .weight_decay = 0.01f});
  sft_stage(model, opt2, encode_all(texts.train_reviews), c.sft.review_steps, c.sft.batch, c.sft.learning_rate,
            c.data_seed + 2, "sft reviews", ctx.quiet);
  rlhf::save_checkpoint(model, out.checkpoint);
  entry.finish();
  ctx.record("sft", seconds_since(t1), false);
  return out;
}

// exp of the mean NLL per token of the SFT model on the held-out review sentences ([bos] text [eos] cut to T, every
// token after bos scored, as in training): text it never saw, from which the prompts come. float32 products.
inline double held_out_perplexity(const Context& ctx, const Texts& texts, const SftOutput& sft) {
  auto model = rlhf::load_checkpoint<float>(sft.checkpoint);
  const std::size_t T = ctx.config.sft.max_seq_len, chunk = 64;
  double nll = 0, tokens = 0;
  for (std::size_t lo = 0; lo < texts.prompt_reviews.size(); lo += chunk) {
    std::vector<std::vector<rlhf::token_id>> rows;
    for (std::size_t i = lo; i < std::min(lo + chunk, texts.prompt_reviews.size()); ++i) {
      rows.push_back(framed(*ctx.tokenizer, texts.prompt_reviews[i], T));
      tokens += double(rows.back().size() - 1);
    }
    for (const double lp : rlhf::sequence_logps(model, lm_batch(rows))) nll -= lp;
  }
  return tokens > 0 ? std::exp(nll / tokens) : std::nan("");
}

}  // namespace sentiment
