#pragma once
// TRL's dataset formats in JSON Lines, read into plain text rows: the type is found from the keys of the first
// record, conversations are rendered with a chat template. docs/io/datasets.md.
//
//   type                 standard keys                     conversational (lists of {"role","content"})
//   language_modeling    {"text"}                          {"messages"}
//   prompt_only          {"prompt"}                        {"prompt"}
//   prompt_completion    {"prompt","completion"}           {"prompt","completion"}
//   preference           {"prompt","chosen","rejected"}    the same keys
//   implicit_preference  {"chosen","rejected"}             the same keys
//   ranked               {"prompt","completions"[,"scores"]}  (this library's, for Plackett–Luce)
//   unpaired_preference  {"prompt","completion","label"}   the same keys (label: true = desirable; KTO)
//
// Every record of a file has the type of the first; other keys are ignored. Every problem is an rlhf::io_error
// naming the file, the line and the problem: a line that is not JSON or not an object, a missing key, a field of
// the wrong JSON type, a record of another type than the first, an empty file. Tokenizing and truncating the
// rows is io/tokenized_dataset.hpp's job.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rlhf/core/error.hpp"        // io_error
#include "rlhf/io/chat_template.hpp"  // ChatTemplate, ChatMessage
#include "rlhf/io/conversation_renderer.hpp"  // ConversationRenderer, OneMessageRenderer, TextSpan
#include "rlhf/io/jsonl.hpp"          // for_each_jsonl, JsonlLimits
#include "rlhf/io/untrusted.hpp"      // detail::clip

