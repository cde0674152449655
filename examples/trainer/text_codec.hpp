#pragma once
// The run's tokenizer, whichever kind the files are: GPT-2 byte-level BPE (tokenizer.json, vocab.json +
// merges.txt, or OpenAI's encoder.json + vocab.bpe) or a SentencePiece .model. The trainer needs only encode,
// decode, the end-of-sequence id, and the files to copy into every folder it writes, so that each is loadable
// as model_name_or_path on its own.
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "rlhf/core/error.hpp"
#include "rlhf/io/gpt2_bpe.hpp"
#ifdef RLHF_TRAINER_HF_TOKENIZER
#include "rlhf/io/json_file.hpp"
#include "rlhf/io/tokenizer/hf_tokenizer.hpp"
#endif
#ifdef RLHF_TRAINER_SENTENCEPIECE
#include "rlhf/io/tokenizer.hpp"
#endif

namespace trainer {

namespace fs = std::filesystem;

struct TextCodec {
  std::function<std::vector<rlhf::token_id>(std::string_view)> encode;
  std::function<std::string(std::span<const rlhf::token_id>)> decode;
  rlhf::token_id eos = -1;
  std::string kind;               // "gpt2-bpe" or "sentencepiece", for the log
  std::vector<fs::path> files;    // copied into saved model folders
  std::string eos_token;          // the text whose id is eos (or would be, when eos is -1)

  std::vector<rlhf::token_id> operator()(std::string_view text) const { return encode(text); }
};

inline TextCodec wrap_gpt2(std::shared_ptr<const rlhf::io::Gpt2Tokenizer> t, std::vector<fs::path> files) {
  return {[t](std::string_view s) { return t->encode(s); },
          [t](std::span<const rlhf::token_id> ids) { return t->decode(ids, true); },
          t->eos(),
          "gpt2-bpe",
          std::move(files),
          rlhf::io::Gpt2Options{}.eos_token};
}

// One line for the run's log: which end-of-sequence token completions end with, or that there is none (a vocab
// without "<|endoftext|>": completions are then trained without an end, and sampling stops only at its length).
inline std::string describe_eos(const TextCodec& codec) {
  if (codec.eos >= 0) return "eos: '" + codec.eos_token + "' (id " + std::to_string(codec.eos) + ")";
  return "eos: none ('" + codec.eos_token + "' is not in the tokenizer's vocabulary); completions get no "
         "end-of-sequence token and sampling stops only at its length limit";
}

// Refuses (rlhf::io_error naming the tokenizer) a codec without an end-of-sequence token, for runs that need one.
inline void require_eos(const TextCodec& codec, const fs::path& where) {
  if (codec.eos < 0)
    rlhf::fail<rlhf::io_error>("tokenizer '", where.string(), "': '", codec.eos_token,
                               "' is not in its vocabulary, so completions would have no end-of-sequence token");
}

#ifdef RLHF_TRAINER_HF_TOKENIZER
// A folder's tokenizer.json through the general pipeline (Qwen, Llama 3, Gemma, ...); its end-of-sequence token is
// tokenizer_config.json's eos_token (a string or {"content": ...}), else "<|endoftext|>".
inline TextCodec load_hf_codec(const fs::path& where) {
  auto t = std::make_shared<const rlhf::io::HfTokenizer>(rlhf::io::HfTokenizer::load(where / "tokenizer.json"));
  std::vector<fs::path> files{where / "tokenizer.json"};
  std::string eos = "<|endoftext|>";
  std::error_code ec;
  if (const fs::path config = where / "tokenizer_config.json"; fs::exists(config, ec)) {
    files.push_back(config);
    const auto doc = rlhf::io::read_json_file(config, {.max_bytes = std::size_t(16) << 20});
    const auto it = doc.is_object() ? doc.find("eos_token") : doc.end();
    if (it != doc.end() && it->is_string()) eos = it->get<std::string>();
    if (it != doc.end() && it->is_object() && it->contains("content") && (*it)["content"].is_string())
      eos = (*it)["content"].get<std::string>();
  }
  return {[t](std::string_view s) { return t->encode(s); },
          [t](std::span<const rlhf::token_id> ids) { return t->decode(ids, true); },
          t->id_of(eos),
          "tokenizer.json pipeline",
          std::move(files),
          eos};
}
#endif

// `where`: a folder or a .model file. Throws rlhf::io_error naming what it looked for.
inline TextCodec load_text_codec(const fs::path& where) {
  using rlhf::io::Gpt2Tokenizer;
  std::error_code ec;
  if (fs::is_regular_file(where, ec) && where.extension() == ".model") {
#ifdef RLHF_TRAINER_SENTENCEPIECE
    auto t = std::make_shared<const rlhf::io::Tokenizer>(rlhf::io::Tokenizer::load(where));
    return {[t](std::string_view s) { return t->encode(s); },
            [t](std::span<const rlhf::token_id> ids) { return t->decode(ids); },
            t->eos(),
            "sentencepiece",
            {where},
            "</s>"};
#else
    rlhf::fail<rlhf::io_error>("tokenizer '", where.string(),
                               "' is a SentencePiece model, but rlhf-train was built without SentencePiece "
                               "(apt-get install libsentencepiece-dev, then rebuild)");
#endif
  }
  if (!fs::is_directory(where, ec))
    rlhf::fail<rlhf::io_error>("tokenizer '", where.string(), "' is neither a folder nor a SentencePiece .model file");
  if (fs::exists(where / "tokenizer.json", ec)) {
    try {  // GPT-2's byte-level BPE, the fast path
      return wrap_gpt2(std::make_shared<const Gpt2Tokenizer>(Gpt2Tokenizer::load_json(where / "tokenizer.json")),
                       {where / "tokenizer.json"});
    } catch (const rlhf::error& gpt2_refusal) {
#ifdef RLHF_TRAINER_HF_TOKENIZER
      return load_hf_codec(where);  // any other model's pipeline
#else
      rlhf::fail<rlhf::io_error>(gpt2_refusal.what(), " (rlhf-train was built without the tokenizer.json pipeline: "
                                 "apt-get install libpcre2-dev libutf8proc-dev, then rebuild)");
#endif
    }
  }
  if (fs::exists(where / "vocab.json", ec) && fs::exists(where / "merges.txt", ec))
    return wrap_gpt2(std::make_shared<const Gpt2Tokenizer>(Gpt2Tokenizer::load(where / "vocab.json", where / "merges.txt")),
                     {where / "vocab.json", where / "merges.txt"});
  if (fs::exists(where / "encoder.json", ec) && fs::exists(where / "vocab.bpe", ec))  // OpenAI's names for the same
    return wrap_gpt2(std::make_shared<const Gpt2Tokenizer>(Gpt2Tokenizer::load(where / "encoder.json", where / "vocab.bpe")),
                     {where / "encoder.json", where / "vocab.bpe"});
  for (const auto& entry : fs::directory_iterator(where, ec))
    if (entry.path().extension() == ".model") return load_text_codec(entry.path());
  rlhf::fail<rlhf::io_error>("tokenizer folder '", where.string(),
                             "' holds none of tokenizer.json, vocab.json + merges.txt, encoder.json + vocab.bpe, *.model");
}

}  // namespace trainer
