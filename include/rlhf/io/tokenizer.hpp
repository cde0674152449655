#pragma once
// A subword tokenizer: SentencePiece (Debian libsentencepiece-dev; link rlhf::sentencepiece) trained from an
// in-memory corpus, saved as one `.model` file, loaded back. docs/io/data.md.
//
// Every model this class trains has the same special ids: pad 0 (<pad>), unk 1 (<unk>), bos 2 (<s>), eos 3
// (</s>). encode() never adds bos/eos; the caller puts eos after each text so that a language model learns
// to stop, and passes eos() as the sampler's stop token. decode() drops pad/bos/eos and writes unk as " ⁇ ".
//
// Text goes through SentencePiece's default normaliser (nmt_nfkc): NFKC, line breaks and tabs become
// spaces, runs of spaces collapse, leading and trailing spaces go. decode(encode(s)) == s for any s that is
// already in that form and whose characters all occurred in the training corpus.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "rlhf/core/batch.hpp"  // token_id
#include "rlhf/core/error.hpp"  // rlhf::io_error
#include "rlhf/io/atomic_file.hpp"
#include "rlhf/io/sentencepiece_check.hpp"
#include "rlhf/io/untrusted.hpp"  // detail::clip

namespace rlhf::io {

struct TokenizerConfig {
  int vocab_size = 2000;                 // pieces, the 4 special ones included
  std::string model_type = "bpe";        // "bpe", "unigram", "char" or "word"
  unsigned seed = 0;                     // SentencePiece's random generator (sampling when input_sentence_size > 0)
  std::size_t input_sentence_size = 0;   // train on a seeded sample of this many texts; 0: on all of them
  int num_threads = 2;                   // training threads
  double character_coverage = 1.0;       // share of characters with their own piece; the rest become unk
  bool byte_fallback = false;            // encode characters without a piece as UTF-8 bytes (256 pieces) instead of unk
  int max_sentence_length = 16384;       // bytes; longer texts are left out of training (not truncated)
  bool verbose = false;                  // SentencePiece's training log on stderr
};

class Tokenizer {
 public:
  static constexpr token_id pad_id = 0, unk_id = 1, bos_id = 2, eos_id = 3;  // of models trained here

  // Trains on `corpus` (one text per element) and writes `<model_prefix>.model` through a temporary file
  // and a rename. The same corpus and config give the same file, byte for byte.
  static Tokenizer train(const std::vector<std::string>& corpus, const std::filesystem::path& model_prefix,
                         const TokenizerConfig& config = {});
  static Tokenizer load(const std::filesystem::path& model_file);

  std::vector<token_id> encode(std::string_view text) const;
  std::string decode(std::span<const token_id> ids) const;  // throws value_error on an id outside the vocabulary

  std::size_t vocab_size() const { return static_cast<std::size_t>(sp_->GetPieceSize()); }
  token_id bos() const { return sp_->bos_id(); }  // -1 when a loaded model has none
  token_id eos() const { return sp_->eos_id(); }
  token_id pad() const { return sp_->pad_id(); }
  token_id unk() const { return sp_->unk_id(); }
  const std::string& piece(token_id id) const;  // the piece's text, "▁" marking a preceding space
  const std::filesystem::path& path() const { return path_; }  // the .model file

 private:
  Tokenizer(std::shared_ptr<const sentencepiece::SentencePieceProcessor> sp, std::filesystem::path path)
      : sp_(std::move(sp)), path_(std::move(path)) {}
  static Tokenizer from_bytes(const std::string& model, const std::filesystem::path& path, std::string_view fn);
  bool in_vocab(token_id id) const { return id >= 0 && static_cast<std::size_t>(id) < vocab_size(); }

