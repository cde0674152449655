#pragma once
// Phase 2: the preference data. The SFT model completes each of N training prompts `completions` times
// (temperature 1, stop at eos); VADER scores each prompt + completion; every two completions of a prompt with
// different rewards make a pair (the higher one chosen): up to 6 pairs per prompt with 4 completions. Also
// stores Σ log π_ref of each completion, the reference log-probs of DPO. Writes completions.tsv.
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
#include "progress.hpp"
#include "sft_phase.hpp"
#include "rlhf/algorithms/sequence.hpp"
#include "rlhf/models/gpt/checkpoint.hpp"

namespace sentiment {

struct Completion {
  std::size_t prompt = 0;
  Sequence sequence;
  double reward = 0;      // VADER compound mapped to [0, 1]
  double ref_logp = 0;    // Σ over the completion's tokens of log π_ref
};

struct Pair {
  std::size_t chosen, rejected;  // indices into PairsOutput::completions
};

struct PairsOutput {
  CacheKey key{"pairs"};
  std::vector<Prompt> prompts;       // the N training prompts
  std::vector<Prompt> eval_prompts;  // the M evaluation prompts: none of them a training prompt
  std::vector<std::string> eval_sources;  // [M] the held-out sentence of each (its hash splits them: in_split)
  std::size_t from_reviews = 0, from_fortunes = 0, review_candidates = 0, eval_sentences = 0;
  std::vector<Completion> completions;
  std::vector<Pair> pairs;
};

inline std::vector<Pair> all_pairs(const std::vector<Completion>& cs, std::size_t per_prompt) {
  std::vector<Pair> out;
  for (std::size_t base = 0; base + per_prompt <= cs.size(); base += per_prompt)
    for (std::size_t i = base; i < base + per_prompt; ++i)
      for (std::size_t j = i + 1; j < base + per_prompt; ++j) {
        if (cs[i].reward == cs[j].reward) continue;  // a tie says nothing
        out.push_back(cs[i].reward > cs[j].reward ? Pair{i, j} : Pair{j, i});
      }
  return out;
}

inline std::string completions_tsv(const Context& ctx, const std::vector<Completion>& cs) {
  std::ostringstream s;
  s.precision(17);
  s << "prompt\treward\tref_logp\tprompt_length\ttokens\ttext\n";
  for (const auto& c : cs) {
    s << c.prompt << '\t' << c.reward << '\t' << c.ref_logp << '\t' << c.sequence.prompt_length << '\t';
    for (std::size_t i = 0; i < c.sequence.tokens.size(); ++i) s << (i ? " " : "") << c.sequence.tokens[i];
    s << '\t' << sequence_text(*ctx.tokenizer, c.sequence.tokens) << '\n';
  }
  return s.str();
}

// The rows of completions.tsv; a malformed row (a field missing or not a number, a non-finite reward or log-prob,
// no tokens) throws std::runtime_error naming the line.
inline std::vector<Completion> parse_completions(const std::string& text) {
  std::vector<Completion> out;
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line.rfind("prompt\treward\t", 0) != 0)
    throw std::runtime_error("completions.tsv: no header line");
  for (std::size_t line_no = 2; std::getline(in, line); ++line_no) {
    const auto bad = [&] { return std::runtime_error("completions.tsv: line " + std::to_string(line_no) + " is malformed"); };
    std::istringstream row(line);
    std::string prompt, reward, ref_logp, prompt_length, tokens;
    if (!std::getline(row, prompt, '\t') || !std::getline(row, reward, '\t') || !std::getline(row, ref_logp, '\t') ||
        !std::getline(row, prompt_length, '\t') || !std::getline(row, tokens, '\t'))
      throw bad();
    Completion c;
    try {
      std::size_t used = 0;
      c.prompt = std::stoul(prompt, &used);
      if (used != prompt.size()) throw bad();
      c.reward = std::stod(reward, &used);
      if (used != reward.size() || !std::isfinite(c.reward)) throw bad();
      c.ref_logp = std::stod(ref_logp, &used);
      if (used != ref_logp.size() || !std::isfinite(c.ref_logp)) throw bad();
      c.sequence.prompt_length = std::stoul(prompt_length, &used);
      if (used != prompt_length.size()) throw bad();
    } catch (const std::logic_error&) {  // std::invalid_argument, std::out_of_range
      throw bad();
    }
    std::istringstream ids(tokens);
    for (long id; ids >> id;) c.sequence.tokens.push_back(rlhf::token_id(id));
    if (!ids.eof() || c.sequence.tokens.size() < c.sequence.prompt_length || c.sequence.tokens.empty()) throw bad();
    out.push_back(std::move(c));
  }
  return out;
}

