#pragma once
// Text rows (io/dataset_formats.hpp) tokenized, truncated as TRL does, and collated into the batches the
// training steps take: PreferenceBatch, RankedBatch, TokenBatch (SFT), PromptBatch (PPO). docs/io/datasets.md.
//
//   rlhf::io::Gpt2Tokenizer tok = ...;
//   auto ds = rlhf::io::load_dataset("prefs.jsonl", tok, {.max_length = 512, .max_prompt_length = 256,
//                                                          .eos = tok.eos()});
//   rlhf::PreferenceBatch b = rlhf::io::collate_preferences(ds.rows, std::vector<std::size_t>{0, 1, 2, 3});
//
// The tokenizer is any TextEncoder: a type with encode(std::string_view) -> std::vector<token_id> (Gpt2Tokenizer,
// the SentencePiece Tokenizer) or a callable taking std::string_view (a std::function, a lambda).
#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "rlhf/core/batch.hpp"  // token_id, TokenBatch, PreferenceBatch, RankedBatch, PromptBatch
#include "rlhf/core/error.hpp"
#include "rlhf/core/unpaired_batch.hpp"
#include "rlhf/io/dataset_formats.hpp"  // TextDataset, read_text_dataset

namespace rlhf::io {

template <class E>
concept HasEncode = requires(const E& e, std::string_view s) {
  { e.encode(s) } -> std::convertible_to<std::vector<token_id>>;
};

template <class E>
concept TextEncoder = HasEncode<E> || std::is_invocable_r_v<std::vector<token_id>, const E&, std::string_view>;

template <TextEncoder E>
std::vector<token_id> encode_text(const E& encoder, std::string_view text) {
  if constexpr (HasEncode<E>) return encoder.encode(text);
  else return encoder(text);
}

// Which end of a prompt longer than max_prompt_length is kept (TRL's truncation_mode).
enum class TruncationMode { keep_end, keep_start };
// What becomes of a row still longer than max_length once its prompt is truncated.
enum class OverlongRows { truncate, drop };

struct TokenizeConfig {
  std::size_t max_length = 0;             // prompt + completion, in tokens; 0: no limit (TRL's default: 1024)
  std::size_t max_prompt_length = 0;      // 0: no limit (TRL's default: 512)
  std::size_t max_completion_length = 0;  // 0: no limit
  TruncationMode truncation_mode = TruncationMode::keep_end;  // TRL's default
  OverlongRows overlong = OverlongRows::truncate;  // truncate: cut the completion's end (TRL); drop: count it dropped
  token_id eos = -1;  // appended to every completion and text (not to prompts) unless it already ends with it; -1: none
  // false: conversational records get no eos (TRL's SFTTrainer: the chat template ends each turn itself)
  bool eos_after_conversations = true;
};

enum class DropReason {
  prompt_fills_max_length,  // the prompt, after truncation, leaves no room under max_length
  over_max_length,          // longer than max_length after the prompt's truncation, with overlong = drop
  nothing_to_score,         // a completion with no token to score (empty, no eos; or one token and no prompt)
  empty_prompt,             // a prompt-only row whose prompt has no token
};

inline std::string_view to_string(DropReason r) {
  switch (r) {
    case DropReason::prompt_fills_max_length: return "prompt fills max_length";
    case DropReason::over_max_length: return "over max_length";
    case DropReason::nothing_to_score: return "nothing to score";
    case DropReason::empty_prompt: return "empty prompt";
  }
  return "?";
}

struct DroppedRow {
  std::size_t line = 0;  // of the file
  DropReason reason = DropReason::nothing_to_score;
};

struct DatasetStats {
  std::size_t rows_read = 0;              // records in the file
  std::size_t rows_kept = 0;
  std::size_t rows_truncated = 0;         // kept rows that lost tokens (prompt or completion)
  std::size_t prompts_truncated = 0;      // kept rows whose prompt was cut to max_prompt_length
  std::size_t completions_truncated = 0;  // kept rows with a completion cut (max_completion_length or max_length)
  std::vector<DroppedRow> dropped_rows;   // every dropped row, in file order

