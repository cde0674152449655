#pragma once
// A model's own chat template, as transformers' tokenizer.apply_chat_template(messages, tokenize=False, ...)
// renders it. docs/io/chat_templates.md.
//
//   auto chat = rlhf::io::JinjaChatTemplate::load("models/");   // a folder holding tokenizer_config.json, or the file
//   std::string text = chat.render(messages, {.add_generation_prompt = true});
//   auto [text, spans] = chat.render_with_assistant_spans(messages);  // where each assistant turn is in `text`
//
// The template sees what transformers gives it: `messages`, `tools` (None unless given), `documents` (None),
// `add_generation_prompt`, the special tokens tokenizer_config.json sets (bos_token, eos_token, unk_token,
// pad_token, sep_token, cls_token, mask_token, additional_special_tokens; each a string or an AddedToken object
// {"content": ...}; a token that is null is left undefined, as in transformers), and any further variables
// (enable_thinking, ...).
#include <algorithm>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/core/error.hpp"
#include "rlhf/io/chat_template/template.hpp"
#include "rlhf/io/json_file.hpp"

namespace rlhf::io {

struct ChatTemplateOptions {
  bool add_generation_prompt = false;
  nlohmann::ordered_json tools = nullptr;                          // a list of JSON-schema tools, or null
  nlohmann::ordered_json variables = nlohmann::ordered_json::object();  // further template variables
};

struct RenderedChat {
  std::string text;
  // One [begin, end) byte range of `text` per assistant message, in order: what the model generates for that
  // turn (its content and the template's end-of-turn text), not the header before it.
  std::vector<jinja::Span> assistant_spans;
};

class JinjaChatTemplate {
 public:
  // `special_tokens`: name -> token text, passed to the template as variables.
  JinjaChatTemplate(std::string source, std::vector<std::pair<std::string, nlohmann::ordered_json>> special_tokens = {})
      : source_(std::move(source)), template_(source_), special_tokens_(std::move(special_tokens)) {}

  // From a parsed tokenizer_config.json. `tools_wanted` picks the "tool_use" template of a file that has named
  // templates. Throws config_error when the file has no chat_template (transformers refuses the same way).
  static JinjaChatTemplate from_tokenizer_config(const nlohmann::ordered_json& config, std::string_view where,
                                                 bool tools_wanted = false) {
    if (!config.is_object()) fail<config_error>(where, ": tokenizer_config.json is not a JSON object");
    const auto it = config.find("chat_template");
    if (it == config.end() || it->is_null())
      fail<config_error>(where, ": tokenizer_config.json has no chat_template; this model ships no chat template "
                                "(transformers refuses apply_chat_template for it too)");
    std::string source;
    if (it->is_string()) {
      source = it->get<std::string>();
    } else if (it->is_array()) {  // [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
      const auto named = [&](std::string_view name) -> const nlohmann::ordered_json* {
        for (const auto& t : *it)
          if (t.is_object() && t.value("name", "") == name && t.contains("template") && t["template"].is_string())
            return &t["template"];
        return nullptr;
      };
      const auto* chosen = tools_wanted && named("tool_use") ? named("tool_use") : named("default");
      if (!chosen) fail<config_error>(where, ": chat_template is a list with no \"default\" template");
      source = chosen->get<std::string>();
    } else {
      fail<config_error>(where, ": chat_template must be a string or a list of named templates");
    }
    std::vector<std::pair<std::string, nlohmann::ordered_json>> tokens;
    for (const char* name : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
      const auto t = config.find(name);
      if (t == config.end() || t->is_null()) continue;
      tokens.emplace_back(name, token_text(*t, where, name));
    }
    if (const auto extra = config.find("additional_special_tokens"); extra != config.end() && extra->is_array()) {
      nlohmann::ordered_json list = nlohmann::ordered_json::array();
      for (const auto& t : *extra) list.push_back(token_text(t, where, "additional_special_tokens"));
      tokens.emplace_back("additional_special_tokens", std::move(list));
    }
    try {
      return JinjaChatTemplate(std::move(source), std::move(tokens));
    } catch (const jinja::syntax_error& e) {
      fail<config_error>(where, ": ", e.what());
    }
  }