namespace rlhf::io {

enum class DatasetType {
  language_modeling,
  prompt_only,
  prompt_completion,
  preference,
  implicit_preference,
  ranked,
  unpaired_preference
};

inline std::string_view to_string(DatasetType t) {
  switch (t) {
    case DatasetType::language_modeling: return "language modeling";
    case DatasetType::prompt_only: return "prompt-only";
    case DatasetType::prompt_completion: return "prompt-completion";
    case DatasetType::preference: return "preference";
    case DatasetType::implicit_preference: return "implicit-prompt preference";
    case DatasetType::ranked: return "ranked";
    case DatasetType::unpaired_preference: return "unpaired preference";
  }
  return "?";
}

struct DatasetFormat {
  DatasetType type = DatasetType::preference;
  bool conversational = false;  // fields are lists of messages, not strings
  friend bool operator==(const DatasetFormat&, const DatasetFormat&) = default;
};

inline std::string to_string(const DatasetFormat& f) {
  return std::string(f.conversational ? "conversational " : "standard ") + std::string(to_string(f.type));
}

// One record as text. The prompt and completions are rendered (conversations through the chat template), so
// that prompt + completions[i] is the whole text of sequence i.
//   language_modeling:   prompt "",        completions {text}
//   prompt_only:         prompt,           completions {}
//   prompt_completion:   prompt,           completions {completion}
//   preference:          prompt,           completions {chosen, rejected}
//   implicit_preference: prompt "" (standard: found when tokenized as the longest common token prefix;
//                        conversational: the common leading messages), completions {chosen, rejected}
//   ranked:              prompt,           completions best first (sorted by "scores" when given)
//   unpaired_preference: prompt,           completions {completion}, label
struct TextRow {
  std::size_t line = 0;  // 1-based line of the file
  std::string prompt;
  std::vector<std::string> completions;
  std::vector<double> scores;   // ranked with "scores": one per completion, best first (descending); else empty
  std::optional<double> margin;  // preference types: the record's "margin" (TRL's reward-model margin), if any
  std::optional<bool> label;     // unpaired_preference: true when the completion is desirable
  // With assistant_only_loss (conversational language_modeling and prompt_completion): the byte ranges of
  // completions[0] that the assistant's turns cover, the only text to score; nullopt: score all of it.
  std::optional<std::vector<TextSpan>> scored_spans;
};

struct TextDataset {
  std::string source;  // the file's name, for messages
  DatasetFormat format;
  // Standard implicit-prompt preferences: the prompt is still inside both completions; the tokenizer finds it.
  bool implicit_prompt = false;
  std::vector<TextRow> rows;  // in file order
};

struct DatasetReadOptions {
  ChatTemplate chat_template{};  // for conversational records, unless `renderer` is given
  JsonlLimits limits{};
  std::shared_ptr<const ConversationRenderer> renderer{};  // e.g. the model's own Jinja template; null: chat_template
  // TRL's assistant_only_loss: of a conversation's text, only the assistant's turns are scored (TextRow's
  // scored_spans). Conversational language-modeling and prompt-completion records only.
  bool assistant_only_loss = false;
};

namespace detail {

inline bool has_key(const nlohmann::json& o, std::string_view key) { return o.find(key) != o.end(); }

inline std::string key_list(const nlohmann::json& o) {
  std::string out;
  std::size_t n = 0;
  for (auto it = o.begin(); it != o.end(); ++it, ++n) {
    if (n == 8) return out + ", ... (" + std::to_string(o.size()) + " keys)";
    out += (n ? ", " : "") + clip(it.key(), 40);
  }
  return out.empty() ? "none" : out;
}

inline std::vector<std::string_view> required_keys(DatasetFormat f) {
  switch (f.type) {
    case DatasetType::language_modeling: return {f.conversational ? "messages" : "text"};
    case DatasetType::prompt_only: return {"prompt"};
    case DatasetType::prompt_completion: return {"prompt", "completion"};
    case DatasetType::preference: return {"prompt", "chosen", "rejected"};
    case DatasetType::implicit_preference: return {"chosen", "rejected"};
    case DatasetType::ranked: return {"prompt", "completions"};
    case DatasetType::unpaired_preference: return {"prompt", "completion", "label"};
  }
  return {};
}

// The format of one record, from its keys (and, for standard or conversational, the JSON type of its first
// field); `bad(parts...)` throws.
template <class Bad>
DatasetFormat detect_format(const nlohmann::json& r, const Bad& bad) {
  if (!r.is_object()) bad("a JSON ", r.type_name(), ", not an object");
  const bool prompt = has_key(r, "prompt"), chosen = has_key(r, "chosen"), rejected = has_key(r, "rejected");
  DatasetType type;
  std::string_view first;  // the field whose JSON type says standard or conversational
  if (has_key(r, "completions")) {
    if (!prompt) bad("has \"completions\" but no \"prompt\" (a ranked record is {\"prompt\", \"completions\"})");
    type = DatasetType::ranked, first = "prompt";
  } else if (chosen || rejected) {
    if (!chosen) bad("has \"rejected\" but no \"chosen\"");
    if (!rejected) bad("has \"chosen\" but no \"rejected\"");
    type = prompt ? DatasetType::preference : DatasetType::implicit_preference, first = "chosen";
  } else if (has_key(r, "completion")) {
    if (!prompt) bad("has \"completion\" but no \"prompt\"");
    type = has_key(r, "label") ? DatasetType::unpaired_preference : DatasetType::prompt_completion, first = "prompt";
  } else if (has_key(r, "messages")) {
    return {DatasetType::language_modeling, true};
  } else if (has_key(r, "text")) {
    return {DatasetType::language_modeling, false};
  } else if (prompt) {
    type = DatasetType::prompt_only, first = "prompt";
  } else {
    bad("has none of the keys of a dataset format (prompt, chosen, rejected, completion, completions, text, "
        "messages); its keys: ", key_list(r));
  }
  return {type, r.at(std::string(first)).is_array()};
}

// Parses the records of one file, each against the format of the first.
struct TextRowParser {
  std::string_view name;
  const DatasetReadOptions& options;
  std::shared_ptr<const ConversationRenderer> renderer =
      options.renderer ? options.renderer : std::make_shared<OneMessageRenderer>(options.chat_template);
  std::optional<DatasetFormat> format;
  std::size_t format_line = 0;
  std::optional<bool> has_margin;  // whether the first preference record had a margin
  std::size_t line = 0;

  template <class... Parts>
  [[noreturn]] void bad(const Parts&... parts) const {
    fail<io_error>("dataset '", name, "' line ", line, ": ", parts...);
  }

