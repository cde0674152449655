#pragma once
// A Hugging Face tokenizer.json with a BPE model, run through the pipeline of Hugging Face's tokenizers:
// added tokens cut out first, then normalizer, pre-tokenizer, BPE model and post-processor; decoding through the
// file's decoder. docs/io/tokenizer_json.md.
//
//   auto tok = rlhf::io::HfTokenizer::load("models/qwen3");          // a folder with tokenizer.json, or the file
//   std::vector<rlhf::token_id> ids = tok.encode("Hello world");      // no special tokens added
//   auto with = tok.encode("Hello", {.add_special_tokens = true});    // the post-processor's template (<s>, BOS)
//   std::string text = tok.decode(ids);
//
// The reader is driven by the file's contents. Each stage takes the types listed in its header (normalizer.hpp,
// pre_tokenizer.hpp, bpe.hpp, added_tokens.hpp, post_processor.hpp, decoder.hpp) and refuses any other with an
// rlhf::io_error naming the file, the field and the type. Text to encode must be valid UTF-8 (as a Rust &str or
// a Python str is): other bytes are an rlhf::value_error naming the offset. An HfTokenizer is immutable after
// loading; copies share its tables and word cache, and encode/decode may be called from several threads at once.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "rlhf/core/batch.hpp"  // token_id
#include "rlhf/core/error.hpp"
#include "rlhf/io/gpt2_bpe.hpp"  // SpecialTokens, Gpt2Whitespace
#include "rlhf/io/json_file.hpp"
#include "rlhf/io/tokenizer/added_tokens.hpp"
#include "rlhf/io/tokenizer/bpe.hpp"
#include "rlhf/io/tokenizer/decoder.hpp"
#include "rlhf/io/tokenizer/json_fields.hpp"
#include "rlhf/io/tokenizer/normalizer.hpp"
#include "rlhf/io/tokenizer/post_processor.hpp"
#include "rlhf/io/tokenizer/pre_tokenizer.hpp"
#include "rlhf/io/tokenizer/tokenizer_file.hpp"
#include "rlhf/io/tokenizer/utf8.hpp"

namespace rlhf::io {

struct HfTokenizerOptions {
  // Which characters \s matches in a ByteLevel pre-tokenizer's built-in regex (use_regex): Unicode's White_Space,
  // as Hugging Face's Rust tokenizers, or ECMAScript's, as tokenizers.js (they differ on U+0085 and U+FEFF).
  // Split's regexes always run on PCRE2's Unicode classes.
  Gpt2Whitespace whitespace = Gpt2Whitespace::unicode;
  std::size_t cache_words = std::size_t(1) << 16;  // words in the BPE cache (emptied when full); 0: no cache
  std::size_t max_file_bytes = std::size_t(256) << 20;
};

struct EncodeOptions {
  bool add_special_tokens = false;  // the post-processor's special tokens (BOS, ...), as add_special_tokens=True
  // What the text of a special added token in the input becomes: its id (allow), ordinary text (as_text, Hugging
  // Face's encode_special_tokens), or an rlhf::value_error naming it (forbid: for text from users).
  SpecialTokens special = SpecialTokens::allow;
};

class HfTokenizer {
 public:
  // `path` is a tokenizer.json, or a folder holding one.
  static HfTokenizer load(const std::filesystem::path& path, const HfTokenizerOptions& options = {});

  std::vector<token_id> encode(std::string_view text, const EncodeOptions& options = {}) const {
    std::vector<token_id> out;
    out.reserve(text.size() / 3 + 4);
    encode(text, out, options);
    return out;
  }
  void encode(std::string_view text, std::vector<token_id>& out, const EncodeOptions& options = {}) const;
  // The text of the ids through the file's decoder (tokens joined by a space when it has none); an id with no
  // token is an rlhf::value_error.
  std::string decode(std::span<const token_id> ids, bool skip_special = false) const;

  std::size_t vocab_size() const { return m_->id_limit; }  // 1 + the largest id of the model or an added token
  // The id of a token (an added token's content, or a vocabulary entry as written there, "Ġworld"); -1: none.
  token_id id_of(std::string_view token) const;
  // The token string of an id (added token first, as Hugging Face does); nullptr when there is none.
  const std::string* token(token_id id) const;
  bool is_special(token_id id) const;
  const std::vector<detail::AddedToken>& added_tokens() const { return m_->added; }

