// TRL's dataset formats in JSON Lines (io/jsonl.hpp, io/dataset_formats.hpp, io/chat_template.hpp,
// io/tokenized_dataset.hpp): detection from the keys, parsing, chat templates, truncation with exact tokens,
// the malformed files, and collation into batches. The tokenizer is one id per byte (eos 256).
#include <doctest/doctest.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "rlhf/io/chat_template.hpp"
#include "rlhf/io/dataset_formats.hpp"
#include "rlhf/io/gpt2_bpe.hpp"
#include "rlhf/io/jsonl.hpp"
#include "rlhf/io/tokenized_dataset.hpp"
#include "support/bytes.hpp"
#include "support/temp_dir.hpp"
#include "support/text.hpp"

using namespace rlhf;
using namespace rlhf::io;
namespace fs = std::filesystem;
using rlhf::test::has;
using rlhf::test::TempDir;
using rlhf::test::write_bytes;

using rlhf::test::error_message;
namespace {

constexpr token_id eos = 256;

struct ByteTokenizer {  // one id per byte
  std::vector<token_id> encode(std::string_view s) const {
    std::vector<token_id> ids;
    for (const char c : s) ids.push_back(static_cast<unsigned char>(c));
    return ids;
  }
};

std::vector<token_id> bytes(std::string_view s) { return ByteTokenizer{}.encode(s); }
std::vector<token_id> bytes_eos(std::string_view s) {
  auto v = bytes(s);
  v.push_back(eos);
  return v;
}

static_assert(TextEncoder<ByteTokenizer>);
static_assert(TextEncoder<Gpt2Tokenizer>);
static_assert(TextEncoder<std::function<std::vector<token_id>(std::string_view)>>);
static_assert(!TextEncoder<int>);

// A file holding `contents` in a fresh folder; the folder lives as long as the test's TempDir.
fs::path jsonl(const TempDir& dir, const std::string& contents, const std::string& name = "data.jsonl") {
  const auto p = dir / name;
  write_bytes(p, contents);
  return p;
}

TokenizedDataset load(const TempDir& dir, const std::string& contents, const TokenizeConfig& c = {.eos = eos},
                      const DatasetReadOptions& o = {}) {
  return load_dataset(jsonl(dir, contents), ByteTokenizer{}, c, o);
}

std::vector<token_id> row_tokens(const TokenBatch& b, std::size_t row) {
  return {b.tokens.begin() + std::ptrdiff_t(row * b.time), b.tokens.begin() + std::ptrdiff_t((row + 1) * b.time)};
}
std::vector<int> row_mask(const TokenBatch& b, std::size_t row) {
  return {b.response_mask.begin() + std::ptrdiff_t(row * b.time),
          b.response_mask.begin() + std::ptrdiff_t((row + 1) * b.time)};
}

}  // namespace

TEST_CASE("detect_format: the type from the keys, standard or conversational from the JSON type of the fields") {
  using json = nlohmann::json;
  const auto f = [](const char* s) { return detect_format(json::parse(s)); };
  CHECK(f(R"({"prompt":"p","chosen":"a","rejected":"b"})") == DatasetFormat{DatasetType::preference, false});
  CHECK(f(R"({"chosen":"a","rejected":"b"})") == DatasetFormat{DatasetType::implicit_preference, false});
  CHECK(f(R"({"text":"t"})") == DatasetFormat{DatasetType::language_modeling, false});
  CHECK(f(R"({"messages":[]})") == DatasetFormat{DatasetType::language_modeling, true});
  CHECK(f(R"({"prompt":"p","completion":"c"})") == DatasetFormat{DatasetType::prompt_completion, false});
  CHECK(f(R"({"prompt":"p"})") == DatasetFormat{DatasetType::prompt_only, false});
  CHECK(f(R"({"prompt":[{"role":"user","content":"x"}]})") == DatasetFormat{DatasetType::prompt_only, true});
  CHECK(f(R"({"prompt":"p","completions":["a","b"]})") == DatasetFormat{DatasetType::ranked, false});
  CHECK(f(R"({"prompt":"p","completion":"c","label":true})") == DatasetFormat{DatasetType::unpaired_preference, false});
  CHECK(f(R"({"prompt":[],"completion":[],"label":false})") == DatasetFormat{DatasetType::unpaired_preference, true});
  CHECK(f(R"({"prompt":[],"chosen":[],"rejected":[]})") == DatasetFormat{DatasetType::preference, true});
  CHECK(f(R"({"id":7,"prompt":"p","chosen":"a","rejected":"b","score":1})") ==
        DatasetFormat{DatasetType::preference, false});  // other keys are ignored

  const auto bad = [&](const char* s) { return error_message<io_error>([&] { f(s); }); };
  CHECK(has(bad(R"({"prompt":"p","chosen":"a"})"), "has \"chosen\" but no \"rejected\""));
  CHECK(has(bad(R"({"question":"q","answer":"a"})"), "its keys: answer, question"));
  CHECK(has(bad(R"([1,2])"), "not an object"));
  CHECK(has(bad(R"({"completions":["a","b"]})"), "no \"prompt\""));
}