inline PairsOutput run_pairs_phase(Context& ctx, const Texts& texts, const SftOutput& sft) {
  const auto& c = ctx.config;
  const auto& s = c.pairs;
  PairsOutput out;
  out.key.add("sft", sft.key.hex())
      .add("prompts", hash_texts(texts.prompt_reviews))
      .add("prompt_fortunes", hash_texts(texts.prompt_fortunes))
      .add("prompt_sets", "eval-first+all-prefixes")
      .add("N", s.train_prompts)
      .add("M", s.eval_prompts)
      .add("completions", s.completions)
      .add("prompt_tokens", s.min_prompt_tokens)
      .add("prompt_tokens_max", s.max_prompt_tokens)
      .add("new_tokens", s.max_new_tokens)
      .add("temperature", s.temperature)
      .add("seed", c.data_seed);
  auto sets = make_prompt_sets(*ctx.tokenizer, texts, s, c.data_seed + 10);
  out.prompts = std::move(sets.train);
  out.eval_prompts = std::move(sets.eval);
  out.eval_sources = std::move(sets.eval_sources);
  out.from_reviews = sets.from_reviews, out.from_fortunes = sets.from_fortunes;
  out.review_candidates = sets.review_candidates, out.eval_sentences = sets.eval_sentences;
  const CacheEntry entry(ctx.out, out.key);
  const auto t0 = Clock::now();
  if (entry.done()) {  // verified against its done marker; still, only a whole, well-formed table is used
    try {
      out.completions = parse_completions(read_file(entry.file("completions.tsv")));
      if (out.completions.size() != out.prompts.size() * s.completions)
        throw std::runtime_error("completions.tsv has " + std::to_string(out.completions.size()) + " rows, not " +
                                 std::to_string(out.prompts.size() * s.completions));
      out.pairs = all_pairs(out.completions, s.completions);
      ctx.record("pairs", seconds_since(t0), true);
      return out;
    } catch (const std::runtime_error& e) {
      std::fprintf(stderr, "cache: '%s' is not used: %s; recomputing it\n", entry.dir().string().c_str(), e.what());
      out.completions.clear();
    }
  }
  entry.begin();
  auto model = rlhf::load_checkpoint<float>(sft.checkpoint);
  rlhf::Rng rng(c.data_seed + 11);
  const std::size_t chunk = 16;  // prompts per sampling batch
  Progress progress("pairs", out.prompts.size(), ctx.quiet);
  for (std::size_t lo = 0; lo < out.prompts.size(); lo += chunk) {
    const std::size_t hi = std::min(out.prompts.size(), lo + chunk);
    const auto batch = model.sample(prompt_batch(out.prompts, lo, hi, s.completions),
                                    {.max_new_tokens = s.max_new_tokens, .temperature = s.temperature,
                                     .stop_token = ctx.tokenizer->eos()},
                                    rng);
    const auto ref = rlhf::sequence_logps(model, batch);
    double mean = 0;
    for (std::size_t b = 0; b < batch.batch; ++b) {
      Completion comp{lo + b / s.completions, row_sequence(batch, b), 0, ref[b]};
      comp.reward = reward_of_text(ctx, sequence_text(*ctx.tokenizer, comp.sequence.tokens));
      mean += comp.reward / double(batch.batch);
      out.completions.push_back(std::move(comp));
    }
    progress.update(hi, "reward", mean);
  }
  write_file_atomic(entry.file("completions.tsv"), completions_tsv(ctx, out.completions));
  entry.finish();
  out.pairs = all_pairs(out.completions, s.completions);
  ctx.record("pairs", seconds_since(t0), false);
  return out;
}

}  // namespace sentiment
