#include "rlhf/io/safetensors.hpp"
#include "support/bytes.hpp"
#include "support/temp_dir.hpp"
#include "support/text.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <fstream>
#include <sstream>

using namespace rlhf;
using namespace rlhf::io;
namespace fs = std::filesystem;
using rlhf::test::TempDir;
using rlhf::test::le64;
using rlhf::test::write_bytes;

using rlhf::test::has;
using rlhf::test::read_bytes;

namespace {


// A file with the given header text and `data_bytes` zero bytes of data; header length stated as `n` if given.
std::string raw_file(const std::string& header, std::size_t data_bytes, std::optional<std::uint64_t> n = {}) {
  return le64(n.value_or(header.size())) + header + std::string(data_bytes, '\0');
}

// The message of the io_error that loading `p` throws, or "<no error>".
std::string load_error(const fs::path& p) {
  try {
    Safetensors::load(p);
  } catch (const io_error& e) {
    return e.what();
  }
  return "<no error>";
}

// Writes a file with header `header` and `data_bytes` of data, loads it and returns the error message,
// after checking that the message names the file.
std::string corrupt(const TempDir& dir, const std::string& header, std::size_t data_bytes,
                    std::optional<std::uint64_t> n = {}) {
  const auto p = dir / "bad.safetensors";
  write_bytes(p, raw_file(header, data_bytes, n));
  const auto msg = load_error(p);
  CHECK_MESSAGE(has(msg, p.string()), msg);
  return msg;
}

std::vector<float> iota_values(std::size_t n, float scale, float shift) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(i) * scale + shift;
  return v;
}

bool no_temporaries_in(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (has(e.path().filename().string(), ".tmp-")) return false;
  return true;
}


}  // namespace

TEST_CASE("safetensors: round trip keeps every byte, the metadata and the 8-byte alignment") {
  TempDir dir;
  const auto p = dir / "model.safetensors";
  const auto w = iota_values(3 * 4, 0.37f, -2.0f);
  const auto b = std::vector<float>{1e-30f, -0.0f, INFINITY, NAN, 3.4e38f};
  const float s = 7.25f;
  const std::vector<TensorView> tensors = {
      {.name = "h.0.attn.c_attn.weight", .shape = {3, 4}, .data = w.data()},
      {.name = "h.0.attn.c_attn.bias", .shape = {5}, .data = b.data()},
      {.name = "scalar", .shape = {}, .data = &s},
      {.name = "empty", .shape = {0, 3}, .data = nullptr},
  };
  const std::map<std::string, std::string> meta = {{"n_layer", "1"}, {"note", "ünïcode \"quoted\"\n"}};
  save_safetensors(p, tensors, meta);
  CHECK(no_temporaries_in(dir.path));

  const auto bytes = read_bytes(p);
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK((8 + n) % 8 == 0);
  CHECK(bytes.size() == 8 + n + (w.size() + b.size() + 1) * sizeof(float));

  const auto st = Safetensors::load(p);
  CHECK(st.metadata() == meta);
  REQUIRE(st.tensors().size() == 4);
  for (const auto& t : tensors) {
    REQUIRE(st.contains(t.name));
    const auto& info = st.info(t.name);
    CHECK(info.dtype == Dtype::f32);
    CHECK(info.shape == t.shape);
    std::vector<float> got(info.numel());
    st.read_f32(t.name, t.shape, got);
    if (!got.empty())  // an empty tensor's data may be null, which memcmp must not see
      CHECK(std::memcmp(got.data(), t.data, got.size() * sizeof(float)) == 0);  // bitwise, NaN and −0 included
    CHECK(st.bytes(t.name).size() == got.size() * sizeof(float));
  }
  CHECK_FALSE(st.contains("missing"));
}

TEST_CASE("safetensors: saving over an existing checkpoint replaces it") {
  TempDir dir;
  const auto p = dir / "ckpt.safetensors";
  const auto a = iota_values(4, 1, 0), b = iota_values(4, -1, 9);
  save_safetensors(p, std::vector<TensorView>{{.name = "x", .shape = {4}, .data = a.data()}});
  save_safetensors(p, std::vector<TensorView>{{.name = "x", .shape = {2, 2}, .data = b.data()}}, {{"step", "2"}});
  const auto st = Safetensors::load(p);
  std::vector<float> got(4);
  st.read_f32("x", {2, 2}, got);
  CHECK(got == b);
  CHECK(st.metadata().at("step") == "2");
  CHECK(no_temporaries_in(dir.path));
}

