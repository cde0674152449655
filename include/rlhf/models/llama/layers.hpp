#pragma once
// The Llama's own layers as x_forward / x_backward pairs over raw row-major buffers (llm.c style): RMSNorm, the
// SwiGLU gate, grouped-query causal attention, and linear layers in either precision. The GPT's kernels
// (gpt/layers.hpp) do the matrix products. N = B·T rows.
//
// Gradient conventions, as the GPT's: parameter gradients accumulate (+=); input gradients are overwritten (=),
// except rmsnorm_backward's, which accumulates because its input is the residual stream.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "rlhf/models/gpt/bf16_matmul.hpp"
#include "rlhf/models/gpt/layers.hpp"

namespace rlhf::llama {

using gpt::ArrayMap;
using gpt::ConstArrayMap;
using gpt::ConstStridedMap;
using gpt::ix;
using gpt::StridedMap;

// ---- RMSNorm ----------------------------------------------------------------------------------------------
// out [N, C] = inp · rstd · weight, rstd [N] = 1 / √(mean(inp²) + eps) kept for the backward (HF's LlamaRMSNorm).
template <class T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, std::size_t N, std::size_t C, T eps) {
  const auto w = ConstArrayMap<T>(weight, ix(C));
#pragma omp parallel for schedule(static) if (N * C * 4 >= gpt::parallel_work)
  for (std::ptrdiff_t n = 0; n < std::ptrdiff_t(N); ++n) {
    const auto x = ConstArrayMap<T>(inp + n * C, ix(C));
    const T r = T(1) / std::sqrt(x.square().sum() / T(C) + eps);
    ArrayMap<T>(out + n * C, ix(C)) = x * r * w;
    rstd[n] = r;
  }
}

// dinp [N, C] += d/dinp; dweight [C] += Σ_n dout · inp · rstd.
//   y = w x r, r = (mean(x²) + eps)^(−½):  dx = r (dy w − x r² mean(dy w x))
template <class T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const T* rstd, std::size_t N,
                      std::size_t C) {
  const auto w = ConstArrayMap<T>(weight, ix(C));
#pragma omp parallel for schedule(static) if (N * C * 6 >= gpt::parallel_work)
  for (std::ptrdiff_t n = 0; n < std::ptrdiff_t(N); ++n) {
    const auto x = ConstArrayMap<T>(inp + n * C, ix(C));
    const auto dy = ConstArrayMap<T>(dout + n * C, ix(C));
    const T r = rstd[n];
    const T proj = (dy * w * x).sum() / T(C);
    ArrayMap<T>(dinp + n * C, ix(C)) += r * (dy * w - x * (r * r * proj));
  }
  if (!dweight) return;  // a frozen weight: no gradient
  auto dw = ArrayMap<T>(dweight, ix(C));
  for (std::size_t n = 0; n < N; ++n)
    dw += ConstArrayMap<T>(dout + n * C, ix(C)) * ConstArrayMap<T>(inp + n * C, ix(C)) * rstd[n];
}

// ---- SwiGLU: out = silu(gate) · up, silu(g) = g σ(g) ---------------------------------------------------------
template <class T>
void swiglu_forward(T* out, const T* gate, const T* up, std::size_t n) {
#pragma omp parallel for schedule(static) if (n * 20 >= gpt::parallel_work)
  for (std::ptrdiff_t i = 0; i < std::ptrdiff_t(n); ++i) {
    const T g = gate[i];
    out[i] = g / (T(1) + std::exp(-g)) * up[i];
  }
}

// dgate, dup [n] = d/dgate, d/dup of dout [n] (overwritten; dgate may be dout, not gate or up).
template <class T>
void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, std::size_t n) {
#pragma omp parallel for schedule(static) if (n * 25 >= gpt::parallel_work)
  for (std::ptrdiff_t i = 0; i < std::ptrdiff_t(n); ++i) {
    const T g = gate[i], s = T(1) / (T(1) + std::exp(-g)), d = dout[i];
    dup[i] = d * g * s;
    dgate[i] = d * up[i] * s * (T(1) + g * (T(1) - s));
  }
}

