// Crafted files that once crashed a loader or escaped it with a foreign exception (issue 10): each must now
// give the named rlhf error, naming the file and the field.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "rlhf/io/corpus.hpp"
#include "rlhf/io/reference_cache.hpp"
#include "rlhf/io/safetensors.hpp"
#include "support/temp_dir.hpp"
#include "support/bytes.hpp"
#include "support/text.hpp"

using namespace rlhf;
namespace fs = std::filesystem;
using rlhf::test::TempDir;
using rlhf::test::le64;
using rlhf::test::write_bytes;

using rlhf::test::has;

namespace {

// A safetensors file: length, header, then `data_bytes` zero bytes.
fs::path safetensors_file(const TempDir& dir, const std::string& header, std::size_t data_bytes = 0) {
  const auto p = dir / "hostile.safetensors";
  write_bytes(p, le64(header.size()) + header + std::string(data_bytes, '\0'));
  return p;
}

std::string nested(std::size_t depth, const std::string& inner = "1") {
  return std::string(depth, '[') + inner + std::string(depth, ']');
}

// The message of the io_error that loading `p` throws (any other exception fails the test).
std::string safetensors_error(const fs::path& p) {
  try {
    io::Safetensors::load(p);
  } catch (const io_error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace

TEST_CASE("hostile safetensors: a number beyond double's range (1e999) is an io_error, not json out_of_range") {
  TempDir dir;
  for (const std::string& header : std::vector<std::string>{
           R"({"w":{"dtype":"F32","shape":[1e999],"data_offsets":[0,4]}})", R"({"__metadata__":{"a":1e999}})",
           R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,-1e999]}})",
           R"({"w":{"dtype":"F32","shape":[1)" + std::string(100'000, '0') + R"(],"data_offsets":[0,4]}})"}) {
    const auto p = safetensors_file(dir, header, 4);
    const auto msg = safetensors_error(p);
    CHECK_MESSAGE(has(msg, p.string()), msg);
    CHECK_MESSAGE(has(msg, "header"), msg);
    CHECK(msg.size() < 600);
  }
}

TEST_CASE("hostile safetensors: JSON nested 75,000 deep in a field is refused without recursion") {
  TempDir dir;
  const auto shape =
      safetensors_file(dir, R"({"w":{"dtype":"F32","shape":)" + nested(75'000) + R"(,"data_offsets":[0,4]}})", 4);
  const auto msg = safetensors_error(shape);
  CHECK_MESSAGE(has(msg, shape.string()), msg);
  CHECK_MESSAGE(has(msg, "nests JSON more than 64 levels"), msg);
  const auto meta = safetensors_file(dir, R"({"__metadata__":{"k":)" + nested(75'000) + "}}");
  CHECK_MESSAGE(has(safetensors_error(meta), "more than 64 levels"), safetensors_error(meta));
  // Within the limit, a nested value in a field is described, not dumped whole.
  const auto wide = safetensors_file(dir,
                                     R"({"w":{"dtype":"F32","shape":[)" +
                                         nested(40, '"' + std::string(5000, 'x') + '"') + R"(],"data_offsets":[0,4]}})",
                                     4);
  const auto wide_msg = safetensors_error(wide);
  CHECK_MESSAGE(has(wide_msg, "\"shape\""), wide_msg);
  CHECK(wide_msg.size() < 600);
}

TEST_CASE("hostile safetensors: long names and values are clipped in messages") {
  TempDir dir;
  const std::string name(100'000, 'n');
  const auto p = safetensors_file(
      dir, "{\"" + name + R"(":{"dtype":")" + std::string(100'000, 'd') + R"(","shape":[1],"data_offsets":[0,4]}})", 4);
  const auto msg = safetensors_error(p);
  CHECK_MESSAGE(has(msg, "unknown dtype"), msg);
  CHECK_MESSAGE(has(msg, "(100000 bytes)"), msg);
  CHECK(msg.size() < 600);
}

// Every loader quotes untrusted text through clip (a merges.txt line, a key, a name).
TEST_CASE("a NUL byte quoted in a message is written \\x00, so the message goes on after it") {
  using rlhf::io::detail::clip;
  CHECK(clip(std::string("a\0b", 3)) == "a\\x00b");
  CHECK(clip(std::string("\0\0", 2)) == "\\x00\\x00");
  const std::string long_text = std::string("x\0", 2) + std::string(200, 'y');
  CHECK(clip(long_text).rfind("x\\x00yyy", 0) == 0);
  CHECK(has(clip(long_text), "(202 bytes)"));
}

TEST_CASE("hostile safetensors: the header is checked before the data is read") {
  TempDir dir;
  // An 8 GB file (sparse: no disk used) whose header describes none of it: refused at once, nothing allocated.
  const auto empty_header = safetensors_file(dir, "{}  ");
  fs::resize_file(empty_header, std::uint64_t(8) << 30);
  const auto msg = safetensors_error(empty_header);
  CHECK_MESSAGE(has(msg, "bytes after the last tensor belong to no tensor"), msg);

  // A 4 GB tensor the header does describe: loads by mapping, without reading 4 GB.
  const std::size_t n = std::size_t(1) << 30;
  const std::string header = R"({"big":{"dtype":"F32","shape":[)" + std::to_string(n) + R"(],"data_offsets":[0,)" +
                             std::to_string(4 * n) + "]}}";
  const auto big = safetensors_file(dir, header);
  fs::resize_file(big, 8 + header.size() + 4 * n);
  const auto st = io::Safetensors::load(big);
  CHECK(st.info("big").numel() == n);
  CHECK(st.bytes("big").size() == 4 * n);
  CHECK(st.bytes("big")[4 * n - 1] == std::byte{0});

  // Offsets near 2^64 and shapes whose byte count overflows.
  const auto far = safetensors_file(
      dir, R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]}})", 4);
  CHECK_MESSAGE(has(safetensors_error(far), "'w'"), safetensors_error(far));
  const auto wrap =
      safetensors_file(dir, R"({"w":{"dtype":"F64","shape":[2305843009213693952,2],"data_offsets":[0,0]}})");
  CHECK_MESSAGE(has(safetensors_error(wrap), "too large to address"), safetensors_error(wrap));
}

TEST_CASE("hostile reference cache: NaN, Inf and positive log-probs are refused, naming the file and tensor") {
  TempDir dir;
  const double bad_values[] = {std::nan(""), std::numeric_limits<double>::infinity(),
                               -std::numeric_limits<double>::infinity(), 0.5};
  for (const double bad : bad_values) {
    const float pairs[] = {-1.0f, 0.0f, static_cast<float>(bad), 0.0f};
    const io::TensorView views[] = {{"batch.0.reference", io::Dtype::f32, {2, 2}, pairs}};
    const auto path = dir / "cache.safetensors";
    io::save_safetensors(path, views, {{"format", "rlhf.reference_logps.v1"}, {"batches", "1"}});
    std::vector<RankedBatch> data{RankedBatch{.k = 2, .responses = TokenBatch::zeros(2, 3)}};
    try {
      io::load_reference_logps(path, std::span<RankedBatch>(data));
      FAIL("no error for ", bad);
    } catch (const value_error& e) {
      const std::string msg = e.what();
      CHECK_MESSAGE(has(msg, path.string()), msg);
      CHECK_MESSAGE(has(msg, "'batch.0.reference' row 1"), msg);
      CHECK_MESSAGE(has(msg, "not a log-probability"), msg);
    }
  }
}

TEST_CASE("reference cache: NaN, Inf and positive log-probs are refused on save too, writing nothing") {
  TempDir dir;
  const double bad_values[] = {std::nan(""), std::numeric_limits<double>::infinity(), 1e-3};
  for (const double bad : bad_values) {
    std::vector<PreferenceBatch> data{{TokenBatch::zeros(2, 3), TokenBatch::zeros(2, 3), {-1.0, -2.0}, {-3.0, bad}}};
    const auto path = dir / "cache.safetensors";
    CHECK_THROWS_WITH_AS(io::save_reference_logps(path, std::span<const PreferenceBatch>(data)),
                         doctest::Contains("batch 0 'reference_rejected' row 1"), value_error);
    CHECK(!fs::exists(path));
  }
}

TEST_CASE("hostile files: a FIFO is refused as not a regular file, without waiting for a writer") {
  TempDir dir;
  const auto fifo = dir / "fifo.safetensors";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const auto msg = safetensors_error(fifo);
  CHECK_MESSAGE(has(msg, fifo.string()), msg);
  CHECK_MESSAGE(has(msg, "not a regular file"), msg);
  fs::create_directories(dir / "reviews");
  REQUIRE(::mkfifo((dir / "reviews" / "imdb.json").c_str(), 0600) == 0);
  CHECK_THROWS_WITH_AS(io::read_reviews(dir / "reviews"), doctest::Contains("imdb.json' is not a regular file"),
                       io_error);
  fs::remove(dir / "reviews" / "imdb.json");
  std::ofstream(dir / "reviews" / "imdb.json") << "[]";
  fs::resize_file(dir / "reviews" / "imdb.json", std::uintmax_t(4) << 30);  // sparse: refused by its size
  CHECK_THROWS_WITH_AS(io::read_reviews(dir / "reviews"), doctest::Contains("more than the limit"), io_error);
}

TEST_CASE("hostile reviews: 1e999, deep nesting and huge values give an io_error naming the file") {
  const auto error_of = [](const std::string& json) {
    try {
      io::parse_reviews(json, "imdb", "crafted.json");
    } catch (const io_error& e) {
      return std::string(e.what());
    }
    return std::string("<no error>");
  };
  const auto big_number = error_of(R"([{"text":"a","class":1e999}])");
  CHECK_MESSAGE(has(big_number, "reviews file 'crafted.json'"), big_number);
  const auto long_number = error_of(R"([{"text":"a","class":1)" + std::string(100'000, '0') + "}]");
  CHECK_MESSAGE(has(long_number, "'crafted.json'"), long_number);
  CHECK(long_number.size() < 400);
  const auto deep = error_of(R"([{"text":"a","class":)" + nested(75'000) + "}]");
  CHECK_MESSAGE(has(deep, "'crafted.json'"), deep);
  CHECK_MESSAGE(has(deep, "more than 64 levels"), deep);
  const auto wide = error_of(R"([{"text":"a","class":[)" + nested(50, '"' + std::string(100'000, 'x') + '"') + "]}]");
  CHECK_MESSAGE(has(wide, "record 0: \"class\" is"), wide);
  CHECK(wide.size() < 400);
  const auto long_string = error_of(R"([{"text":"a","class":")" + std::string(100'000, 'x') + "\"}]");
  CHECK_MESSAGE(has(long_string, "..."), long_string);
  CHECK(long_string.size() < 400);
}