  // A folder holding tokenizer_config.json, or the file itself.
  static JinjaChatTemplate load(const std::filesystem::path& path, bool tools_wanted = false) {
    const auto file = std::filesystem::is_directory(path) ? path / "tokenizer_config.json" : path;
    const auto config = read_json_file<nlohmann::ordered_json>(file);
    return from_tokenizer_config(config, file.string(), tools_wanted);
  }

  std::string render(const nlohmann::ordered_json& messages, const ChatTemplateOptions& options = {}) const {
    return render_all(messages, options).text;
  }

  // The text and each assistant message's span. With {% generation %} tags in the template, the spans are what
  // they enclose. Without, assistant message i starts where render(messages[:i], add_generation_prompt=true)
  // ends, which must be a prefix of the whole render (and differ from the render without the prompt). It ends
  //   - where render(messages[:i+1]) ends, when that is a prefix of the whole render too; else
  //   - after its content and the end-of-turn text (end_of_turn_text()): the content's end is found by rendering
  //     the conversation again with a marker appended to message i's content, which must appear once, in that
  //     turn, and change nothing else. This locates the turns of templates that render an earlier turn
  //     differently once later turns follow (Qwen3 drops the <think> block of turns before the last user message).
  // Where neither holds (Llama 3's template ends with the assistant header whatever add_generation_prompt says),
  // this throws config_error rather than guess: give such a model a template with generation tags.
  RenderedChat render_with_assistant_spans(const nlohmann::ordered_json& messages,
                                           const ChatTemplateOptions& options = {}) const {
    require_messages(messages);
    jinja::Rendered whole = render_all(messages, options);
    RenderedChat out{std::move(whole.text), {}};
    if (template_.has_generation_tags()) {
      out.assistant_spans = std::move(whole.generation_spans);
      return out;
    }
    std::string turn_end;  // end_of_turn_text(), computed once if needed
    for (std::size_t i = 0; i < messages.size(); ++i) {
      if (!messages[i].is_object() || messages[i].value("role", "") != "assistant") continue;
      const auto refuse = [&](std::string_view why) {
        fail<config_error>("chat template: the assistant message ", i, " cannot be located: ", why,
                           "; use a template with {% generation %} tags");
      };
      ChatTemplateOptions upto = options;
      upto.add_generation_prompt = true;
      const std::string before = render_all(head(messages, i), upto).text;
      upto.add_generation_prompt = false;
      if (render_all(head(messages, i), upto).text == before)
        refuse("the template renders the same text with and without add_generation_prompt (Llama 3's always ends "
               "with the assistant header)");
      if (!out.text.starts_with(before)) refuse("the conversation before it is not a prefix of the whole render");
      const std::string through = render_all(head(messages, i + 1), upto).text;
      if (out.text.starts_with(through) && through.size() >= before.size()) {
        out.assistant_spans.push_back({before.size(), through.size()});
        continue;
      }
      const std::size_t content_end = marked_content_end(messages, i, options, out.text, before.size(), refuse);
      if (turn_end.empty()) turn_end = end_of_turn_text();
      if (out.text.compare(content_end, turn_end.size(), turn_end) != 0)
        refuse("its content is not followed by the template's end-of-turn text");
      out.assistant_spans.push_back({before.size(), content_end + turn_end.size()});
    }
    return out;
  }

