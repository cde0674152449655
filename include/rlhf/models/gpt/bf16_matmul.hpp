#pragma once
// Matrix products with both operands rounded to bfloat16 and the sums kept in float32: c (+)= a · b.
//
// Three paths:
//   hardware : AVX-512 BF16 (vdpbf16ps: 32 bf16 products per instruction, twice the fp32 FMA rate), packed
//              panels and an 8 × 48 register tile. Used when the CPU has it (cpu::active_isa() is avx512_bf16);
//              where it also has AMX-BF16 (active_isa() amx_bf16), the same packed panels go through AMX's tiles
//              (bf16_amx.hpp).
//   float32  : on a CPU without AVX-512 BF16, Path::automatic multiplies in float32 (Eigen's product, as the float32
//              model does): no bf16 product is faster there, so bf16 is never slower than float32. The results are
//              float32's, within the bf16 bound of the hardware path's; rlhf-train and the sentiment example say so.
//   portable : asked for by Path::portable (tests): each operand element rounded to bf16 as it is packed for the
//              float32 kernel of cpu/sgemm.hpp, the hardware path's values on any CPU.
// The hardware and portable paths round each operand element the same way (cpu/bf16_round.hpp): to nearest, ties
// to even, subnormals to zero (vdpbf16ps reads subnormal bf16 inputs as zero), NaN kept a NaN. A product of two bf16
// values is exact in float32, so those two differ only in the order of their float32 additions.
#include "rlhf/models/cpu/bf16_round.hpp"
#include "rlhf/models/cpu/isa.hpp"
#include "rlhf/models/cpu/sgemm.hpp"
#include "rlhf/models/gpt/bf16_amx.hpp"
#include "rlhf/models/gpt/bf16_pack.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace rlhf::gpt {

// How the GPT's matrix products multiply: float32 throughout, or bf16 operands with float32 sums.
enum class MatmulPrecision { fp32, bf16 };

namespace bf16 {

using cpu::bf16::bits_of;
using cpu::bf16::round;
using cpu::bf16::value_of;

using cpu::Operand;
using cpu::row_major;
using cpu::transposed;

enum class Path { automatic, hardware, portable };

// True when the CPU has AVX-512 BF16 and RLHF_CPU_ISA does not rule it out.
inline bool hardware_available() { return RLHF_BF16_X86 && cpu::active_isa() >= cpu::Isa::avx512_bf16; }

// The hardware the bf16 products run on, for a program's start-up line: "AMX-BF16" or "AVX-512 BF16" (null when
// !hardware_available()).
inline const char* hardware_name() {
  if (!hardware_available()) return nullptr;
  return cpu::active_isa() >= cpu::Isa::amx_bf16 ? "AMX-BF16" : "AVX-512 BF16";
}

namespace detail {

// c [M, N] (row stride ldc) (+)= round(a) [M, K] · round(b) [K, N] by the float32 products of cpu/sgemm.hpp.
inline void gemm_portable(float* c, std::size_t ldc, Operand a, Operand b, std::size_t M, std::size_t N,
                          std::size_t K, bool accumulate) {
  cpu::sgemm(c, ldc, a, b, M, N, K, accumulate, cpu::OperandRounding::bf16);
}

#if RLHF_BF16_X86
// c [rows ≤ MR, cols ≤ 16 · NV] (+)= a panel [pairs][MR] · the first 16 · NV columns of a b panel [pairs][NR].
// NV < 3 for a panel's last columns (N = 256 = 5 · 48 + 16): no products of its zero padding.
template <std::size_t NV>
RLHF_BF16_TARGET inline void kernel(std::size_t pairs, const std::uint32_t* a, const std::uint32_t* b, float* c,
                                    std::size_t ldc, std::size_t rows, std::size_t cols, bool add_to_c) {
  static_assert(NV >= 1 && 16 * NV <= NR);
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (std::size_t i = 0; i < MR; ++i)
#pragma GCC unroll 3
    for (std::size_t v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (std::size_t p = 0; p < pairs; ++p, a += MR, b += NR) {
    __m512bh bv[NV];
#pragma GCC unroll 3
    for (std::size_t v = 0; v < NV; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(b + 16 * v);
#pragma GCC unroll 8
    for (std::size_t i = 0; i < MR; ++i) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(int(a[i]));
#pragma GCC unroll 3
      for (std::size_t v = 0; v < NV; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ai, bv[v]);
    }
  }
#pragma GCC unroll 8
  for (std::size_t i = 0; i < MR; ++i) {
    if (i >= rows) break;
#pragma GCC unroll 3
    for (std::size_t v = 0; v < NV; ++v) {
      const std::size_t j = 16 * v;
      if (j >= cols) break;
      const __mmask16 m = cols - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (cols - j)) - 1u);
      float* dst = c + i * ldc + j;
      __m512 r = acc[i][v];
      if (add_to_c) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, dst));
      _mm512_mask_storeu_ps(dst, m, r);
    }
  }
}

