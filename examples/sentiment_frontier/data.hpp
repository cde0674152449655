#pragma once
// The texts of the experiment and their token batches:
//   fortunes                 → SFT, stage 1 (pre-training text), except data.prompt_fortunes of them (every k-th)
//   reviews, train side      → SFT, stage 2 (the domain)
//   reviews, held-out side   → prompts (make_prompt_sets): the first M sentences one evaluation prompt each, the
//                              others the training prompts, then the held-out fortunes (none of them trained on);
//                              and the SFT model's held-out perplexity
// A sequence is [bos] text [eos], cut to the model's T; every token after bos is a response token for SFT.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "config.hpp"
#include "rlhf/core/batch.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/io/corpus.hpp"
#include "rlhf/io/tokenizer.hpp"

namespace sentiment {

struct Texts {
  std::vector<std::string> fortunes, train_reviews, prompt_reviews, prompt_fortunes;
};

inline Texts load_texts(const DataConfig& c) {
  Texts t;
  t.fortunes = rlhf::io::read_fortunes(c.fortunes_dir);
  if (c.max_fortunes && t.fortunes.size() > c.max_fortunes) t.fortunes.resize(c.max_fortunes);
  if (c.prompt_fortunes > 0) {  // every k-th fortune, spread over all the files
    const std::size_t k = std::max<std::size_t>(2, t.fortunes.size() / c.prompt_fortunes);
    std::vector<std::string> kept;
    for (std::size_t i = 0; i < t.fortunes.size(); ++i)
      (i % k == k - 1 && t.prompt_fortunes.size() < c.prompt_fortunes ? t.prompt_fortunes : kept)
          .push_back(std::move(t.fortunes[i]));
    t.fortunes = std::move(kept);
  }
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

using Prompt = std::vector<rlhf::token_id>;

// [bos] + the first k tokens of ids; k < ids.size(), so that something is left to complete.
inline Prompt prefix_prompt(const rlhf::io::Tokenizer& tok, const std::vector<rlhf::token_id>& ids, std::size_t k) {
  Prompt p{tok.bos()};
  p.insert(p.end(), ids.begin(), ids.begin() + std::ptrdiff_t(std::min(k, ids.size() - 1)));
  return p;
}

struct PromptSets {
  std::vector<Prompt> train, eval;
  std::vector<std::string> eval_sources;          // [eval.size()] the held-out sentence each evaluation prompt cuts
  std::size_t eval_sentences = 0;                 // held-out sentences the evaluation prompts came from
  std::size_t from_reviews = 0, from_fortunes = 0;  // of train
  std::size_t review_candidates = 0;              // distinct training prefixes the other held-out sentences give
};

// Evaluation: one prefix (k drawn in [min, max]) of each held-out sentence in order, until M; sentences too short
// are passed over. Training: every prefix length in [min, max] of every other held-out sentence, then one prefix of
// each held-out fortune; distinct, never an evaluation prompt; each source shuffled, reviews first, the first N.
inline PromptSets make_prompt_sets(const rlhf::io::Tokenizer& tok, const Texts& texts, const PairSettings& s,
                                   std::uint64_t seed) {
  PromptSets out;
  rlhf::Rng rng(seed);
  const auto length = [&] { return s.min_prompt_tokens + rng.below(s.max_prompt_tokens - s.min_prompt_tokens + 1); };
  std::size_t i = 0;
  for (; i < texts.prompt_reviews.size() && out.eval.size() < s.eval_prompts; ++i) {
    const auto ids = tok.encode(texts.prompt_reviews[i]);
    const std::size_t k = length();
    if (ids.size() >= s.min_prompt_tokens + 1) {
      out.eval.push_back(prefix_prompt(tok, ids, k));
      out.eval_sources.push_back(texts.prompt_reviews[i]);
    }
  }
  out.eval_sentences = i;
  std::set<Prompt> seen(out.eval.begin(), out.eval.end());
  const auto shuffled = [&](std::vector<Prompt> v) {
    for (std::size_t j = v.size(); j-- > 1;) std::swap(v[j], v[rng.below(j + 1)]);
    return v;
  };
  std::vector<Prompt> reviews, fortunes;
  for (; i < texts.prompt_reviews.size(); ++i) {
    const auto ids = tok.encode(texts.prompt_reviews[i]);
    for (std::size_t k = s.min_prompt_tokens; k <= s.max_prompt_tokens && k < ids.size(); ++k)
      if (auto p = prefix_prompt(tok, ids, k); seen.insert(p).second) reviews.push_back(std::move(p));
  }
  out.review_candidates = reviews.size();
  for (auto& p : shuffled(std::move(reviews)))
    if (out.train.size() < s.train_prompts) out.train.push_back(std::move(p)), ++out.from_reviews;
  for (const auto& f : texts.prompt_fortunes) {
    const auto ids = tok.encode(f);
    const std::size_t k = length();
    if (ids.size() < s.min_prompt_tokens + 1) continue;
    if (auto p = prefix_prompt(tok, ids, k); seen.insert(p).second) fortunes.push_back(std::move(p));
  }
  for (auto& p : shuffled(std::move(fortunes)))
    if (out.train.size() < s.train_prompts) out.train.push_back(std::move(p)), ++out.from_fortunes;
  return out;
}

// The protocol's split of the evaluation prompts: by the 64-bit FNV-1a hash of the source sentence's text, even
// to validation, odd to test (independent of the tokenizer and of the prompt's length).
inline bool in_split(const std::string& source, PromptSplit split) {
  if (split == PromptSplit::all) return true;
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : source) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return (h % 2 == 0) == (split == PromptSplit::validation);
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