  const nlohmann::json& field(const nlohmann::json& r, std::string_view key) const {
    const auto it = r.find(key);
    if (it == r.end())
      bad("no \"", key, "\" (a ", to_string(*format), " dataset, as line ", format_line, " began it, needs it)");
    return *it;
  }

  std::string text(const nlohmann::json& j, std::string_view what) const {
    if (!j.is_string()) bad(what, " is a JSON ", j.type_name(), ", not a string");
    return j.get<std::string>();
  }

  // A field's list of messages, checked: each an object with string "role" and "content", the role known.
  const nlohmann::json& messages(const nlohmann::json& j, std::string_view what) const {
    if (!j.is_array())
      bad(what, " is a JSON ", j.type_name(), ", not a list of {\"role\", \"content\"} messages (this dataset is "
          "conversational, as line ", format_line, " began it)");
    for (std::size_t i = 0; i < j.size(); ++i) {
      const auto& m = j[i];
      const std::string where = std::string(what) + "[" + std::to_string(i) + "]";
      if (!m.is_object()) bad(where, " is a JSON ", m.type_name(), ", not a {\"role\", \"content\"} message");
      const auto role = m.find("role"), content = m.find("content");
      if (role == m.end()) bad(where, " has no \"role\"");
      if (content == m.end()) bad(where, " has no \"content\"");
      const std::string r = text(*role, where + ".role");
      text(*content, where + ".content");
      if (!renderer->knows_role(r))
        bad(where, ".role \"", clip(r, 40), "\" is not one of the chat template's roles (", renderer->role_list(), ")");
    }
    if (j.empty()) bad(what, " is an empty list of messages");
    return j;
  }

  void check_completion(const nlohmann::json& c, std::string_view what) const {
    const std::string assistant = renderer->assistant_role();
    if (!c.empty() && c[0]["role"] != assistant)
      bad(what, " starts with a \"", clip(c[0]["role"].get<std::string>(), 40),
          "\" message; a completion starts with the \"", assistant, "\" turn");
  }

  // The renderer's result, its errors named with this record's line.
  template <class Render>
  auto rendered(std::string_view what, const Render& render) const {
    try {
      return render();
    } catch (const rlhf::error& e) {
      bad(what, ": ", e.what());
    }
  }

  std::string prompt_text(const nlohmann::json& prompt) const {
    return rendered("\"prompt\"", [&] { return renderer->prompt(prompt); });
  }

  // A completion field: a string, or messages rendered to follow the prompt's messages.
  std::string completion(const nlohmann::json& r, const nlohmann::json& j, std::string_view what) const {
    if (!format->conversational) return text(j, what);
    const auto& c = messages(j, what);
    check_completion(c, what);
    return rendered(what, [&] { return render_completion(*renderer, field(r, "prompt"), c); });
  }

  std::string prompt(const nlohmann::json& j) const {
    if (!format->conversational) return text(j, "\"prompt\"");
    return prompt_text(messages(j, "\"prompt\""));
  }

  // assistant_only_loss: completions[0] with the assistant turns' spans of `whole` (prompt + completion), moved
  // to the completion's coordinates (the prompt's text is `prompt_size` bytes of `whole`'s front).
  void assistant_turns(const nlohmann::json& whole, std::size_t prompt_size, TextRow& row) const {
    auto r = rendered("the conversation", [&] { return renderer->with_assistant_spans(whole); });
    if (prompt_size > r.text.size() || r.text.substr(prompt_size) != row.completions[0])
      bad("the chat template renders the conversation differently when asked for its assistant turns");
    std::vector<TextSpan> spans;
    for (const auto& s : r.assistant_spans)
      if (s.end > prompt_size) spans.push_back({std::max(s.begin, prompt_size) - prompt_size, s.end - prompt_size});
    row.scored_spans = std::move(spans);
  }

  void language_modeling(const nlohmann::json& r, TextRow& row) const {
    if (!format->conversational) {
      row.completions.push_back(text(field(r, "text"), "\"text\""));
      return;
    }
    const auto& m = messages(field(r, "messages"), "\"messages\"");
    row.completions.push_back(rendered("\"messages\"", [&] { return renderer->conversation(m); }));
    if (options.assistant_only_loss) assistant_turns(m, 0, row);
  }

