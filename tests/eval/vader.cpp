// The VADER port against the JS package it ports (npm vader-sentiment@1.1.3):
//   - every rule on hand-written sentences, each checked against a sum worked out by hand from the lexicon
//     and against the JS package's score of the same sentence;
//   - parity on all 3,003 review sentences of npm sentiment@5.0.2 (compound within 1e-6);
//   - JS's whitespace and lower-casing, character by character;
//   - bad lexicon files.
// The test installs what it needs with scripts/fetch_npm_data.sh (into third_party/npm, or $RLHF_NPM_PREFIX)
// and runs tests/eval/vader_parity.js under node; without node, or when the install fails, it fails and says
// why.
#include "rlhf/eval/vader.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "support/temp_dir.hpp"
#include "support/bytes.hpp"

using rlhf::test::read_bytes;

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using rlhf::eval::Vader;
using rlhf::eval::VaderScores;

const fs::path repo = fs::path(__FILE__).parent_path().parent_path().parent_path();

fs::path npm_prefix() {
  if (const char* p = std::getenv("RLHF_NPM_PREFIX"); p && *p) return p;
  return repo / "third_party" / "npm";
}

using rlhf::test::TempDir;

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary);
  f << text;
}

std::string quoted(const fs::path& p) {  // for the shell; the paths here hold no quote
  std::string q = "'";
  q += p.string();
  q += '\'';
  return q;
}

std::string hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (const unsigned char c : bytes) (out += digits[c >> 4]) += digits[c & 15];
  return out;
}

// Every hand-written sentence of the rule tests below; the JS package scores each of them.
const std::vector<std::string> sentences = {
    // plain, boosters, dampeners
    "The food is good", "The food is very good", "The food is very much good", "It is very much the good one",
    "The food is slightly good", "The food is very bad",
    // negation
    "The food is not good", "The food isn't good", "It mightn't've been good", "The food is not at all good",
    "The food is NOT good", "The food was never good",
    // never so / this
    "The food was never so good", "The food was never this good", "The food is so good",
    // least
    "This is the least good movie", "It is at least good", "This is the very least good one", "Least good movie",
    // but
    "The food is good but the service is bad", "The food is good But the service is bad",
    "The food is good BUT the service is bad",
    // capitals
    "The food is GOOD", "THE FOOD IS GOOD", "The food is VERY good", "The food is BAD",
    // punctuation
    "The food is good!!", "Good food!!!!!", "The food is good!!!!!!", "Is the food good??", "Good food???? Maybe",
    "Is the food good?", "The food is bad!!",
    // idioms and bigram dampeners
    "This food is the bomb", "the bomb", "Then it was yeah right", "The food is kind of good",
    "The food is sort of good", "This food can really cut the mustard", "It was the kiss of death",
    "They live from hand to mouth", "That is one bad ass car", "This movie is the shit",
    // tokenisation
    "The food is 'good'", "The food :)", "I like it", "It is not a good one", "The food is\u00a0good",
    "The food is\u0085good", "It is \u212Aind", "Cool :\u00DE", "It is not good",
    "It is not \U0001F600 \U0001F600 \U0001F600 good", "It is not \u00e9 \u00e9 \u00e9 good",
    std::string("It is not \xE2\x82 \xE2\x82 \xF0\x9F\x98") + " good",   // truncated sequences: one U+FFFD each
    std::string("It is not \xC0\xAF \xC0\xAF \xC0\xAF") + " good",       // overlong: two U+FFFD each
    "", "a b c"};

struct Reference {
  std::string problem;  // why there is no reference; empty when there is one
  std::optional<Vader> vader;
  json out;
  std::map<std::string, json> extra;  // the JS scores of `sentences`, by text
};

