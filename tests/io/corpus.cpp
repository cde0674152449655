#include "rlhf/io/corpus.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>

#include "support/bytes.hpp"
#include "support/temp_dir.hpp"
#include "support/text.hpp"
#include "support/npm_data.hpp"

using namespace rlhf;
using namespace rlhf::io;
namespace fs = std::filesystem;
using rlhf::test::TempDir;
using rlhf::test::write_bytes;

using rlhf::test::has;
using rlhf::test::review_fixtures;

using rlhf::test::error_message;
namespace {


using records = std::vector<std::string>;

}  // namespace

TEST_CASE("parse_fortunes: records split on lines holding only %, flattened to one line") {
  CHECK(parse_fortunes("one\n%\ntwo\nlines\n%\n", "f") == records{"one", "two lines"});
  CHECK(parse_fortunes("no trailing separator\n%\nlast", "f") == records{"no trailing separator", "last"});
  CHECK(parse_fortunes("%\nleading separator\n%\n", "f") == records{"leading separator"});
  CHECK(parse_fortunes("a\n%\n%\n   \n\t\n%\nb\n%\n", "f") == records{"a", "b"});  // empty records dropped
  CHECK(parse_fortunes("", "f").empty());
  CHECK(parse_fortunes("%DCL-MEM-BAD, bad memory\n% not a separator\n%\n", "f") ==
        records{"%DCL-MEM-BAD, bad memory % not a separator"});
  CHECK(parse_fortunes("windows\r\n%\r\nline ends\r\n", "f") == records{"windows", "line ends"});
  // white space: tabs and runs of spaces collapse, blank lines inside a record too, ends trimmed
  CHECK(parse_fortunes("  A   quote.\n\n\t\t-- Someone,\t\"Book\"  \n", "f") ==
        records{"A quote. -- Someone, \"Book\""});
}

TEST_CASE("parse_fortunes: backspace overstrikes resolve as on a terminal") {
  CHECK(parse_fortunes("An _\bI satisfies", "f") == records{"An I satisfies"});               // underline
  CHECK(parse_fortunes("*____\b\b\b\bonly* ones", "f") == records{"*only* ones"});            // underlined word
  CHECK(parse_fortunes("B\bBo\bol\bld\bd", "f") == records{"Bold"});                          // bold
  CHECK(parse_fortunes("x\b_y", "f") == records{"xy"});                                       // underscore typed over
  CHECK(parse_fortunes("ab\b\b\bcd", "f") == records{"cd"});                                  // backspace at column 0
  CHECK(parse_fortunes("_\b\xc3\xa9t\xc3\xa9", "f") == records{"\xc3\xa9t\xc3\xa9"});         // UTF-8: é is one cell
  CHECK(parse_fortunes("Look out!\a\a\a Behind\x1b you", "f") == records{"Look out! Behind you"});  // BEL, ESC dropped
  CHECK(parse_fortunes("first\b\b\nX", "f") == records{"first X"});  // moves the cursor only; not across lines
}

TEST_CASE("parse_fortunes: invalid UTF-8 is an io_error naming the file and line") {
  const auto msg = error_message<io_error>([] { parse_fortunes("fine\n%\nbad \xff byte\n", "/x/cookie"); });
  CHECK(has(msg, "'/x/cookie'"));
  CHECK(has(msg, "line 3"));
  CHECK(has(msg, "UTF-8"));
  CHECK(has(error_message<io_error>([] { parse_fortunes("truncated \xe2\x82", "f"); }), "UTF-8"));
  CHECK(has(error_message<io_error>([] { parse_fortunes("overlong \xc0\xaf", "f"); }), "UTF-8"));
  CHECK(has(error_message<io_error>([] { parse_fortunes("surrogate \xed\xa0\x80", "f"); }), "UTF-8"));
  CHECK(parse_fortunes("euro \xe2\x82\xac, emoji \xf0\x9f\x98\x80", "f") ==
        records{"euro \xe2\x82\xac, emoji \xf0\x9f\x98\x80"});
}

