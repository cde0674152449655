// rlhf-tokenize: a tokenizer on JSON Lines, one output line per input line (docs/io/tokenizer_json.md).
//   rlhf-tokenize encode --tokenizer DIR [--add-special-tokens]   {"text": ...}  -> {"ids": [...]}
//   rlhf-tokenize decode --tokenizer DIR                          {"ids": [...]} -> {"text": ...}
//   rlhf-tokenize chat --tokenizer DIR [--assistant-spans]        {"messages": [...], "add_generation_prompt": b}
//                                                                 -> {"text": ..., "ids": [...]}
// Exit codes: 0 done, 1 a file or a line that cannot be used (stderr names it), 2 a refused command line.
#include <cstdio>
#include <exception>
#include <vector>

#include "common/cli.hpp"
#include "tokenize/chat.hpp"
#include "tokenize/encode_decode.hpp"

namespace {

// The subcommands, one line each: a function that adds the subcommand and its options to the app and returns
// what runs it. A new subcommand (chat) is one more header and one more line here.
struct Subcommand {
  const char* name;
  tokenize::Run (*add)(CLI::App&);
};
const Subcommand subcommands[] = {
    {"encode", tokenize::add_encode},
    {"decode", tokenize::add_decode},
    {"chat", tokenize::add_chat},
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Tokenize JSON Lines with a model's tokenizer.json", "rlhf-tokenize");
  app.require_subcommand(0, 1);  // none is refused after parsing, so that an unknown flag is named first
  std::vector<tokenize::Run> runs;
  for (const auto& s : subcommands) runs.push_back(s.add(app));
  if (const int code = examples::parse_command_line(app, argc, argv); code >= 0) return code;
  try {
    for (std::size_t k = 0; k < runs.size(); ++k)
      if (app.got_subcommand(subcommands[k].name)) return runs[k]();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rlhf-tokenize: %s\n", e.what());
    return 1;
  }
  return examples::refuse(app, "SUBCOMMAND", "one of encode, decode is required");
}