TEST_CASE("safetensors: a failed save throws and leaves the existing file and no temporary") {
  TempDir dir;
  const auto v = iota_values(4, 1, 0);
  const std::vector<TensorView> ok = {{.name = "x", .shape = {4}, .data = v.data()}};

  SUBCASE("directory missing") {
    const auto p = dir / "no-such-dir" / "ckpt.safetensors";
    try {
      save_safetensors(p, ok);
      FAIL("no error");
    } catch (const io_error& e) {
      CHECK_MESSAGE(has(e.what(), p.string()), e.what());
      CHECK_MESSAGE(has(e.what(), "No such file or directory"), e.what());
    }
    CHECK_FALSE(fs::exists(dir / "no-such-dir"));
  }
  SUBCASE("the rename fails after the data was written: the temporary is removed") {
    const auto p = dir / "occupied";
    fs::create_directories(p / "child");  // a non-empty directory cannot be replaced by a file
    CHECK_THROWS_AS(save_safetensors(p, ok), io_error);
    CHECK(fs::is_directory(p / "child"));
    CHECK(no_temporaries_in(dir.path));
  }
  SUBCASE("invalid tensors: the existing file keeps its bytes") {
    const auto p = dir / "ckpt.safetensors";
    save_safetensors(p, ok, {{"version", "1"}});
    const auto before = read_bytes(p);
    const std::vector<TensorView> twice = {ok[0], ok[0]};
    CHECK_THROWS_WITH_AS(save_safetensors(p, twice), doctest::Contains("'x' appears twice"), io_error);
    const std::vector<TensorView> f64 = {{.name = "x", .dtype = Dtype::f64, .shape = {4}, .data = v.data()}};
    CHECK_THROWS_WITH_AS(save_safetensors(p, f64), doctest::Contains("only F32"), io_error);
    const std::vector<TensorView> null = {{.name = "x", .shape = {4}, .data = nullptr}};
    CHECK_THROWS_WITH_AS(save_safetensors(p, null), doctest::Contains("null pointer"), io_error);
    const std::vector<TensorView> reserved = {{.name = "__metadata__", .shape = {4}, .data = v.data()}};
    CHECK_THROWS_WITH_AS(save_safetensors(p, reserved), doctest::Contains("__metadata__"), io_error);
    CHECK(read_bytes(p) == before);
    CHECK(no_temporaries_in(dir.path));
  }
}

TEST_CASE("safetensors: any dtype is written from its raw bytes and read back bit for bit") {
  TempDir dir;
  const auto p = dir / "raw.safetensors";
  const std::vector<double> d = {0.1, -0.0, 1e-310, NAN};
  const std::vector<std::uint64_t> u = {0, 1, 0xffffffffffffffffull};
  const std::vector<std::int32_t> i = {-7, 7};
  const std::vector<float> f = {1.5f};
  save_safetensors(p, std::vector<TensorView>{{.name = "d", .dtype = Dtype::f64, .shape = {2, 2}, .bytes = d.data()},
                                              {.name = "u", .dtype = Dtype::u64, .shape = {3}, .bytes = u.data()},
                                              {.name = "i", .dtype = Dtype::i32, .shape = {2}, .bytes = i.data()},
                                              {.name = "f", .shape = {1}, .data = f.data()},
                                              {.name = "none", .dtype = Dtype::f64, .shape = {0}}});
  const auto st = Safetensors::load(p);
  CHECK(st.info("d").dtype == Dtype::f64);
  CHECK(st.info("d").shape == std::vector<std::size_t>{2, 2});
  CHECK(st.info("u").dtype == Dtype::u64);
  CHECK(st.info("i").dtype == Dtype::i32);
  CHECK(st.info("none").numel() == 0);
  const auto same = [&](const char* name, const void* want, std::size_t n) {
    const auto b = st.bytes(name);
    return b.size() == n && std::memcmp(b.data(), want, n) == 0;
  };
  CHECK(same("d", d.data(), 4 * sizeof(double)));
  CHECK(same("u", u.data(), 3 * sizeof(std::uint64_t)));
  CHECK(same("i", i.data(), 2 * sizeof(std::int32_t)));
  CHECK(same("f", f.data(), sizeof(float)));
  const std::vector<TensorView> both = {{.name = "x", .shape = {1}, .data = f.data(), .bytes = f.data()}};
  CHECK_THROWS_WITH_AS(save_safetensors(p, both), doctest::Contains("gives both 'data' and 'bytes'"), io_error);
  const std::vector<TensorView> none = {{.name = "x", .dtype = Dtype::u64, .shape = {3}}};
  CHECK_THROWS_WITH_AS(save_safetensors(p, none), doctest::Contains("null pointer"), io_error);
}