  void prompt_completion(const nlohmann::json& r, TextRow& row) const {
    row.prompt = prompt(field(r, "prompt"));
    row.completions.push_back(completion(r, field(r, "completion"), "\"completion\""));
    if (!options.assistant_only_loss || !format->conversational) return;
    nlohmann::json whole = field(r, "prompt");
    for (const auto& m : field(r, "completion")) whole.push_back(m);
    assistant_turns(whole, row.prompt.size(), row);
  }

  TextRow parse(std::size_t line_no, const nlohmann::json& r) {
    line = line_no;
    const auto detected = detect_format(r, [&](const auto&... parts) { bad(parts...); });
    if (!format) {
      format = detected, format_line = line;
    } else if (detected != *format) {
      for (const auto key : required_keys(*format)) field(r, key);  // a missing key is named as such
      bad("a ", to_string(detected), " record (keys: ", key_list(r), "), but line ", format_line, " began a ",
          to_string(*format), " dataset");
    }
    TextRow row;
    row.line = line;
    switch (format->type) {
      case DatasetType::language_modeling: language_modeling(r, row); break;
      case DatasetType::prompt_only: row.prompt = prompt(field(r, "prompt")); break;
      case DatasetType::prompt_completion: prompt_completion(r, row); break;
      case DatasetType::preference:
        row.prompt = prompt(field(r, "prompt"));
        row.completions.push_back(completion(r, field(r, "chosen"), "\"chosen\""));
        row.completions.push_back(completion(r, field(r, "rejected"), "\"rejected\""));
        break;
      case DatasetType::implicit_preference:
        if (format->conversational) {
          implicit_conversation(r, row);
        } else {
          row.completions.push_back(text(field(r, "chosen"), "\"chosen\""));
          row.completions.push_back(text(field(r, "rejected"), "\"rejected\""));
        }
        break;
      case DatasetType::ranked: ranked(r, row); break;
      case DatasetType::unpaired_preference: {
        row.prompt = prompt(field(r, "prompt"));
        row.completions.push_back(completion(r, field(r, "completion"), "\"completion\""));
        const auto& label = field(r, "label");
        if (!label.is_boolean()) bad("\"label\" is ", json_brief(label), ", not true or false");
        row.label = label.get<bool>();
        break;
      }
    }
    if (format->type == DatasetType::preference || format->type == DatasetType::implicit_preference) margin(r, row);
    return row;
  }

  // TRL's extract_prompt on messages: the prompt is the messages both conversations begin with.
  void implicit_conversation(const nlohmann::json& r, TextRow& row) const {
    const auto& chosen = messages(field(r, "chosen"), "\"chosen\"");
    const auto& rejected = messages(field(r, "rejected"), "\"rejected\"");
    std::size_t n = 0;
    while (n < chosen.size() && n < rejected.size() && chosen[n]["role"] == rejected[n]["role"] &&
           chosen[n]["content"] == rejected[n]["content"])
      ++n;
    const auto slice = [](const nlohmann::json& list, std::size_t from, std::size_t to) {
      nlohmann::json out = nlohmann::json::array();
      for (std::size_t i = from; i < to; ++i) out.push_back(list[i]);
      return out;
    };
    const nlohmann::json common = slice(chosen, 0, n), c = slice(chosen, n, chosen.size()),
                         x = slice(rejected, n, rejected.size());
    check_completion(c, "\"chosen\" after the messages it shares with \"rejected\"");
    check_completion(x, "\"rejected\" after the messages it shares with \"chosen\"");
    row.prompt = prompt_text(common);
    row.completions = {rendered("\"chosen\"", [&] { return render_completion(*renderer, common, c); }),
                       rendered("\"rejected\"", [&] { return render_completion(*renderer, common, x); })};
  }

