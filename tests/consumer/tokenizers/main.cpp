// Loads a small tokenizer.json (NFC, a Split regex, BPE) through the installed rlhf::tokenizers and checks its ids.
#include <cstdio>
#include <fstream>
#include <vector>

#include <rlhf/io/tokenizer/hf_tokenizer.hpp>

int main() {
  const char* path = "consumer_tokenizer.json";
  std::ofstream(path) << R"({"normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\p{L}+"}, "behavior": "Isolated", "invert": false},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, " ": 2, "ab": 3}, "merges": ["a b"]}})";
  const auto tok = rlhf::io::HfTokenizer::load(path);
  const auto ids = tok.encode("ab ba");
  const bool ok = ids == std::vector<rlhf::token_id>{3, 2, 1, 0} && tok.decode(ids) == "ab   b a";
  std::printf("tokenizers consumer: %s\n", ok ? "ok" : "wrong ids");
  return ok ? 0 : 1;
}