  // What the template writes after an assistant message's content when the conversation ends there, e.g.
  // "<|im_end|>\n" (Qwen3), "<|eot_id|>" (Llama 3.1), "<end_of_turn>\n" (Gemma 3), " </s>" (Llama 2's format).
  // Its first special token is the end-of-turn token to stop sampling at; Llama 3's template goes on with the
  // next assistant header, so take the first token, not the whole text. Throws config_error if the template
  // does not write the content as given.
  std::string end_of_turn_text() const {
    static constexpr std::string_view probe = "RLHFENDOFTURNPROBE";
    const auto messages = nlohmann::ordered_json::array(
        {{{"role", "user"}, {"content", "Hi"}}, {{"role", "assistant"}, {"content", probe}}});
    const std::string text = render(messages);
    const std::size_t at = text.rfind(probe);
    if (at == std::string::npos)
      fail<config_error>("chat template: an assistant message's content does not appear in the render, so its "
                         "end-of-turn text is not known");
    return text.substr(at + probe.size());
  }

  const std::string& source() const { return source_; }
  // A special token's text ("" when tokenizer_config.json does not set it).
  std::string special_token(std::string_view name) const {
    for (const auto& [k, v] : special_tokens_)
      if (k == name && v.is_string()) return v.get<std::string>();
    return {};
  }

 private:
  std::string source_;
  jinja::Template template_;
  std::vector<std::pair<std::string, nlohmann::ordered_json>> special_tokens_;

  static nlohmann::ordered_json token_text(const nlohmann::ordered_json& t, std::string_view where, std::string_view name) {
    if (t.is_string()) return t;
    if (t.is_object() && t.contains("content") && t["content"].is_string()) return t["content"];
    fail<config_error>(where, ": ", name, " must be a string or an object with a string \"content\"");
  }
  static void require_messages(const nlohmann::ordered_json& messages) {
    if (!messages.is_array()) fail<config_error>("chat template: messages must be a JSON array of message objects");
  }
  // Where assistant message i's content ends in `text` (the whole render): render again with a marker appended
  // to that content; the marker must appear once, at or after `from`, and the text without it must be `text`.
  template <class Refuse>
  std::size_t marked_content_end(const nlohmann::ordered_json& messages, std::size_t i, const ChatTemplateOptions& options,
                                 const std::string& text, std::size_t from, const Refuse& refuse) const {
    static constexpr std::string_view marker = "RLHFASSISTANTCONTENTEND";
    if (!messages[i].contains("content") || !messages[i]["content"].is_string()) refuse("its content is not a string");
    nlohmann::ordered_json marked = messages;
    marked[i]["content"] = marked[i]["content"].get<std::string>() + std::string(marker);
    std::string with = render_all(marked, options).text;
    const std::size_t at = with.find(marker);
    if (at == std::string::npos || at < from || with.find(marker, at + 1) != std::string::npos ||
        text.find(marker) != std::string::npos)
      refuse("its content does not appear exactly once in its turn");
    with.erase(at, marker.size());
    if (with != text) refuse("appending to its content changes more than the content");
    return at;
  }

  static nlohmann::ordered_json head(const nlohmann::ordered_json& messages, std::size_t n) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < n; ++i) out.push_back(messages[i]);
    return out;
  }

  jinja::Rendered render_all(const nlohmann::ordered_json& messages, const ChatTemplateOptions& options) const {
    require_messages(messages);
    std::vector<std::pair<std::string, jinja::Value>> vars;
    vars.reserve(4 + special_tokens_.size() + options.variables.size());
    vars.emplace_back("messages", jinja::from_json(messages));
    vars.emplace_back("tools", jinja::from_json(options.tools));
    vars.emplace_back("documents", nullptr);
    vars.emplace_back("add_generation_prompt", options.add_generation_prompt);
    for (const auto& [name, token] : special_tokens_) vars.emplace_back(name, jinja::from_json(token));
    if (!options.variables.is_object()) fail<config_error>("chat template: the extra variables must be a JSON object");
    for (auto it = options.variables.begin(); it != options.variables.end(); ++it)
      vars.emplace_back(it.key(), jinja::from_json(it.value()));
    return template_.render(vars);
  }
};

}  // namespace rlhf::io
