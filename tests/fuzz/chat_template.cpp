// libFuzzer target: the chat-template engine (rlhf/io/chat_template/) on arbitrary bytes as a template's source.
// What parses is rendered over a fixed conversation, with and without the generation prompt, and its assistant
// spans are asked for. Every refusal must be rlhf::error (a syntax error, a render error, raise_exception);
// deep nesting, long loops and huge strings are the engine's to refuse, never a crash, a hang or a stack
// overflow.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz_support.hpp"
#include "rlhf/io/chat_template/apply_chat_template.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const nlohmann::ordered_json messages = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2+2? <think>"},
    {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4", "tool_calls": [
      {"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 2.5, "c": [null, true]}}}]},
    {"role": "tool", "content": "4"},
    {"role": "user", "content": "Thanks! 你好 🙂"}])");
  const std::string source(reinterpret_cast<const char*>(data), size);
  return fuzz::refuse_or_accept([&] {
    const rlhf::io::JinjaChatTemplate chat(source, {{"bos_token", "<s>"}, {"eos_token", "</s>"}});
    fuzz::refuse_or_accept([&] { (void)chat.render(messages, {.add_generation_prompt = true}); });
    fuzz::refuse_or_accept([&] {
      (void)chat.render(messages, {.tools = nlohmann::ordered_json::array({{{"name", "add"}}}),
                                   .variables = {{"enable_thinking", false}}});
    });
    fuzz::refuse_or_accept([&] { (void)chat.render_with_assistant_spans(messages); });
    fuzz::refuse_or_accept([&] { (void)chat.end_of_turn_text(); });
  });
}