Reference make_reference() {
  Reference r;
  if (std::system("command -v node >/dev/null 2>&1") != 0) {
    r.problem = "node is not installed (apt-get install nodejs npm); the VADER parity test needs it";
    return r;
  }
  TempDir dir;
  const std::string fetch = "RLHF_NPM_PREFIX=" + quoted(npm_prefix()) + " " +
                            quoted(repo / "scripts" / "fetch_npm_data.sh") + " > " + quoted(dir / "fetch.log") +
                            " 2>&1";
  if (std::system(fetch.c_str()) != 0) {
    r.problem = "scripts/fetch_npm_data.sh could not install vader-sentiment@1.1.3 and sentiment@5.0.2 into " +
                npm_prefix().string() + ":\n" + read_bytes(dir / "fetch.log");
    return r;
  }
  r.vader = Vader::load(npm_prefix() / "node_modules" / "vader-sentiment" / "vader_lexicon.txt");

  json hexes = json::array();
  for (const auto& s : sentences) hexes.push_back(hex(s));
  write_text(dir / "extra.json", hexes.dump());
  const std::string run = "node " + quoted(repo / "tests" / "eval" / "vader_parity.js") + " " + quoted(npm_prefix()) +
                          " " + quoted(dir / "extra.json") + " " + quoted(dir / "out.json") + " > " +
                          quoted(dir / "node.log") + " 2>&1";
  if (std::system(run.c_str()) != 0) {
    r.problem = "tests/eval/vader_parity.js failed:\n" + read_bytes(dir / "node.log");
    return r;
  }
  r.out = json::parse(read_bytes(dir / "out.json"));
  for (std::size_t i = 0; i < sentences.size(); ++i) r.extra[sentences[i]] = r.out["extra"][i];
  return r;
}

const Reference& reference() {
  static const Reference r = make_reference();
  return r;
}

const Vader& vader() {
  const auto& r = reference();
  if (!r.problem.empty()) FAIL(r.problem);
  return *r.vader;
}

double lex(const std::string& word) {
  const auto v = vader().valence(word);
  if (!v) FAIL("'" << word << "' is not in the lexicon");
  return *v;
}

// x / sqrt(x² + 15), written another way.
double hand_compound(double sum) { return sum == 0 ? 0.0 : std::copysign(1.0, sum) / std::sqrt(1 + 15 / (sum * sum)); }

// One sentence: the port's compound equals the hand-worked sum's, and the JS package's.
void check(const std::string& text, double hand_sum) {
  const auto& r = reference();
  if (!r.problem.empty()) FAIL(r.problem);
  const auto js = r.extra.find(text);
  if (js == r.extra.end()) FAIL("'" << text << "' is not in the list of sentences sent to the JS package");
  const double got = r.vader->compound(text);
  const double js_compound = js->second["compound"].get<double>();
  INFO("text: \"", text, "\"  port ", got, "  hand ", hand_compound(hand_sum), "  JS ", js_compound);
  CHECK(std::abs(got - hand_compound(hand_sum)) <= 1e-12);
  CHECK(std::abs(got - js_compound) <= 1e-6);
}

constexpr double N = -0.74, B = 0.293, C = 0.733;  // negation scalar, booster step, capitals step

}  // namespace

TEST_CASE("vader: the lexicon loads with the values the rule tests rely on") {
  const auto& v = vader();
  CHECK(v.lexicon_size() == 7503);  // 7,517 lines, 14 tokens listed twice
  CHECK(lex("good") == 1.9);
  CHECK(lex("bad") == -2.5);
  CHECK(lex("kind") == 2.4);
  CHECK(lex("bomb") == -2.2);
  CHECK(lex("lol") == 1.8);  // a repeated token: its last line (1.8), not its first (2.9)
  for (const char* neutral : {"the", "food", "is", "very", "not", "never", "so", "least", "but", "of", "sort", "much"})
    CHECK_MESSAGE(!v.valence(neutral), neutral);
}

TEST_CASE("vader: boosters and dampeners, damped with distance, flipped for negative words") {
  const double good = lex("good"), bad = lex("bad");
  check("The food is good", good);
  check("The food is very good", good + B);
  check("The food is very much good", good + B * 0.95);
  check("It is very much the good one", good + B * 0.9);
  check("The food is slightly good", good - B);
  check("The food is very bad", bad - B);
}

TEST_CASE("vader: negation by a word 1-3 back, n't anywhere in a word, lower case only") {
  const double good = lex("good");
  check("The food is not good", good * N);
  check("The food isn't good", good * N);
  check("It mightn't've been good", good * N);  // not in the list; has n't
  check("The food is not at all good", good * N);
  check("The food is NOT good", good);  // the JS compares negations case-sensitively
  check("The food was never good", good * N);
}

TEST_CASE("vader: 'never so/this' amplifies instead of negating; a 'so' right before amplifies 1.25 at i >= 3") {
  const double good = lex("good");
  check("The food was never so good", (good + B) * 1.5 * 1.25);  // so: booster; never so: 1.5; so before: 1.25
  check("The food was never this good", good * 1.5 * 1.25);
  check("The food is so good", (good + B) * 1.25);
}

TEST_CASE("vader: 'least' negates the next word, except after 'at' or 'very'") {
  const double good = lex("good");
  check("This is the least good movie", good * N);
  check("It is at least good", good);
  check("This is the very least good one", good + B * 0.95);  // "very" boosts from 2 back
  check("Least good movie", good * N);
}

