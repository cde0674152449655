#pragma once
// GEMMs of the CUDA GPT through cuBLAS / cuBLASLt, and the bias kernels around them.
//
// Precision (GemmPrecision): every matrix is float32 in memory and every product accumulates in float32.
//   tf32 (default)  the tensor cores round each input to TF32 (10-bit mantissa, unit roundoff 2^-11 ≈ 4.9e-4)
//                   before multiplying. A dot product of length K then carries a relative error of about
//                   4.9e-4·√K·(Σ|a_k b_k|)/|Σ a_k b_k|; through a GPT-2 forward that is ~1e-3 relative on the
//                   logits, hence the tf32 tolerances in docs/models/gpt_cuda.md.
//   fp32            plain float32 products (CUBLAS_COMPUTE_32F): the CPU model's arithmetic up to summation
//                   order, ~1e-6 relative; the parity tests use it for their tight checks.
//   bf16            both operands rounded to bfloat16 (to nearest even; 8-bit mantissa, unit roundoff 2^-9 ≈ 2e-3)
//                   into a scratch copy, multiplied on the tensor cores at twice TF32's rate, summed and written in
//                   float32 (CUBLAS_COMPUTE_32F). Parameters, activations, gradients and the optimizer stay float32
//                   (the "master weights" are the parameters themselves), as the CPU model's
//                   set_matmul_precision(bf16) and TRL's bf16 mixed precision. Not yet run on a GPU.
//
// Layout: row-major everywhere, weights [in, out] (params.hpp). cuBLAS is column-major, so a row-major
// [R, K] matrix is passed as a column-major [K, R] one and every product below is written transposed
// (out^T = W^T · inp^T reads as "W times inp" in column-major terms).
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "rlhf/models/gpt_cuda/common.cuh"

namespace rlhf {

enum class GemmPrecision { tf32, fp32, bf16 };

}  // namespace rlhf

namespace rlhf::gpt_cuda {

// float [n] → bf16 [n], to nearest even
static __global__ void to_bf16_kernel(__nv_bfloat16* out, const float* in, std::size_t n) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16_rn(in[i]);
}

// Elements a column-major operand spans: `batches` matrices of rows × cols (leading dimension ld), each `stride`
// after the previous one. What a bf16 copy of it must hold.
inline constexpr std::size_t operand_extent(std::size_t rows, std::size_t cols, std::size_t ld, std::size_t stride = 0,
                                            std::size_t batches = 1) {
  return rows == 0 || cols == 0 || batches == 0 ? 0 : (batches - 1) * stride + (cols - 1) * ld + rows;
}

// The cuBLAS and cuBLASLt handles of one model, on the default stream, with cuBLASLt's workspace (and, for bf16
// products, the operands' bf16 copies).
class Blas {
 public:
  explicit Blas(GemmPrecision precision) : workspace_(workspace_bytes) {
    RLHF_CUBLAS_CHECK(cublasCreate(&handle_));
    RLHF_CUBLAS_CHECK(cublasLtCreate(&lt_));
    set_precision(precision);
  }
  void set_precision(GemmPrecision precision) {
    precision_ = precision;
    // fp32 must not pick up TF32 through the handle's default math mode (or NVIDIA_TF32_OVERRIDE)
    RLHF_CUBLAS_CHECK(cublasSetMathMode(handle_, precision_ == GemmPrecision::fp32   ? CUBLAS_PEDANTIC_MATH
                                                 : precision_ == GemmPrecision::tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                                                     : CUBLAS_DEFAULT_MATH));
  }
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;
  ~Blas() {
    cublasLtDestroy(lt_);
    cublasDestroy(handle_);
  }

  GemmPrecision precision() const { return precision_; }
  cublasComputeType_t compute() const {  // bf16: bf16 operands, float32 sums
    return precision_ == GemmPrecision::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  }
  bool bf16() const { return precision_ == GemmPrecision::bf16; }
  // x [n] rounded to bf16 into copy `slot` (0: the A operand, 1: B), grown as needed; valid until the next call
  // with that slot.
  const __nv_bfloat16* bf16_copy(int slot, const float* x, std::size_t n) {
    device_buffer<__nv_bfloat16>& copy = slot == 0 ? bf16_a_ : bf16_b_;
    copy.reserve(n);
    if (n) {
      to_bf16_kernel<<<ceil_div(n, 256), 256>>>(copy.data(), x, n);
      RLHF_CUDA_CHECK(cudaGetLastError());
    }
    return copy.data();
  }
  cublasHandle_t handle() const { return handle_; }
  cublasLtHandle_t lt() const { return lt_; }
  void* workspace() { return workspace_.data(); }

