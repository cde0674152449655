#pragma once
// Text corpora for the sentiment example, read from packages installed by name (docs/io/data.md):
//   - fortunes: Debian's `fortunes` + `fortunes-min`, /usr/share/games/fortunes — about 15k short English
//     texts, the language model's pre-training text;
//   - reviews: npm `sentiment@5.0.2`'s test/fixtures/{imdb,amazon,yelp}.json — 3 x 1,000 review sentences
//     labelled 0 (negative) / 1 (positive), the fine-tuning text and the source of prompts.
// Every reader returns its records in a fixed order (files sorted by name, records in file order), so the
// same installed data always gives the same corpus. Every error is an rlhf::io_error naming the file.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "rlhf/core/error.hpp"  // rlhf::io_error
#include "rlhf/io/untrusted.hpp"  // detail::clip, json_brief, max_json_depth

namespace rlhf::io {

inline constexpr std::string_view default_fortunes_dir = "/usr/share/games/fortunes";

namespace detail {

inline std::string read_text_file(const std::filesystem::path& path, std::string_view fn) {
  std::error_code ec;
  if (const auto st = std::filesystem::status(path, ec); !ec && !std::filesystem::is_regular_file(st))
    fail<io_error>(fn, ": '", path.string(), "' is not a regular file");  // a FIFO would block the read
  constexpr std::uintmax_t max_bytes = std::uintmax_t(1) << 28;  // the corpora's files are at most megabytes
  if (const auto size = std::filesystem::file_size(path, ec); !ec && size > max_bytes)
    fail<io_error>(fn, ": '", path.string(), "' is ", size, " bytes, more than the limit of ", max_bytes);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail<io_error>(fn, ": cannot open '", path.string(), "'");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail<io_error>(fn, ": read error in '", path.string(), "'");
  return s;
}

// Length in bytes of the UTF-8 sequence starting at s[i], or 0 if it is not valid UTF-8
// (bad lead byte, missing continuation byte, overlong form, surrogate, or above U+10FFFF).
inline std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  std::size_t n;
  std::uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) n = 2, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef) n = 3, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4) n = 4, cp = c & 0x07;
  else return 0;
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3f);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return 0;
  return n;
}

// One line as a terminal would show it: a backspace moves the cursor back one character, and a character
// typed over another merges with it ("_\bx" and "x\b_" give x, "x\bx" gives x; otherwise the later one
// wins). Tabs and other ASCII white space become one space each; other control characters (BEL, ESC, ...)
// are dropped. Characters are UTF-8 code points. Throws io_error on invalid UTF-8.
inline std::string render_overstrikes(std::string_view line, std::string_view file, std::size_t line_no) {
  std::vector<std::string_view> cells;  // one code point per display cell
  std::size_t cursor = 0;
  for (std::size_t i = 0; i < line.size();) {
    const std::size_t n = utf8_sequence_length(line, i);
    if (n == 0) fail<io_error>("fortunes file '", file, "' line ", line_no, ": invalid UTF-8 at byte ", i);
    std::string_view cp = line.substr(i, n);
    i += n;
    if (cp == "\b") {
      if (cursor > 0) --cursor;
      continue;
    }
    if (n == 1) {
      const unsigned char c = static_cast<unsigned char>(cp[0]);
      if (c == '\t' || c == '\v' || c == '\f' || c == '\r') cp = " ";
      else if (c < 0x20 || c == 0x7f) continue;
    }
    if (cursor == cells.size()) cells.push_back(cp);
    else if (cp != "_") cells[cursor] = cp;  // over "_" or an equal character the result is cp too
    ++cursor;
  }
  std::string out;
  for (const auto cell : cells) out += cell;
  return out;
}

// Joins lines with one space, collapses runs of spaces, trims both ends.
inline void append_collapsed(std::string& out, std::string_view text) {
  for (const char c : text) {
    if (c == ' ' || c == '\n') {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
}

}  // namespace detail

// The records of one fortune file's contents. Records are separated by lines holding only "%"; each record
// is rendered (backspace overstrikes resolved, control characters dropped) and flattened to one line (line
// breaks and runs of white space become one space, ends trimmed). Records empty after that are left out.
// `name` is used in error messages.
inline std::vector<std::string> parse_fortunes(std::string_view contents, std::string_view name) {
  std::vector<std::string> records;
  std::string record;
  std::size_t line_no = 0;
  const auto finish = [&] {
    while (!record.empty() && record.back() == ' ') record.pop_back();
    if (!record.empty()) records.push_back(std::move(record));
    record.clear();
  };
  for (std::size_t pos = 0; pos < contents.size();) {
    std::size_t end = contents.find('\n', pos);
    if (end == std::string_view::npos) end = contents.size();
    std::string_view line = contents.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line == "%") {
      finish();
      continue;
    }
    detail::append_collapsed(record, detail::render_overstrikes(line, name, line_no));
    detail::append_collapsed(record, "\n");
  }
  finish();
  return records;
}