  std::size_t dropped() const { return dropped_rows.size(); }
  std::size_t dropped(DropReason r) const {
    return std::size_t(std::count_if(dropped_rows.begin(), dropped_rows.end(),
                                     [&](const DroppedRow& d) { return d.reason == r; }));
  }
  std::string summary() const {
    std::string s = "read " + std::to_string(rows_read) + ", kept " + std::to_string(rows_kept) + ", truncated " +
                    std::to_string(rows_truncated) + " (prompt " + std::to_string(prompts_truncated) +
                    ", completion " + std::to_string(completions_truncated) + "), dropped " +
                    std::to_string(dropped());
    if (dropped()) {
      s += " (";
      bool first = true;
      for (const auto r : {DropReason::prompt_fills_max_length, DropReason::over_max_length,
                           DropReason::nothing_to_score, DropReason::empty_prompt})
        if (const auto n = dropped(r)) s += (first ? "" : ", ") + std::string(to_string(r)) + " " + std::to_string(n), first = false;
      s += ")";
    }
    return s;
  }
};

// One record as tokens: sequence i is prompt followed by completions[i] (TextRow's layout).
struct TokenizedRow {
  std::size_t line = 0;
  std::vector<token_id> prompt;
  std::vector<std::vector<token_id>> completions;
  std::vector<double> scores;    // ranked with scores, best first
  std::optional<double> margin;  // preference with "margin"
  std::optional<bool> label;     // unpaired preference: true = desirable
  // assistant_only_loss: 1 for each token of completions[0] to score, 0 for the rest; empty: score them all.
  std::vector<std::uint8_t> loss_mask;
};

struct TokenizedDataset {
  std::string source;
  DatasetFormat format;
  std::vector<TokenizedRow> rows;  // the kept rows, in file order
  DatasetStats stats;
  std::size_t size() const { return rows.size(); }
};

namespace detail {

inline std::size_t common_prefix(const std::vector<token_id>& a, const std::vector<token_id>& b) {
  std::size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

// Truncates one row in place (config's order: prompt, then each completion); nullopt when it is kept.
inline std::optional<DropReason> truncate_row(TokenizedRow& row, DatasetFormat format, const TokenizeConfig& c,
                                              bool& prompt_cut, bool& completion_cut) {
  const DatasetType type = format.type;
  if (c.eos >= 0 && type != DatasetType::prompt_only && (c.eos_after_conversations || !format.conversational))
    for (auto& t : row.completions)
      if (t.empty() || t.back() != c.eos) {
        if (&t == &row.completions[0] && !row.loss_mask.empty()) row.loss_mask.push_back(row.loss_mask.back());
        t.push_back(c.eos);
      }
  if (type == DatasetType::prompt_only && row.prompt.empty()) return DropReason::empty_prompt;
  if (c.max_prompt_length && row.prompt.size() > c.max_prompt_length) {
    const auto cut = std::ptrdiff_t(row.prompt.size() - c.max_prompt_length);
    if (c.truncation_mode == TruncationMode::keep_end) row.prompt.erase(row.prompt.begin(), row.prompt.begin() + cut);
    else row.prompt.resize(c.max_prompt_length);
    prompt_cut = true;
  }
  if (c.max_length && row.prompt.size() >= c.max_length) return DropReason::prompt_fills_max_length;
  for (auto& t : row.completions) {
    if (c.max_completion_length && t.size() > c.max_completion_length) t.resize(c.max_completion_length), completion_cut = true;
    if (c.max_length && row.prompt.size() + t.size() > c.max_length) {
      if (c.overlong == OverlongRows::drop) return DropReason::over_max_length;
      t.resize(c.max_length - row.prompt.size());
      completion_cut = true;
    }
    // a sequence's first token is context, never scored: without a prompt a completion needs two tokens
    if (t.size() < (row.prompt.empty() ? 2u : 1u)) return DropReason::nothing_to_score;
  }
  if (!row.loss_mask.empty()) {
    row.loss_mask.resize(row.completions[0].size());
    const auto first = std::ptrdiff_t(row.prompt.empty() ? 1 : 0);
    if (std::find(row.loss_mask.begin() + first, row.loss_mask.end(), std::uint8_t{1}) == row.loss_mask.end())
      return DropReason::nothing_to_score;
  }
  return std::nullopt;
}

// A text whose scored byte ranges are `spans` (in order, not overlapping) as tokens and a mask: the text is
// encoded in pieces cut at the spans' edges, which must give the ids the whole text gives (a tokenizer that
// would join tokens across an edge cannot say which of them to score); io_error naming `where` otherwise.
template <class Encode>
std::vector<token_id> encode_with_mask(const Encode& encode, std::string_view text, std::span<const TextSpan> spans,
                                       std::vector<std::uint8_t>& mask, const std::string& where) {
  std::vector<token_id> ids;
  mask.clear();
  std::size_t at = 0;
  const auto piece = [&](std::size_t end, std::uint8_t scored) {
    if (end <= at) return;
    const auto part = encode(text.substr(at, end - at));
    ids.insert(ids.end(), part.begin(), part.end());
    mask.insert(mask.end(), part.size(), scored);
    at = end;
  };
  for (const auto& s : spans) {
    if (s.begin < at || s.end < s.begin || s.end > text.size())
      fail<io_error>(where, ": the assistant turns' byte ranges are out of order or outside the text");
    piece(s.begin, 0);
    piece(s.end, 1);
  }
  piece(text.size(), 0);
  const auto whole = encode(text);
  if (whole != ids) {
    std::size_t n = 0;
    while (n < ids.size() && n < whole.size() && ids[n] == whole[n]) ++n;
    fail<io_error>(where, ": the tokenizer joins text across an assistant turn's edge (the ids differ from token ", n,
                   "), so assistant_only_loss cannot say which tokens are the assistant's");
  }
  return ids;
}

}  // namespace detail

// Tokenizes every row: prompt and each completion encoded apart (standard implicit prompts: both completions
// encoded whole and the prompt taken as their longest common token prefix), eos appended to each completion,
// then truncated by `config`. Rows that cannot be used are dropped and counted in stats; io_error when none is left.
template <TextEncoder E>
TokenizedDataset tokenize_dataset(const TextDataset& text, const E& encoder, const TokenizeConfig& config = {}) {
  TokenizedDataset ds;
  ds.source = text.source;
  ds.format = text.format;
  ds.stats.rows_read = text.rows.size();
  for (const auto& r : text.rows) {
    TokenizedRow row;
    row.line = r.line;
    row.scores = r.scores;
    row.margin = r.margin;
    row.label = r.label;
    if (!r.prompt.empty()) row.prompt = encode_text(encoder, r.prompt);
    for (const auto& c : r.completions) {
      if (r.scored_spans && row.completions.empty()) {
        const auto encode = [&](std::string_view t) { return encode_text(encoder, t); };
        row.completions.push_back(detail::encode_with_mask(encode, c, *r.scored_spans, row.loss_mask,
                                                           "dataset '" + text.source + "' line " + std::to_string(r.line)));
        continue;
      }
      row.completions.push_back(encode_text(encoder, c));
    }
    if (text.implicit_prompt && row.completions.size() == 2) {
      auto& a = row.completions[0];
      auto& b = row.completions[1];
      const auto n = std::ptrdiff_t(detail::common_prefix(a, b));
      row.prompt.assign(a.begin(), a.begin() + n);
      a.erase(a.begin(), a.begin() + n);
      b.erase(b.begin(), b.begin() + n);
    }
    bool prompt_cut = false, completion_cut = false;
    if (const auto drop = detail::truncate_row(row, text.format, config, prompt_cut, completion_cut)) {
      ds.stats.dropped_rows.push_back({r.line, *drop});
      continue;
    }
    ds.stats.prompts_truncated += prompt_cut;
    ds.stats.completions_truncated += completion_cut;
    ds.stats.rows_truncated += prompt_cut || completion_cut;
    ds.rows.push_back(std::move(row));
  }
  ds.stats.rows_kept = ds.rows.size();
  if (ds.rows.empty())
    fail<io_error>("dataset '", text.source, "': every row was dropped: ", ds.stats.summary());
  return ds;
}

// read_text_dataset then tokenize_dataset.
template <TextEncoder E>
TokenizedDataset load_dataset(const std::filesystem::path& path, const E& encoder, const TokenizeConfig& config = {},
                              const DatasetReadOptions& options = {}) {
  return tokenize_dataset(read_text_dataset(path, options), encoder, config);
}

// ---- collation: rows[indices[0]], rows[indices[1]], ... become rows 0, 1, ... of a batch ----------------------

namespace detail {

inline void check_indices(std::string_view fn, std::span<const TokenizedRow> rows, std::span<const std::size_t> idx) {
  if (idx.empty()) fail<value_error>(fn, ": 'indices' is empty; a batch needs at least one row");
  for (std::size_t i = 0; i < idx.size(); ++i)
    if (idx[i] >= rows.size())
      fail<value_error>(fn, ": 'indices'[", i, "] = ", idx[i], " is outside the ", rows.size(), " rows");
}

// Sequences prompt + completion, right-padded with id 0; response_mask 1 on the completion's tokens (all but the
// first token of a sequence without a prompt).
inline TokenBatch pack(std::span<const std::pair<const std::vector<token_id>*, const std::vector<token_id>*>> seqs) {
  std::size_t T = 0;
  for (const auto& [p, c] : seqs) T = std::max(T, p->size() + c->size());
  TokenBatch b = TokenBatch::zeros(seqs.size(), T);
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    const auto& [p, c] = seqs[i];
    std::copy(p->begin(), p->end(), b.tokens.begin() + std::ptrdiff_t(i * T));
    std::copy(c->begin(), c->end(), b.tokens.begin() + std::ptrdiff_t(i * T + p->size()));
    for (std::size_t t = std::max<std::size_t>(p->size(), 1); t < p->size() + c->size(); ++t) b.mask(i, t) = 1;
  }
  return b;
}

inline void need_completions(std::string_view fn, const TokenizedRow& r, std::size_t index, std::size_t lo,
                             std::string_view what) {
  if (r.completions.size() < lo)
    fail<value_error>(fn, ": row ", index, " (line ", r.line, ") has ", r.completions.size(), " completion(s); ", what);
}

}  // namespace detail

// Pairs: chosen = prompt + completions[0], rejected = prompt + completions[1]; margin filled when the rows have one.
inline PreferenceBatch collate_preferences(std::span<const TokenizedRow> rows, std::span<const std::size_t> indices) {
  constexpr std::string_view fn = "collate_preferences";
  detail::check_indices(fn, rows, indices);
  std::vector<std::pair<const std::vector<token_id>*, const std::vector<token_id>*>> chosen, rejected;
  PreferenceBatch b;
  for (const auto i : indices) {
    const auto& r = rows[i];
    detail::need_completions(fn, r, i, 2, "a preference pair needs chosen and rejected");
    chosen.emplace_back(&r.prompt, &r.completions[0]);
    rejected.emplace_back(&r.prompt, &r.completions[1]);
    if (r.margin) b.margin.push_back(*r.margin);
  }
  if (!b.margin.empty() && b.margin.size() != indices.size())
    fail<value_error>(fn, ": some rows have a margin and some do not");
  b.chosen = detail::pack(chosen);
  b.rejected = detail::pack(rejected);
  return b;
}

// Ranked lists: K = the longest list among the rows; a shorter list repeats its last (worst) completion to fill
// its K rows, and lengths[b] says how many count.
inline RankedBatch collate_ranked(std::span<const TokenizedRow> rows, std::span<const std::size_t> indices) {
  constexpr std::string_view fn = "collate_ranked";
  detail::check_indices(fn, rows, indices);
  RankedBatch b;
  for (const auto i : indices) {
    detail::need_completions(fn, rows[i], i, 2, "a ranked list needs at least 2");
    b.k = std::max(b.k, rows[i].completions.size());
  }
  std::vector<std::pair<const std::vector<token_id>*, const std::vector<token_id>*>> seqs;
  for (const auto i : indices) {
    const auto& r = rows[i];
    for (std::size_t k = 0; k < b.k; ++k) seqs.emplace_back(&r.prompt, &r.completions[std::min(k, r.completions.size() - 1)]);
    b.lengths.push_back(r.completions.size());
  }
  b.responses = detail::pack(seqs);
  return b;
}

// Supervised fine-tuning: prompt + completions[0] (language modeling: the text, every token but the first
// scored; prompt-completion: the completion's tokens scored; preference: the chosen one; ranked: the best).
inline TokenBatch collate_sft(std::span<const TokenizedRow> rows, std::span<const std::size_t> indices) {
  constexpr std::string_view fn = "collate_sft";
  detail::check_indices(fn, rows, indices);
  std::vector<std::pair<const std::vector<token_id>*, const std::vector<token_id>*>> seqs;
  for (const auto i : indices) {
    detail::need_completions(fn, rows[i], i, 1, "supervised fine-tuning needs a completion or a text");
    seqs.emplace_back(&rows[i].prompt, &rows[i].completions[0]);
  }
  TokenBatch b = detail::pack(seqs);
  for (std::size_t j = 0; j < indices.size(); ++j) {  // assistant_only_loss: the assistant's tokens only
    const auto& r = rows[indices[j]];
    for (std::size_t t = 0; t < r.loss_mask.size(); ++t)
      if (!r.loss_mask[t]) b.mask(j, r.prompt.size() + t) = 0;
  }
  return b;
}

// Unpaired examples for KTO: prompt + completion per row with its label, and KTO's mismatched rows (each prompt
// with the previous row's completion, rlhf::mismatched_rows, each at most max_length tokens when it is > 0); needs at
// least 2 rows.
inline UnpairedBatch collate_unpaired(std::span<const TokenizedRow> rows, std::span<const std::size_t> indices,
                                      std::size_t max_length = 0) {
  constexpr std::string_view fn = "collate_unpaired";
  detail::check_indices(fn, rows, indices);
  std::vector<std::pair<const std::vector<token_id>*, const std::vector<token_id>*>> seqs;
  UnpairedBatch b;
  for (const auto i : indices) {
    detail::need_completions(fn, rows[i], i, 1, "an unpaired example needs a completion");
    if (!rows[i].label) fail<value_error>(fn, ": row ", i, " (line ", rows[i].line, ") has no label");
    seqs.emplace_back(&rows[i].prompt, &rows[i].completions[0]);
    b.desirable.push_back(*rows[i].label ? 1 : 0);
  }
  b.sequences = detail::pack(seqs);
  b.mismatched = mismatched_rows(b.sequences, max_length);
  return b;
}

// The prompts alone, for a SamplingPolicy (PPO), left-aligned and right-padded with id 0.
inline PromptBatch collate_prompts(std::span<const TokenizedRow> rows, std::span<const std::size_t> indices) {
  constexpr std::string_view fn = "collate_prompts";
  detail::check_indices(fn, rows, indices);
  PromptBatch b;
  b.batch = indices.size();
  for (const auto i : indices) {
    if (rows[i].prompt.empty())
      fail<value_error>(fn, ": row ", i, " (line ", rows[i].line, ") has an empty prompt; a prompt batch needs a token");
    b.time = std::max(b.time, rows[i].prompt.size());
  }
  b.tokens.assign(b.batch * b.time, 0);
  for (std::size_t j = 0; j < indices.size(); ++j) {
    const auto& p = rows[indices[j]].prompt;
    std::copy(p.begin(), p.end(), b.tokens.begin() + std::ptrdiff_t(j * b.time));
    b.prompt_length.push_back(p.size());
  }
  return b;
}

// Consecutive batches of row indices in file order: {0..n-1} in groups of batch_size, the last one shorter
// unless drop_last. (A shuffled order is the trainer's: permute the indices with rlhf::Rng.)
inline std::vector<std::vector<std::size_t>> batch_indices(std::size_t rows, std::size_t batch_size,
                                                           bool drop_last = false) {
  if (batch_size == 0) fail<config_error>("batch_indices: batch_size must be > 0");
  std::vector<std::vector<std::size_t>> out;
  for (std::size_t start = 0; start < rows; start += batch_size) {
    const std::size_t end = std::min(rows, start + batch_size);
    if (drop_last && end - start < batch_size) break;
    auto& batch = out.emplace_back();
    for (std::size_t i = start; i < end; ++i) batch.push_back(i);
  }
  return out;
}

}  // namespace rlhf::io
