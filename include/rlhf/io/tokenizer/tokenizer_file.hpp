#pragma once
// Reading a tokenizer.json in one streaming pass (nlohmann's SAX parser): the two large tables, model.vocab and
// model.merges, go straight into flat lists instead of a JSON tree (a 151,643-token vocabulary as a tree costs
// more than the rest of loading); everything else becomes a JSON tree as usual. The checks of
// io/json_file.hpp hold: regular files only, a size cap, a nesting limit, a key twice in one object refused,
// every problem an rlhf::io_error naming the file and the place.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rlhf/core/error.hpp"
#include "rlhf/io/json_file.hpp"  // read_regular_file, detail::quoted_path
#include "rlhf/io/untrusted.hpp"

namespace rlhf::io::detail {

struct MergeEntry {
  std::string a, b;
  bool pair;  // ["a", "b"]; else `a` holds the "a b" string as written
};

struct TokenizerFile {
  nlohmann::json doc;  // model.vocab and model.merges are null here when they were read into the lists below
  std::vector<std::pair<std::string, nlohmann::json>> vocab;  // model.vocab's entries in file order
  std::vector<MergeEntry> merges;
  bool has_vocab = false, has_merges = false;
};

class TokenizerFileSax {
 public:
  using json = nlohmann::json;
  TokenizerFileSax(TokenizerFile& out, std::string where) : out_(out), where_(std::move(where)) {}

  bool null() { return value(json(nullptr)); }
  bool boolean(bool v) { return value(json(v)); }
  bool number_integer(json::number_integer_t v) { return value(json(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return value(json(v)); }
  bool number_float(json::number_float_t v, const std::string&) { return value(json(v)); }
  bool binary(json::binary_t&) { return value(json()); }
  bool string(std::string& v) {
    if (role() == Role::merges) {
      out_.merges.push_back({std::move(v), {}, false});
      return true;
    }
    if (role() == Role::merge_pair) {
      pair_.push_back(std::move(v));
      return true;
    }
    return value(json(std::move(v)));
  }
  bool key(std::string& k) {
    if (role() == Role::vocab) {
      out_.vocab.emplace_back(std::move(k), json());
      return true;
    }
    json& obj = *frames_.back().container;
    if (obj.contains(k)) bad("key '", clip(k), "' appears twice in ", path_str());
    key_ = std::move(k);
    return true;
  }
  bool start_object(std::size_t) { return start(false); }
  bool start_array(std::size_t) { return start(true); }
  bool end_object() { return end(); }
  bool end_array() {
    if (role() == Role::merge_pair) {
      if (pair_.size() != 2) bad("model.merges[", out_.merges.size(), "] is an array of ", pair_.size(),
                                  " strings, not [\"a\", \"b\"]");
      out_.merges.push_back({std::move(pair_[0]), std::move(pair_[1]), true});
      pair_.clear();
    }
    return end();
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) {
    bad("not valid JSON at byte ", position, " (in ", path_str(), "): ", clip(e.what(), 160));
  }

 private:
  enum class Role { tree, vocab, merges, merge_pair };
  struct Frame {
    json* container;  // where values go (tree); nullptr in the two lists
    Role role;
    std::string name;  // the key this container sits under ("" in an array)
  };

  template <class... Parts>
  [[noreturn]] void bad(const Parts&... parts) const {
    fail<io_error>(where_, ": ", parts...);
  }
  Role role() const { return frames_.empty() ? Role::tree : frames_.back().role; }
  std::string path_str() const {
    std::string p;
    for (std::size_t i = 1; i < frames_.size(); ++i) p += (i > 1 ? "." : "") + frames_[i].name;
    return p.empty() ? "the top level" : "'" + p + "'";
  }

  bool value(json v) {
    switch (role()) {
      case Role::vocab:
        if (out_.vocab.empty()) bad("model.vocab holds a value without a key");
        out_.vocab.back().second = std::move(v);
        return true;
      case Role::merges: bad("model.merges[", out_.merges.size(), "] is ", json_brief(v), ", not \"a b\" or [\"a\", \"b\"]");
      case Role::merge_pair: bad("model.merges[", out_.merges.size(), "] holds ", json_brief(v), ", not a string");
      case Role::tree: break;
    }
    if (frames_.empty()) {
      out_.doc = std::move(v);
      return true;
    }
    json& c = *frames_.back().container;
    if (c.is_array()) c.push_back(std::move(v));
    else c[key_] = std::move(v);
    return true;
  }

  bool start(bool array) {
    if (int(frames_.size()) >= max_json_depth) bad("JSON nests more than ", max_json_depth, " levels deep");
    const Role parent = role();
    if (parent == Role::vocab) bad("model.vocab[\"", clip(out_.vocab.back().first), "\"] is not an integer id");
    if (parent == Role::merge_pair) bad("model.merges[", out_.merges.size(), "] holds a container, not a string");
    if (parent == Role::merges) {
      if (!array) bad("model.merges[", out_.merges.size(), "] is an object, not \"a b\" or [\"a\", \"b\"]");
      frames_.push_back({nullptr, Role::merge_pair, ""});
      return true;
    }
    // a container in the tree; model.vocab and model.merges become lists
    const bool in_model = frames_.size() == 2 && frames_[1].name == "model" && frames_[1].container->is_object();
    const std::string name = frames_.empty() || frames_.back().container->is_array() ? "" : key_;
    if (in_model && !array && name == "vocab") {
      (*frames_.back().container)[name] = nullptr;  // present, so that a second "vocab" is caught as a duplicate
      out_.has_vocab = true;
      frames_.push_back({nullptr, Role::vocab, name});
      return true;
    }
    if (in_model && array && name == "merges") {
      (*frames_.back().container)[name] = nullptr;
      out_.has_merges = true;
      frames_.push_back({nullptr, Role::merges, name});
      return true;
    }
    json fresh = array ? json::array() : json::object();
    json* where;
    if (frames_.empty()) {
      out_.doc = std::move(fresh);
      where = &out_.doc;
    } else if (frames_.back().container->is_array()) {
      frames_.back().container->push_back(std::move(fresh));
      where = &frames_.back().container->back();
    } else {
      where = &((*frames_.back().container)[name] = std::move(fresh));
    }
    frames_.push_back({where, Role::tree, name});
    return true;
  }
  bool end() {
    frames_.pop_back();
    return true;
  }

  TokenizerFile& out_;
  std::string where_;
  std::vector<Frame> frames_;
  std::string key_;
  std::vector<std::string> pair_;
};

inline TokenizerFile read_tokenizer_file(const std::filesystem::path& path, std::size_t max_bytes) {
  const std::string text = read_regular_file(path, max_bytes);
  TokenizerFile out;
  TokenizerFileSax sax(out, quoted_path(path));
  nlohmann::json::sax_parse(text, &sax);
  return out;
}

}  // namespace rlhf::io::detail
