#include "arguments.hpp"

#include <cstdio>

#include "registry.hpp"
#include "rlhf/io/json_file.hpp"

namespace trainer {

namespace {

constexpr int bad_usage = 2;

// The shared keys, then the method's.
std::vector<Key> keys_of(TrainingArguments& args, Method& method) {
  std::vector<Key> keys;
  bind_keys(keys, TrainingArguments::keys(), args);
  for (const auto& k : method.keys()) keys.push_back(k);
  return keys;
}

// Whether any method has a key of this name (then it is refused as another method's, not as unknown).
bool some_method_has(std::string_view name) {
  for (const auto& m : method_registry()) {
    auto method = m.make();
    for (const auto& k : method->keys())
      if (name == k.name) return true;
  }
  return false;
}

void set_key(TrainingArguments& args, const Method& method, const std::vector<Key>& keys, const std::string& name,
             const json& value, bool from_text, const std::string& where) {
  const Key* k = find_key(keys, name);
  if (!k && some_method_has(name))
    throw Refusal(name + ": not a setting of rlhf-train " + method.name() + where);
  if (!k)
    throw Refusal("unknown key '" + name.substr(0, 60) + "'" + where + " (rlhf-train " + method.name() +
                  " --help lists them)");
  assign(*k, from_text ? value_from_text(*k, value.get<std::string>()) : value);
  args.set_keys.push_back(name);
}

// The file through the one hardened reader (a regular file of at most 1 MiB, 64 levels, no key twice).
void read_config_file(TrainingArguments& args, const Method& method, const std::vector<Key>& keys,
                      const std::string& path) {
  json doc;
  try {
    doc = rlhf::io::read_json_file(path, {.max_bytes = std::size_t(1) << 20});
  } catch (const rlhf::error& e) {
    throw Refusal(std::string("--config: ") + e.what());
  }
  const std::string shown = rlhf::io::detail::quoted_path(path);
  if (!doc.is_object()) throw Refusal("--config: " + shown + " must hold one JSON object of settings");
  for (const auto& [name, value] : doc.items()) set_key(args, method, keys, name, value, false, " in " + shown);
}

// A default that follows another setting the user gave: TRL's max_prompt_length (512) below a smaller
// max_length becomes half of it.
void follow_defaults(TrainingArguments& args, const Method& method) {
  if (!method.samples() && !args.was_set("max_prompt_length") && args.max_prompt_length != 0 &&
      args.max_prompt_length >= args.max_length) {
    args.max_prompt_length = args.max_length / 2;
    std::printf("note: max_prompt_length (not set) follows max_length %zu: %zu\n", args.max_length,
                args.max_prompt_length);
  }
}

void print_help(Method& method) {
  std::printf(
      "rlhf-train %s: train the bundled GPT or Llama-family model on JSON Lines data in TRL's formats.\n\n"
      "usage: rlhf-train METHOD [--config FILE.json] [--key value ...]\n  METHOD: %s\n\n"
      "Settings come from FILE.json (one object) and then from --key value (or --key=value) pairs, which win.\n"
      "Every key is checked before any work; an unknown key or a bad value exits with status 2.\n"
      "docs/trainer.md lists each key beside TRL's.\n\n  --help  this text\n  --config FILE.json\n",
      method.name(), method_list().c_str());
  TrainingArguments defaults;
  method.apply_defaults(defaults);
  for (const Key& k : keys_of(defaults, method)) {
    const std::string now = value_text(k);
    std::printf("  --%-28s %s (%s; default %s)\n", k.name, k.help, range_text(k).c_str(),
                now.empty() ? "none" : now.c_str());
  }
}

}  // namespace

Parsed parse_arguments(int argc, char** argv) {
  Parsed out;
  const auto fail = [&](const std::string& line) {
    std::fprintf(stderr, "rlhf-train: %s\n", line.c_str());
    out.exit_code = bad_usage;
    return std::move(out);
  };
  if (argc < 2) return fail("the first argument must be the method: " + method_list() + " (--help)");
  const std::string name = argv[1];
  if (name == "--help" || name == "-h") {
    std::printf("usage: rlhf-train METHOD [--config FILE.json] [--key value ...]\n  METHOD: %s\n"
                "rlhf-train METHOD --help lists the settings of that method; docs/trainer.md describes them.\n"
                "rlhf-train merge --help: LoRA adapters merged into their base model.\n",
                method_list().c_str());
    out.exit_code = 0;
    return out;
  }
  out.method = make_method(name);
  if (!out.method) return fail("unknown method '" + name.substr(0, 60) + "': use " + method_list());
  Method& method = *out.method;
  TrainingArguments& args = out.args;

  const auto keys = keys_of(args, method);
  try {
    for (int i = 2; i < argc; ++i) {  // --help in a key's place (a value may be "-h")
      const std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        print_help(method);
        out.exit_code = 0;
        return out;
      }
      if (a.rfind("--", 0) == 0 && a.find('=') == std::string::npos) ++i;
    }
    // The file first, wherever --config stands, so that the command line's keys win.
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--config" || a.rfind("--config=", 0) == 0) {
        std::string path;
        if (a == "--config") {
          if (i + 1 >= argc) throw Refusal("--config: needs a file");
          path = argv[++i];
        } else {
          path = a.substr(9);
        }
        read_config_file(args, method, keys, path);
      }
    }
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--config") {
        ++i;
        continue;
      }
      if (a.rfind("--config=", 0) == 0) continue;
      if (a.rfind("--", 0) != 0) throw Refusal("'" + a.substr(0, 60) + "': expected --key value");
      std::string key = a.substr(2), value;
      if (const auto eq = key.find('='); eq != std::string::npos) {
        value = key.substr(eq + 1);
        key.resize(eq);
      } else {
        if (!find_key(keys, key)) set_key(args, method, keys, key, json(), true, " on the command line");  // names it
        if (i + 1 >= argc) throw Refusal(key + ": needs a value");
        value = argv[++i];
      }
      set_key(args, method, keys, key, json(value), true, " on the command line");
    }
    method.apply_defaults(args);
    follow_defaults(args, method);
    check_training_arguments(args, method.samples());
    method.check(args);
  } catch (const Refusal& r) {
    return fail(r.what());
  }
  return out;
}

std::string settings_json(const TrainingArguments& args, Method& method) {
  TrainingArguments copy = args;
  json doc = json::object();
  doc["method"] = method.name();
  for (const auto& k : keys_of(copy, method)) doc[k.name] = value_of(k);
  return doc.dump(2) + "\n";
}

}  // namespace trainer
