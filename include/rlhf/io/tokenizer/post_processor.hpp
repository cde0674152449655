#pragma once
// The post-processor of a tokenizer.json, for one sequence: TemplateProcessing (its "single" template: the
// special tokens around the text's ids, added only when asked for, as add_special_tokens does), ByteLevel
// (offsets only: the ids are left as they are) and Sequence. Others (BertProcessing, RobertaProcessing, ...)
// are refused by name.
#include <string>
#include <string_view>
#include <vector>

#include "rlhf/core/batch.hpp"  // token_id
#include "rlhf/io/tokenizer/json_fields.hpp"

namespace rlhf::io::detail {

class PostProcessor {
 public:
  PostProcessor() = default;
  PostProcessor(const nlohmann::json& config, const JsonFields& f, std::string_view path) { read(config, f, path); }

  void apply(std::vector<token_id>& ids, bool add_special_tokens) const {
    if (!add_special_tokens) return;  // templates only add special tokens
    for (const auto& t : templates_) {
      std::vector<token_id> out;
      out.reserve(ids.size() + 4);
      for (const auto& item : t) {
        if (item.sequence) out.insert(out.end(), ids.begin(), ids.end());
        else out.insert(out.end(), item.ids.begin(), item.ids.end());
      }
      ids = std::move(out);
    }
  }

 private:
  struct Item {
    bool sequence;               // the text's ids ("Sequence": {"id": "A"})
    std::vector<token_id> ids;   // else a special token's ids
  };
  using Template = std::vector<Item>;

  void read(const nlohmann::json& c, const JsonFields& f, std::string_view path) {
    if (c.is_null()) return;
    using J = JsonFields;
    const std::string& type = f.type(c, path);
    if (type == "Sequence") {
      const auto& list = J::get(c, "processors");
      const std::string where = J::at(path, "processors");
      if (!list.is_array()) f.bad(where, " is ", json_brief(list), ", not an array");
      for (std::size_t k = 0; k < list.size(); ++k) read(list[k], f, J::at(where, k));
    } else if (type == "ByteLevel") {
      // trim_offsets and add_prefix_space change offsets only
    } else if (type == "TemplateProcessing") {
      templates_.push_back(read_template(c, f, path));
    } else {
      f.unsupported(path, type, "TemplateProcessing, ByteLevel, Sequence");
    }
  }

  static Template read_template(const nlohmann::json& c, const JsonFields& f, std::string_view path) {
    using J = JsonFields;
    const auto& single = J::get(c, "single");
    const std::string where = J::at(path, "single");
    if (!single.is_array()) f.bad(where, " is ", json_brief(single), ", not an array of pieces");
    const auto& specials = J::get(c, "special_tokens");
    Template t;
    for (std::size_t k = 0; k < single.size(); ++k) {
      const auto& item = single[k];
      const std::string at = J::at(where, k);
      const auto& seq = J::get(item, "Sequence");
      const auto& special = J::get(item, "SpecialToken");
      if (seq.is_object() && special.is_null()) {
        const std::string id = f.text(seq, "id", J::at(at, "Sequence"), "");
        if (id != "A") f.bad(J::at(at, "Sequence.id"), " is \"", clip(id), "\": a single sequence is \"A\"");
        t.push_back({true, {}});
      } else if (special.is_object() && seq.is_null()) {
        const std::string name = f.text(special, "id", J::at(at, "SpecialToken"), "");
        const auto& entry = J::get(specials, name);
        const std::string entry_at = J::at(J::at(path, "special_tokens"), name);
        if (!entry.is_object()) f.bad(at, " names the special token '", clip(name), "', which ", J::at(path, "special_tokens"), " lacks");
        const auto& ids = J::get(entry, "ids");
        if (!ids.is_array()) f.bad(J::at(entry_at, "ids"), " is ", json_brief(ids), ", not an array");
        Item i{false, {}};
        for (std::size_t n = 0; n < ids.size(); ++n)
          i.ids.push_back(token_id(f.integer(ids[n], J::at(J::at(entry_at, "ids"), n), 0, (std::int64_t(1) << 31) - 1)));
        t.push_back(std::move(i));
      } else {
        f.bad(at, " is ", json_brief(item), ", not {\"Sequence\": ...} or {\"SpecialToken\": ...}");
      }
    }
    return t;
  }

  std::vector<Template> templates_;
};

}  // namespace rlhf::io::detail
