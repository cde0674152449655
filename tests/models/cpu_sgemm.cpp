// The CPU kernels' float32 products (cpu/sgemm.hpp) on every instruction level this CPU has, against a double sum
// of the same operands; the bf16-rounding products against the hardware bf16 path; thread-count independence; the
// level choice (RLHF_CPU_ISA's values, IsaCap); and a bf16 GPT on each level against the float32 one. ctest also
// runs models_llama_policy and models_gpt_bf16_matmul with RLHF_CPU_ISA set to each level (tests/CMakeLists.txt),
// so every path this machine has runs the models' own tests.
#include "rlhf/models/cpu/sgemm.hpp"
#include "rlhf/models/cpu/dot_rows.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "models/gpt_support.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/models/cpu/isa.hpp"
#include "rlhf/models/gpt/bf16_matmul.hpp"
#include "rlhf/models/gpt/model.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

namespace cpu = rlhf::cpu;
using cpu::Isa;

std::vector<float> random_values(std::size_t n, std::uint64_t seed) {
  rlhf::Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = float(rng.normal());
  return v;
}

// Every level from portable up to the CPU's.
std::vector<Isa> levels() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::portable, Isa::avx2, Isa::avx512, Isa::avx512_bf16, Isa::amx_bf16})
    if (isa <= cpu::detected_isa()) out.push_back(isa);
  return out;
}

struct Shape {
  std::size_t M, N, K;
};

// Edges of both tiles (6 × 16, 12 × 32), k-blocks of 256 with a remainder, one-element products.
const std::vector<Shape> shapes{{1, 1, 1}, {7, 17, 5}, {13, 33, 300}, {97, 513, 257}, {200, 70, 600}, {12, 32, 256},
                                {25, 100, 1}};

}  // namespace

TEST_CASE("sgemm: every level equals a double sum of the operands to float32 rounding, every layout and edge") {
  MESSAGE("levels run: up to " << std::string(cpu::isa_name(cpu::detected_isa())));
  for (const Isa isa : levels())
    for (const auto& [M, N, K] : shapes)
      for (int layout = 0; layout < 4; ++layout)
        for (const bool accumulate : {false, true}) {
          const bool ta = layout & 1, tb = layout & 2;
          const auto A = random_values(M * K, 1 + M), B = random_values(K * N, 2 + N);
          const std::size_t ldc = N + 3;  // a row stride wider than the product
          const auto C0 = random_values(M * ldc, 3 + K);
          // a [M, K] stored as given or as its transpose [K, M]; the same for b
          const cpu::Operand a = ta ? cpu::Operand{A.data(), 1, M} : cpu::row_major(A.data(), K);
          const cpu::Operand b = tb ? cpu::Operand{B.data(), 1, K} : cpu::row_major(B.data(), N);
          std::vector<float> C = C0;
          cpu::sgemm(C.data(), ldc, a, b, M, N, K, accumulate, cpu::OperandRounding::none, isa);
          std::size_t wrong = 0, padding_touched = 0;
          for (std::size_t i = 0; i < M; ++i) {
            for (std::size_t j = 0; j < N; ++j) {
              double want = accumulate ? C0[i * ldc + j] : 0.0, size = std::abs(want);
              for (std::size_t k = 0; k < K; ++k) {
                const double p = double(a.at(i, k)) * double(b.at(k, j));
                want += p, size += std::abs(p);
              }
              // each float32 addition rounds by at most 2⁻²⁴ of a partial sum, itself at most `size`
              wrong += std::abs(C[i * ldc + j] - want) > (K + 2) * 0x1p-24 * size + 1e-30;
            }
            for (std::size_t j = N; j < ldc; ++j) padding_touched += C[i * ldc + j] != C0[i * ldc + j];
          }
          INFO(cpu::isa_name(isa), " M ", M, " N ", N, " K ", K, " ta ", ta, " tb ", tb, " acc ", accumulate);
          CHECK(wrong == 0);
          CHECK(padding_touched == 0);
        }
}

TEST_CASE("sgemm: K = 0 gives zero, or leaves c as it is when accumulating") {
  for (const Isa isa : levels()) {
    std::vector<float> c(6, 5.0f);
    cpu::sgemm(c.data(), 3, {nullptr, 0, 0}, {nullptr, 0, 0}, 2, 3, 0, true, cpu::OperandRounding::none, isa);
    CHECK(c == std::vector<float>(6, 5.0f));
    cpu::sgemm(c.data(), 3, {nullptr, 0, 0}, {nullptr, 0, 0}, 2, 3, 0, false, cpu::OperandRounding::none, isa);
    CHECK(c == std::vector<float>(6, 0.0f));
  }
}

