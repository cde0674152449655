#pragma once
// How a conversation (a list of {"role", "content"} messages) becomes text: a chat template.
// docs/io/datasets.md#chat-template.
//
// A template is one string that renders one message, with {role} and {content} in it; a conversation is its
// messages rendered one after another. The default, "<|{role}|>\n{content}\n", gives
//
//   <|user|>\nWhat is 2+2?\n<|assistant|>\n4\n
//
// The generation prompt — what ends a prompt so that the model answers as the assistant — is the part of the
// template before {content}, rendered for the assistant's role: "<|assistant|>\n". So a prompt rendered with it,
// followed by its completion rendered without that part, is exactly the whole conversation rendered.
// ChatML is "<|im_start|>{role}\n{content}<|im_end|>\n". Other braces are ordinary text; {role} may appear any
// number of times (or not at all), {content} exactly once.
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rlhf/core/error.hpp"  // config_error

namespace rlhf::io {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant", ...
  std::string content;
};

struct ChatTemplate {
  std::string message = "<|{role}|>\n{content}\n";  // one message; {role} and {content} are replaced
  std::string assistant_role = "assistant";          // the role whose turn the generation prompt starts
  std::vector<std::string> roles = {"system", "user", "assistant", "tool"};  // the roles a message may have

  bool knows_role(std::string_view role) const {
    if (role == assistant_role) return true;
    for (const auto& r : roles)
      if (role == r) return true;
    return false;
  }
  std::string role_list() const {
    std::string s;
    for (const auto& r : roles) s += (s.empty() ? "" : ", ") + r;
    return s;
  }

  // Throws config_error unless `message` holds {content} exactly once.
  void validate() const {
    const auto first = message.find(content_marker);
    if (first == std::string::npos)
      fail<config_error>("ChatTemplate: the message template \"", message, "\" has no {content}");
    if (message.find(content_marker, first + 1) != std::string::npos)
      fail<config_error>("ChatTemplate: the message template \"", message, "\" has {content} more than once");
    if (assistant_role.empty()) fail<config_error>("ChatTemplate: assistant_role is empty");
  }

  // What comes before and after a message's content.
  std::string prefix(std::string_view role) const { return with_role(before(), role); }
  std::string suffix(std::string_view role) const { return with_role(after(), role); }

  std::string render(const ChatMessage& m) const { return prefix(m.role) + m.content + suffix(m.role); }
  std::string render(std::span<const ChatMessage> messages) const {
    std::string out;
    for (const auto& m : messages) out += render(m);
    return out;
  }
  std::string generation_prompt() const { return prefix(assistant_role); }

  // A prompt for the model to continue: its messages, then the generation prompt.
  std::string render_prompt(std::span<const ChatMessage> messages) const {
    return render(messages) + generation_prompt();
  }
  // A completion that follows render_prompt(): the first message (the assistant's) without the generation
  // prompt, then the rest rendered in full. The caller checks that the first message is the assistant's.
  std::string render_completion(std::span<const ChatMessage> messages) const {
    if (messages.empty()) return {};
    return messages[0].content + suffix(messages[0].role) + render(messages.subspan(1));
  }

 private:
  static constexpr std::string_view content_marker = "{content}";
  static constexpr std::string_view role_marker = "{role}";

  std::string_view before() const {
    const auto at = message.find(content_marker);
    return at == std::string::npos ? std::string_view(message) : std::string_view(message).substr(0, at);
  }
  std::string_view after() const {
    const auto at = message.find(content_marker);
    return at == std::string::npos ? std::string_view() : std::string_view(message).substr(at + content_marker.size());
  }
  static std::string with_role(std::string_view part, std::string_view role) {
    std::string out;
    for (std::size_t i = 0; i < part.size();) {
      if (part.substr(i, role_marker.size()) == role_marker) {
        out += role;
        i += role_marker.size();
      } else {
        out += part[i++];
      }
    }
    return out;
  }
};

}  // namespace rlhf::io
