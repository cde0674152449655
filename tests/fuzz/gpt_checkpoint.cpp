// libFuzzer target: rlhf::load_checkpoint on arbitrary bytes, both with the file's own config (its __metadata__,
// else its shapes) and with a fixed small config the file's tensors must match.
#include "fuzz_support.hpp"
#include "rlhf/models/gpt/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = fuzz::input_file().write(data, size);
  fuzz::refuse_or_accept([&] {
    const auto model = rlhf::load_checkpoint<float>(path);
    (void)model;
  });
  fuzz::refuse_or_accept([&] {
    const rlhf::GptConfig small{.vocab_size = 16, .max_seq_len = 8, .channels = 8, .layers = 1, .heads = 2};
    const auto model = rlhf::load_checkpoint<float>(path, small);
    (void)model;
  });
  return 0;
}