TEST_CASE("sgemm: the result does not depend on the number of threads") {
#ifdef _OPENMP
  const int threads = omp_get_max_threads();
  const std::size_t M = 300, N = 700, K = 520;  // large enough to be split between threads
  const auto A = random_values(M * K, 4), B = random_values(K * N, 5);
  for (const Isa isa : levels()) {
    if (isa == Isa::portable) continue;  // Eigen's product: its own blocking
    std::vector<float> one(M * N), many(M * N);
    omp_set_num_threads(1);
    cpu::sgemm(one.data(), N, cpu::row_major(A.data(), K), cpu::row_major(B.data(), N), M, N, K, false,
               cpu::OperandRounding::none, isa);
    omp_set_num_threads(4);
    cpu::sgemm(many.data(), N, cpu::row_major(A.data(), K), cpu::row_major(B.data(), N), M, N, K, false,
               cpu::OperandRounding::none, isa);
    INFO(cpu::isa_name(isa));
    CHECK(one == many);
  }
  omp_set_num_threads(threads);
#else
  MESSAGE("built without OpenMP: one thread only");
#endif
}

TEST_CASE("dot_rows: every level equals a double sum of each pair of rows to float32 rounding, tiles' edges too") {
  // M across the tiles' rows (4, 8) and their remainders; N across the 3-row blocks; K across vectors of 8 and 16
  // with a scalar tail; one product large enough to split between threads
  const std::vector<Shape> row_shapes{{1, 1, 1}, {3, 5, 7}, {8, 3, 16}, {9, 10, 33}, {16, 301, 576}, {17, 64, 250},
                                      {5, 3000, 100}};
  for (const Isa isa : levels())
    for (const auto& [M, N, K] : row_shapes) {
      const auto A = random_values(M * K, 7 + M), B = random_values(N * K, 8 + N);
      const std::size_t ldc = N + 2;
      std::vector<float> C(M * ldc, -7.0f);
      cpu::dot_rows(C.data(), ldc, A.data(), B.data(), M, N, K, isa);
      std::size_t wrong = 0, padding_touched = 0;
      for (std::size_t i = 0; i < M; ++i) {
        for (std::size_t j = 0; j < N; ++j) {
          double want = 0.0, size = 0.0;
          for (std::size_t k = 0; k < K; ++k) {
            const double p = double(A[i * K + k]) * double(B[j * K + k]);
            want += p, size += std::abs(p);
          }
          wrong += std::abs(C[i * ldc + j] - want) > (K + 2) * 0x1p-24 * size + 1e-30;
        }
        for (std::size_t j = N; j < ldc; ++j) padding_touched += C[i * ldc + j] != -7.0f;
      }
      INFO(std::string(cpu::isa_name(isa)), " M ", M, " N ", N, " K ", K);
      CHECK(wrong == 0);
      CHECK(padding_touched == 0);
    }
#ifdef _OPENMP
  const int threads = omp_get_max_threads();
  const std::size_t M = 16, N = 4099, K = 96;
  const auto A = random_values(M * K, 9), B = random_values(N * K, 10);
  for (const Isa isa : levels()) {
    if (isa == Isa::portable) continue;  // Eigen's product: its own blocking
    std::vector<float> one(M * N), many(M * N);
    omp_set_num_threads(1);
    cpu::dot_rows(one.data(), N, A.data(), B.data(), M, N, K, isa);
    omp_set_num_threads(3);
    cpu::dot_rows(many.data(), N, A.data(), B.data(), M, N, K, isa);
    INFO(std::string(cpu::isa_name(isa)), ": 1 thread against 3");
    CHECK(one == many);
  }
  omp_set_num_threads(threads);
#endif
}

TEST_CASE("sgemm with bf16 rounding: the rounded operands' double sum; level with the AVX-512 BF16 hardware") {
  const std::size_t M = 37, N = 90, K = 300;
  const auto A = random_values(M * K, 6), B = random_values(K * N, 7);
  std::vector<double> want(M * N, 0.0), size(M * N, 0.0);
  for (std::size_t i = 0; i < M; ++i)
    for (std::size_t j = 0; j < N; ++j)
      for (std::size_t k = 0; k < K; ++k) {
        const double p = double(cpu::bf16::round(A[i * K + k])) * double(cpu::bf16::round(B[k * N + j]));
        want[i * N + j] += p, size[i * N + j] += std::abs(p);
      }
  for (const Isa isa : levels()) {
    std::vector<float> c(M * N);
    cpu::sgemm(c.data(), N, cpu::row_major(A.data(), K), cpu::row_major(B.data(), N), M, N, K, false,
               cpu::OperandRounding::bf16, isa);
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < M * N; ++i) wrong += std::abs(c[i] - want[i]) > (K + 2) * 0x1p-24 * size[i];
    INFO(cpu::isa_name(isa));
    CHECK(wrong == 0);
  }
  if (!rlhf::gpt::bf16::hardware_available()) {
    MESSAGE("no AVX-512 BF16 here: the hardware comparison is skipped");
    return;
  }
  std::vector<float> rounded(M * N);
  namespace bf16 = rlhf::gpt::bf16;
  cpu::sgemm(rounded.data(), N, cpu::row_major(A.data(), K), cpu::row_major(B.data(), N), M, N, K, false,
             cpu::OperandRounding::bf16);
  // vdpbf16ps, and AMX where the CPU has it: each against the rounded float32 product
  for (const Isa isa : levels()) {
    if (isa < Isa::avx512_bf16) continue;
    const cpu::IsaCap cap(isa);
    std::vector<float> hw(M * N);
    bf16::gemm(hw.data(), N, bf16::row_major(A.data(), K), bf16::row_major(B.data(), N), M, N, K, false,
               bf16::Path::hardware);
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < M * N; ++i) wrong += std::abs(hw[i] - rounded[i]) > 2 * (K + 2) * 0x1p-24 * size[i];
    INFO(cpu::isa_name(isa));
    CHECK(wrong == 0);
  }
}

