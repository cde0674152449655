#pragma once
// A model's own chat template (tokenizer_config.json's chat_template) as the dataset reader's
// ConversationRenderer: conversational records are rendered as TRL renders them through transformers'
// apply_chat_template. docs/io/chat_templates.md.
//
//   auto renderer = std::make_shared<rlhf::io::JinjaConversationRenderer>(rlhf::io::JinjaChatTemplate::load(folder));
//   rlhf::io::DatasetReadOptions read{.renderer = renderer, .assistant_only_loss = true};
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "rlhf/core/error.hpp"
#include "rlhf/io/chat_template/apply_chat_template.hpp"  // JinjaChatTemplate
#include "rlhf/io/conversation_renderer.hpp"

namespace rlhf::io {

class JinjaConversationRenderer final : public ConversationRenderer {
 public:
  // `origin`: where the template came from, for the run's log.
  explicit JinjaConversationRenderer(JinjaChatTemplate t, std::string origin = "tokenizer_config.json")
      : template_(std::move(t)), origin_(std::move(origin)) {}

  std::string conversation(const nlohmann::json& messages) const override {
    return template_.render(nlohmann::ordered_json(messages));
  }

  // TRL: a prompt that ends with the user's turn gets the generation prompt; one that ends with the assistant's
  // is continued (continue_final_message): rendered whole, then cut after that message's content.
  std::string prompt(const nlohmann::json& messages) const override {
    const bool open_turn = !messages.empty() && messages.back().value("role", "") == "assistant";
    if (!open_turn) return template_.render(nlohmann::ordered_json(messages), {.add_generation_prompt = true});
    const std::string text = template_.render(nlohmann::ordered_json(messages));
    return continued(text, messages.back().at("content").get<std::string>());
  }

  RenderedConversation with_assistant_spans(const nlohmann::json& messages) const override {
    auto r = template_.render_with_assistant_spans(nlohmann::ordered_json(messages));
    RenderedConversation out{std::move(r.text), {}};
    for (const auto& s : r.assistant_spans) out.assistant_spans.push_back({s.begin, s.end});
    return out;
  }

  bool knows_role(std::string_view) const override { return true; }  // the template decides (raise_exception)
  std::string role_list() const override { return "any the template accepts"; }
  std::string describe() const override { return "chat template: the model's own, from " + origin_; }

  const JinjaChatTemplate& chat_template() const { return template_; }

 private:
  JinjaChatTemplate template_;
  std::string origin_;

  // transformers' continue_final_message: the render up to the last place the final message's content (stripped
  // of surrounding whitespace) appears, keeping its trailing whitespace where the template kept it.
  static std::string continued(const std::string& text, const std::string& content) {
    const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
    std::size_t lo = 0, hi = content.size();
    while (lo < hi && is_space(content[lo])) ++lo;
    while (hi > lo && is_space(content[hi - 1])) --hi;
    const std::string_view stripped(content.data() + lo, hi - lo), lstripped(content.data() + lo, content.size() - lo);
    const std::size_t at = text.rfind(stripped);
    if (at == std::string::npos)
      fail<config_error>("chat template: the prompt's final assistant message does not appear in its render, so it "
                         "cannot be continued (the template changes that message's content)");
    if (std::string_view(text).substr(at, lstripped.size()) == content) return text.substr(0, at + lstripped.size());
    return text.substr(0, at + stripped.size());
  }
};

}  // namespace rlhf::io
