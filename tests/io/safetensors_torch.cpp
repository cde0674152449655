// Safetensors interop with PyTorch: torch's own F16/BF16/F64 conversions as the reference for ours, and our
// GPT-2-named tensors read back into torch. Skipped (exit 77, ctest "Skipped") without python3-torch.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>

#include "python_fixture.hpp"
#include "rlhf/io/safetensors.hpp"

using namespace rlhf;
using namespace rlhf::io;
using namespace rlhf::test;

TEST_CASE("safetensors: interop with PyTorch tensors") {
  skip_without_python("torch", "python3-torch");
  TempDir dir("rlhf-safetensors-torch");
  std::string log;
  // Torch's own F16/BF16/F64 → F32 conversion is the reference for ours, special values included.
  REQUIRE_MESSAGE(run_fixture(dir, "torch-write '" + dir.path.string() + "'", log) == 0, log);
  const auto mixed = Safetensors::load(dir / "torch_mixed.safetensors");
  const auto want = Safetensors::load(dir / "torch_as_f32.safetensors");
  CHECK(mixed.metadata().at("format") == "pt");
  for (const auto& t : want.tensors()) {
    CAPTURE(t.name);
    REQUIRE(mixed.contains(t.name));
    std::vector<float> got(t.numel()), ref(t.numel());
    mixed.read_f32(t.name, t.shape, got);
    want.read_f32(t.name, t.shape, ref);
    std::size_t differ = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
      differ += std::isnan(ref[i]) ? !std::isnan(got[i])
                                   : std::bit_cast<std::uint32_t>(got[i]) != std::bit_cast<std::uint32_t>(ref[i]);
    CHECK(differ == 0);
  }
  CHECK(mixed.info("ids").dtype == Dtype::i64);

  // GPT-2-named tensors of ours, read back into torch and compared there.
  const auto ours = dir / "ours_gpt2.safetensors";
  const auto wte = iota_values(16 * 8, 0.01f, -0.5f), wpe = iota_values(4 * 8, -0.02f, 0.3f);
  save_safetensors(ours,
                   std::vector<TensorView>{{.name = "wte.weight", .shape = {16, 8}, .data = wte.data()},
                                           {.name = "wpe.weight", .shape = {4, 8}, .data = wpe.data()}},
                   {{"n_embd", "8"}});
  CHECK_MESSAGE(run_fixture(dir, "torch-check '" + ours.string() + "'", log) == 0, log);
}
