#pragma once
// How the messages of a conversational record become text, for io/dataset_formats.hpp. Two renderers: the
// one-message ChatTemplate (io/chat_template.hpp, the default) and a model's own Jinja template
// (io/chat_template/conversation_renderer.hpp). A renderer gives what TRL asks of apply_chat_template:
//
//   conversation(m)      the whole conversation, without a generation prompt
//   prompt(m)            ready for the assistant's reply: m and the generation prompt or, when m ends with an
//                        assistant message, m with that message left open (transformers' continue_final_message)
//   with_assistant_spans(m)  conversation(m) and, for each assistant message, the byte range of what the model
//                        generates for that turn: its content and the end-of-turn text, not the header before it
//
// A completion that follows a prompt is conversation(prompt + completion) with prompt(prompt) cut from its
// front; the renderer's text must start with the prompt's (render_completion checks, as TRL does).
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/core/error.hpp"
#include "rlhf/io/chat_template.hpp"  // ChatTemplate

namespace rlhf::io {

struct TextSpan {
  std::size_t begin = 0, end = 0;  // byte offsets, [begin, end)
  friend bool operator==(const TextSpan&, const TextSpan&) = default;
};

struct RenderedConversation {
  std::string text;
  std::vector<TextSpan> assistant_spans;  // one per assistant message, in order
};

// `messages`: a JSON array of objects, each with string "role" and "content" (the dataset reader checks).
class ConversationRenderer {
 public:
  virtual ~ConversationRenderer() = default;
  virtual std::string conversation(const nlohmann::json& messages) const = 0;
  virtual std::string prompt(const nlohmann::json& messages) const = 0;
  virtual RenderedConversation with_assistant_spans(const nlohmann::json& messages) const = 0;
  virtual bool knows_role(std::string_view role) const = 0;
  virtual std::string role_list() const = 0;        // for messages naming an unknown role
  virtual std::string assistant_role() const { return "assistant"; }
  virtual std::string describe() const = 0;         // one line for a run's log
};

// The text of `completion` after `prompt`: conversation(prompt + completion) less prompt(prompt).
inline std::string render_completion(const ConversationRenderer& r, const nlohmann::json& prompt,
                                     const nlohmann::json& completion) {
  nlohmann::json whole = prompt;
  for (const auto& m : completion) whole.push_back(m);
  const std::string before = r.prompt(prompt), text = r.conversation(whole);
  if (!text.starts_with(before))
    fail<config_error>("the chat template's render of the prompt and completion together does not start with its "
                       "render of the prompt alone, so the completion cannot be cut from it");
  return text.substr(before.size());
}

// The one-message template: each message is ChatTemplate::message with {role} and {content} filled in.
class OneMessageRenderer final : public ConversationRenderer {
 public:
  explicit OneMessageRenderer(ChatTemplate t) : template_(std::move(t)) { template_.validate(); }

  std::string conversation(const nlohmann::json& messages) const override {
    return template_.render(to_messages(messages));
  }
  // The generation prompt follows whatever the last message is (this template has no open turn).
  std::string prompt(const nlohmann::json& messages) const override {
    return template_.render_prompt(to_messages(messages));
  }
  RenderedConversation with_assistant_spans(const nlohmann::json& messages) const override {
    RenderedConversation out;
    for (const auto& m : to_messages(messages)) {
      out.text += template_.prefix(m.role);
      const std::size_t begin = out.text.size();
      out.text += m.content + template_.suffix(m.role);
      if (m.role == template_.assistant_role) out.assistant_spans.push_back({begin, out.text.size()});
    }
    return out;
  }
  bool knows_role(std::string_view role) const override { return template_.knows_role(role); }
  std::string role_list() const override { return template_.role_list(); }
  std::string assistant_role() const override { return template_.assistant_role; }
  std::string describe() const override { return "chat template: one message as \"" + template_.message + "\""; }

 private:
  ChatTemplate template_;

  static std::vector<ChatMessage> to_messages(const nlohmann::json& messages) {
    std::vector<ChatMessage> out;
    for (const auto& m : messages) out.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
    return out;
  }
};

}  // namespace rlhf::io