TEST_CASE("read_fortunes: regular files sorted by name; .dat, .u8, links, hidden files and subdirectories skipped") {
  TempDir dir;
  write_bytes(dir / "zoo", "zebra\n%\n");
  write_bytes(dir / "apes", "ape one\n%\nape\ntwo\n%\n");
  write_bytes(dir / "apes.dat", std::string("\x00\x00\x00\x02%\xff\xfe", 8));  // binary index: would not parse
  fs::create_symlink("apes", dir / "apes.u8");
  fs::create_symlink("zoo", dir / "linked");
  write_bytes(dir / ".hidden", "hidden\n");
  fs::create_directories(dir / "off");
  write_bytes(dir / "off" / "rude", "rude\n%\n");
  CHECK(read_fortunes(dir.path) == records{"ape one", "ape two", "zebra"});
}

TEST_CASE("read_fortunes: errors name the directory or file") {
  TempDir dir;
  const auto missing = dir / "nowhere";
  CHECK(has(error_message<io_error>([&] { read_fortunes(missing); }), missing.string()));
  write_bytes(dir / "only.dat", "x");
  const auto none = error_message<io_error>([&] { read_fortunes(dir.path); });
  CHECK(has(none, "no fortune files"));
  CHECK(has(none, dir.path.string()));
  write_bytes(dir / "broken", "ok\n%\n\xfe\n");
  const auto bad = error_message<io_error>([&] { read_fortunes(dir.path); });
  CHECK(has(bad, (dir / "broken").string()));
  CHECK(has(bad, "line 3"));
}

// Debian's `fortunes` is installed by scripts/setup.sh; a missing directory is a failure, not a skip.
TEST_CASE("read_fortunes: the installed Debian fortunes") {
  REQUIRE_MESSAGE(fs::is_directory(default_fortunes_dir),
                  default_fortunes_dir, " is missing: run scripts/setup.sh (Debian package 'fortunes')");
  const auto all = read_fortunes();
  MESSAGE(all.size(), " fortunes in ", default_fortunes_dir);
  CHECK(all.size() > 10000);
  std::size_t bad = 0, bytes = 0;
  for (const auto& r : all) {
    bytes += r.size();
    const bool control = std::any_of(r.begin(), r.end(), [](char c) { return c >= 0 && c < 0x20; });
    if (r.empty() || control || r.front() == ' ' || r.back() == ' ' || has(r, "  ") || has(r, "\b")) ++bad;
  }
  CHECK(bad == 0);
  MESSAGE(bytes, " bytes of text");
  CHECK(read_fortunes() == all);  // the same installed data gives the same corpus
}

TEST_CASE("parse_reviews: {text, class} records; the trailing placeholder is skipped") {
  const std::string json = R"([{"text":"Great food.  ","class":1},{"text":"Awful \u00e9 service.","class":0},)"
                           R"({"text":"","class":null}])";
  const auto r = parse_reviews(json, "yelp", "yelp.json");
  REQUIRE(r.size() == 2);
  CHECK(r[0].text == "Great food.  ");  // kept as in the file
  CHECK(r[0].label == 1);
  CHECK(r[0].source == "yelp");
  CHECK(r[1].text == "Awful \xc3\xa9 service.");
  CHECK(r[1].label == 0);
}

TEST_CASE("parse_reviews: errors name the file, the record index and the field") {
  const auto err = [](const std::string& json) {
    return error_message<io_error>([&] { parse_reviews(json, "imdb", "/d/imdb.json"); });
  };
  CHECK(has(err("[{\"text\":\"a\",\"class\":1"), "not valid JSON"));
  CHECK(has(err("{\"text\":\"a\"}"), "not an array"));
  const auto e1 = err(R"([{"text":"a","class":1}, 7])");
  CHECK(has(e1, "'/d/imdb.json'"));
  CHECK(has(e1, "record 1"));
  CHECK(has(err(R"([{"class":1}])"), "record 0 has no \"text\""));
  CHECK(has(err(R"([{"text":3,"class":1}])"), "\"text\" is a JSON number"));
  CHECK(has(err(R"([{"text":"a"}])"), "record 0 has no \"class\""));
  CHECK(has(err(R"([{"text":"a","class":1},{"text":"b","class":2}])"), "record 1: \"class\" is 2"));
  CHECK(has(err(R"([{"text":"a","class":"1"}])"), "\"class\" is \"1\""));
  CHECK(has(err(R"([{"text":"a","class":0.5}])"), "\"class\" is 0.5"));
  CHECK(has(err(R"([{"text":"not empty","class":null}])"), "\"class\" is null"));  // only the empty placeholder skips
}