// ---- linear layers: y = x W + b, W [in, out], in float32 or bf16 operands with float32 sums -----------------
// out [N, OC] = inp [N, C] · weight [C, OC] + bias (bias may be null)
template <class T>
void linear_forward(T* out, const T* inp, const T* weight, const T* bias, std::size_t N, std::size_t C,
                    std::size_t OC, gpt::MatmulPrecision precision) {
  if constexpr (std::is_same_v<T, float>) {
    if (precision == gpt::MatmulPrecision::bf16) {
      gpt::bf16::gemm(out, OC, gpt::bf16::row_major(inp, C), gpt::bf16::row_major(weight, OC), N, OC, C, false);
      if (bias) gpt::MatrixMap<T>(out, ix(N), ix(OC)).rowwise() += gpt::ConstRowVectorMap<T>(bias, ix(OC));
      return;
    }
  }
  gpt::matmul_forward(out, inp, weight, bias, N, C, OC);
}

// dinp [N, C] = dout · weightᵀ, or += when accumulate; dweight [C, OC] += inpᵀ · dout (null: skipped); dbias [OC] += Σ_n dout
template <class T>
void linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, std::size_t N,
                     std::size_t C, std::size_t OC, gpt::MatmulPrecision precision, bool accumulate = false) {
  if constexpr (std::is_same_v<T, float>) {
    if (precision == gpt::MatmulPrecision::bf16) {
      namespace b16 = gpt::bf16;
      b16::gemm(dinp, C, b16::row_major(dout, OC), b16::transposed(weight, OC), N, C, OC, accumulate);
      if (dweight) b16::gemm(dweight, OC, b16::transposed(inp, C), b16::row_major(dout, OC), C, OC, N, true);
      if (dbias) gpt::bias_backward(dbias, dout, N, OC);
      return;
    }
  }
  const gpt::ConstMatrixMap<T> dy(dout, ix(N), ix(OC));
  const auto wt = gpt::ConstMatrixMap<T>(weight, ix(C), ix(OC)).transpose();
  if (accumulate)
    gpt::MatrixMap<T>(dinp, ix(N), ix(C)).noalias() += dy * wt;
  else
    gpt::MatrixMap<T>(dinp, ix(N), ix(C)).noalias() = dy * wt;
  if (dweight)  // null: a frozen weight
    gpt::MatrixMap<T>(dweight, ix(C), ix(OC)).noalias() += gpt::ConstMatrixMap<T>(inp, ix(N), ix(C)).transpose() * dy;
  if (dbias) gpt::bias_backward(dbias, dout, N, OC);
}

// ---- grouped-query causal attention with padding ---------------------------------------------------------
// q [B, T, NH, hd], k and v [B, T, KVH, hd]; head h reads kv head h / (NH / KVH). out [B, T, NH, hd];
// att [B, NH, T, T] softmax probabilities (only each row's real block [lo, hi) is written; gpt::real_span).
// Query t attends to the real keys t' ≤ t; padding queries get zero output.
template <class T>
void attention_forward(T* out, T* att, const T* q, const T* k, const T* v, const std::uint8_t* real, std::size_t B,
                       std::size_t Tn, std::size_t NH, std::size_t KVH, std::size_t hd) {
  const std::size_t QD = NH * hd, KD = KVH * hd, group = NH / KVH;
  const T scale = T(1) / std::sqrt(T(hd));
  gpt::for_each_row_head(B, NH, Tn, real, B * NH * Tn * Tn * hd, [&](std::size_t b, std::size_t h,
                                                                   const std::uint8_t* r, std::size_t lo,
                                                                   std::size_t hi) {
    for (std::size_t t = 0; t < Tn; ++t)
      if (t < lo || t >= hi) ArrayMap<T>(out + (b * Tn + t) * QD + h * hd, ix(hd)).setZero();
    if (lo == hi) return;
    const std::size_t n = hi - lo, g = h / group;
    const ConstStridedMap<T> Q(q + (b * Tn + lo) * QD + h * hd, ix(n), ix(hd), Eigen::OuterStride<>(ix(QD)));
    const ConstStridedMap<T> K(k + (b * Tn + lo) * KD + g * hd, ix(n), ix(hd), Eigen::OuterStride<>(ix(KD)));
    const ConstStridedMap<T> Vv(v + (b * Tn + lo) * KD + g * hd, ix(n), ix(hd), Eigen::OuterStride<>(ix(KD)));
    StridedMap<T> P(att + ((b * NH + h) * Tn + lo) * Tn + lo, ix(n), ix(n), Eigen::OuterStride<>(ix(Tn)));
    P.noalias() = scale * (Q * K.transpose());
    bool holes = false;
    for (std::size_t t = lo; t < hi; ++t) holes = holes || !r[t];
    for (std::size_t i = 0; i < n; ++i) gpt::causal_softmax_row(P.data() + i * Tn, r + lo, i, n, holes, false);
    StridedMap<T>(out + (b * Tn + lo) * QD + h * hd, ix(n), ix(hd), Eigen::OuterStride<>(ix(QD))).noalias() =
        P.template triangularView<Eigen::Lower>() * Vv;
  });
}

