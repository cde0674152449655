// libFuzzer target: the JSON Lines dataset readers on arbitrary bytes: rlhf::io::parse_text_dataset (every format,
// standard and conversational), then tokenize_dataset with a one-id-per-byte encoder under two configs (no limits;
// tight limits with truncation or dropping and an eos; assistant_only_loss masks with and without the eos), then every
// collation of the kept rows in batches of 3.
#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "rlhf/io/dataset_formats.hpp"
#include "rlhf/io/tokenized_dataset.hpp"

namespace {

std::vector<rlhf::token_id> bytes_as_ids(std::string_view s) {
  std::vector<rlhf::token_id> ids;
  ids.reserve(s.size());
  for (const char c : s) ids.push_back(static_cast<unsigned char>(c));
  return ids;
}

void collate_all(const rlhf::io::TokenizedDataset& ds) {
  using namespace rlhf::io;
  for (const auto& indices : batch_indices(ds.size(), 3)) {
    const std::span<const TokenizedRow> rows(ds.rows);
    // a collation the rows do not fit (a pair from a prompt-only row) is a value_error, each on its own
    fuzz::refuse_or_accept([&] { (void)collate_preferences(rows, indices); });
    fuzz::refuse_or_accept([&] { (void)collate_ranked(rows, indices); });
    fuzz::refuse_or_accept([&] { (void)collate_sft(rows, indices); });
    fuzz::refuse_or_accept([&] { (void)collate_prompts(rows, indices); });
    fuzz::refuse_or_accept([&] { (void)collate_unpaired(rows, indices); });
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace rlhf::io;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  return fuzz::refuse_or_accept([&] {
    const TextDataset ds = parse_text_dataset(text, "fuzz.jsonl");
    const auto encoder = [](std::string_view s) { return bytes_as_ids(s); };
    collate_all(tokenize_dataset(ds, encoder));
    for (const auto overlong : {OverlongRows::truncate, OverlongRows::drop})
      fuzz::refuse_or_accept([&] {
        const TokenizeConfig tight{.max_length = 24, .max_prompt_length = 10, .max_completion_length = 12,
                                   .truncation_mode = overlong == OverlongRows::drop ? TruncationMode::keep_start
                                                                                     : TruncationMode::keep_end,
                                   .overlong = overlong, .eos = 256};
        collate_all(tokenize_dataset(ds, encoder, tight));
      });
    fuzz::refuse_or_accept([&] {  // assistant_only_loss: spans, masks, and their truncation
      const TextDataset turns = parse_text_dataset(text, "fuzz.jsonl", {.assistant_only_loss = true});
      collate_all(tokenize_dataset(turns, encoder, {.max_length = 24, .eos = 256, .eos_after_conversations = false}));
      collate_all(tokenize_dataset(turns, encoder, {.max_length = 24, .eos = 256}));
    });
  });
}
