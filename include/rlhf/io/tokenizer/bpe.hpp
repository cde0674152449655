#pragma once
// The BPE model of a tokenizer.json (model.type "BPE"): vocab, merges (as "a b" strings or ["a", "b"] pairs),
// unk_token, fuse_unk, byte_fallback (<0xNN> tokens for characters the vocabulary lacks), ignore_merges (a word
// that is a token is that token), continuing_subword_prefix and end_of_word_suffix. A word becomes one symbol
// per character and adjacent symbols are merged lowest rank first (leftmost among equal ranks), as Hugging
// Face's Word::merge_all does. BPE dropout is refused. Words seen before come from a cache shared by copies.
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "rlhf/core/batch.hpp"  // token_id
#include "rlhf/io/gpt2_bpe.hpp"  // detail::gpt2_byte_chars, gpt2_byte_piece, append_utf8, encode_through_cache
#include "rlhf/io/tokenizer/json_fields.hpp"
#include "rlhf/io/tokenizer/pre_tokenizer.hpp"  // Piece
#include "rlhf/io/tokenizer/tokenizer_file.hpp"
#include "rlhf/io/tokenizer/utf8.hpp"

namespace rlhf::io::detail {

struct TransparentHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenIds = std::unordered_map<std::string, token_id, TransparentHash, std::equal_to<>>;

class BpeModel {
 public:
  BpeModel() = default;
  // `model` is the file's "model" object; its vocab and merges are in `file`'s lists.
  BpeModel(const nlohmann::json& model, const TokenizerFile& file, const JsonFields& f, std::size_t cache_words) {
    read(model, file, f);
    cache_ = std::make_shared<Cache>();
    cache_->capacity = cache_words;
  }

  // Appends the ids of one pre-tokenized piece.
  void encode(const Piece& piece, std::vector<token_id>& out) const {
    const std::string_view word = piece.text();
    if (word.empty()) return;
    encode_through_cache(cache_->mutex, cache_->words[piece.byte_level], cache_->capacity, word, out,
                         [&] { encode_uncached(piece, out); });
  }

  const TokenIds& vocab() const { return vocab_; }
  token_id id_of(std::string_view token) const {
    const auto it = vocab_.find(token);
    return it == vocab_.end() ? -1 : it->second;
  }
  // The token of an id; nullptr when the vocabulary has none.
  const std::string* token(token_id id) const {
    if (id < 0 || std::size_t(id) >= tokens_.size() || !has_[std::size_t(id)]) return nullptr;
    return &tokens_[std::size_t(id)];
  }
  std::size_t id_limit() const { return tokens_.size(); }  // 1 + the largest id
  std::size_t merges() const { return merges_.size(); }

 private:
  struct Merge {
    std::int32_t rank;
    token_id id;
  };
  struct Cache {
    std::shared_mutex mutex;
    std::array<std::unordered_map<std::string, std::vector<token_id>, TransparentHash, std::equal_to<>>, 2> words;
    std::size_t capacity = 0;
  };