// Every fortune in `dir`: the regular files directly inside it, sorted by name, skipping the strfile
// indexes (*.dat), the *.u8 names, symbolic links, hidden files and subdirectories (Debian keeps the
// offensive and non-English collections in subdirectories). Throws io_error naming the directory or file.
inline std::vector<std::string> read_fortunes(const std::filesystem::path& dir = default_fortunes_dir) {
  namespace fs = std::filesystem;
  constexpr std::string_view fn = "read_fortunes";
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail<io_error>(fn, ": '", dir.string(), "' is not a directory (Debian package 'fortunes': scripts/setup.sh)");
  std::vector<fs::path> files;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    const fs::file_status st = it->symlink_status(ec);
    if (ec) break;
    if (!fs::is_regular_file(st) || name.empty() || name[0] == '.') continue;
    if (p.extension() == ".dat" || p.extension() == ".u8") continue;
    files.push_back(p);
  }
  if (ec) fail<io_error>(fn, ": cannot list '", dir.string(), "': ", ec.message());
  if (files.empty()) fail<io_error>(fn, ": no fortune files in '", dir.string(), "'");
  std::sort(files.begin(), files.end());

  std::vector<std::string> all;
  for (const auto& p : files) {
    auto records = parse_fortunes(detail::read_text_file(p, fn), p.string());
    all.insert(all.end(), std::make_move_iterator(records.begin()), std::make_move_iterator(records.end()));
  }
  return all;
}

// ---- review sentences -------------------------------------------------------------------------

struct Review {
  std::string text;    // as in the file (not trimmed or normalised)
  int label = 0;       // 0 negative, 1 positive
  std::string source;  // "imdb", "amazon" or "yelp"
};

inline constexpr std::string_view review_sources[] = {"imdb", "amazon", "yelp"};

// The records of one fixture file: a JSON array of {"text": string, "class": 0 | 1}. The files end with a
// placeholder record {"text": "", "class": null}, which is skipped; any other record that is not an object
// with a string "text" and a "class" of 0 or 1 is an io_error naming the file, the index and the field.
inline std::vector<Review> parse_reviews(std::string_view contents, std::string_view source, std::string_view name) {
  const auto bad = [&](const auto&... parts) { fail<io_error>("reviews file '", name, "': ", parts...); };
  const auto bounded_depth = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
    using E = nlohmann::json::parse_event_t;
    if ((event == E::object_start || event == E::array_start) && depth >= detail::max_json_depth)
      bad("JSON nests more than ", detail::max_json_depth, " levels deep");
    return true;
  };
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(contents, bounded_depth);
  } catch (const nlohmann::json::parse_error& e) {
    bad("not valid JSON: ", detail::clip(e.what(), 200));
  } catch (const nlohmann::json::exception& e) {  // e.g. out_of_range for a number such as 1e999
    bad("cannot be read as JSON: ", detail::clip(e.what(), 200));
  }
  if (!doc.is_array()) bad("the top level is a JSON ", doc.type_name(), ", not an array");
  std::vector<Review> out;
  out.reserve(doc.size());
  for (std::size_t i = 0; i < doc.size(); ++i) {
    const auto& r = doc[i];
    if (!r.is_object()) bad("record ", i, " is a JSON ", r.type_name(), ", not an object");
    const auto text = r.find("text");
    const auto cls = r.find("class");
    if (text == r.end()) bad("record ", i, " has no \"text\" field");
    if (!text->is_string()) bad("record ", i, ": \"text\" is a JSON ", text->type_name(), ", not a string");
    if (cls != r.end() && cls->is_null() && text->get_ref<const std::string&>().empty()) continue;  // placeholder
    if (cls == r.end()) bad("record ", i, " has no \"class\" field");
    if (!cls->is_number_integer() || (cls->get<long long>() != 0 && cls->get<long long>() != 1))
      bad("record ", i, ": \"class\" is ", detail::json_brief(*cls), ", not 0 or 1");
    out.push_back({text->get<std::string>(), static_cast<int>(cls->get<long long>()), std::string(source)});
  }
  return out;
}

// imdb.json, amazon.json and yelp.json from `fixtures_dir` (npm sentiment@5.0.2's test/fixtures; installed
// by scripts/fetch_npm_data.sh), in that order: 3,000 reviews, 500 of each label per file.
inline std::vector<Review> read_reviews(const std::filesystem::path& fixtures_dir) {
  std::vector<Review> all;
  for (const std::string_view source : review_sources) {
    const auto path = fixtures_dir / (std::string(source) + ".json");
    auto part = parse_reviews(detail::read_text_file(path, "read_reviews"), source, path.string());
    all.insert(all.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
  }
  return all;
}

// A deterministic train / held-out split. A review is held out when the hash of its text (64-bit FNV-1a,
// mixed with the seed) falls below held_out_fraction of the hash range. The decision depends on the text
// and the seed alone: not on the order or number of records, and duplicated texts always land on the same
// side, so no held-out sentence is also trained on. The held-out share is held_out_fraction only on
// average (a binomial draw).
struct ReviewSplitConfig {
  double held_out_fraction = 0.2;
  std::uint64_t seed = 0;
};

struct ReviewSplit {
  std::vector<Review> train, held_out;  // each in input order
};

inline double split_hash_unit(std::string_view text, std::uint64_t seed) {
  std::uint64_t h = 0xcbf29ce484222325ull ^ (seed * 0x9e3779b97f4a7c15ull);
  for (const char c : text) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  h ^= h >> 33;  // finaliser (murmur3's fmix64) so that nearby texts spread over the whole range
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return static_cast<double>(h >> 11) * 0x1.0p-53;  // [0, 1)
}

inline ReviewSplit split_reviews(const std::vector<Review>& reviews, const ReviewSplitConfig& config = {}) {
  require_in_range("split_reviews", "held_out_fraction", config.held_out_fraction, 0.0, 1.0);
  ReviewSplit s;
  for (const auto& r : reviews)
    (split_hash_unit(r.text, config.seed) < config.held_out_fraction ? s.held_out : s.train).push_back(r);
  return s;
}

}  // namespace rlhf::io