  std::shared_ptr<const sentencepiece::SentencePieceProcessor> sp_;  // immutable after loading; copies share it
  std::filesystem::path path_;
};

namespace detail {

class StringsIterator final : public sentencepiece::SentenceIterator {
 public:
  explicit StringsIterator(const std::vector<std::string>& texts) : texts_(texts) {}
  bool done() const override { return i_ >= texts_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return texts_[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& texts_;
  std::size_t i_ = 0;
};

}  // namespace detail

inline Tokenizer Tokenizer::train(const std::vector<std::string>& corpus, const std::filesystem::path& model_prefix,
                                  const TokenizerConfig& config) {
  constexpr std::string_view fn = "Tokenizer::train";
  if (config.vocab_size <= 4) fail<config_error>(fn, ": vocab_size must be > 4 (got ", config.vocab_size, ")");
  if (config.model_type != "bpe" && config.model_type != "unigram" && config.model_type != "char" &&
      config.model_type != "word")
    fail<config_error>(fn, ": model_type must be bpe, unigram, char or word (got '", config.model_type, "')");
  require_in_range(fn, "character_coverage", config.character_coverage, 0.98, 1.0);  // SentencePiece's range
  if (config.num_threads < 1) fail<config_error>(fn, ": num_threads must be >= 1 (got ", config.num_threads, ")");
  if (config.max_sentence_length < 1)
    fail<config_error>(fn, ": max_sentence_length must be >= 1 (got ", config.max_sentence_length, ")");
  if (config.seed == std::numeric_limits<unsigned>::max())
    fail<config_error>(fn, ": seed ", config.seed, " is reserved by SentencePiece (it means std::random_device)");
  if (corpus.empty()) fail<value_error>(fn, ": 'corpus' is empty");
  if (model_prefix.empty() || !model_prefix.has_filename())
    fail<config_error>(fn, ": model_prefix '", model_prefix.string(), "' names no file");

  const std::unordered_map<std::string, std::string> args = {
      {"vocab_size", std::to_string(config.vocab_size)},
      {"model_type", config.model_type},
      {"input_sentence_size", std::to_string(config.input_sentence_size)},
      {"shuffle_input_sentence", "true"},
      {"num_threads", std::to_string(config.num_threads)},
      {"character_coverage", std::to_string(config.character_coverage)},
      {"byte_fallback", config.byte_fallback ? "true" : "false"},
      {"max_sentence_length", std::to_string(config.max_sentence_length)},
      {"pad_id", std::to_string(pad_id)},
      {"unk_id", std::to_string(unk_id)},
      {"bos_id", std::to_string(bos_id)},
      {"eos_id", std::to_string(eos_id)},
      {"minloglevel", config.verbose ? "0" : "1"},
  };
  sentencepiece::SetRandomGeneratorSeed(config.seed);  // process-wide in SentencePiece
  detail::StringsIterator texts(corpus);
  std::string model;  // the serialised ModelProto; SentencePiece then writes no file itself
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &texts, &model);
  if (!status.ok()) fail<config_error>(fn, " '", model_prefix.string(), "': SentencePiece: ", status.ToString());

  std::filesystem::path file = model_prefix;
  file += ".model";
  write_file_atomic(file, model, fn);
  return from_bytes(model, file, fn);
}

inline Tokenizer Tokenizer::load(const std::filesystem::path& model_file) {
  constexpr std::string_view fn = "Tokenizer::load";
  std::error_code ec;
  if (const auto st = std::filesystem::status(model_file, ec); !ec && !std::filesystem::is_regular_file(st))
    fail<io_error>(fn, ": '", model_file.string(), "' is not a regular file");  // a FIFO would block the read
  std::ifstream in(model_file, std::ios::binary);
  if (!in) fail<io_error>(fn, ": cannot open '", model_file.string(), "'");
  constexpr std::uintmax_t max_bytes = std::uintmax_t(1) << 30;  // protobuf refuses 2 GiB; models are megabytes
  if (const auto size = std::filesystem::file_size(model_file, ec); !ec && size > max_bytes)
    fail<io_error>(fn, ": '", model_file.string(), "' is ", size, " bytes, more than a SentencePiece model's limit of ",
                   max_bytes);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail<io_error>(fn, ": read error in '", model_file.string(), "'");
  return from_bytes(bytes, model_file, fn);
}

inline Tokenizer Tokenizer::from_bytes(const std::string& model, const std::filesystem::path& path,
                                       std::string_view fn) {
  if (const auto why = detail::sentencepiece_normalizer_problem(model); !why.empty())
    fail<io_error>(fn, ": '", path.string(), "' is not a usable SentencePiece model: ", why);
  auto sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
  sentencepiece::util::Status status;
  // SentencePiece throws its own exceptions on some malformed models (Darts::Details::Exception from the
  // double-array trie, std:: ones elsewhere); none may leave this loader.
  try {
    status = sp->LoadFromSerializedProto(model);
  } catch (const std::exception& e) {
    fail<io_error>(fn, ": '", path.string(), "' is not a usable SentencePiece model: ", detail::clip(e.what(), 200));
  } catch (...) {
    fail<io_error>(fn, ": '", path.string(), "' is not a usable SentencePiece model (SentencePiece threw)");
  }
  if (!status.ok())
    fail<io_error>(fn, ": '", path.string(), "' is not a SentencePiece model: ", status.ToString());
  return Tokenizer(std::move(sp), path);
}

inline std::vector<token_id> Tokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  if (!status.ok()) fail<value_error>("Tokenizer::encode: SentencePiece: ", status.ToString());
  return {ids.begin(), ids.end()};
}

inline std::string Tokenizer::decode(std::span<const token_id> ids) const {
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (!in_vocab(ids[i]))
      fail<value_error>("Tokenizer::decode: 'ids'[", i, "] = ", ids[i], " is outside the vocabulary [0, ", vocab_size(),
                        ")");
  std::string text;
  const auto status = sp_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  if (!status.ok()) fail<value_error>("Tokenizer::decode: SentencePiece: ", status.ToString());
  return text;
}

inline const std::string& Tokenizer::piece(token_id id) const {
  if (!in_vocab(id))
    fail<value_error>("Tokenizer::piece: 'id' = ", id, " is outside the vocabulary [0, ", vocab_size(), ")");
  return sp_->IdToPiece(id);
}

}  // namespace rlhf::io