TEST_CASE("safetensors: reads F16, BF16 and F64 as float32, with special values") {
  TempDir dir;
  // F16: 1, −2, 65504 (max), 2⁻²⁴ (smallest subnormal), −0, +Inf, NaN
  const std::uint16_t h[] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x7c00, 0x7e00};
  // BF16: 1, −3.5, 2⁻¹³³ (subnormal), −Inf
  const std::uint16_t bf[] = {0x3f80, 0xc060, 0x0001, 0xff80};
  const double d[] = {0.1, -1e300, 1e-50};
  std::string data(reinterpret_cast<const char*>(h), sizeof h);
  data.append(reinterpret_cast<const char*>(bf), sizeof bf);
  data.append(reinterpret_cast<const char*>(d), sizeof d);
  const std::string header = R"({"h":{"dtype":"F16","shape":[7],"data_offsets":[0,14]},)"
                             R"("b":{"dtype":"BF16","shape":[2,2],"data_offsets":[14,22]},)"
                             R"("d":{"dtype":"F64","shape":[3],"data_offsets":[22,46]}})";
  const auto p = dir / "mixed.safetensors";
  write_bytes(p, le64(header.size()) + header + data);  // unpadded header: the data is misaligned
  const auto st = Safetensors::load(p);

  std::vector<float> got(7);
  st.read_f32("h", {7}, got);
  CHECK(got[0] == 1.0f);
  CHECK(got[1] == -2.0f);
  CHECK(got[2] == 65504.0f);
  CHECK(got[3] == std::ldexp(1.0f, -24));
  CHECK((got[4] == 0.0f && std::signbit(got[4])));
  CHECK(got[5] == INFINITY);
  CHECK(std::isnan(got[6]));

  got.resize(4);
  st.read_f32("b", {2, 2}, got);
  CHECK(got[0] == 1.0f);
  CHECK(got[1] == -3.5f);
  CHECK(got[2] == std::ldexp(1.0f, -133));
  CHECK(got[3] == -INFINITY);

  got.resize(3);
  st.read_f32("d", {3}, got);
  CHECK(got[0] == 0.1f);
  CHECK(got[1] == -INFINITY);
  CHECK(got[2] == 0.0f);
}

TEST_CASE("safetensors: every F16 bit pattern converts like the hardware conversion") {
#if defined(__FLT16_MAX__)
  for (std::uint32_t bits = 0; bits < 0x10000; ++bits) {
    const auto want = static_cast<float>(std::bit_cast<_Float16>(static_cast<std::uint16_t>(bits)));
    const float got = io::detail::f16_to_f32(static_cast<std::uint16_t>(bits));
    if (std::isnan(want))
      REQUIRE(std::isnan(got));
    else
      REQUIRE(std::bit_cast<std::uint32_t>(got) == std::bit_cast<std::uint32_t>(want));
  }
#else
  MESSAGE("skipped: this compiler has no _Float16");
#endif
}

// ---- one test per way a file can be broken ---------------------------------------------------------

TEST_CASE("safetensors: a missing file") {
  TempDir dir;
  const auto msg = load_error(dir / "absent.safetensors");
  CHECK_MESSAGE(has(msg, "absent.safetensors"), msg);
  CHECK_MESSAGE(has(msg, "cannot open"), msg);
}

TEST_CASE("safetensors: a file shorter than 8 bytes") {
  TempDir dir;
  const auto p = dir / "short.safetensors";
  for (const std::string& bytes : {std::string(), std::string("\x02\0\0\0\0", 5)}) {
    write_bytes(p, bytes);
    const auto msg = load_error(p);
    CHECK_MESSAGE(has(msg, p.string()), msg);
    CHECK_MESSAGE(has(msg, "shorter than the 8-byte header length"), msg);
  }
}

TEST_CASE("safetensors: a header length past the end of the file") {
  TempDir dir;
  const auto msg = corrupt(dir, "{}", 0, 100);
  CHECK_MESSAGE(has(msg, "header length 100 runs past the end of the file (10 bytes"), msg);
}

