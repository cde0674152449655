// Safetensors files written by plain Python (no torch) read here, and ours read there. Skipped (exit 77, ctest
// "Skipped") without python3.
#include <doctest/doctest.h>

#include <map>

#include "python_fixture.hpp"
#include "rlhf/io/safetensors.hpp"

using namespace rlhf;
using namespace rlhf::io;
using namespace rlhf::test;

TEST_CASE("safetensors: reads a file written by plain Python, and plain Python reads ours") {
  skip_without_python();
  TempDir dir("rlhf-safetensors-python");
  std::string log;
  const auto theirs = dir / "python.safetensors";
  REQUIRE_MESSAGE(run_fixture(dir, "plain-write '" + theirs.string() + "'", log) == 0, log);
  const auto st = Safetensors::load(theirs);
  CHECK(st.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"writer", "plain python"}});
  std::vector<float> got(6);
  st.read_f32("a.f32", {2, 3}, got);
  CHECK(got == iota_values(6, 0.5f, -1.0f));
  got.resize(4);
  st.read_f32("b.f64", {4}, got);
  for (int i = 0; i < 4; ++i) CHECK(got[i] == static_cast<float>((i - 1.5) * 0.1));
  got.resize(3);
  st.read_f32("c.f16", {3}, got);
  CHECK(got == std::vector<float>{1.0f, -2.5f, 65504.0f});
  got.resize(2);
  st.read_f32("d.bf16", {1, 2}, got);
  CHECK(got == std::vector<float>{1.5f, -0.375f});
  const auto ids = st.bytes("e.i64");
  REQUIRE(ids.size() == 16);
  CHECK(io::detail::load_le<std::int64_t>(ids.data()) == 7);
  CHECK(io::detail::load_le<std::int64_t>(ids.data() + 8) == -9);

  const auto ours = dir / "ours.safetensors";
  const auto w = iota_values(12, 0.25f, -1.0f);
  const float s = 3.5f;
  save_safetensors(ours,
                   std::vector<TensorView>{{.name = "w", .shape = {3, 4}, .data = w.data()},
                                           {.name = "s", .shape = {}, .data = &s},
                                           {.name = "e", .shape = {0, 5}, .data = nullptr}},
                   {{"n_layer", "2"}, {"name", "tést ✓"}});
  CHECK_MESSAGE(run_fixture(dir, "plain-check '" + ours.string() + "'", log) == 0, log);
}
