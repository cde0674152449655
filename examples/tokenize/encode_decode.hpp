#pragma once
// rlhf-tokenize's encode and decode subcommands:
//   encode --tokenizer DIR [--add-special-tokens]   {"text": "..."}  ->  {"ids": [...]}
//   decode --tokenizer DIR                          {"ids": [...]}   ->  {"text": "..."}
// --tokenizer is checked after parsing, so that an unknown flag is what a command line holding both is refused
// for. Without --add-special-tokens no special token is added (add_special_tokens=False); a special token's text in
// the input is that token, as Hugging Face's encode does.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/cli.hpp"  // examples::refuse
#include "tokenize/jsonl_filter.hpp"
#include "tokenize/tokenizer_files.hpp"

namespace tokenize {

using Run = std::function<int()>;

inline Run add_encode(CLI::App& app) {
  struct Settings {
    std::string dir;
    bool add_special_tokens = false;
  };
  auto s = std::make_shared<Settings>();
  auto* sub = app.add_subcommand("encode", "JSON Lines {\"text\": ...} on stdin to {\"ids\": [...]} on stdout");
  sub->add_option("--tokenizer", s->dir, "folder holding tokenizer.json (or vocab.json + merges.txt) (required)");
  sub->add_flag("--add-special-tokens", s->add_special_tokens, "add the post-processor's special tokens (BOS, ...)");
  return [s, &app] {
    if (s->dir.empty()) return examples::refuse(app, "encode --tokenizer", "is required");
    const FolderTokenizer tok(s->dir);
    return filter_jsonl(std::cin, std::cout, app.get_name().c_str(), [&](const nlohmann::json& row) {
      const auto it = row.find("text");
      if (it == row.end() || !it->is_string()) rlhf::fail<rlhf::value_error>("\"text\" is missing or not a string");
      return nlohmann::json{{"ids", tok.encode(it->get_ref<const std::string&>(), s->add_special_tokens)}};
    });
  };
}

inline Run add_decode(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("decode", "JSON Lines {\"ids\": [...]} on stdin to {\"text\": ...} on stdout");
  sub->add_option("--tokenizer", *dir, "folder holding tokenizer.json (or vocab.json + merges.txt) (required)");
  return [dir, &app] {
    if (dir->empty()) return examples::refuse(app, "decode --tokenizer", "is required");
    const FolderTokenizer tok(*dir);
    return filter_jsonl(std::cin, std::cout, app.get_name().c_str(), [&](const nlohmann::json& row) {
      const auto it = row.find("ids");
      if (it == row.end() || !it->is_array()) rlhf::fail<rlhf::value_error>("\"ids\" is missing or not an array");
      std::vector<rlhf::token_id> ids;
      for (const auto& v : *it) {
        if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > INT32_MAX)
          rlhf::fail<rlhf::value_error>("\"ids\" holds ", rlhf::io::detail::json_brief(v), ", not a token id");
        ids.push_back(rlhf::token_id(v.get<std::int64_t>()));
      }
      return nlohmann::json{{"text", tok.decode(ids)}};
    });
  };
}

}  // namespace tokenize
