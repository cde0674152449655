#pragma once
// The texts of the experiment and their token batches:
//   fortunes                 → SFT, stage 1 (pre-training text)
//   reviews, train side      → SFT, stage 2 (the domain)
//   reviews, held-out side   → prompts: the first 2–8 tokens of a sentence; the first N for the preference pairs,
//                              the next M for the evaluation (none of them was trained on)
// A sequence is [bos] text [eos], cut to the model's T; every token after bos is a response token for SFT.
#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "config.hpp"
#include "rlhf/core/batch.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/io/corpus.hpp"
#include "rlhf/io/tokenizer.hpp"

namespace sentiment {

struct Texts {
  std::vector<std::string> fortunes, train_reviews, prompt_reviews;
};

inline Texts load_texts(const DataConfig& c) {
  Texts t;
  t.fortunes = rlhf::io::read_fortunes(c.fortunes_dir);
  if (c.max_fortunes && t.fortunes.size() > c.max_fortunes) t.fortunes.resize(c.max_fortunes);
  const auto split = rlhf::io::split_reviews(rlhf::io::read_reviews(c.reviews_dir),
                                             {.held_out_fraction = c.held_out_fraction, .seed = 0});
  for (const auto& r : split.train) t.train_reviews.push_back(r.text);
  for (const auto& r : split.held_out) t.prompt_reviews.push_back(r.text);
  if (c.max_reviews) {
    if (t.train_reviews.size() > c.max_reviews) t.train_reviews.resize(c.max_reviews);
    if (t.prompt_reviews.size() > c.max_reviews) t.prompt_reviews.resize(c.max_reviews);
  }
  return t;
}

// [bos] ids [eos], at most max_len tokens.
inline std::vector<rlhf::token_id> framed(const rlhf::io::Tokenizer& tok, const std::string& text, std::size_t max_len) {
  std::vector<rlhf::token_id> ids{tok.bos()};
  for (const auto id : tok.encode(text)) ids.push_back(id);
  ids.push_back(tok.eos());
  if (ids.size() > max_len) ids.resize(max_len);
  return ids;
}

// Right-padded rows (attention_mask 0 on the padding); every token after the first is scored.
inline rlhf::TokenBatch lm_batch(const std::vector<std::vector<rlhf::token_id>>& rows) {
  std::size_t T = 0;
  for (const auto& r : rows) T = std::max(T, r.size());
  auto batch = rlhf::TokenBatch::zeros(rows.size(), T);
  batch.attention_mask.assign(rows.size() * T, 0);
  for (std::size_t b = 0; b < rows.size(); ++b)
    for (std::size_t t = 0; t < rows[b].size(); ++t) {
      batch.token(b, t) = rows[b][t];
      batch.attention_mask[b * T + t] = 1;
      batch.mask(b, t) = t > 0;
    }
  return batch;
}

// prompt + response rows, right-padded; only the response is scored.
struct Sequence {
  std::vector<rlhf::token_id> tokens;
  std::size_t prompt_length = 0;
};

inline rlhf::TokenBatch response_batch(const std::vector<const Sequence*>& rows) {
  std::size_t T = 0;
  for (const auto* r : rows) T = std::max(T, r->tokens.size());
  auto batch = rlhf::TokenBatch::zeros(rows.size(), T);
  batch.attention_mask.assign(rows.size() * T, 0);
  for (std::size_t b = 0; b < rows.size(); ++b)
    for (std::size_t t = 0; t < rows[b]->tokens.size(); ++t) {
      batch.token(b, t) = rows[b]->tokens[t];
      batch.attention_mask[b * T + t] = 1;
      batch.mask(b, t) = t >= rows[b]->prompt_length;
    }
  return batch;
}

// Up to `count` prompts from sentences[cursor...], advancing cursor past the sentences used. A prompt is
// [bos] + the first k tokens of a held-out sentence, k drawn in [min, max] and shorter than the sentence, so
// that something is left to complete; sentences too short for that are passed over.
inline std::vector<std::vector<rlhf::token_id>> make_prompts(const rlhf::io::Tokenizer& tok,
                                                             const std::vector<std::string>& sentences,
                                                             std::size_t& cursor, std::size_t count,
                                                             const PairSettings& s, std::uint64_t seed) {
  rlhf::Rng rng(seed);
  std::vector<std::vector<rlhf::token_id>> out;
  for (; cursor < sentences.size() && out.size() < count; ++cursor) {
    const std::size_t i = cursor;
    const auto ids = tok.encode(sentences[i]);
    const std::size_t k = s.min_prompt_tokens + rng.below(s.max_prompt_tokens - s.min_prompt_tokens + 1);
    if (ids.size() < s.min_prompt_tokens + 1) continue;
    std::vector<rlhf::token_id> p{tok.bos()};
    p.insert(p.end(), ids.begin(), ids.begin() + std::ptrdiff_t(std::min(k, ids.size() - 1)));
    out.push_back(std::move(p));
  }
  return out;
}

inline rlhf::PromptBatch prompt_batch(const std::vector<std::vector<rlhf::token_id>>& prompts, std::size_t begin,
                                      std::size_t end, std::size_t repeat = 1) {
  rlhf::PromptBatch x;
  x.batch = (end - begin) * repeat;
  for (std::size_t i = begin; i < end; ++i) x.time = std::max(x.time, prompts[i].size());
  x.tokens.assign(x.batch * x.time, 0);
  for (std::size_t i = begin, row = 0; i < end; ++i)
    for (std::size_t r = 0; r < repeat; ++r, ++row) {
      std::copy(prompts[i].begin(), prompts[i].end(), x.tokens.begin() + std::ptrdiff_t(row * x.time));
      x.prompt_length.push_back(prompts[i].size());
    }
  return x;
}

// Row b of a sampled batch as a Sequence (its real tokens; the prompt is what is not in response_mask).
inline Sequence row_sequence(const rlhf::TokenBatch& batch, std::size_t b) {
  Sequence s;
  for (std::size_t t = 0; t < batch.time; ++t) {
    if (!batch.real(b, t)) break;
    s.tokens.push_back(batch.token(b, t));
    if (!batch.mask(b, t)) s.prompt_length = t + 1;
  }
  return s;
}

// The text a reward is computed on: the prompt and the completion, without bos/eos.
inline std::string sequence_text(const rlhf::io::Tokenizer& tok, const std::vector<rlhf::token_id>& tokens) {
  std::vector<rlhf::token_id> ids;
  for (const auto id : tokens)
    if (id != tok.bos() && id != tok.eos() && id != tok.pad()) ids.push_back(id);
  return tok.decode(ids);
}

}  // namespace sentiment
