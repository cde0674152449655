// libFuzzer target: the one JSON reader of every trainer file (rlhf/io/json_file.hpp) on arbitrary bytes, with the
// checked numbers (rlhf/io/checked_number.hpp) on whatever it accepts, and rlhf-train's model config reader
// (examples/trainer/model_folder.hpp, read_model_config) on the same file. Every refusal must be rlhf::error;
// nesting, size and number overflow are the reader's to refuse, never a crash or a stack overflow.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "../../examples/trainer/model_folder.hpp"
#include "fuzz_support.hpp"
#include "rlhf/io/checked_number.hpp"
#include "rlhf/io/json_file.hpp"

namespace {

template <class Json>
void numbers_of(const Json& doc) {
  if (!doc.is_object()) return;
  for (auto it = doc.begin(); it != doc.end(); ++it) {  // (clang 14 cannot capture a structured binding)
    const std::string key = it.key();
    const Json& value = it.value();
    fuzz::refuse_or_accept([&] { (void)rlhf::io::checked_number<float>(value, "fuzz", key, {0, 1, false, true}); });
    fuzz::refuse_or_accept([&] { (void)rlhf::io::checked_number<double>(value, "fuzz", key); });
    fuzz::refuse_or_accept([&] { (void)rlhf::io::checked_number<std::uint32_t>(value, "fuzz", key, {.lo = 1}); });
    fuzz::refuse_or_accept([&] { (void)rlhf::io::checked_number<std::int64_t>(value, "fuzz", key); });
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = fuzz::input_file().write(data, size);
  fuzz::refuse_or_accept([&] { numbers_of(rlhf::io::read_json_file(path, {.max_bytes = 1 << 20})); });
  fuzz::refuse_or_accept([&] {
    numbers_of(rlhf::io::read_json_file<nlohmann::ordered_json>(path, {.max_bytes = 1 << 20, .max_depth = 3}));
  });
  fuzz::refuse_or_accept([&] { (void)trainer::read_model_config(path); });
  // the same bytes as a command-line value
  const std::string_view text(reinterpret_cast<const char*>(data), size < 64 ? size : 64);
  fuzz::refuse_or_accept([&] { (void)rlhf::io::parse_number<double>(text, "fuzz", "value", {0, 10}); });
  fuzz::refuse_or_accept([&] { (void)rlhf::io::parse_number<float>(text, "fuzz", "value"); });
  fuzz::refuse_or_accept([&] { (void)rlhf::io::parse_number<std::uint64_t>(text, "fuzz", "value"); });
  fuzz::refuse_or_accept([&] { (void)rlhf::io::parse_json_text(text, "fuzz"); });
  return 0;
}
