// Writes the fuzzers' seed corpora (tests/fuzz/corpus/<parser>/) with the library's own writers, so each seed is a
// valid file of its kind; a few hand-made edge cases are added. Run from the repository root:
//   build-fuzz/make_fuzz_seeds tests/fuzz/corpus
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/io/gpt2_bpe.hpp"
#include "rlhf/io/reference_cache.hpp"
#include "rlhf/io/tokenizer.hpp"
#include "rlhf/models/gpt/checkpoint.hpp"
#include "rlhf/optim/state_file.hpp"

namespace fs = std::filesystem;

static void put(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}
static std::string get(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

int main(int argc, char** argv) {
  using namespace rlhf;
  const fs::path out = argc > 1 ? argv[1] : "tests/fuzz/corpus";

  for (const char* d : {"safetensors", "gpt_checkpoint", "reference_cache"}) fs::create_directories(out / d);
  // safetensors: float32 tensors with metadata, an empty-shaped one, and an empty header.
  {
    const std::vector<float> a{1, 2, 3, 4, 5, 6}, b{0.5f};
    const std::vector<io::TensorView> views{{"a", io::Dtype::f32, {2, 3}, a.data()},
                                            {"b", io::Dtype::f32, {1}, b.data()},
                                            {"empty", io::Dtype::f32, {0, 4}, nullptr}};
    io::save_safetensors(out / "safetensors" / "f32.safetensors", views, {{"format", "pt"}});
    io::save_safetensors(out / "safetensors" / "none.safetensors", std::span<const io::TensorView>{});
    // F16 and BF16 tensors, hand-written: the writer only writes F32.
    const std::string header =
        R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"g":{"dtype":"BF16","shape":[1,1],"data_offsets":[4,6]}})";
    std::string f16(8, '\0');
    f16[0] = static_cast<char>(header.size());
    f16 += header;
    f16 += std::string("\x00\x3c\x00\xc0\x80\x3f", 6);
    put(out / "safetensors" / "f16_bf16.safetensors", f16);
  }
  // gpt_checkpoint: a tiny model of the harness's fixed config, with and without a scalar head.
  {
    const GptConfig small{.vocab_size = 16, .max_seq_len = 8, .channels = 8, .layers = 1, .heads = 2};
    save_checkpoint(Gpt<float>(small), out / "gpt_checkpoint" / "small.safetensors");
    GptConfig head = small;
    head.scalar_head = true;
    save_checkpoint(Gpt<float>(head), out / "gpt_checkpoint" / "scalar_head.safetensors");
  }
  // reference_cache: the harness's fixed datasets.
  {
    std::vector<PreferenceBatch> pairs{{TokenBatch::zeros(3, 2), TokenBatch::zeros(3, 2), {}, {}},
                                       {TokenBatch::zeros(2, 2), TokenBatch::zeros(2, 2), {}, {}}};
    pairs[0].reference_chosen = {-1.5, -2.25, -3.0};
    pairs[0].reference_rejected = {-4.0, -1e-9, -1234.5678};
    pairs[1].reference_chosen = {-0.1, -0.2};
    pairs[1].reference_rejected = {-7.0, -8.0};
    io::save_reference_logps(out / "reference_cache" / "pairs.safetensors", std::span<const PreferenceBatch>(pairs));
    RankedBatch ranked{2, TokenBatch::zeros(4, 2), {}, {-1.5, -2.25, -1e4 / 3.0, -7.0}};
    io::save_reference_logps(out / "reference_cache" / "ranked.safetensors", std::span<const RankedBatch>(&ranked, 1));
  }
  // reviews and fortunes: small hand-made files in the formats of the real ones.
  put(out / "reviews" / "small.json",
      R"([{"text": "A wonderful film.", "class": 1}, {"text": "Dull and \"long\"\u00e9.", "class": 0}, )"
      R"({"text": "", "class": null}])");
  put(out / "reviews" / "empty.json", "[]");
  put(out / "fortunes" / "small", "A fortune.\n%\nTwo lines\n  of text.\n%\nB\bBold and _\bu_\bn_\bd_\be_\br\n%\n");
  put(out / "fortunes" / "crlf", "one\r\n%\r\ntwo \xc3\xa9\r\n%\r\n");
  // tokenizer: a small BPE model and a unigram one.
  {
    std::vector<std::string> corpus;
    for (int i = 0; i < 200; ++i)
      corpus.push_back("the film was " + std::string(i % 2 ? "good" : "bad") + " and the acting " +
                       std::string(i % 3 ? "fine" : "awful") + " number " + std::to_string(i));
    const fs::path tmp = fs::temp_directory_path() / "rlhf_fuzz_seeds";
    fs::create_directories(tmp);
    // SentencePiece's trainer directly, for the identity normaliser: without its 237 KB character map the seeds
    // are small enough for the fuzzer's input size limit.
    for (const std::string type : {"bpe", "unigram"}) {
      std::ofstream(tmp / "corpus.txt") << [&] {
        std::string all;
        for (const auto& c : corpus) all += c + "\n";
        return all;
      }();
      const auto status = sentencepiece::SentencePieceTrainer::Train(
          "--input=" + (tmp / "corpus.txt").string() + " --model_prefix=" + (tmp / type).string() +
          " --model_type=" + type + " --vocab_size=" + (type == "bpe" ? "60" : "50") +
          " --normalization_rule_name=identity --num_threads=1 --pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3"
          " --minloglevel=2");
      if (!status.ok()) throw std::runtime_error(status.ToString());
    }
    put(out / "tokenizer" / "bpe.model", get(tmp / "bpe.model"));
    put(out / "tokenizer" / "unigram.model", get(tmp / "unigram.model"));
    fs::remove_all(tmp);
  }
  // gpt2_bpe: the 256 byte tokens and a few merges, as a tokenizer.json and as vocab.json, a NUL, merges.txt.
  {
    using io::detail::gpt2_byte_piece;
    nlohmann::json vocab = nlohmann::json::object(), merge_list = nlohmann::json::array();
    for (int b = 0; b < 256; ++b) vocab[gpt2_byte_piece(std::string(1, char(b)))] = b;
    std::string merges_txt = "#version: 0.2\n";
    for (const auto& [a, b] : std::vector<std::pair<std::string, std::string>>{
             {" ", "t"}, {"h", "e"}, {" t", "he"}, {"i", "n"}, {"e", "r"}, {" ", "a"}, {"\n", "\n"}}) {
      const std::size_t id = vocab.size();
      vocab[gpt2_byte_piece(a + b)] = id;
      merge_list.push_back(gpt2_byte_piece(a) + " " + gpt2_byte_piece(b));
      merges_txt += gpt2_byte_piece(a) + " " + gpt2_byte_piece(b) + "\n";
    }
    const std::string text = " the inner\n\nthe<|endoftext|>";
    vocab["<|endoftext|>"] = vocab.size();
    put(out / "gpt2_bpe" / "vocab_merges", vocab.dump() + std::string(1, '\0') + merges_txt);
    vocab.erase("<|endoftext|>");
    const nlohmann::json doc = {
        {"version", "1.0"},
        {"added_tokens", {{{"id", vocab.size()}, {"content", "<|endoftext|>"}, {"special", true}}}},
        {"normalizer", nullptr},
        {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
        {"post_processor", {{"type", "ByteLevel"}}},
        {"decoder", {{"type", "ByteLevel"}}},
        {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"vocab", vocab}, {"merges", merge_list}}}};
    put(out / "gpt2_bpe" / "tokenizer.json", doc.dump() + std::string(1, '\0') + text);
    // merges as ["a", "b"] pairs (tokenizers >= 0.20)
    nlohmann::json pairs = doc;
    for (auto& m : pairs["model"]["merges"]) {
      const std::string s = m.get<std::string>();
      m = nlohmann::json::array({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
    }
    put(out / "gpt2_bpe" / "tokenizer_pairs.json", pairs.dump());
  }
  // datasets: JSON Lines of every format, standard and conversational.
  put(out / "datasets" / "preference.jsonl",
      "{\"prompt\": \"How many legs?\", \"chosen\": \" Eight.\", \"rejected\": \" Six.\", \"margin\": 1.5}\n"
      "{\"prompt\": \"Sky?\", \"chosen\": \" Blue.\", \"rejected\": \"\", \"margin\": -0.5}\r\n");
  put(out / "datasets" / "implicit.jsonl",
      "\xef\xbb\xbf{\"chosen\": \"Q: sky? A: blue\", \"rejected\": \"Q: sky? A: green\"}\n  \t\n"
      "{\"chosen\": \"same\", \"rejected\": \"same\"}\n");
  put(out / "datasets" / "language_modeling.jsonl", "{\"text\": \"One line of text.\"}\n{\"text\": \"\"}\n");
  put(out / "datasets" / "prompt_only.jsonl", "{\"prompt\": \"Tell me a story\"}\n{\"prompt\": \"\"}\n");
  put(out / "datasets" / "prompt_completion.jsonl",
      "{\"prompt\": \"2+2=\", \"completion\": \"4\"}\n{\"prompt\": \"\\u00e9\", \"completion\": \"\"}\n");
  put(out / "datasets" / "unpaired.jsonl",
      "{\"prompt\": \"Q\", \"completion\": \" yes\", \"label\": true}\n"
      "{\"prompt\": \"Q\", \"completion\": \"\", \"label\": false}\n{\"prompt\": \"R\", \"completion\": \"z\", \"label\": true}\n");
  put(out / "datasets" / "ranked.jsonl",
      "{\"prompt\": \"Best?\", \"completions\": [\"a\", \"bb\", \"ccc\"], \"scores\": [0.5, 2, -1]}\n"
      "{\"prompt\": \"Two\", \"completions\": [\"x\", \"y\"], \"scores\": [1, 1]}\n");
  put(out / "datasets" / "conversational.jsonl",
      R"({"prompt": [{"role": "user", "content": "Sky?"}], "chosen": [{"role": "assistant", "content": "Blue."}], )"
      R"("rejected": [{"role": "assistant", "content": "Green."}]})" "\n");
  put(out / "datasets" / "messages.jsonl",
      R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, )"
      R"({"role": "assistant", "content": "Hello."}]})" "\n");
  // optim_state: the library's own state files.
  {
    fs::create_directories(out / "optim_state");
    AdamWState<float> adamw{{.learning_rate = 3e-4f, .weight_decay = 0.1f}, 7, {0.5f, -1.0f, 2.0f}, {0.25f, 1.0f, 4.0f}};
    save_optimizer_state(out / "optim_state" / "adamw_f32.safetensors", adamw);
    AdamWState<double> adamw64{{}, 1, {1e-300, -2.5}, {0.0, 1e300}};
    save_optimizer_state(out / "optim_state" / "adamw_f64.safetensors", adamw64);
    save_optimizer_state(out / "optim_state" / "adamw_fresh.safetensors", AdamWState<float>{});
    RmspropState<float> rms{{.momentum = 0.9f, .centered = true}, 3, {1.0f, 2.0f}, {0.5f, -0.5f}, {0.1f, 0.2f}};
    save_optimizer_state(out / "optim_state" / "rmsprop_centered.safetensors", rms);
    RmspropState<double> plain{{}, 2, {1.0, 2.0, 3.0}, {}, {}};
    save_optimizer_state(out / "optim_state" / "rmsprop_f64.safetensors", plain);
    Rng rng(42);
    save_rng_state(out / "optim_state" / "rng.safetensors", rng);
    save_schedule_state(out / "optim_state" / "schedule.safetensors",
                        ScheduleState{{.peak_learning_rate = 1e-3f, .warmup_steps = 10, .total_steps = 100,
                                       .decay = Decay::linear, .final_fraction = 0.1f}, 42});
  }
  return 0;
}