  static std::uint64_t key(token_id a, token_id b) { return (std::uint64_t(std::uint32_t(a)) << 32) | std::uint32_t(b); }
  const Merge* find_merge(token_id a, token_id b) const {
    const auto it = merges_.find(key(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }

  void encode_uncached(const Piece& piece, std::vector<token_id>& out) const {
    std::string mapped;  // a byte-level piece as ByteLevel's characters, made only when needed
    const auto word = [&]() -> std::string_view {
      if (!piece.byte_level) return piece.text();
      if (mapped.empty()) mapped = gpt2_byte_piece(piece.text());
      return mapped;
    };
    if (ignore_merges_)
      if (const token_id id = id_of(word()); id >= 0) {
        out.push_back(id);
        return;
      }
    std::vector<token_id> symbols;
    bool direct = piece.byte_level && prefix_.empty() && suffix_.empty();
    if (direct) {  // each byte's character is one symbol: the byte's token, when the vocabulary has it
      symbols.reserve(piece.text().size());
      for (const char c : piece.text()) {
        const token_id id = byte_char_ids_[static_cast<unsigned char>(c)];
        direct &= id >= 0;
        symbols.push_back(id);
      }
    }
    if (!direct) {
      symbols.clear();
      initial_symbols(word(), symbols);
    }
    merge_all(symbols);
    out.insert(out.end(), symbols.begin(), symbols.end());
  }

  // One symbol per character (Hugging Face's BPE::merge_word): the continuing-subword prefix on every character
  // but the first, the end-of-word suffix on the last; a character the vocabulary lacks becomes its <0xNN> byte
  // tokens (byte_fallback), else the unknown token (consecutive ones fused with fuse_unk), else nothing.
  void initial_symbols(std::string_view w, std::vector<token_id>& symbols) const {
    token_id pending_unk = -1;
    std::string s;
    for (std::size_t i = 0; i < w.size();) {
      const std::size_t n = code_point_at(w, i).len;
      const bool first = i == 0, last = i + n == w.size();
      std::string_view piece = w.substr(i, n);
      i += n;
      if ((!first && !prefix_.empty()) || (last && !suffix_.empty())) {
        s.assign(first ? "" : prefix_);
        s.append(piece);
        if (last) s.append(suffix_);
        piece = s;
      }
      if (const token_id id = id_of(piece); id >= 0) {
        if (pending_unk >= 0) symbols.push_back(pending_unk), pending_unk = -1;
        symbols.push_back(id);
        continue;
      }
      if (byte_fallback_) {
        bool all = true;
        for (const char c : piece) all &= fallback_ids_[static_cast<unsigned char>(c)] >= 0;
        if (all) {
          for (const char c : piece) symbols.push_back(fallback_ids_[static_cast<unsigned char>(c)]);
          continue;
        }
      }
      if (unk_ >= 0) {
        if (pending_unk >= 0 && !fuse_unk_) symbols.push_back(pending_unk);
        pending_unk = unk_;
      }
    }
    if (pending_unk >= 0) symbols.push_back(pending_unk);
  }

  // Hugging Face's Word::merge_all: a heap of candidate merges ordered by (rank, position); a candidate whose
  // pair no longer merges into the same token is skipped.
  void merge_all(std::vector<token_id>& ids) const {
    const std::int32_t n = std::int32_t(ids.size());
    if (n < 2) return;
    struct Cand {
      std::int32_t rank, pos;
      token_id merged;
      bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::vector<std::int32_t> prev(static_cast<std::size_t>(n)), next(static_cast<std::size_t>(n));
    std::vector<std::uint8_t> gone(static_cast<std::size_t>(n), 0);
    for (std::int32_t i = 0; i < n; ++i) prev[std::size_t(i)] = i - 1, next[std::size_t(i)] = i + 1 < n ? i + 1 : -1;
    std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap;
    for (std::int32_t i = 0; i + 1 < n; ++i)
      if (const Merge* m = find_merge(ids[std::size_t(i)], ids[std::size_t(i + 1)])) heap.push({m->rank, i, m->id});
    while (!heap.empty()) {
      const Cand c = heap.top();
      heap.pop();
      const auto p = std::size_t(c.pos);
      if (gone[p] || next[p] < 0) continue;
      const auto r = std::size_t(next[p]);
      const Merge* m = find_merge(ids[p], ids[r]);
      if (!m || m->id != c.merged) continue;
      ids[p] = c.merged;
      gone[r] = 1;
      next[p] = next[r];
      if (next[p] >= 0) prev[std::size_t(next[p])] = c.pos;
      if (prev[p] >= 0)
        if (const Merge* pm = find_merge(ids[std::size_t(prev[p])], ids[p])) heap.push({pm->rank, prev[p], pm->id});
      if (next[p] >= 0)
        if (const Merge* nm = find_merge(ids[p], ids[std::size_t(next[p])])) heap.push({nm->rank, c.pos, nm->id});
    }
    std::size_t k = 0;
    for (std::int32_t i = 0; i >= 0; i = next[std::size_t(i)]) ids[k++] = ids[std::size_t(i)];
    ids.resize(k);
  }

  void read(const nlohmann::json& model, const TokenizerFile& file, const JsonFields& f) {
    using J = JsonFields;
    const auto& dropout = J::get(model, "dropout");
    if (!dropout.is_null() && !(dropout.is_number() && dropout.get<double>() == 0.0))
      f.bad("model.dropout is ", json_brief(dropout), ": BPE dropout is not implemented");
    prefix_ = f.text(model, "continuing_subword_prefix", "model", "");
    suffix_ = f.text(model, "end_of_word_suffix", "model", "");
    byte_fallback_ = f.flag(model, "byte_fallback", "model", false);
    ignore_merges_ = f.flag(model, "ignore_merges", "model", false);
    fuse_unk_ = f.flag(model, "fuse_unk", "model", false);

    if (!file.has_vocab) f.bad("model.vocab is ", json_brief(J::get(model, "vocab")), ", not an object {token: id}");
    // ids may leave gaps (Hugging Face does not require them dense), but not so many that a hostile id makes the
    // id -> token table huge
    const std::int64_t limit = std::int64_t(file.vocab.size()) + 65536;
    vocab_.reserve(file.vocab.size());
    for (const auto& [token, v] : file.vocab) {
      const std::int64_t id = v.is_number_unsigned() && v.get<std::uint64_t>() <= std::uint64_t(limit)
                                  ? std::int64_t(v.get<std::uint64_t>())
                                  : f.integer(v, "model.vocab[\"" + clip(token) + "\"]", 0, limit);
      if (std::size_t(id) >= tokens_.size()) tokens_.resize(std::size_t(id) + 1), has_.resize(std::size_t(id) + 1);
      if (has_[std::size_t(id)])
        f.bad("model.vocab gives id ", id, " to two tokens, '", clip(tokens_[std::size_t(id)]), "' and '", clip(token), "'");
      if (!vocab_.emplace(token, token_id(id)).second) f.bad("model.vocab lists '", clip(token), "' twice");
      has_[std::size_t(id)] = 1;
      tokens_[std::size_t(id)] = token;
    }
    const std::string unk = f.text(model, "unk_token", "model", "");
    if (!J::get(model, "unk_token").is_null()) {
      unk_ = id_of(unk);
      if (unk_ < 0) f.bad("model.unk_token '", clip(unk), "' is not in model.vocab");
    }
    const auto& byte_chars = gpt2_byte_chars();
    for (int b = 0; b < 256; ++b) {
      std::string c;
      append_utf8(c, byte_chars[std::size_t(b)]);
      byte_char_ids_[std::size_t(b)] = id_of(c);
      static constexpr char hex[] = "0123456789ABCDEF";
      const std::string fallback = std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
      fallback_ids_[std::size_t(b)] = id_of(fallback);
    }

    if (!file.has_merges) f.bad("model.merges is ", json_brief(J::get(model, "merges")), ", not an array");
    merges_.reserve(file.merges.size());
    for (std::size_t k = 0; k < file.merges.size(); ++k) {
      const MergeEntry& e = file.merges[k];
      const auto where = [&] { return J::at("model.merges", k); };
      std::string_view a = e.a, b = e.b;
      if (!e.pair) {  // "a b"
        const std::size_t space = a.find(' ');
        if (space == std::string_view::npos || a.find(' ', space + 1) != std::string_view::npos)
          f.bad(where(), " is \"", clip(e.a), "\", not two tokens separated by one space");
        b = a.substr(space + 1), a = a.substr(0, space);
      }
      const token_id ia = id_of(a), ib = id_of(b);
      if (ia < 0 || ib < 0) f.bad(where(), " names '", clip(ia < 0 ? a : b), "', which model.vocab lacks");
      if (!b.starts_with(prefix_)) f.bad(where(), ": '", clip(b), "' does not start with continuing_subword_prefix");
      std::string merged(a);
      merged.append(b.substr(prefix_.size()));
      const token_id im = id_of(merged);
      if (im < 0) f.bad(where(), " makes '", clip(merged), "', which model.vocab lacks");
      merges_[key(ia, ib)] = Merge{std::int32_t(k), im};  // a pair listed twice keeps its later rank
    }
  }

  TokenIds vocab_;
  std::vector<std::string> tokens_;  // id -> token
  std::vector<std::uint8_t> has_;    // id -> 1 when the vocabulary has it
  std::unordered_map<std::uint64_t, Merge> merges_;
  std::array<token_id, 256> byte_char_ids_{};  // the token of each byte's ByteLevel character, -1: none
  std::array<token_id, 256> fallback_ids_{};   // <0xNN>, -1: none
  std::string prefix_, suffix_;
  token_id unk_ = -1;
  bool byte_fallback_ = false, ignore_merges_ = false, fuse_unk_ = false;
  std::shared_ptr<Cache> cache_;
};

}  // namespace rlhf::io::detail
