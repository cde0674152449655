// libFuzzer target: rlhf-train's settings reader (examples/trainer/arguments.cpp) on arbitrary bytes as the file of
// --config, for every registered method, and the same bytes as one --key value pair. A bad file or value must be
// a refusal (exit code 2), never an escaping exception, a crash or a hang.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "../../examples/trainer/arguments.hpp"
#include "../../examples/trainer/registry.hpp"
#include "fuzz_support.hpp"

namespace {

// parse_arguments prints its one-line refusal on stderr; kept out of the fuzzer's own output.
int parse_quietly(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  const int saved = ::dup(2), null = ::open("/dev/null", O_WRONLY);
  ::dup2(null, 2);
  const int code = trainer::parse_arguments(int(argv.size()), argv.data()).exit_code;
  ::dup2(saved, 2);
  ::close(saved), ::close(null);
  return code;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = fuzz::input_file().write(data, size);
  const auto& methods = trainer::method_registry();
  const std::string method = methods[size ? data[0] % methods.size() : 0].name;
  const int code = parse_quietly({"rlhf-train", method, "--config", path, "--train_file", "t.jsonl",
                                  "--model_config", "c.json", "--tokenizer_name_or_path", "tok"});
  if (code != -1 && code != 2) std::abort();  // accepted, or refused with the usage status (no --help here)
  // The first bytes as a key and the rest as its value on the command line.
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto cut = text.find('=');
  if (cut != std::string::npos && cut < 64) {
    const int c = parse_quietly({"rlhf-train", method, "--" + text.substr(0, cut), text.substr(cut + 1, 256)});
    if (c != -1 && c != 0 && c != 2) std::abort();  // 0: the key was --help
  }
  return 0;
}