TEST_CASE("vader: 'but' halves what comes before it and weighs what follows 1.5 times (lower case or ALL CAPS)") {
  const double good = lex("good"), bad = lex("bad");
  check("The food is good but the service is bad", good * 0.5 + bad * 1.5);
  check("The food is good But the service is bad", good + bad);  // 'But' is neither 'but' nor 'BUT'
  check("The food is good BUT the service is bad", good * 0.5 + bad * 1.5);
}

TEST_CASE("vader: ALL-CAPS words add 0.733 when some words are not in capitals") {
  const double good = lex("good"), bad = lex("bad");
  check("The food is GOOD", good + C);
  check("THE FOOD IS GOOD", good);
  check("The food is VERY good", good + B + C);
  check("The food is BAD", bad - C);
}

TEST_CASE("vader: up to 4 exclamation marks, and 2 or more question marks, add emphasis in the sum's direction") {
  const double good = lex("good"), bad = lex("bad");
  check("The food is good!!", good + 2 * 0.292);
  check("Good food!!!!!", good + 4 * 0.292);
  check("The food is good!!!!!!", 0);  // "good!!!!!!" is not "good" plus a listed punctuation, so no word scores
  check("Is the food good??", good + 2 * 0.18);
  check("Good food???? Maybe", good + 0.96);
  check("Is the food good?", good);
  check("The food is bad!!", bad - 2 * 0.292);
}

TEST_CASE("vader: special-case idioms replace the valence; 'kind of'/'sort of' dampen") {
  const double good = lex("good"), bomb = lex("bomb");
  check("This food is the bomb", 3);
  check("the bomb", bomb);  // idioms are only looked at for words at index >= 3
  check("Then it was yeah right", -2);
  check("The food is kind of good", good - B);
  check("The food is sort of good", good - B);
  check("This food can really cut the mustard", 2);
  check("It was the kiss of death", -1.5 + -1.5);  // "kiss" starts it, "death" ends it
  check("They live from hand to mouth", -2);
  check("That is one bad ass car", 1.5 + 1.5);
  check("This movie is the shit", 3);
}

TEST_CASE("vader: tokens as the JS splits them (whitespace, affixed punctuation, one-unit words, U+FFFD)") {
  const double good = lex("good");
  check("The food is 'good'", 0);  // two quotes: not stripped
  check("The food :)", lex(":)"));
  check("I like it", lex("like"));
  check("It is not a good one", good * N);           // "a" is dropped, so "not" is right before "good"
  check("The food is\u00a0good", good);               // NBSP is JS whitespace
  check("The food is\u0085good", 0);                  // U+0085 is not
  check("It is \u212Aind", lex("kind"));              // KELVIN SIGN lower-cases to 'k'
  check("Cool :\u00DE", lex("cool"));                 // ":Þ" lower-cases to ":þ", which is not in the lexicon
  check("It is not good", good * N);
  check("It is not \U0001F600 \U0001F600 \U0001F600 good", good);  // emoji are 2 UTF-16 units: kept, 4 back
  check("It is not \u00e9 \u00e9 \u00e9 good", good * N);           // one unit: dropped
  check(std::string("It is not \xE2\x82 \xE2\x82 \xF0\x9F\x98") + " good", good * N);
  check(std::string("It is not \xC0\xAF \xC0\xAF \xC0\xAF") + " good", good);
  check("", 0);
  check("a b c", 0);
}

TEST_CASE("vader: JS whitespace and lower-casing, every code point") {
  const auto& r = reference();
  if (!r.problem.empty()) FAIL(r.problem);
  std::set<char32_t> js_space, ours_space;
  for (const auto& cp : r.out["space"]) js_space.insert(cp.get<char32_t>());
  std::map<char32_t, char32_t> js_lower, ours_lower;
  for (const auto& pair : r.out["lower_latin1"]) js_lower[pair[0].get<char32_t>()] = pair[1].get<char32_t>();
  for (char32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    if (rlhf::eval::vader_text::is_js_space(cp)) ours_space.insert(cp);
    std::string utf8;
    rlhf::eval::vader_text::append_utf8(utf8, cp);
    const std::string lower = rlhf::eval::vader_text::to_lower(utf8);
    if (lower != utf8) ours_lower[cp] = rlhf::eval::vader_text::decode(lower, 0).code_point;
  }
  CHECK(js_space.size() == 25);
  CHECK(ours_space == js_space);
  CHECK(js_lower.size() == 60);
  CHECK(ours_lower == js_lower);
}