// The kernel for a tile of cols ≤ NR columns: as many 16-column vectors as the tile has.
RLHF_BF16_TARGET inline void kernel_for(std::size_t pairs, const std::uint32_t* a, const std::uint32_t* b, float* c,
                                        std::size_t ldc, std::size_t rows, std::size_t cols, bool add_to_c) {
  if (cols > 32) return kernel<3>(pairs, a, b, c, ldc, rows, cols, add_to_c);
  if (cols > 16) return kernel<2>(pairs, a, b, c, ldc, rows, cols, add_to_c);
  kernel<1>(pairs, a, b, c, ldc, rows, cols, add_to_c);
}

// One thread's product: the columns [n0, n1) of c. packed_b: all of b packed by pack_whole_b, or null to pack
// the columns here.
RLHF_BF16_TARGET inline void gemm_hardware_columns(float* c, std::size_t ldc, Operand a, Operand b,
                                                   const std::uint32_t* packed_b, std::size_t M, std::size_t N,
                                                   std::size_t n0, std::size_t n1, std::size_t K, bool accumulate) {
  thread_local buffer<std::uint32_t> a_pack, b_pack;
  const std::size_t total_pairs = (K + 1) / 2, kc = kc_pairs(K);
  const std::size_t width = n1 - n0, n_panels = (width + NR - 1) / NR, all_panels = (N + NR - 1) / NR;
  if (!packed_b && b_pack.size() < n_panels * NR * kc) b_pack.resize(n_panels * NR * kc);
  if (a_pack.size() < mc_rows * kc) a_pack.resize(mc_rows * kc);
  // b seen as bᵀ: its "rows" are b's columns, so a pack of bᵀ's row panels is a pack of b's column panels
  const Operand bt{b.data + n0 * b.col_stride, b.col_stride, b.row_stride};
  for (std::size_t p0 = 0; p0 < total_pairs; p0 += kc) {
    const std::size_t pairs = std::min(kc, total_pairs - p0);
    const bool add = accumulate || p0 > 0;
    const std::uint32_t* panels = packed_b ? packed_b + p0 * all_panels * NR + (n0 / NR) * pairs * NR : b_pack.data();
    if (!packed_b) pack_panels<NR>(b_pack.data(), bt, 0, width, p0, pairs, K);
    for (std::size_t m0 = 0; m0 < M; m0 += mc_rows) {
      const std::size_t rows = std::min(mc_rows, M - m0);
      pack_panels<MR>(a_pack.data(), a, m0, rows, p0, pairs, K);
      for (std::size_t jp = 0; jp < n_panels; ++jp) {
        const std::size_t cols = std::min(NR, width - jp * NR);
        for (std::size_t ip = 0; ip * MR < rows; ++ip)
          kernel_for(pairs, a_pack.data() + ip * pairs * MR, panels + jp * pairs * NR,
                     c + (m0 + ip * MR) * ldc + n0 + jp * NR, ldc, std::min(MR, rows - ip * MR), cols, add);
      }
    }
  }
}