TEST_CASE("read_reviews: imdb, amazon, yelp in that order; a missing file is named") {
  TempDir dir;
  write_bytes(dir / "imdb.json", R"([{"text":"i0","class":0},{"text":"i1","class":1}])");
  write_bytes(dir / "amazon.json", R"([{"text":"a0","class":1}])");
  const auto missing = error_message<io_error>([&] { read_reviews(dir.path); });
  CHECK(has(missing, (dir / "yelp.json").string()));
  write_bytes(dir / "yelp.json", R"([{"text":"y0","class":0},{"text":"","class":null}])");
  const auto r = read_reviews(dir.path);
  REQUIRE(r.size() == 4);
  CHECK(r[0].text == "i0");
  CHECK(r[1].source == "imdb");
  CHECK(r[2].text == "a0");
  CHECK(r[2].source == "amazon");
  CHECK(r[2].label == 1);
  CHECK(r[3].source == "yelp");
}

TEST_CASE("read_reviews: npm sentiment@5.0.2 fixtures") {
  const auto all = read_reviews(review_fixtures());
  CHECK(all.size() == 3000);
  std::map<std::pair<std::string, int>, int> count;
  for (const auto& r : all) {
    ++count[{r.source, r.label}];
    CHECK(!r.text.empty());
  }
  for (const std::string_view s : review_sources)
    for (int label : {0, 1}) {
      const int n = count[std::pair<std::string, int>(s, label)];
      CHECK_MESSAGE(n == 500, s, " label ", label);
    }
  CHECK(all.front().text.starts_with("A very, very, very slow-moving, aimless movie"));
  CHECK(all.front().label == 0);

  const auto split = split_reviews(all);  // held_out_fraction 0.2, seed 0
  MESSAGE("split of the 3,000 reviews: ", split.train.size(), " train, ", split.held_out.size(), " held out");
  CHECK(split.train.size() + split.held_out.size() == all.size());
  CHECK(std::abs(static_cast<double>(split.held_out.size()) - 600.0) < 4 * std::sqrt(3000 * 0.2 * 0.8));
  std::set<std::string> train_texts;
  for (const auto& r : split.train) train_texts.insert(r.text);
  for (const auto& r : split.held_out) CHECK_MESSAGE(!train_texts.contains(r.text), "held out and trained: ", r.text);
}

TEST_CASE("split_reviews: deterministic, by text, independent of order and count") {
  std::vector<Review> reviews;
  for (int i = 0; i < 2000; ++i) reviews.push_back({"review number " + std::to_string(i), i % 2, "imdb"});
  reviews.push_back(reviews[5]);  // a duplicate text
  reviews.back().source = "yelp";

  const auto a = split_reviews(reviews, {.held_out_fraction = 0.25, .seed = 7});
  const auto b = split_reviews(reviews, {.held_out_fraction = 0.25, .seed = 7});
  const auto texts = [](const std::vector<Review>& v) {
    std::multiset<std::string> s;
    for (const auto& r : v) s.insert(r.text);
    return s;
  };
  CHECK(texts(a.held_out) == texts(b.held_out));
  CHECK(a.train.size() + a.held_out.size() == reviews.size());
  CHECK(std::abs(static_cast<double>(a.held_out.size()) - 500.25) < 4 * std::sqrt(2001 * 0.25 * 0.75));
  CHECK(texts(a.held_out).count(reviews[5].text) % 2 == 0);  // both copies on the same side

  std::vector<Review> reversed(reviews.rbegin(), reviews.rend() - 1000);  // other order, fewer records
  const auto c = split_reviews(reversed, {.held_out_fraction = 0.25, .seed = 7});
  const auto held_a = texts(a.held_out);
  CHECK(!c.held_out.empty());
  for (const auto& r : c.held_out) CHECK(held_a.contains(r.text));
  for (const auto& r : c.train) CHECK(!held_a.contains(r.text));

  const auto other_seed = split_reviews(reviews, {.held_out_fraction = 0.25, .seed = 8});
  CHECK(texts(other_seed.held_out) != texts(a.held_out));
  CHECK(split_reviews(reviews, {.held_out_fraction = 0.0}).held_out.empty());
  CHECK(split_reviews(reviews, {.held_out_fraction = 1.0}).train.empty());
  CHECK_THROWS_AS(split_reviews(reviews, {.held_out_fraction = 1.5}), config_error);
  CHECK_THROWS_AS(split_reviews(reviews, {.held_out_fraction = std::nan("")}), config_error);
}