TEST_CASE("safetensors: an absurdly large header length") {
  TempDir dir;
  const auto msg = corrupt(dir, "{}", 0, std::uint64_t{1} << 62);
  CHECK_MESSAGE(has(msg, "absurdly large"), msg);
}

TEST_CASE("safetensors: a header that is not JSON says where") {
  TempDir dir;
  const auto msg = corrupt(dir, R"({"x": {"dtype": "F32",, "shape": [1]}})", 0);
  CHECK_MESSAGE(has(msg, "not valid JSON at byte 23"), msg);
  CHECK_MESSAGE(has(msg, "column 23"), msg);
  CHECK_MESSAGE(has(corrupt(dir, "{\"x\xff\": 1}", 0), "not valid JSON"), "invalid UTF-8");
  CHECK_MESSAGE(has(corrupt(dir, "{} trailing", 0), "not valid JSON"), "text after the object");
}

TEST_CASE("safetensors: a header that is not an object") {
  TempDir dir;
  const auto msg = corrupt(dir, "[1, 2]", 0);
  CHECK_MESSAGE(has(msg, "header is a JSON array, not an object"), msg);
}

TEST_CASE("safetensors: missing fields") {
  TempDir dir;
  for (const char* missing : {"dtype", "shape", "data_offsets"}) {
    nlohmann::json entry = {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0, 4}}};
    entry.erase(missing);
    const auto msg = corrupt(dir, nlohmann::json{{"w", entry}}.dump(), 4);
    CHECK_MESSAGE(has(msg, std::string("tensor 'w' has no \"") + missing + "\" field"), msg);
  }
}

TEST_CASE("safetensors: ill-typed fields") {
  TempDir dir;
  const auto entry = [](const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return R"({"w":{"dtype":)" + dtype + R"(,"shape":)" + shape + R"(,"data_offsets":)" + offsets + "}}";
  };
  CHECK(has(corrupt(dir, R"({"w": 3})", 0), "tensor 'w' is a JSON number, not an object"));
  CHECK(has(corrupt(dir, entry("32", "[1]", "[0,4]"), 4), "\"dtype\" is a JSON number, not a string"));
  CHECK(has(corrupt(dir, entry("\"F32\"", "4", "[0,4]"), 4), "\"shape\" is a JSON number, not an array"));
  CHECK(has(corrupt(dir, entry("\"F32\"", "[-1]", "[0,4]"), 4), "holds -1, not a non-negative integer"));
  CHECK(has(corrupt(dir, entry("\"F32\"", "[1.5]", "[0,4]"), 4), "holds 1.5, not a non-negative integer"));
  CHECK(has(corrupt(dir, entry("\"F32\"", "[\"1\"]", "[0,4]"), 4), "not a non-negative integer"));
  CHECK(has(corrupt(dir, entry("\"F32\"", "[1]", "[0,4,8]"), 4), "\"data_offsets\" is [0,4,8], not two"));
  CHECK(has(corrupt(dir, entry("\"F32\"", "[1]", "[0]"), 4), "not two non-negative integers"));
  CHECK(has(corrupt(dir, entry("\"F32\"", "[1]", "[-4,0]"), 4), "not two non-negative integers"));
  CHECK(has(corrupt(dir, entry("\"F32\"", "[1]", "{}"), 4), "not two non-negative integers"));
  CHECK(has(corrupt(dir, entry("\"F32\"", "[1]", "[4,0]"), 4), "data_offsets [4, 0] end before they begin"));
  CHECK(has(corrupt(dir, R"({"__metadata__": [1]})", 0), "__metadata__ is a JSON array"));
  CHECK(has(corrupt(dir, R"({"__metadata__": {"step": 3}})", 0), "value of 'step' is a JSON number, not a string"));
}

TEST_CASE("safetensors: an unknown dtype") {
  TempDir dir;
  const auto msg = corrupt(dir, R"({"w":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}})", 4);
  CHECK_MESSAGE(has(msg, "tensor 'w' has unknown dtype \"F12\""), msg);
}

TEST_CASE("safetensors: data_offsets out of range") {
  TempDir dir;
  const auto msg = corrupt(dir, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[1000,1016]}})", 16);
  CHECK_MESSAGE(has(msg, "tensor 'w': data_offsets [1000, 1016] run past the end of the data buffer (16 bytes"), msg);
}

TEST_CASE("safetensors: overlapping data_offsets") {
  TempDir dir;
  const auto msg = corrupt(dir,
                           R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                           R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                           24);
  CHECK_MESSAGE(has(msg, "tensors 'a' [0, 16) and 'b' [8, 24) overlap"), msg);
}