  void ranked(const nlohmann::json& r, TextRow& row) const {
    row.prompt = prompt(field(r, "prompt"));
    const auto& list = field(r, "completions");
    if (!list.is_array()) bad("\"completions\" is a JSON ", list.type_name(), ", not a list");
    if (list.size() < 2) bad("\"completions\" has ", list.size(), " element(s); a ranked list needs at least 2");
    for (std::size_t i = 0; i < list.size(); ++i)
      row.completions.push_back(completion(r, list[i], "\"completions\"[" + std::to_string(i) + "]"));
    const auto s = r.find("scores");
    if (s == r.end()) return;
    if (!s->is_array()) bad("\"scores\" is a JSON ", s->type_name(), ", not a list of numbers");
    if (s->size() != list.size())
      bad("\"scores\" has ", s->size(), " elements but \"completions\" has ", list.size());
    std::vector<double> scores;
    for (std::size_t i = 0; i < s->size(); ++i) {
      if (!(*s)[i].is_number()) bad("\"scores\"[", i, "] is ", json_brief((*s)[i]), ", not a number");
      scores.push_back((*s)[i].get<double>());
    }
    std::vector<std::size_t> order(scores.size());
    std::iota(order.begin(), order.end(), std::size_t(0));
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
    std::vector<std::string> sorted;
    for (const auto i : order) sorted.push_back(std::move(row.completions[i])), row.scores.push_back(scores[i]);
    row.completions = std::move(sorted);
  }

  void margin(const nlohmann::json& r, TextRow& row) {
    const auto m = r.find("margin");
    const bool has = m != r.end();
    if (!has_margin) has_margin = has;
    if (has != *has_margin)
      bad(has ? "has a \"margin\" but line " : "has no \"margin\" but line ", format_line,
          has ? " had none" : " had one", "; give every record a margin or none");
    if (!has) return;
    if (!m->is_number()) bad("\"margin\" is ", json_brief(*m), ", not a number");
    if (!std::isfinite(float(m->get<double>())))
      bad("\"margin\" ", json_brief(*m), " is beyond float32's range (the type the reward model's loss uses)");
    row.margin = m->get<double>();
  }
};

inline void finish(TextDataset& ds, const TextRowParser& p, const DatasetReadOptions& options) {
  if (ds.rows.empty()) fail<io_error>("dataset '", ds.source, "' has no records (it is empty or holds only blank lines)");
  ds.format = *p.format;
  ds.implicit_prompt = ds.format == DatasetFormat{DatasetType::implicit_preference, false};
  const bool spans = ds.format.conversational && (ds.format.type == DatasetType::language_modeling ||
                                                  ds.format.type == DatasetType::prompt_completion);
  if (options.assistant_only_loss && !spans)
    fail<io_error>("dataset '", ds.source, "' is ", to_string(ds.format), "; assistant_only_loss needs conversational "
                   "records with the assistant's turns in them (\"messages\", or \"prompt\" and \"completion\")");
}

}  // namespace detail

// The format a record (a JSON object) has by its keys; io_error if it has none of them, or an incomplete set
// ("chosen" without "rejected").
inline DatasetFormat detect_format(const nlohmann::json& record) {
  return detail::detect_format(record, [](const auto&... parts) { fail<io_error>("dataset record: ", parts...); });
}

// The records of JSON Lines text `contents`; `name` names it in messages.
inline TextDataset parse_text_dataset(std::string_view contents, std::string_view name,
                                      const DatasetReadOptions& options = {}) {
  options.chat_template.validate();
  TextDataset ds;
  ds.source = std::string(name);
  detail::TextRowParser p{name, options};
  for_each_jsonl(contents, name, options.limits, [&](JsonlRecord&& r) { ds.rows.push_back(p.parse(r.line, r.value)); });
  detail::finish(ds, p, options);
  return ds;
}

// The records of the JSON Lines file at `path`.
inline TextDataset read_text_dataset(const std::filesystem::path& path, const DatasetReadOptions& options = {}) {
  options.chat_template.validate();
  const std::string name = path.string();
  TextDataset ds;
  ds.source = name;
  detail::TextRowParser p{name, options};
  for_each_jsonl(path, options.limits, [&](JsonlRecord&& r) { ds.rows.push_back(p.parse(r.line, r.value)); });
  detail::finish(ds, p, options);
  return ds;
}

}  // namespace rlhf::io