  static constexpr std::size_t workspace_bytes = std::size_t(32) << 20;  // cuBLASLt's advice for Hopper

 private:
  GemmPrecision precision_ = GemmPrecision::tf32;
  cublasHandle_t handle_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  device_buffer<unsigned char> workspace_;
  device_buffer<__nv_bfloat16> bf16_a_, bf16_b_;  // bf16 products: the operands' copies
};

inline cublasOperation_t op(bool transpose) { return transpose ? CUBLAS_OP_T : CUBLAS_OP_N; }

// Column-major C [m, n] = op(A) [m, k] · op(B) [k, n] + beta · C.
inline void gemm(Blas& blas, bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* A,
                 std::size_t lda, const float* B, std::size_t ldb, float* C, std::size_t ldc, float beta) {
  const float alpha = 1.0f;
  if (blas.bf16()) {  // op(A) [m, k] is stored [m, k] (or [k, m] transposed), op(B) [k, n] likewise
    const __nv_bfloat16* a = blas.bf16_copy(0, A, operand_extent(ta ? k : m, ta ? m : k, lda));
    const __nv_bfloat16* b = blas.bf16_copy(1, B, operand_extent(tb ? n : k, tb ? k : n, ldb));
    RLHF_CUBLAS_CHECK(cublasGemmEx(blas.handle(), op(ta), op(tb), int(m), int(n), int(k), &alpha, a, CUDA_R_16BF,
                                   int(lda), b, CUDA_R_16BF, int(ldb), &beta, C, CUDA_R_32F, int(ldc),
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return;
  }
  RLHF_CUBLAS_CHECK(cublasGemmEx(blas.handle(), op(ta), op(tb), int(m), int(n), int(k), &alpha, A, CUDA_R_32F,
                                 int(lda), B, CUDA_R_32F, int(ldb), &beta, C, CUDA_R_32F, int(ldc), blas.compute(),
                                 CUBLAS_GEMM_DEFAULT));
}

// `batches` independent products, each matrix `stride*` elements after the previous one.
inline void gemm_batched(Blas& blas, bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, const float* A,
                         std::size_t lda, std::size_t strideA, const float* B, std::size_t ldb, std::size_t strideB,
                         float* C, std::size_t ldc, std::size_t strideC, std::size_t batches, float beta) {
  const float alpha = 1.0f;
  if (blas.bf16()) {
    const __nv_bfloat16* a = blas.bf16_copy(0, A, operand_extent(ta ? k : m, ta ? m : k, lda, strideA, batches));
    const __nv_bfloat16* b = blas.bf16_copy(1, B, operand_extent(tb ? n : k, tb ? k : n, ldb, strideB, batches));
    RLHF_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        blas.handle(), op(ta), op(tb), int(m), int(n), int(k), &alpha, a, CUDA_R_16BF, int(lda), (long long)strideA,
        b, CUDA_R_16BF, int(ldb), (long long)strideB, &beta, C, CUDA_R_32F, int(ldc), (long long)strideC,
        int(batches), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return;
  }
  RLHF_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      blas.handle(), op(ta), op(tb), int(m), int(n), int(k), &alpha, A, CUDA_R_32F, int(lda), (long long)strideA, B,
      CUDA_R_32F, int(ldb), (long long)strideB, &beta, C, CUDA_R_32F, int(ldc), (long long)strideC, int(batches),
      blas.compute(), CUBLAS_GEMM_DEFAULT));
}

// ---- bias kernels -------------------------------------------------------------------------------------------

// out [N, OC] += bias [OC]
static __global__ void add_bias_kernel(float* out, const float* bias, std::size_t N, std::size_t OC) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < N * OC) out[i] += bias[i % OC];
}