TEST_CASE("safetensors: bytes that belong to no tensor") {
  TempDir dir;
  const auto hole = corrupt(dir,
                            R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                            R"("b":{"dtype":"F32","shape":[4],"data_offsets":[20,36]}})",
                            36);
  CHECK_MESSAGE(has(hole, "bytes [16, 20) of the data buffer belong to no tensor (a hole before 'b')"), hole);
  const auto tail = corrupt(dir, R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 20);
  CHECK_MESSAGE(has(tail, "4 bytes after the last tensor belong to no tensor"), tail);
}

TEST_CASE("safetensors: data_offsets that disagree with shape and dtype") {
  TempDir dir;
  const auto msg = corrupt(dir, R"({"w":{"dtype":"F16","shape":[2,3],"data_offsets":[0,24]}})", 24);
  CHECK_MESSAGE(has(msg, "tensor 'w': data_offsets [0, 24] span 24 bytes but shape [2, 3] of F16 needs 12"), msg);
  const auto huge = corrupt(dir, R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})", 16);
  CHECK_MESSAGE(has(huge, "is too large to address"), huge);
}

TEST_CASE("safetensors: truncated data") {
  TempDir dir;
  const auto p = dir / "cut.safetensors";
  const auto v = iota_values(8, 1, 0);
  save_safetensors(p, std::vector<TensorView>{{.name = "a", .shape = {4}, .data = v.data()},
                                              {.name = "b", .shape = {4}, .data = v.data() + 4}});
  const auto whole = read_bytes(p);
  write_bytes(p, whole.substr(0, whole.size() - 3));
  const auto msg = load_error(p);
  CHECK_MESSAGE(has(msg, p.string()), msg);
  CHECK_MESSAGE(has(msg, "tensor 'b': data_offsets [16, 32] run past the end of the data buffer (29 bytes"), msg);
  CHECK_MESSAGE(has(msg, "truncated"), msg);
}

TEST_CASE("safetensors: duplicate names") {
  TempDir dir;
  const auto msg = corrupt(dir,
                           R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                           R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                           8);
  CHECK_MESSAGE(has(msg, "header has the key 'w' more than once"), msg);
  const auto field = corrupt(dir, R"({"w":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}})", 4);
  CHECK_MESSAGE(has(field, "the key 'dtype' inside 'w' more than once"), field);
}

TEST_CASE("safetensors: read_f32 of a missing tensor, a wrong dtype or a wrong shape") {
  TempDir dir;
  const auto p = dir / "ints.safetensors";
  const std::string header = R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},)"
                             R"("w":{"dtype":"F32","shape":[2,3],"data_offsets":[16,40]}})";
  write_bytes(p, raw_file(header, 40));
  const auto st = Safetensors::load(p);
  std::vector<float> out(6);
  const auto error_of = [&](auto&& call) -> std::string {
    try {
      call();
    } catch (const rlhf::error& e) {
      return e.what();
    }
    return "<no error>";
  };

  auto msg = error_of([&] { st.read_f32("wte.weight", {2, 3}, out); });
  CHECK_MESSAGE(has(msg, p.string()), msg);
  CHECK_MESSAGE(has(msg, "no tensor named 'wte.weight' (the file has 2 tensors: 'ids', 'w')"), msg);
  CHECK_THROWS_AS(st.info("wte.weight"), io_error);

  msg = error_of([&] { st.read_f32("ids", {2}, std::span(out).first(2)); });
  CHECK_MESSAGE(has(msg, p.string()), msg);
  CHECK_MESSAGE(has(msg, "tensor 'ids' has dtype I64; only F32, F16, BF16 and F64"), msg);

  msg = error_of([&] { st.read_f32("w", {3, 2}, out); });
  CHECK_MESSAGE(has(msg, p.string()), msg);
  CHECK_MESSAGE(has(msg, "tensor 'w' has shape [2, 3] but [3, 2] was expected"), msg);
  CHECK_THROWS_AS(st.read_f32("w", {6}, out), io_error);
  CHECK_THROWS_AS(st.read_f32("w", {2, 3, 1}, out), io_error);

  CHECK_THROWS_WITH_AS(st.read_f32("w", {2, 3}, std::span(out).first(5)),
                       doctest::Contains("'out' has 5 elements but tensor 'w' of shape [2, 3] has 6"), shape_error);
  CHECK_NOTHROW(st.read_f32("w", {2, 3}, out));
}