TEST_CASE("standard formats: each parses into rows of prompt and completions, in file order with line numbers") {
  TempDir dir;
  SUBCASE("preference") {
    const auto t = read_text_dataset(jsonl(dir, R"({"prompt":"Q1","chosen":" good","rejected":" bad"}
{"prompt":"Q2","chosen":" yes","rejected":" no","extra":[1,2]}
)"));
    CHECK(t.format == DatasetFormat{DatasetType::preference, false});
    REQUIRE(t.rows.size() == 2);
    CHECK(t.rows[1].line == 2);
    CHECK(t.rows[1].prompt == "Q2");
    CHECK(t.rows[1].completions == std::vector<std::string>{" yes", " no"});
    CHECK(!t.rows[0].margin);
  }
  SUBCASE("preference with margins") {
    const auto t = read_text_dataset(jsonl(dir, R"({"prompt":"Q","chosen":"a","rejected":"b","margin":1.5})"));
    CHECK(t.rows[0].margin == 1.5);
    const auto ds = tokenize_dataset(t, ByteTokenizer{});
    CHECK(collate_preferences(ds.rows, std::vector<std::size_t>{0}).margin == std::vector<double>{1.5});
  }
  SUBCASE("language modeling, blank lines skipped but counted") {
    const auto t = read_text_dataset(jsonl(dir, "{\"text\":\"hello\"}\n\n  \n{\"text\":\"world\"}"));
    CHECK(t.format == DatasetFormat{DatasetType::language_modeling, false});
    REQUIRE(t.rows.size() == 2);
    CHECK(t.rows[1].line == 4);
    CHECK(t.rows[0].prompt.empty());
    CHECK(t.rows[1].completions == std::vector<std::string>{"world"});
  }
  SUBCASE("prompt-completion") {
    const auto t = read_text_dataset(jsonl(dir, R"({"prompt":"2+2=","completion":"4"})"));
    CHECK(t.format.type == DatasetType::prompt_completion);
    CHECK(t.rows[0].prompt == "2+2=");
    CHECK(t.rows[0].completions == std::vector<std::string>{"4"});
  }
  SUBCASE("prompt-only") {
    const auto t = read_text_dataset(jsonl(dir, R"({"prompt":"Once upon"})"));
    CHECK(t.format.type == DatasetType::prompt_only);
    CHECK(t.rows[0].prompt == "Once upon");
    CHECK(t.rows[0].completions.empty());
  }
  SUBCASE("ranked, best first as given, or sorted by scores (stable on ties)") {
    const auto t = read_text_dataset(jsonl(dir, R"({"prompt":"P","completions":["a","b","c"]}
{"prompt":"P","completions":["w","x","y","z"],"scores":[0.5,2,0.5,3]})"));
    CHECK(t.format.type == DatasetType::ranked);
    CHECK(t.rows[0].completions == std::vector<std::string>{"a", "b", "c"});
    CHECK(t.rows[0].scores.empty());
    CHECK(t.rows[1].completions == std::vector<std::string>{"z", "x", "w", "y"});
    CHECK(t.rows[1].scores == std::vector<double>{3, 2, 0.5, 0.5});
  }
  SUBCASE("CRLF line ends and a byte order mark") {
    const auto t = read_text_dataset(jsonl(dir, "\xEF\xBB\xBF{\"text\":\"a\"}\r\n{\"text\":\"b\"}\r\n"));
    REQUIRE(t.rows.size() == 2);
    CHECK(t.rows[1].completions[0] == "b");
  }
}

TEST_CASE("unpaired preference (TRL's KTO format): prompt, completion and a true/false label per row") {
  TempDir dir;
  const auto t = read_text_dataset(jsonl(dir, R"({"prompt":"Q","completion":" yes","label":true}
{"prompt":"Q","completion":" no","label":false}
)"));
  CHECK(t.format == DatasetFormat{DatasetType::unpaired_preference, false});
  REQUIRE(t.rows.size() == 2);
  CHECK(t.rows[0].completions == std::vector<std::string>{" yes"});
  CHECK(t.rows[0].label == true);
  CHECK(t.rows[1].label == false);
  const auto d = tokenize_dataset(t, ByteTokenizer{});
  CHECK(d.rows[1].label == false);
  const auto batch = collate_unpaired(d.rows, std::vector<std::size_t>{1, 0});
  CHECK(batch.desirable == std::vector<std::uint8_t>{0, 1});
  CHECK(batch.sequences.batch == 2);
  REQUIRE(batch.mismatched.batch == 2);
  CHECK(batch.mismatched.response_length(0) == 4);  // " yes": row 0's prompt with row 1's completion
  CHECK(batch.mismatched.response_length(1) == 3);  // " no"
  CHECK(has(error_message<shape_error>([&] { collate_unpaired(d.rows, std::vector<std::size_t>{0}); }), "at least 2"));
  const auto bad = error_message<io_error>([&] {
    read_text_dataset(jsonl(dir, R"({"prompt":"Q","completion":" yes","label":true}
{"prompt":"Q","completion":" no","label":"bad"}
)"));
  });
  CHECK(has(bad, "line 2"));
  CHECK(has(bad, "\"label\" is"));
  CHECK(has(bad, "not true or false"));
}

TEST_CASE("implicit prompt: the longest common token prefix of chosen and rejected; eos after each completion") {
  TempDir dir;
  const auto ds = load(dir, R"({"chosen":"The sky is blue.","rejected":"The sky is green."}
{"chosen":"Same","rejected":"Same, longer"})");
  CHECK(ds.format == DatasetFormat{DatasetType::implicit_preference, false});
  REQUIRE(ds.rows.size() == 2);
  CHECK(ds.rows[0].prompt == bytes("The sky is "));
  CHECK(ds.rows[0].completions[0] == bytes_eos("blue."));
  CHECK(ds.rows[0].completions[1] == bytes_eos("green."));
  CHECK(ds.rows[1].prompt == bytes("Same"));  // chosen is all prompt: its completion is eos alone
  CHECK(ds.rows[1].completions[0] == std::vector<token_id>{eos});
  CHECK(ds.rows[1].completions[1] == bytes_eos(", longer"));
}

TEST_CASE("conversational formats with the default chat template") {
  TempDir dir;
  SUBCASE("preference: the prompt ends with the generation prompt; completions continue it") {
    const auto t = read_text_dataset(jsonl(dir, R"({"prompt":[{"role":"system","content":"Be brief."},{"role":"user","content":"2+2?"}],"chosen":[{"role":"assistant","content":"4"}],"rejected":[{"role":"assistant","content":"5"}]})"));
    CHECK(t.format == DatasetFormat{DatasetType::preference, true});
    CHECK(t.rows[0].prompt == "<|system|>\nBe brief.\n<|user|>\n2+2?\n<|assistant|>\n");
    CHECK(t.rows[0].completions == std::vector<std::string>{"4\n", "5\n"});
  }
  SUBCASE("messages: the whole conversation is the text") {
    const auto t = read_text_dataset(jsonl(dir, R"({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"}]})"));
    CHECK(t.format == DatasetFormat{DatasetType::language_modeling, true});
    CHECK(t.rows[0].completions[0] == "<|user|>\nHi\n<|assistant|>\nHello!\n");
  }
  SUBCASE("prompt-only and prompt-completion") {
    auto t = read_text_dataset(jsonl(dir, R"({"prompt":[{"role":"user","content":"Hi"}]})"));
    CHECK(t.rows[0].prompt == "<|user|>\nHi\n<|assistant|>\n");
    t = read_text_dataset(jsonl(dir, R"({"prompt":[{"role":"user","content":"Hi"}],"completion":[{"role":"assistant","content":"Yo"},{"role":"user","content":"Bye"}]})"));
    CHECK(t.rows[0].completions[0] == "Yo\n<|user|>\nBye\n");
  }
  SUBCASE("implicit prompt: the messages both conversations begin with (TRL's extract_prompt)") {
    const auto t = read_text_dataset(jsonl(dir, R"({"chosen":[{"role":"user","content":"Q"},{"role":"assistant","content":"A"}],"rejected":[{"role":"user","content":"Q"},{"role":"assistant","content":"B"}]})"));
    CHECK(t.format == DatasetFormat{DatasetType::implicit_preference, true});
    CHECK(!t.implicit_prompt);  // found from the messages, not the tokens
    CHECK(t.rows[0].prompt == "<|user|>\nQ\n<|assistant|>\n");
    CHECK(t.rows[0].completions == std::vector<std::string>{"A\n", "B\n"});
  }
  SUBCASE("ranked with conversational completions") {
    const auto t = read_text_dataset(jsonl(dir, R"({"prompt":[{"role":"user","content":"Q"}],"completions":[[{"role":"assistant","content":"A"}],[{"role":"assistant","content":"B"}]]})"));
    CHECK(t.format == DatasetFormat{DatasetType::ranked, true});
    CHECK(t.rows[0].completions == std::vector<std::string>{"A\n", "B\n"});
  }
  SUBCASE("a completion that does not start with the assistant's turn is an error") {
    const auto msg = error_message<io_error>([&] {
      read_text_dataset(jsonl(dir, R"({"prompt":[{"role":"user","content":"Q"}],"completion":[{"role":"user","content":"A"}]})"));
    });
    CHECK(has(msg, "line 1"));
    CHECK(has(msg, "\"completion\" starts with a \"user\" message"));
  }
  SUBCASE("a message without content, or with content that is not a string") {
    auto msg = error_message<io_error>([&] { read_text_dataset(jsonl(dir, R"({"messages":[{"role":"user"}]})")); });
    CHECK(has(msg, "\"messages\"[0] has no \"content\""));
    msg = error_message<io_error>([&] { read_text_dataset(jsonl(dir, R"({"messages":[{"role":"user","content":[{"type":"text"}]}]})")); });
    CHECK(has(msg, "\"messages\"[0].content is a JSON array, not a string"));
  }
}

TEST_CASE("conversational formats with a custom template string (ChatML)") {
  TempDir dir;
  DatasetReadOptions o;
  o.chat_template.message = "<|im_start|>{role}\n{content}<|im_end|>\n";
  const auto t = read_text_dataset(jsonl(dir, R"({"prompt":[{"role":"user","content":"Hi"}],"chosen":[{"role":"assistant","content":"Hello"}],"rejected":[{"role":"assistant","content":"Go away"}]})"), o);
  CHECK(t.rows[0].prompt == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  CHECK(t.rows[0].completions[0] == "Hello<|im_end|>\n");
  // prompt + completion is the whole conversation rendered
  const std::vector<ChatMessage> all{{"user", "Hi"}, {"assistant", "Hello"}};
  CHECK(t.rows[0].prompt + t.rows[0].completions[0] == o.chat_template.render(all));

  o.chat_template.message = "{role}: no content here";
  CHECK_THROWS_AS(read_text_dataset(jsonl(dir, R"({"text":"x"})"), o), config_error);
  o.chat_template.message = "{content}{content}";
  CHECK_THROWS_AS(o.chat_template.validate(), config_error);
}

TEST_CASE("truncation: the prompt to max_prompt_length (keep_end / keep_start), then the completion to max_length") {
  TempDir dir;
  const std::string row = R"({"prompt":"abcdefgh","chosen":"12345","rejected":"xy"})";
  SUBCASE("keep_end keeps the prompt's end") {
    const auto ds = load(dir, row, {.max_length = 8, .max_prompt_length = 4, .eos = eos});
    CHECK(ds.rows[0].prompt == bytes("efgh"));
    CHECK(ds.rows[0].completions[0] == bytes("1234"));  // 4 + 6 > 8: cut after 4, eos lost
    CHECK(ds.rows[0].completions[1] == bytes_eos("xy"));
    CHECK(ds.stats.rows_truncated == 1);
    CHECK(ds.stats.prompts_truncated == 1);
    CHECK(ds.stats.completions_truncated == 1);
  }
  SUBCASE("keep_start keeps the prompt's start") {
    const auto ds = load(dir, row,
                         {.max_length = 8, .max_prompt_length = 4, .truncation_mode = TruncationMode::keep_start, .eos = eos});
    CHECK(ds.rows[0].prompt == bytes("abcd"));
    CHECK(ds.rows[0].completions[0] == bytes("1234"));
  }
  SUBCASE("max_completion_length") {
    const auto ds = load(dir, row, {.max_completion_length = 3, .eos = eos});
    CHECK(ds.rows[0].prompt == bytes("abcdefgh"));
    CHECK(ds.rows[0].completions[0] == bytes("123"));
    CHECK(ds.rows[0].completions[1] == bytes_eos("xy"));
    CHECK(ds.stats.prompts_truncated == 0);
    CHECK(ds.stats.completions_truncated == 1);
  }
  SUBCASE("nothing to cut: nothing counted") {
    const auto ds = load(dir, row, {.max_length = 100, .max_prompt_length = 50, .eos = eos});
    CHECK(ds.rows[0].completions[0] == bytes_eos("12345"));
    CHECK(ds.stats.rows_truncated == 0);
    CHECK(ds.stats.summary() == "read 1, kept 1, truncated 0 (prompt 0, completion 0), dropped 0");
  }
  SUBCASE("language modeling: the text keeps its start") {
    const auto ds = load(dir, R"({"text":"abcdefgh"})", {.max_length = 5, .truncation_mode = TruncationMode::keep_end, .eos = eos});
    CHECK(ds.rows[0].prompt.empty());
    CHECK(ds.rows[0].completions[0] == bytes("abcde"));
  }
  SUBCASE("eos is not appended twice") {
    const auto ds = load_dataset(jsonl(dir, R"({"text":"ab."})"), ByteTokenizer{}, {.eos = '.'});
    CHECK(ds.rows[0].completions[0] == bytes("ab."));
  }
}

TEST_CASE("rows that cannot be used are dropped and counted, with their lines") {
  TempDir dir;
  const std::string file = R"({"prompt":"short","chosen":"ok","rejected":"fine"}
{"prompt":"a very long prompt indeed","chosen":"x","rejected":"y"}
{"prompt":"p","chosen":"a completion far too long","rejected":"n"}
{"prompt":"q","chosen":"","rejected":"z"}
)";
  SUBCASE("overlong = drop, no eos") {
    const auto ds = load(dir, file, {.max_length = 10, .overlong = OverlongRows::drop});
    CHECK(ds.stats.rows_read == 4);
    CHECK(ds.stats.rows_kept == 1);
    CHECK(ds.rows[0].line == 1);
    REQUIRE(ds.stats.dropped() == 3);
    CHECK(ds.stats.dropped_rows[0].line == 2);
    CHECK(ds.stats.dropped_rows[0].reason == DropReason::prompt_fills_max_length);
    CHECK(ds.stats.dropped_rows[1].line == 3);
    CHECK(ds.stats.dropped_rows[1].reason == DropReason::over_max_length);
    CHECK(ds.stats.dropped_rows[2].line == 4);
    CHECK(ds.stats.dropped_rows[2].reason == DropReason::nothing_to_score);  // "" and no eos
    CHECK(ds.stats.summary() ==
          "read 4, kept 1, truncated 0 (prompt 0, completion 0), dropped 3 (prompt fills max_length 1, "
          "over max_length 1, nothing to score 1)");
  }
  SUBCASE("overlong = truncate (TRL's), with eos: only the prompt that fills max_length is dropped") {
    const auto ds = load(dir, file, {.max_length = 10, .eos = eos});
    CHECK(ds.stats.rows_kept == 3);
    CHECK(ds.stats.dropped(DropReason::prompt_fills_max_length) == 1);
    CHECK(ds.rows[1].completions[0] == bytes("a complet"));
    CHECK(ds.rows[2].completions[0] == std::vector<token_id>{eos});
    CHECK(ds.stats.completions_truncated == 1);
  }
  SUBCASE("every row dropped is an error that gives the counts") {
    const auto msg = error_message<io_error>([&] { load(dir, file, {.max_length = 1}); });
    CHECK(has(msg, "data.jsonl"));
    CHECK(has(msg, "every row was dropped"));
    CHECK(has(msg, "prompt fills max_length 4"));
  }
  SUBCASE("prompt-only rows with an empty prompt") {
    const auto ds = load(dir, "{\"prompt\":\"\"}\n{\"prompt\":\"go\"}\n");
    CHECK(ds.stats.dropped(DropReason::empty_prompt) == 1);
    CHECK(ds.rows[0].prompt == bytes("go"));
    CHECK(ds.rows[0].completions.empty());
  }
}

TEST_CASE("malformed files: each an io_error naming the file, the line and the problem") {
  TempDir dir;
  const auto error_of = [&](const std::string& contents, const JsonlLimits& limits = {}) {
    DatasetReadOptions o;
    o.limits = limits;
    return error_message<io_error>([&] { read_text_dataset(jsonl(dir, contents, "broken.jsonl"), o); });
  };
  const std::string good = R"({"prompt":"p","chosen":"a","rejected":"b"})";
  SUBCASE("bad JSON on line 3") {
    const auto msg = error_of(good + "\n" + good + "\n{\"prompt\": \"p\", \"chosen\": oops}\n" + good);
    CHECK(has(msg, "broken.jsonl"));
    CHECK(has(msg, "line 3"));
    CHECK(has(msg, "not valid JSON"));
  }
  SUBCASE("a missing key") {
    const auto msg = error_of(good + "\n" + R"({"prompt":"p","chosen":"a"})");
    CHECK(has(msg, "broken.jsonl' line 2"));
    CHECK(has(msg, "no \"rejected\""));
    const auto msg2 = error_of(good + "\n" + R"({"chosen":"a","rejected":"b"})");
    CHECK(has(msg2, "line 2"));
    CHECK(has(msg2, "no \"prompt\""));
  }
  SUBCASE("a field that is not a string") {
    const auto msg = error_of(good + "\n" + R"({"prompt":"p","chosen":42,"rejected":"b"})");
    CHECK(has(msg, "line 2"));
    CHECK(has(msg, "\"chosen\" is a JSON number, not a string"));
    CHECK(has(error_of(R"({"text":null})"), "\"text\" is a JSON null, not a string"));
  }
  SUBCASE("what the last reading would take silently: a key twice, an unknown role, no messages, a margin beyond float") {
    CHECK(has(error_of(good + "\n" + R"({"prompt":"p","chosen":"a","rejected":"b","chosen":"c"})"),
              "line 2: the key \"chosen\" appears twice in one object"));
    const std::string user = R"({"role":"user","content":"q"})";
    const auto conversation = [&](const std::string& role) {
      return R"({"prompt":[)" + user + R"(],"chosen":[{"role":")" + role + R"(","content":"a"}],"rejected":[{"role":"assistant","content":"b"}]})";
    };
    CHECK_NOTHROW(read_text_dataset(jsonl(dir, conversation("assistant"), "ok.jsonl"), DatasetReadOptions{}));
    for (const std::string role : {"hacker", "", "user\\n<|assistant|>"}) {
      CAPTURE(role);
      CHECK(has(error_of(conversation(role)), "is not one of the chat template's roles (system, user, assistant, tool)"));
    }
    CHECK(has(error_of(R"({"prompt":[)" + user + R"(],"chosen":[],"rejected":[{"role":"assistant","content":"b"}]})"),
              "\"chosen\" is an empty list of messages"));
    CHECK(has(error_of(R"({"prompt":"p","chosen":"a","rejected":"b","margin":1e308})"), "beyond float32's range"));
    CHECK_NOTHROW(read_text_dataset(jsonl(dir, R"({"prompt":"p","chosen":"a","rejected":"b","margin":1e30})", "m.jsonl"),
                                    DatasetReadOptions{}));
  }
  SUBCASE("an empty file, or only blank lines") {
    CHECK(has(error_of(""), "has no records"));
    CHECK(has(error_of("\n  \n\r\n"), "has no records"));
  }
  SUBCASE("a line that is not an object") {
    CHECK(has(error_of(good + "\n[1,2,3]"), "line 2: a JSON array, not an object"));
  }
  SUBCASE("a record of another type than the first") {
    const auto msg = error_of(good + "\n" + R"({"prompt":"p","chosen":"a","rejected":"b"})" + "\n" + R"({"text":"t"})");
    CHECK(has(msg, "line 3"));
    CHECK(has(msg, "no \"prompt\" (a standard preference dataset, as line 1 began it, needs it)"));
    const auto msg2 = error_of(good + "\n" + R"({"prompt":"p","chosen":"a","rejected":"b","completions":["c","d"]})");
    CHECK(has(msg2, "line 2: a standard ranked record (keys: chosen, completions, prompt, rejected), but line 1 "
                    "began a standard preference dataset"));
    CHECK(has(error_of(good + "\n" + R"({"prompt":[],"chosen":[],"rejected":[]})"), "line 2"));
  }
  SUBCASE("margin on some records only") {
    CHECK(has(error_of(good + "\n" + R"({"prompt":"p","chosen":"a","rejected":"b","margin":1})"),
              "line 2: has a \"margin\" but line 1 had none"));
    CHECK(has(error_of(R"({"prompt":"p","chosen":"a","rejected":"b","margin":"big"})"), "\"margin\" is \"big\", not a number"));
  }
  SUBCASE("ranked lists: too short, scores that do not match") {
    CHECK(has(error_of(R"({"prompt":"p","completions":["a"]})"), "a ranked list needs at least 2"));
    CHECK(has(error_of(R"({"prompt":"p","completions":["a","b"],"scores":[1]})"), "\"scores\" has 1 elements"));
    CHECK(has(error_of(R"({"prompt":"p","completions":["a","b"],"scores":[1,"x"]})"), "\"scores\"[1] is \"x\""));
  }
  SUBCASE("limits: line length, nesting, numbers beyond double, file size") {
    CHECK(has(error_of(good + "\n" + R"({"text":")" + std::string(200, 'x') + "\"}", {.max_line_bytes = 100}),
              "line 2: longer than the limit of 100 bytes"));
    CHECK(has(error_of(std::string(100, '[') + std::string(100, ']')), "nests more than 64 levels"));
    CHECK(has(error_of(R"({"prompt":"p","chosen":"a","rejected":"b","margin":1e999})"), "line 1"));
    CHECK(has(error_of(good + "\n" + good, {.max_file_bytes = 50}), "more than the limit of 50"));
    CHECK(has(error_of("{\"text\":\"\xff\"}"), "not valid JSON"));  // invalid UTF-8
  }
  SUBCASE("a file that is not there, or not a regular file") {
    CHECK(has(error_message<io_error>([&] { read_text_dataset(dir / "missing.jsonl"); }), "does not exist"));
    CHECK(has(error_message<io_error>([&] { read_text_dataset(dir.path); }), "not a regular file"));
  }
  SUBCASE("in-memory text, and a long line split across read chunks") {
    const auto t = parse_text_dataset(good + "\n" + R"({"prompt":"p","chosen":")" + std::string(200'000, 'c') +
                                          R"(","rejected":"b"})",
                                      "memory");
    CHECK(t.rows[1].completions[0].size() == 200'000);
    CHECK(read_text_dataset(jsonl(dir, good + "\n" + R"({"prompt":"p","chosen":")" + std::string(200'000, 'c') +
                                           R"(","rejected":"b"})"))
              .rows[1]
              .completions[0]
              .size() == 200'000);
    CHECK(has(error_message<io_error>([] { parse_text_dataset("{\"text\":1}", "memory"); }), "dataset 'memory' line 1"));
  }
}