// Outside a parallel region the columns are split between the threads, in whole panels.
inline void gemm_hardware(float* c, std::size_t ldc, Operand a, Operand b, const std::uint32_t* packed_b,
                          std::size_t M, std::size_t N, std::size_t K, bool accumulate) {
  std::size_t threads = 1;
#ifdef _OPENMP
  if (!omp_in_parallel() && M * N * K >= (std::size_t(1) << 20))
    threads = std::min<std::size_t>(std::size_t(omp_get_max_threads()), (N + NR - 1) / NR);
#endif
  const auto columns = cpu::active_isa() >= cpu::Isa::amx_bf16 ? gemm_amx_columns : gemm_hardware_columns;
  if (threads <= 1) return columns(c, ldc, a, b, packed_b, M, N, 0, N, K, accumulate);
  const std::size_t panels = (N + NR - 1) / NR;
#pragma omp parallel for schedule(static) num_threads(int(threads))
  for (std::ptrdiff_t t = 0; t < std::ptrdiff_t(threads); ++t) {
    const std::size_t n0 = std::min(N, panels * std::size_t(t) / threads * NR);
    const std::size_t n1 = std::min(N, panels * std::size_t(t + 1) / threads * NR);
    if (n1 > n0) columns(c, ldc, a, b, packed_b, M, N, n0, n1, K, accumulate);
  }
}
#endif

}  // namespace detail

inline bool use_hardware(Path path) { return path != Path::portable && hardware_available(); }

// b [K, N] packed once for many products with it (a weight, read by every tile of a batch). The portable path
// keeps only the operand, which must outlive the products.
class PackedB {
 public:
  void pack(Operand b, std::size_t K, std::size_t N, Path path = Path::automatic) {
    source_ = b, K_ = K, N_ = N, packed_ = false;
#if RLHF_BF16_X86
    if (use_hardware(path) && K > 0 && N > 0) {
      const std::size_t size = (K + 1) / 2 * (N + detail::NR - 1) / detail::NR * detail::NR;
      if (data_.size() < size) data_.resize(size);
      detail::pack_whole_b(data_.data(), b, K, N);
      packed_ = true;
    }
#else
    (void)path;
#endif
  }
  Operand source() const { return source_; }
  std::size_t rows() const { return K_; }
  std::size_t cols() const { return N_; }
  const std::uint32_t* packed() const { return packed_ ? data_.data() : nullptr; }

 private:
  Operand source_{nullptr, 0, 0};
  std::size_t K_ = 0, N_ = 0;
  bool packed_ = false;
  detail::buffer<std::uint32_t> data_;  // [k blocks][panels][pairs of the block][NR]
};

namespace detail {
inline void gemm_any(float* c, std::size_t ldc, Operand a, Operand b, const std::uint32_t* packed_b, std::size_t M,
                     std::size_t N, std::size_t K, bool accumulate, Path path) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate)
      for (std::size_t i = 0; i < M; ++i) std::fill_n(c + i * ldc, N, 0.0f);
    return;
  }
#if RLHF_BF16_X86
  if (use_hardware(path)) return gemm_hardware(c, ldc, a, b, packed_b, M, N, K, accumulate);
#else
  (void)packed_b;
#endif
  // No bf16 product here is faster than float32's (measured: rounding the operands made the steps up to a third
  // slower), so by default the products are float32's; the rounded ones only when asked for by path.
  if (path == Path::automatic)
    return cpu::sgemm(c, ldc, a, b, M, N, K, accumulate, cpu::OperandRounding::none, cpu::Isa::portable);
  gemm_portable(c, ldc, a, b, M, N, K, accumulate);
}
}  // namespace detail

// c [M, N] (row stride ldc) = (accumulate ? c : 0) + round(a) [M, K] · round(b) [K, N], float32 sums (without
// AVX-512 BF16 and with Path::automatic: a · b in float32).
inline void gemm(float* c, std::size_t ldc, Operand a, Operand b, std::size_t M, std::size_t N, std::size_t K,
                 bool accumulate, Path path = Path::automatic) {
  detail::gemm_any(c, ldc, a, b, nullptr, M, N, K, accumulate, path);
}

// The same with b packed beforehand (b.rows() = K, b.cols() = N).
inline void gemm(float* c, std::size_t ldc, Operand a, const PackedB& b, std::size_t M, bool accumulate,
                 Path path = Path::automatic) {
  detail::gemm_any(c, ldc, a, b.source(), use_hardware(path) ? b.packed() : nullptr, M, b.cols(), b.rows(),
                   accumulate, path);
}

}  // namespace bf16
}  // namespace rlhf::gpt