// dq [B, T, NH, hd], dk and dv [B, T, KVH, hd] (overwritten; a kv head sums over its group of query heads);
// datt [B, NH, T, T] scratch; dout [B, T, NH, hd]; the rest as in the forward.
template <class T>
void attention_backward(T* dq, T* dk, T* dv, T* datt, const T* dout, const T* q, const T* k, const T* v, const T* att,
                        const std::uint8_t* real, std::size_t B, std::size_t Tn, std::size_t NH, std::size_t KVH,
                        std::size_t hd) {
  const std::size_t QD = NH * hd, KD = KVH * hd, group = NH / KVH;
  const T scale = T(1) / std::sqrt(T(hd));
  // one kv head g and its group of query heads at a time: no shared writes
  gpt::for_each_row_head(B, KVH, Tn, real, B * NH * Tn * Tn * hd, [&](std::size_t b, std::size_t g,
                                                                    const std::uint8_t*, std::size_t lo,
                                                                    std::size_t hi) {
    for (std::size_t t = 0; t < Tn; ++t) {
      ArrayMap<T>(dk + (b * Tn + t) * KD + g * hd, ix(hd)).setZero();
      ArrayMap<T>(dv + (b * Tn + t) * KD + g * hd, ix(hd)).setZero();
      if (t < lo || t >= hi)
        for (std::size_t h = g * group; h < (g + 1) * group; ++h)
          ArrayMap<T>(dq + (b * Tn + t) * QD + h * hd, ix(hd)).setZero();
    }
    if (lo == hi) return;
    const std::size_t n = hi - lo;
    const ConstStridedMap<T> K(k + (b * Tn + lo) * KD + g * hd, ix(n), ix(hd), Eigen::OuterStride<>(ix(KD)));
    const ConstStridedMap<T> Vv(v + (b * Tn + lo) * KD + g * hd, ix(n), ix(hd), Eigen::OuterStride<>(ix(KD)));
    StridedMap<T> dK(dk + (b * Tn + lo) * KD + g * hd, ix(n), ix(hd), Eigen::OuterStride<>(ix(KD)));
    StridedMap<T> dV(dv + (b * Tn + lo) * KD + g * hd, ix(n), ix(hd), Eigen::OuterStride<>(ix(KD)));
    for (std::size_t h = g * group; h < (g + 1) * group; ++h) {
      const ConstStridedMap<T> Q(q + (b * Tn + lo) * QD + h * hd, ix(n), ix(hd), Eigen::OuterStride<>(ix(QD)));
      StridedMap<T> dQ(dq + (b * Tn + lo) * QD + h * hd, ix(n), ix(hd), Eigen::OuterStride<>(ix(QD)));
      const ConstStridedMap<T> dY(dout + (b * Tn + lo) * QD + h * hd, ix(n), ix(hd), Eigen::OuterStride<>(ix(QD)));
      const std::size_t aoff = ((b * NH + h) * Tn + lo) * Tn + lo;
      const ConstStridedMap<T> P(att + aoff, ix(n), ix(n), Eigen::OuterStride<>(ix(Tn)));
      StridedMap<T> dS(datt + aoff, ix(n), ix(n), Eigen::OuterStride<>(ix(Tn)));
      dV.noalias() += P.template triangularView<Eigen::Lower>().transpose() * dY;
      dS.noalias() = dY * Vv.transpose();  // dP
      // softmax backward: dS_ij = P_ij (dP_ij − Σ_k P_ik dP_ik), times the score scale
      for (std::size_t i = 0; i < n; ++i) {
        const auto p = ConstArrayMap<T>(P.data() + i * Tn, ix(i + 1));
        auto d = ArrayMap<T>(dS.data() + i * Tn, ix(i + 1));
        const T dot = (p * d).sum();
        d = scale * p * (d - dot);
        if (i + 1 < n) ArrayMap<T>(dS.data() + i * Tn + i + 1, ix(n - i - 1)).setZero();
      }
      dQ.noalias() = dS.template triangularView<Eigen::Lower>() * K;
      dK.noalias() += dS.template triangularView<Eigen::Lower>().transpose() * Q;
    }
  });
}

}  // namespace rlhf::llama
