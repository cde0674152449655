// BF16 products (GemmPrecision::bf16, gpt_cuda/matmul.cuh) against CPU references: every product with its operands
// rounded to bf16 as the CPU model rounds them (gpt::bf16::round) and summed in double must agree to float32 sums'
// accuracy; the same product against unrounded float32 operands must differ by bf16's rounding (so the test fails if
// the bf16 path is not taken); the CUDA GPT in bf16 against the CPU GPT with set_matmul_precision(bf16) and against
// its own fp32 products. Needs a GPU (main.cu skips without one).
//
// Status: compiled with nvcc for sm_90; not yet run on a device (docs/models/gpt_cuda.md, "BF16 products"). The
// model-level tolerances below are estimates (bf16's unit roundoff 2^-9 through two layers), to be confirmed there.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "model_support.cuh"
#include "rlhf/models/gpt/bf16_matmul.hpp"
#include "rlhf/models/gpt_cuda/matmul.cuh"
#include "support.cuh"

namespace {

using namespace rlhf::gpu_testing;
namespace gc = rlhf::gpt_cuda;
using rlhf::GemmPrecision;

// Column-major C [m, n] = op(A) · op(B), `batches` times (cuBLAS's convention), double sums; `round` rounds each
// operand element first (to bf16, or not at all).
template <class Round>
std::vector<float> gemm_reference(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* A,
                                  std::size_t lda, std::size_t sa, const float* B, std::size_t ldb, std::size_t sb,
                                  std::size_t ldc, std::size_t sc, std::size_t batches, Round round) {
  std::vector<float> C(sc * (batches - 1) + ldc * (n - 1) + m, 0.0f);
  for (std::size_t bt = 0; bt < batches; ++bt)
    for (std::size_t j = 0; j < n; ++j)
      for (std::size_t i = 0; i < m; ++i) {
        double acc = 0;
        for (std::size_t l = 0; l < k; ++l) {
          const float a = ta ? A[bt * sa + l + i * lda] : A[bt * sa + i + l * lda];
          const float b = tb ? B[bt * sb + j + l * ldb] : B[bt * sb + l + j * ldb];
          acc += double(round(a)) * double(round(b));
        }
        C[bt * sc + i + j * ldc] = float(acc);
      }
  return C;
}

const auto to_bf16 = [](float x) { return rlhf::gpt::bf16::round(x); };
const auto exact = [](float x) { return x; };

constexpr double tol_bf16_sums = 2e-5;   // same rounded operands, float32 against double sums
constexpr double tol_bf16_layer = 3e-2;  // against unrounded operands: 2^-9 per operand, mixed signs
constexpr double tol_bf16_model = 5e-2;  // the GPT against the CPU GPT in bf16 (rounding points shared, not sums)
constexpr double tol_bf16_vs_fp32 = 1.5e-1;  // the GPT in bf16 against fp32 products (estimate)

}  // namespace

TEST_CASE("bf16 products: operand_extent spans what cuBLAS reads") {
  CHECK(gc::operand_extent(3, 4, 5) == 3 * 5 + 3);          // last column starts at 15
  CHECK(gc::operand_extent(3, 4, 3, 20, 2) == 20 + 12);     // second batch at 20
  CHECK(gc::operand_extent(0, 4, 3) == 0);
}

TEST_CASE("bf16 products: gemm and gemm_batched equal the bf16-rounded reference, and differ from float32") {
  gc::Blas blas(GemmPrecision::bf16);
  struct Shape {
    bool ta, tb;
    std::size_t m, n, k;
  };
  for (const Shape s : {Shape{false, false, 33, 17, 70}, Shape{true, false, 40, 9, 257}, Shape{false, true, 8, 64, 31},
                        Shape{true, true, 24, 24, 100}}) {
    CAPTURE(s.ta);
    CAPTURE(s.tb);
    CAPTURE(s.k);
    const std::size_t lda = (s.ta ? s.k : s.m) + 3, ldb = (s.tb ? s.n : s.k) + 1, ldc = s.m + 2, batches = 3;
    const std::size_t sa = lda * (s.ta ? s.m : s.k) + 5, sb = ldb * (s.tb ? s.k : s.n), sc = ldc * s.n + 7;
    const auto A = uniform(sa * batches, -1, 1, 1), B = uniform(sb * batches, -1, 1, 2);
    auto dA = to_device(A), dB = to_device(B);
    device_buffer<float> dC(sc * batches);
    dC.zero();
    gc::gemm(blas, s.ta, s.tb, s.m, s.n, s.k, dA.data(), lda, dB.data(), ldb, dC.data(), ldc, 0.0f);
    const auto one = to_host(dC, ldc * (s.n - 1) + s.m);
    const auto want = gemm_reference(s.ta, s.tb, s.m, s.n, s.k, A.data(), lda, 0, B.data(), ldb, 0, ldc, 0, 1, to_bf16);
    const auto plain = gemm_reference(s.ta, s.tb, s.m, s.n, s.k, A.data(), lda, 0, B.data(), ldb, 0, ldc, 0, 1, exact);
    CHECK(rel_err(one, want) <= tol_bf16_sums);
    CHECK(rel_err(one, plain) <= tol_bf16_layer);
    CHECK(rel_err(one, plain) > 1e-4);  // bf16 really rounds: a float32 or TF32 product would be closer
    gc::gemm_batched(blas, s.ta, s.tb, s.m, s.n, s.k, dA.data(), lda, sa, dB.data(), ldb, sb, dC.data(), ldc, sc,
                     batches, 0.0f);
    const auto many = to_host(dC, sc * (batches - 1) + ldc * (s.n - 1) + s.m);
    const auto want_many = gemm_reference(s.ta, s.tb, s.m, s.n, s.k, A.data(), lda, sa, B.data(), ldb, sb, ldc, sc,
                                          batches, to_bf16);
    // compare only the written entries (the gaps between columns and batches are never written)
    std::vector<float> got_w, want_w;
    for (std::size_t bt = 0; bt < batches; ++bt)
      for (std::size_t j = 0; j < s.n; ++j)
        for (std::size_t i = 0; i < s.m; ++i) {
          got_w.push_back(many[bt * sc + i + j * ldc]);
          want_w.push_back(want_many[bt * sc + i + j * ldc]);
        }
    CHECK(rel_err(got_w, want_w) <= tol_bf16_sums);
  }
}