TEST_CASE("CPU level: names parse, a bad RLHF_CPU_ISA value is refused by name, IsaCap lowers and restores") {
  for (const Isa isa : {Isa::portable, Isa::avx2, Isa::avx512, Isa::avx512_bf16, Isa::amx_bf16})
    CHECK(cpu::parse_isa(cpu::isa_name(isa), "test") == isa);
  try {
    cpu::parse_isa("avx3", "RLHF_CPU_ISA");
    FAIL("avx3 was accepted");
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    CHECK(what.find("RLHF_CPU_ISA") != std::string::npos);
    CHECK(what.find("avx3") != std::string::npos);
    CHECK(what.find("avx512_bf16") != std::string::npos);
  }
  const Isa before = cpu::active_isa();
  CHECK(before <= cpu::detected_isa());
  {
    const cpu::IsaCap cap(Isa::portable);
    CHECK(cpu::active_isa() == Isa::portable);
    CHECK_FALSE(rlhf::gpt::bf16::hardware_available());
  }
  CHECK(cpu::active_isa() == before);
  MESSAGE(cpu::isa_summary());
}

// The levels differ in the GPT only through its bf16 products (float32 products are Eigen's on every level): below
// avx512_bf16 a bf16 model multiplies in float32 and equals the float32 model exactly; at avx512_bf16 it rounds,
// within bf16's precision of it.
TEST_CASE("gpt bf16: below AVX-512 BF16 the products are float32's; with it, within bf16's precision") {
  using Model = rlhf::Gpt<float>;
  Model model({.vocab_size = 70, .max_seq_len = 40, .channels = 48, .layers = 2, .heads = 4}, 1);
  rlhf::testing::randomize(model, 3, 0.3);
  const auto batch =
      rlhf::testing::pad_rows(rlhf::testing::random_rows(5, 10, 40, 70, 9), rlhf::testing::Pad::right);
  const auto run = [&](Isa isa, rlhf::gpt::MatmulPrecision precision) {
    const cpu::IsaCap cap(isa);
    model.set_matmul_precision(precision);
    model.zero_grad();
    const auto lp = model.log_probs(batch);
    Model::matrix d = Model::matrix::Zero(lp.rows(), lp.cols());
    for (std::size_t i = 0; i < batch.batch * batch.time; ++i) d.data()[i] = batch.response_mask[i] ? -1.0f : 0.0f;
    model.backward(batch, d);
    return std::pair{std::vector<float>(lp.data(), lp.data() + lp.size()),
                     std::vector<float>(model.gradients().begin(), model.gradients().end())};
  };
  const auto [lp32, g32] = run(cpu::detected_isa(), rlhf::gpt::MatmulPrecision::fp32);
  double g_scale = 0;
  for (const float g : g32) g_scale = std::max(g_scale, double(std::abs(g)));
  for (const Isa isa : levels()) {
    const auto [lp, g] = run(isa, rlhf::gpt::MatmulPrecision::bf16);
    double lp_worst = 0, g_worst = 0;
    for (std::size_t i = 0; i < lp.size(); ++i) lp_worst = std::max(lp_worst, double(std::abs(lp[i] - lp32[i])));
    for (std::size_t i = 0; i < g.size(); ++i) g_worst = std::max(g_worst, double(std::abs(g[i] - g32[i])));
    INFO(std::string(cpu::isa_name(isa)), ": log-prob difference ", lp_worst, ", gradient difference ", g_worst,
         " of ", g_scale);
    if (isa < Isa::avx512_bf16) {
      CHECK(lp_worst == 0.0);
      CHECK(g_worst == 0.0);
    } else {
      CHECK(lp_worst > 0.0);
      CHECK(lp_worst < 0.05);
      CHECK(g_worst < 0.05 * g_scale);
    }
  }
}
