// libFuzzer target: rlhf::io::parse_fortunes (fortune files: records between "%" lines, backspace overstrikes) on
// arbitrary bytes.
#include <string_view>

#include "fuzz_support.hpp"
#include "rlhf/io/corpus.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  return fuzz::refuse_or_accept([&] {
    const auto records = rlhf::io::parse_fortunes(text, "fuzz");
    (void)records;
  });
}