TEST_CASE("collation: right padding with id 0, the response mask on completion tokens, rows in index order") {
  TempDir dir;
  SUBCASE("preference pairs") {
    const auto ds = load(dir, R"({"prompt":"ab","chosen":"c","rejected":"def"}
{"prompt":"xyz","chosen":"uv","rejected":"w"})");
    const std::vector<std::size_t> idx{1, 0};
    const auto b = collate_preferences(ds.rows, idx);
    CHECK(b.chosen.batch == 2);
    CHECK(b.chosen.time == 6);  // "xyz" "uv" eos
    CHECK(row_tokens(b.chosen, 0) == std::vector<token_id>{'x', 'y', 'z', 'u', 'v', eos});
    CHECK(row_mask(b.chosen, 0) == std::vector<int>{0, 0, 0, 1, 1, 1});
    CHECK(row_tokens(b.chosen, 1) == std::vector<token_id>{'a', 'b', 'c', eos, 0, 0});
    CHECK(row_mask(b.chosen, 1) == std::vector<int>{0, 0, 1, 1, 0, 0});
    CHECK(b.rejected.time == 6);  // "ab" "def" eos
    CHECK(row_tokens(b.rejected, 1) == std::vector<token_id>{'a', 'b', 'd', 'e', 'f', eos});
    CHECK(b.chosen.response_length(1) == 2);
    CHECK(b.rejected.response_length(0) == 2);
    CHECK(b.chosen.attention_mask.empty());  // right padding needs none
    CHECK(b.margin.empty());
    CHECK_NOTHROW(b.chosen.validate(257));
    CHECK_NOTHROW(b.rejected.validate(257));
  }
  SUBCASE("ranked lists of different lengths") {
    const auto ds = load(dir, R"({"prompt":"p","completions":["a","bb","c"]}
{"prompt":"qq","completions":["x","y"]})");
    const auto b = collate_ranked(ds.rows, std::vector<std::size_t>{0, 1});
    CHECK(b.k == 3);
    CHECK(b.lists() == 2);
    CHECK(b.lengths == std::vector<std::size_t>{3, 2});
    REQUIRE(b.responses.batch == 6);
    CHECK(b.responses.time == 4);
    CHECK(row_tokens(b.responses, 1) == std::vector<token_id>{'p', 'b', 'b', eos});
    CHECK(row_tokens(b.responses, 5) == std::vector<token_id>{'q', 'q', 'y', eos});  // the worst, repeated
    CHECK(row_mask(b.responses, 3) == std::vector<int>{0, 0, 1, 1});
    CHECK_NOTHROW(b.responses.validate(257));
  }
  SUBCASE("SFT: text-only scores every token but the first; prompt-completion the completion's") {
    const auto text = load(dir, R"({"text":"abc"})");
    const auto t = collate_sft(text.rows, std::vector<std::size_t>{0});
    CHECK(row_tokens(t, 0) == std::vector<token_id>{'a', 'b', 'c', eos});
    CHECK(row_mask(t, 0) == std::vector<int>{0, 1, 1, 1});
    const auto pc = load(dir, R"({"prompt":"Q:","completion":"A"}
{"prompt":"Question:","completion":"Answer"})");
    const auto b = collate_sft(pc.rows, std::vector<std::size_t>{0, 1});
    CHECK(b.time == 16);
    CHECK(row_mask(b, 0) == std::vector<int>{0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
    CHECK(b.response_length(1) == 7);
    CHECK_NOTHROW(b.validate(257));
  }
  SUBCASE("prompts for sampling") {
    const auto ds = load(dir, "{\"prompt\":\"hello\"}\n{\"prompt\":\"hi\"}\n");
    const auto b = collate_prompts(ds.rows, std::vector<std::size_t>{0, 1});
    CHECK(b.batch == 2);
    CHECK(b.time == 5);
    CHECK(b.prompt_length == std::vector<std::size_t>{5, 2});
    CHECK(b.tokens == std::vector<token_id>{'h', 'e', 'l', 'l', 'o', 'h', 'i', 0, 0, 0});
  }
  SUBCASE("bad indices and the wrong kind of rows") {
    const auto ds = load(dir, R"({"text":"abc"})");
    CHECK_THROWS_AS(collate_sft(ds.rows, std::vector<std::size_t>{1}), value_error);
    CHECK_THROWS_AS(collate_sft(ds.rows, std::vector<std::size_t>{}), value_error);
    CHECK_THROWS_AS(collate_preferences(ds.rows, std::vector<std::size_t>{0}), value_error);
    CHECK_THROWS_AS(collate_prompts(ds.rows, std::vector<std::size_t>{0}), value_error);  // no prompt
  }
  SUBCASE("batch_indices: file order") {
    CHECK(batch_indices(5, 2) == std::vector<std::vector<std::size_t>>{{0, 1}, {2, 3}, {4}});
    CHECK(batch_indices(5, 2, true) == std::vector<std::vector<std::size_t>>{{0, 1}, {2, 3}});
    CHECK_THROWS_AS(batch_indices(5, 0), config_error);
  }
}

TEST_CASE("a std::function as the tokenizer") {
  TempDir dir;
  const std::function<std::vector<token_id>(std::string_view)> words = [](std::string_view s) {
    return std::vector<token_id>(s.size() / 2 + 1, 7);  // any callable taking std::string_view
  };
  const auto ds = load_dataset(jsonl(dir, R"({"prompt":"abcd","completion":"ef"})"), words, {.eos = 9});
  CHECK(ds.rows[0].prompt == std::vector<token_id>{7, 7, 7});
  CHECK(ds.rows[0].completions[0] == std::vector<token_id>{7, 7, 9});
}

TEST_CASE("tests/data/tiny_preferences.jsonl: twelve standard preference rows") {
  const auto path = fs::path(__FILE__).parent_path().parent_path() / "data" / "tiny_preferences.jsonl";
  const auto ds = load_dataset(path, ByteTokenizer{}, {.max_length = 64, .max_prompt_length = 32, .eos = eos});
  CHECK(ds.format == DatasetFormat{DatasetType::preference, false});
  CHECK(ds.stats.rows_read == 12);
  CHECK(ds.stats.rows_kept == 12);
  for (const auto& batch : batch_indices(ds.size(), 5)) {
    const auto b = collate_preferences(ds.rows, batch);
    CHECK(b.chosen.time <= 64);
    CHECK_NOTHROW(b.chosen.validate(257));
    CHECK_NOTHROW(b.rejected.validate(257));
  }
}
