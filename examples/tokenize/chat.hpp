#pragma once
// rlhf-tokenize's chat subcommand: conversations through the model's own chat template (docs/io/chat_templates.md).
//   chat --tokenizer DIR [--assistant-spans]
//     {"messages": [...], "add_generation_prompt": false, "tools": [...], "chat_template_kwargs": {...}}
//       ->  {"text": "...", "ids": [...], "assistant_spans": [[begin, end], ...]}
// The template is DIR/tokenizer_config.json's chat_template, rendered as transformers' apply_chat_template
// renders it; "ids" encode that text with no special tokens added (the template writes them), as
// apply_chat_template(tokenize=True) does; they are left out when DIR holds no tokenizer (tokenizer_config.json
// alone). "tools" and "chat_template_kwargs" (further template variables, e.g. {"enable_thinking": false}) are
// optional; any other key is refused, so that a misspelt one is not silently ignored. With --assistant-spans,
// each assistant message's [begin, end) byte range in "text" is written too.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/cli.hpp"  // refuse
#include "rlhf/io/chat_template/apply_chat_template.hpp"
#include "rlhf/io/json_file.hpp"
#include "tokenize/encode_decode.hpp"  // Run
#include "tokenize/tokenizer_files.hpp"

namespace tokenize {

// One row: {"messages", "add_generation_prompt", "tools", "chat_template_kwargs"} to the output object.
inline nlohmann::ordered_json chat_row(const rlhf::io::JinjaChatTemplate& chat, const FolderTokenizer* tok,
                                       const nlohmann::ordered_json& row, bool spans) {
  rlhf::io::ChatTemplateOptions options;
  for (auto it = row.begin(); it != row.end(); ++it) {
    const std::string& key = it.key();
    if (key == "add_generation_prompt") {
      if (!it->is_boolean()) rlhf::fail<rlhf::value_error>("\"add_generation_prompt\" must be true or false");
      options.add_generation_prompt = it->get<bool>();
    } else if (key == "tools") {
      if (!it->is_array() && !it->is_null()) rlhf::fail<rlhf::value_error>("\"tools\" must be a list or null");
      options.tools = *it;
    } else if (key == "chat_template_kwargs") {
      if (!it->is_object()) rlhf::fail<rlhf::value_error>("\"chat_template_kwargs\" must be an object");
      options.variables = *it;
    } else if (key != "messages") {
      rlhf::fail<rlhf::value_error>("unknown key \"", key, "\" (messages, add_generation_prompt, tools, "
                                    "chat_template_kwargs)");
    }
  }
  const auto messages = row.find("messages");
  if (messages == row.end() || !messages->is_array()) rlhf::fail<rlhf::value_error>("\"messages\" is missing or not a list");
  nlohmann::ordered_json out;
  if (spans) {
    const auto rendered = chat.render_with_assistant_spans(*messages, options);
    out["text"] = rendered.text;
    nlohmann::ordered_json ranges = nlohmann::ordered_json::array();
    for (const auto& s : rendered.assistant_spans) ranges.push_back({s.begin, s.end});
    if (tok) out["ids"] = tok->encode(rendered.text, false);
    out["assistant_spans"] = std::move(ranges);
  } else {
    out["text"] = chat.render(*messages, options);
    if (tok) out["ids"] = tok->encode(out["text"].get_ref<const std::string&>(), false);
  }
  return out;
}

inline Run add_chat(CLI::App& app) {
  struct Settings {
    std::string dir;
    bool spans = false;
  };
  auto s = std::make_shared<Settings>();
  auto* sub = app.add_subcommand(
      "chat",
      "JSON Lines {\"messages\": [...], \"add_generation_prompt\": bool} on stdin to {\"text\": ..., \"ids\": [...]} "
      "on stdout, through DIR/tokenizer_config.json's chat template (as transformers' apply_chat_template). "
      "Optional keys: \"tools\", \"chat_template_kwargs\" (e.g. {\"enable_thinking\": false}). \"ids\" are left "
      "out when DIR holds no tokenizer.json (or vocab.json + merges.txt).");
  // Checked when it runs rather than with CLI11's required(): that check would come first and hide an unknown flag.
  sub->add_option("--tokenizer", s->dir, "folder holding tokenizer_config.json (and tokenizer.json); required");
  sub->add_flag("--assistant-spans", s->spans,
                "also write \"assistant_spans\": each assistant message's [begin, end) byte range in \"text\"");
  return [s, &app] {
    if (s->dir.empty()) return examples::refuse(app, "--tokenizer", "chat needs --tokenizer DIR");
    const std::filesystem::path dir = s->dir;
    const auto chat = rlhf::io::JinjaChatTemplate::load(dir);
    std::optional<FolderTokenizer> tok;
    std::error_code ec;
    if (std::filesystem::exists(dir / "tokenizer.json", ec) || std::filesystem::exists(dir / "vocab.json", ec))
      tok.emplace(dir);
    // Its own loop rather than filter_jsonl: rows are read with their keys in order (ordered_json), since a tool's
    // JSON schema is printed by the template's tojson in the order it was given.
    std::string line;
    std::size_t line_no = 0;
    try {
      while (std::getline(std::cin, line)) {
        const std::string where = "line " + std::to_string(++line_no);
        const auto row = rlhf::io::parse_json_text<nlohmann::ordered_json>(line, where);
        if (!row.is_object()) rlhf::fail<rlhf::io_error>(where, ": not a JSON object");
        try {
          std::cout << chat_row(chat, tok ? &*tok : nullptr, row, s->spans)
                           .dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace)
                    << '\n';
        } catch (const rlhf::error& e) {
          rlhf::fail<rlhf::value_error>(where, ": ", e.what());
        }
      }
      std::cout.flush();
    } catch (const rlhf::error& e) {
      std::fprintf(stderr, "%s: %s\n", app.get_name().c_str(), e.what());
      return 1;
    }
    return 0;
  };
}

}  // namespace tokenize