 private:
  struct Model {
    detail::Normalizer normalizer;
    detail::PreTokenizer pre_tokenizer;
    detail::BpeModel bpe;
    detail::PostProcessor post_processor;
    detail::Decoder decoder;
    std::vector<detail::AddedToken> added;
    std::unordered_map<token_id, std::size_t> added_by_id;
    detail::LiteralSet raw_set, normalized_set;  // added tokens matched before / after normalization
    std::size_t id_limit = 0;
  };
  explicit HfTokenizer(std::shared_ptr<const Model> m) : m_(std::move(m)) {}

  void encode_piece(std::string_view text, bool at_start, const EncodeOptions& options,
                    std::vector<token_id>& out) const;
  void push_added(std::int32_t which, std::size_t at, const EncodeOptions& options, std::vector<token_id>& out) const;

  std::shared_ptr<const Model> m_;
};

inline HfTokenizer HfTokenizer::load(const std::filesystem::path& path, const HfTokenizerOptions& options) {
  std::error_code ec;
  const std::filesystem::path file =
      std::filesystem::is_directory(path, ec) ? path / "tokenizer.json" : path;
  const detail::JsonFields f(detail::quoted_path(file));
  const detail::TokenizerFile parsed = detail::read_tokenizer_file(file, options.max_file_bytes);
  const nlohmann::json& doc = parsed.doc;
  if (!doc.is_object()) f.bad("the top level is ", detail::json_brief(doc), ", not an object");
  using J = detail::JsonFields;
  for (const char* key : {"truncation", "padding"})
    if (!J::get(doc, key).is_null())
      f.bad(key, " is ", detail::json_brief(J::get(doc, key)), ": not implemented (set it to null; encode returns every id)");

  auto m = std::make_shared<Model>();
  const auto& model = J::get(doc, "model");
  const std::string model_type = J::get(model, "type").is_null() && parsed.has_merges
                                     ? "BPE"  // older files leave the type out
                                     : f.type(model, "model");
  if (model_type != "BPE") f.unsupported("model", model_type, "BPE");
  m->bpe = detail::BpeModel(model, parsed, f, options.cache_words);
  m->normalizer = detail::Normalizer(J::get(doc, "normalizer"), f, "normalizer");
  m->pre_tokenizer = detail::PreTokenizer(J::get(doc, "pre_tokenizer"), f, "pre_tokenizer", options.whitespace);
  m->post_processor = detail::PostProcessor(J::get(doc, "post_processor"), f, "post_processor");
  m->decoder = detail::Decoder(J::get(doc, "decoder"), f, "decoder");
  m->id_limit = m->bpe.id_limit();

  const auto& added = J::get(doc, "added_tokens");
  if (!added.is_null() && !added.is_array()) f.bad("added_tokens is ", detail::json_brief(added), ", not an array");
  std::unordered_map<std::string, std::size_t> by_content;
  for (std::size_t k = 0; added.is_array() && k < added.size(); ++k) {
    const auto& a = added[k];
    const std::string at = J::at("added_tokens", k);
    f.require_object(a, at);
    detail::AddedToken t;
    t.content = f.text(a, "content", at, "");
    if (t.content.empty()) f.bad(J::at(at, "content"), " is missing or empty");
    t.id = token_id(f.integer(J::get(a, "id"), J::at(at, "id"), 0, std::int64_t(1) << 30));
    t.special = f.flag(a, "special", at, false);
    t.single_word = f.flag(a, "single_word", at, false);
    t.lstrip = f.flag(a, "lstrip", at, false);
    t.rstrip = f.flag(a, "rstrip", at, false);
    t.normalized = f.flag(a, "normalized", at, !t.special);
    if (by_content.count(t.content)) f.bad(at, " '", detail::clip(t.content), "' is listed twice");
    if (m->added_by_id.count(t.id)) f.bad(at, " has id ", t.id, ", which another added token has");
    by_content.emplace(t.content, m->added.size());
    m->added_by_id.emplace(t.id, m->added.size());
    m->id_limit = std::max(m->id_limit, std::size_t(t.id) + 1);
    m->added.push_back(std::move(t));
  }
  for (std::size_t k = 0; k < m->added.size(); ++k) {
    const auto& t = m->added[k];
    if (t.normalized && !m->normalizer.empty()) {
      std::string n = t.content;
      m->normalizer.apply(n);
      m->normalized_set.add(n, std::int32_t(k));
    } else if (t.normalized) {
      m->normalized_set.add(t.content, std::int32_t(k));
    } else {
      m->raw_set.add(t.content, std::int32_t(k));
    }
  }
  return HfTokenizer(std::move(m));
}

inline void HfTokenizer::push_added(std::int32_t which, std::size_t at, const EncodeOptions& options,
                                    std::vector<token_id>& out) const {
  const auto& t = m_->added[std::size_t(which)];
  if (t.special && options.special == SpecialTokens::forbid)
    fail<value_error>("HfTokenizer::encode: the text holds the special token '", detail::clip(t.content), "' at byte ",
                      at, " (SpecialTokens::forbid)");
  out.push_back(t.id);
}

inline void HfTokenizer::encode(std::string_view text, std::vector<token_id>& out, const EncodeOptions& options) const {
  if (const std::size_t bad = detail::first_invalid_utf8(text); bad != std::string_view::npos)
    fail<value_error>("HfTokenizer::encode: the text is not valid UTF-8 at byte ", bad);
  const std::size_t first = out.size();
  const bool skip_special = options.special == SpecialTokens::as_text;
  for (const auto& s : detail::split_on_added(text, m_->raw_set, m_->added, skip_special)) {
    if (s.token >= 0) push_added(s.token, s.start, options, out);
    else encode_piece(text.substr(s.start, s.end - s.start), s.start == 0, options, out);
  }
  if (options.add_special_tokens) {
    std::vector<token_id> ids(out.begin() + std::ptrdiff_t(first), out.end());
    m_->post_processor.apply(ids, true);
    out.resize(first);
    out.insert(out.end(), ids.begin(), ids.end());
  }
}

// One piece between the added tokens matched in the raw text: normalized, then cut at the normalized added
// tokens, then pre-tokenized and encoded by the model.
inline void HfTokenizer::encode_piece(std::string_view text, bool at_start, const EncodeOptions& options,
                                      std::vector<token_id>& out) const {
  std::string normalized;
  if (!m_->normalizer.empty()) {
    normalized.assign(text);
    m_->normalizer.apply(normalized);
    text = normalized;
  }
  const bool skip_special = options.special == SpecialTokens::as_text;
  thread_local std::vector<detail::Piece> pieces;  // kept between calls: its storage is reused
  for (const auto& s : detail::split_on_added(text, m_->normalized_set, m_->added, skip_special)) {
    if (s.token >= 0) {
      push_added(s.token, s.start, options, out);
      continue;
    }
    pieces.clear();
    pieces.push_back(detail::Piece::of(text.substr(s.start, s.end - s.start), at_start && s.start == 0));
    m_->pre_tokenizer.apply(pieces);
    for (const auto& p : pieces) m_->bpe.encode(p, out);
  }
}

inline std::string HfTokenizer::decode(std::span<const token_id> ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::string* t = token(ids[i]);
    if (!t)
      fail<value_error>("HfTokenizer::decode: 'ids'[", i, "] = ", ids[i], " is no token of this tokenizer (ids are in [0, ",
                        vocab_size(), "))");
    if (skip_special && is_special(ids[i])) continue;
    tokens.push_back(*t);
  }
  if (m_->decoder.empty()) {
    std::string joined;
    for (std::size_t i = 0; i < tokens.size(); ++i) joined += (i ? " " : "") + tokens[i];
    return joined;
  }
  m_->decoder.apply(tokens);
  std::string text;
  for (const auto& t : tokens) text += t;
  return text;
}

inline token_id HfTokenizer::id_of(std::string_view token) const {
  for (const auto& a : m_->added)
    if (a.content == token) return a.id;
  return m_->bpe.id_of(token);
}

inline const std::string* HfTokenizer::token(token_id id) const {
  if (const auto it = m_->added_by_id.find(id); it != m_->added_by_id.end()) return &m_->added[it->second].content;
  return m_->bpe.token(id);
}

inline bool HfTokenizer::is_special(token_id id) const {
  const auto it = m_->added_by_id.find(id);
  return it != m_->added_by_id.end() && m_->added[it->second].special;
}

}  // namespace rlhf::io