TEST_CASE("vader parity: the JS package's scores on all 3,003 review sentences of npm sentiment@5.0.2") {
  const auto& r = reference();
  if (!r.problem.empty()) FAIL(r.problem);
  const auto& fixtures = r.out["fixtures"];
  std::size_t count = 0, over = 0, nonzero = 0, agree = 0, labelled = 0;
  double worst = 0, worst_share = 0;
  for (const auto& rec : fixtures) {
    const std::string text = rec["text"].get<std::string>();
    const VaderScores got = r.vader->polarity_scores(text);
    const double diff = std::abs(got.compound - rec["compound"].get<double>());
    const std::pair<const char*, double> shares[] = {{"neg", got.neg}, {"neu", got.neu}, {"pos", got.pos}};
    for (const auto& [name, ours] : shares)
      worst_share = std::max(worst_share, std::abs(ours - rec[name].get<double>()));
    if (diff > 1e-6) {
      ++over;
      if (over <= 5)
        MESSAGE("differs by ", diff, ": ", rec["source"].get<std::string>(), "[", rec["index"], "] ", text);
    }
    worst = std::max(worst, diff);
    ++count;
    nonzero += got.compound != 0;
    if (got.compound != 0) {
      ++labelled;
      agree += (got.compound > 0) == (rec["class"].get<int>() == 1);
    }
  }
  MESSAGE(count, " sentences; worst |C++ - JS| compound = ", worst, ", neg/neu/pos = ", worst_share, "; ", nonzero,
          " with a non-zero score, whose sign matches the label for ", agree);
  CHECK(count == 3003);
  CHECK(over == 0);
  CHECK(worst <= 1e-6);
  CHECK(worst_share <= 1e-6);
  CHECK(nonzero > 2000);       // not a comparison of zeros
  CHECK(agree > labelled / 2);  // and the scores mean something
}

TEST_CASE("vader: sentiment_reward maps the compound score [-1, 1] onto [0, 1]") {
  CHECK(rlhf::eval::sentiment_reward(-1.0) == 0.0);
  CHECK(rlhf::eval::sentiment_reward(0.0) == 0.5);
  CHECK(rlhf::eval::sentiment_reward(1.0) == 1.0);
  CHECK(rlhf::eval::sentiment_reward(0.5) == doctest::Approx(0.75));
}

TEST_CASE("vader: a lexicon of one's own; repeated tokens keep the last value; CRLF and extra fields") {
  TempDir dir;
  write_text(dir / "lex.txt", "good\t1.0\r\nawful\t-3.0\t0.5\t[-3, -3]\r\n\r\ngood\t2.0\r\n");
  const auto v = Vader::load(dir / "lex.txt");
  CHECK(v.lexicon_size() == 2);
  CHECK(v.valence("good") == 2.0);
  CHECK(v.compound("good stuff") == doctest::Approx(hand_compound(2.0)));
  CHECK(v.compound("awful stuff") == doctest::Approx(hand_compound(-3.0)));
  CHECK(v.compound("stuff") == 0.0);
}

TEST_CASE("vader: bad lexicon files throw rlhf::error naming the file and the line") {
  TempDir dir;
  const auto expect_error = [&](const std::string& contents, const std::string& want) {
    write_text(dir / "bad.txt", contents);
    const std::string file = (dir / "bad.txt").string();
    try {
      (void)Vader::load(dir / "bad.txt");
      FAIL("no error for contents '" << contents << "'");
    } catch (const rlhf::error& e) {
      const std::string what = e.what();
      INFO("message: ", what);
      CHECK(what.find(file) != std::string::npos);
      CHECK(what.find(want) != std::string::npos);
    }
  };
  expect_error("good\t1.9\nbad -2.5\n", ":2: expected '<token><TAB><valence>'");
  expect_error("good\t1.9\nbad\tvery\n", ":2: valence 'very' of 'bad' is not a finite number");
  expect_error("good\t1.9x\n", ":1: valence '1.9x'");
  expect_error("good\t\t0.5\n", ":1: valence ''");
  expect_error("\t1.0\n", ":1: expected");
  expect_error("x\t1\ngood\tnan\n", ":2: valence 'nan'");
  expect_error("good\tinf\n", ":1: valence 'inf'");
  expect_error("", "has no entries");
  expect_error("\n\n", "has no entries");
  CHECK_THROWS_AS((void)Vader::load(dir / "missing.txt"), rlhf::error);
  try {
    (void)Vader::load(dir / "missing.txt");
  } catch (const rlhf::error& e) {
    CHECK(std::string(e.what()).find((dir / "missing.txt").string()) != std::string::npos);
  }
}
