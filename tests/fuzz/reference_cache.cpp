// libFuzzer target: rlhf::io::load_reference_logps on arbitrary bytes, for a fixed preference dataset (two batches
// of 3 and 2 pairs) and a fixed ranked one (one batch, 2 prompts x 2 responses): the shapes of the seeds.
#include <vector>

#include "fuzz_support.hpp"
#include "rlhf/io/reference_cache.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rlhf;
  const std::string& path = fuzz::input_file().write(data, size);
  fuzz::refuse_or_accept([&] {
    std::vector<PreferenceBatch> pairs{{TokenBatch::zeros(3, 2), TokenBatch::zeros(3, 2), {}, {}},
                                       {TokenBatch::zeros(2, 2), TokenBatch::zeros(2, 2), {}, {}}};
    io::load_reference_logps(path, std::span<PreferenceBatch>(pairs));
  });
  fuzz::refuse_or_accept([&] {
    RankedBatch ranked{2, TokenBatch::zeros(4, 2), {}, {}};
    io::load_reference_logps(path, std::span<RankedBatch>(&ranked, 1));
  });
  return 0;
}
