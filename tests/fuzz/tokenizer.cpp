// libFuzzer target: rlhf::io::Tokenizer::load (a SentencePiece model file) on arbitrary bytes; an accepted model
// then encodes and decodes a fixed text.
#include <string>

#include "fuzz_support.hpp"
#include "rlhf/io/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = fuzz::input_file().write(data, size);
  return fuzz::refuse_or_accept([&] {
    const auto tok = rlhf::io::Tokenizer::load(path);
    const auto ids = tok.encode("a good film, not a bad one");
    (void)tok.decode(ids);
  });
}