// cuBLASLt with the bias fused into the GEMM's epilogue: column-major D [m, n] = A [m, k] · B [k, n] + bias [m]
// (no transposes). Returns false (nothing launched) when cuBLASLt offers no algorithm, e.g. for pointers that
// are not 16-byte aligned; the caller then falls back to cublasGemmEx and add_bias_kernel. bf16: A and B as bf16
// copies, the bias and D float32.
inline bool gemm_bias_lt(Blas& blas, std::size_t m, std::size_t n, std::size_t k, const float* A, const float* B,
                         const float* bias, float* D) {
  const auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
  if (!aligned(A) || !aligned(B) || !aligned(bias) || !aligned(D)) return false;
  const cudaDataType_t in_type = blas.bf16() ? CUDA_R_16BF : CUDA_R_32F;
  const void* a = A;
  const void* b = B;
  if (blas.bf16()) {
    a = blas.bf16_copy(0, A, operand_extent(m, k, m));
    b = blas.bf16_copy(1, B, operand_extent(k, n, k));
  }
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, ld = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  bool ok = false;
  // Each create is checked; whatever was created is destroyed on every path.
  const auto run = [&] {
    RLHF_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, blas.compute(), CUDA_R_32F));
    const cublasOperation_t no = CUBLAS_OP_N;
    RLHF_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &no, sizeof no));
    RLHF_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &no, sizeof no));
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    RLHF_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
    RLHF_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    const cudaDataType_t bias_type = CUDA_R_32F;
    RLHF_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type));
    RLHF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, in_type, m, k, m));
    RLHF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, in_type, k, n, k));
    RLHF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, m, n, m));
    RLHF_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const std::size_t bytes = Blas::workspace_bytes;
    RLHF_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &bytes,
                                                           sizeof bytes));
    cublasLtMatmulHeuristicResult_t heuristic{};
    int found = 0;
    const cublasStatus_t s =
        cublasLtMatmulAlgoGetHeuristic(blas.lt(), desc, la, lb, ld, ld, pref, 1, &heuristic, &found);
    if (s != CUBLAS_STATUS_SUCCESS || found == 0) return;
    const float alpha = 1.0f, beta = 0.0f;
    RLHF_CUBLAS_CHECK(cublasLtMatmul(blas.lt(), desc, &alpha, a, la, b, lb, &beta, D, ld, D, ld, &heuristic.algo,
                                     blas.workspace(), Blas::workspace_bytes, 0));
    ok = true;
  };
  const auto cleanup = [&] {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (desc) cublasLtMatmulDescDestroy(desc);
  };
  try {
    run();
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();
  return ok;
}

// ---- y = x W + b ------------------------------------------------------------------------------------------------
// out [N, OC] = inp [N, C] · weight [C, OC] + bias [OC] (bias may be null). As gpt::matmul_forward.
inline void matmul_forward(Blas& blas, float* out, const float* inp, const float* weight, const float* bias,
                           std::size_t N, std::size_t C, std::size_t OC) {
  // column-major: out^T [OC, N] = weight^T [OC, C] · inp^T [C, N]
  if (bias && gemm_bias_lt(blas, OC, N, C, weight, inp, bias, out)) return;
  gemm(blas, false, false, OC, N, C, weight, OC, inp, C, out, OC, 0.0f);
  if (bias) {
    add_bias_kernel<<<ceil_div(N * OC, 256), 256>>>(out, bias, N, OC);
    RLHF_CUDA_CHECK(cudaGetLastError());
  }
}

// dinp [N, C] = dout · weightᵀ (skipped when dinp is null); dweight [C, OC] += inpᵀ · dout;
// dbias [OC] += Σ_n dout (skipped when null; scratch: column_scratch(N, OC) floats). As gpt::matmul_backward.
inline void matmul_backward(Blas& blas, float* dinp, float* dweight, float* dbias, float* scratch, const float* dout,
                            const float* inp, const float* weight, std::size_t N, std::size_t C, std::size_t OC) {
  // column-major: dinp^T [C, N] = weight [C, OC]·dout^T [OC, N];  dweight^T [OC, C] += dout^T [OC, N]·inp [N, C]
  if (dinp) gemm(blas, true, false, C, N, OC, weight, OC, dout, OC, dinp, C, 0.0f);
  gemm(blas, false, true, OC, C, N, dout, OC, inp, C, dweight, OC, 1.0f);
  if (dbias) column_reduce(dbias, scratch, N, OC, entries{dout, OC}, true);
}

}  // namespace rlhf::gpt_cuda