TEST_CASE("bf16 products: matmul_forward (cuBLASLt bias epilogue, and its fallback) and matmul_backward") {
  const std::size_t N = 70, C = 48, OC = 80;
  gc::Blas blas(GemmPrecision::bf16);
  const auto inp = uniform(N * C + 1, -1, 1, 3), w = uniform(C * OC + 1, -1, 1, 4), bias = uniform(OC + 1, -1, 1, 5);
  const auto dout = uniform(N * OC, -1, 1, 6);
  auto d_inp = to_device(inp), d_w = to_device(w), d_bias = to_device(bias), d_dout = to_device(dout);
  for (const std::size_t shift : {std::size_t(0), std::size_t(1)}) {  // 1: pointers off 16 bytes, the fallback
    CAPTURE(shift);
    device_buffer<float> out(N * OC);
    gc::matmul_forward(blas, out.data(), d_inp.data() + shift, d_w.data() + shift, d_bias.data() + shift, N, C, OC);
    // row-major out [N, OC] = inp [N, C] · w [C, OC] + bias = column-major outᵀ = wᵀ-as-[OC, C] · inpᵀ
    auto want = gemm_reference(false, false, OC, N, C, w.data() + shift, OC, 0, inp.data() + shift, C, 0, OC, 0, 1,
                               to_bf16);
    for (std::size_t n = 0; n < N; ++n)
      for (std::size_t o = 0; o < OC; ++o) want[n * OC + o] += bias[shift + o];
    CHECK(rel_err(to_host(out, N * OC), want) <= tol_bf16_sums);
  }
  device_buffer<float> dinp(N * C), dw(C * OC), dbias(OC), scratch(gc::column_scratch(N, OC));
  dw.zero(), dbias.zero();
  gc::matmul_backward(blas, dinp.data(), dw.data(), dbias.data(), scratch.data(), d_dout.data(), d_inp.data(),
                      d_w.data(), N, C, OC);
  // dinpᵀ [C, N] = w [C, OC] · doutᵀ;  dwᵀ [OC, C] = doutᵀ · inp
  const auto want_dinp = gemm_reference(true, false, C, N, OC, w.data(), OC, 0, dout.data(), OC, 0, C, 0, 1, to_bf16);
  const auto want_dw = gemm_reference(false, true, OC, C, N, dout.data(), OC, 0, inp.data(), C, 0, OC, 0, 1, to_bf16);
  CHECK(rel_err(to_host(dinp, N * C), want_dinp) <= tol_bf16_sums);
  CHECK(rel_err(to_host(dw, C * OC), want_dw) <= tol_bf16_sums);
}

TEST_CASE("bf16 products in the CUDA GPT: log-probs and gradients against the CPU GPT in bf16 and the fp32 path") {
  for (const auto& c : configs()) {
    CAPTURE(c.channels);
    Pair m(c, GemmPrecision::fp32, 51);  // the CPU model and the CUDA one in fp32
    rlhf::GptCuda bf16(c, 0);
    bf16.set_matmul_precision(GemmPrecision::bf16);  // selected after construction, as on the CPU
    CHECK(bf16.matmul_precision() == GemmPrecision::bf16);
    bf16.set_parameters(m.cpu.parameters());
    rlhf::Gpt<float> cpu_bf16 = m.cpu;
    cpu_bf16.set_matmul_precision(rlhf::gpt::MatmulPrecision::bf16);
    const auto batch = batch_for(c, Pad::left, 52);
    const auto g = upstream(batch, 53);
    m.gpu.zero_grad(), bf16.zero_grad(), cpu_bf16.zero_grad();
    const auto lp16 = host(bf16.log_probs(batch));
    bf16.backward(batch, rlhf::GptCuda::backend::matrix_from_host(batch.batch, batch.time, g));
    const auto lp32 = host(m.gpu.log_probs(batch));
    m.gpu.backward(batch, rlhf::GptCuda::backend::matrix_from_host(batch.batch, batch.time, g));
    const auto lp_cpu16 = host_eigen(cpu_bf16.log_probs(batch));
    cpu_bf16.backward(batch, rlhf::Gpt<float>::backend::matrix_from_host(batch.batch, batch.time, g));
    CHECK(rel_err(lp16, lp_cpu16) <= tol_bf16_model);
    CHECK(rel_err(lp16, lp32) <= tol_bf16_vs_fp32);
    check_per_tensor(c, bf16.gradients_to_host(), cpu_bf16.gradients(), 2 * tol_bf16_model);
    check_per_tensor(c, bf16.gradients_to_host(), m.gpu.gradients_to_host(), 2 * tol_bf16_vs_fp32);
  }
}
