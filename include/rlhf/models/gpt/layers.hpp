#pragma once
// The GPT's layers as x_forward / x_backward pairs over raw row-major buffers (llm.c style), for any
// floating-point T. N = B·T rows of C channels. GEMMs go through Eigen maps; row loops through OpenMP.
//
// Gradient conventions: parameter gradients (dweight, dbias) always accumulate (+=). Input gradients are
// overwritten (=), except layernorm_backward's, which accumulates because its input is the residual
// stream, whose gradient also flows around the block.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "rlhf/models/gpt/bf16_matmul.hpp"

namespace rlhf::gpt {

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatrixMap = Eigen::Map<RowMatrix<T>>;
template <class T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>>;
template <class T>
using StridedMap = Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<>>;  // a block of rows, row stride given
template <class T>
using ConstStridedMap = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;
template <class T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using RowVectorMap = Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>;
template <class T>
using ConstRowVectorMap = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>;

// Every buffer starts on a 64-byte boundary: Eigen's vectorised reductions split their sums by the address's
// alignment, so equally aligned buffers make equal inputs give bit-identical outputs in any model instance.
template <class T>
using aligned_vector = std::vector<T, Eigen::aligned_allocator<T>>;

inline constexpr std::size_t parallel_work = 1 << 15;  // below this many scalar ops a loop stays on one thread

inline Eigen::Index ix(std::size_t n) { return static_cast<Eigen::Index>(n); }

// ---- encoder: token + position embedding ------------------------------------------------------------
// out [N, C] = wte[tokens[n]] + wpe[pos[n]]
template <class T>
void encoder_forward(T* out, const std::int32_t* tokens, const std::int32_t* pos, const T* wte, const T* wpe,
                     std::size_t N, std::size_t C) {
#pragma omp parallel for schedule(static) if (N * C >= parallel_work)
  for (std::ptrdiff_t n = 0; n < static_cast<std::ptrdiff_t>(N); ++n) {
    ArrayMap<T>(out + n * C, ix(C)) = ConstArrayMap<T>(wte + std::size_t(tokens[n]) * C, ix(C)) +
                                      ConstArrayMap<T>(wpe + std::size_t(pos[n]) * C, ix(C));
  }
}

// dwte[tokens[n]] += dout[n], dwpe[pos[n]] += dout[n] for rows with real[n] = 1 (padding gets no gradient).
// Serial: rows may share a token id or a position.
template <class T>
void encoder_backward(T* dwte, T* dwpe, const T* dout, const std::int32_t* tokens, const std::int32_t* pos,
                      const std::uint8_t* real, std::size_t N, std::size_t C) {
  if (!dwte) return;  // frozen embeddings (a model with set_weights_trainable(false)): no gradient
  for (std::size_t n = 0; n < N; ++n) {
    if (!real[n]) continue;
    const auto d = ConstArrayMap<T>(dout + n * C, ix(C));
    ArrayMap<T>(dwte + std::size_t(tokens[n]) * C, ix(C)) += d;
    ArrayMap<T>(dwpe + std::size_t(pos[n]) * C, ix(C)) += d;
  }
}

// ---- layernorm ----------------------------------------------------------------------------------------
// out [N, C] = (inp − mean) · rstd · weight + bias; mean, rstd [N] kept for the backward.
template <class T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias, std::size_t N,
                       std::size_t C, T eps) {
  const auto w = ConstArrayMap<T>(weight, ix(C));
  const auto b = ConstArrayMap<T>(bias, ix(C));
#pragma omp parallel for schedule(static) if (N * C * 8 >= parallel_work)
  for (std::ptrdiff_t n = 0; n < static_cast<std::ptrdiff_t>(N); ++n) {
    const auto x = ConstArrayMap<T>(inp + n * C, ix(C));
    const T m = x.sum() / T(C);
    const T var = (x - m).square().sum() / T(C);
    const T s = T(1) / std::sqrt(var + eps);
    ArrayMap<T>(out + n * C, ix(C)) = (x - m) * s * w + b;
    mean[n] = m;
    rstd[n] = s;
  }
}

// dinp [N, C] += d/dinp; dweight, dbias [C] += Σ_n.
template <class T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, const T* mean,
                        const T* rstd, std::size_t N, std::size_t C) {
  const auto w = ConstArrayMap<T>(weight, ix(C));
#pragma omp parallel for schedule(static) if (N * C * 10 >= parallel_work)
  for (std::ptrdiff_t n = 0; n < static_cast<std::ptrdiff_t>(N); ++n) {
    const auto x = ConstArrayMap<T>(inp + n * C, ix(C));
    const auto dy = ConstArrayMap<T>(dout + n * C, ix(C));
    const T m = mean[n], s = rstd[n];
    // norm = (x − m) s;  dnorm = dy w;  dx = s (dnorm − mean(dnorm) − norm · mean(dnorm · norm))
    const T dnorm_mean = (dy * w).sum() / T(C);
    const T dnorm_norm_mean = (dy * w * (x - m)).sum() * s / T(C);
    ArrayMap<T>(dinp + n * C, ix(C)) += s * (dy * w - dnorm_mean - (x - m) * s * dnorm_norm_mean);
  }
  if (!dweight) return;  // frozen weights: no gradient
  auto dw = ArrayMap<T>(dweight, ix(C));
  auto db = ArrayMap<T>(dbias, ix(C));
  for (std::size_t n = 0; n < N; ++n) {
    const auto x = ConstArrayMap<T>(inp + n * C, ix(C));
    const auto dy = ConstArrayMap<T>(dout + n * C, ix(C));
    dw += dy * (x - mean[n]) * rstd[n];
    db += dy;
  }
}

// ---- matmul: y = x W + b --------------------------------------------------------------------------------
// out [N, OC] = inp [N, C] · weight [C, OC] + bias [OC] (bias may be null)
template <class T>
void matmul_forward(T* out, const T* inp, const T* weight, const T* bias, std::size_t N, std::size_t C,
                    std::size_t OC) {
  MatrixMap<T> y(out, ix(N), ix(OC));
  y.noalias() = ConstMatrixMap<T>(inp, ix(N), ix(C)) * ConstMatrixMap<T>(weight, ix(C), ix(OC));
  if (bias) y.rowwise() += ConstRowVectorMap<T>(bias, ix(OC));
}

// dbias [OC] += Σ_n dout [N, OC]
template <class T>
void bias_backward(T* dbias, const T* dout, std::size_t N, std::size_t OC) {
  auto db = ArrayMap<T>(dbias, ix(OC));
  for (std::size_t n = 0; n < N; ++n) db += ConstArrayMap<T>(dout + n * OC, ix(OC));
}

// dinp [N, C] = dout · weightᵀ (skipped when dinp is null); dweight [C, OC] += inpᵀ · dout (skipped when null: a
// frozen weight); dbias [OC] += Σ_n dout
template <class T>
void matmul_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, std::size_t N,
                     std::size_t C, std::size_t OC) {
  const ConstMatrixMap<T> dy(dout, ix(N), ix(OC));
  if (dinp) MatrixMap<T>(dinp, ix(N), ix(C)).noalias() = dy * ConstMatrixMap<T>(weight, ix(C), ix(OC)).transpose();
  if (dweight) MatrixMap<T>(dweight, ix(C), ix(OC)).noalias() += ConstMatrixMap<T>(inp, ix(N), ix(C)).transpose() * dy;
  if (dbias) bias_backward(dbias, dout, N, OC);
}

// The same two with bf16 operands and float32 sums (bf16_matmul.hpp), the weight packed beforehand:
// weight [C, OC] for the forward, weightᵀ [OC, C] for the backward.
inline void matmul_forward_bf16(float* out, const float* inp, const bf16::PackedB& weight, const float* bias,
                                std::size_t N, std::size_t C, std::size_t OC) {
  bf16::gemm(out, OC, bf16::row_major(inp, C), weight, N, false);
  if (bias) MatrixMap<float>(out, ix(N), ix(OC)).rowwise() += ConstRowVectorMap<float>(bias, ix(OC));
}

inline void matmul_backward_bf16(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                                 const bf16::PackedB& weight_t, std::size_t N, std::size_t C, std::size_t OC) {
  if (dinp) bf16::gemm(dinp, C, bf16::row_major(dout, OC), weight_t, N, false);
  if (dweight) bf16::gemm(dweight, OC, bf16::transposed(inp, C), bf16::row_major(dout, OC), C, OC, N, true);
  if (dbias) bias_backward(dbias, dout, N, OC);
}

// ---- GELU, tanh approximation ---------------------------------------------------------------------------
// gelu(x) = ½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))
template <class T>
struct GeluConstants {
  static constexpr T k0 = T(0.7978845608028654);  // √(2/π)
  static constexpr T k1 = T(0.044715);
};

inline constexpr std::size_t gelu_chunk = 4096;

// f(begin, len) for each chunk [begin, begin + len) of gelu_chunk elements of n, in parallel when n times the
// scalar ops per element is large.
template <class F>
void for_each_gelu_chunk(std::size_t n, std::size_t ops_per_element, F f) {
  const auto chunks = static_cast<std::ptrdiff_t>((n + gelu_chunk - 1) / gelu_chunk);
#pragma omp parallel for schedule(static) if (n * ops_per_element >= parallel_work)
  for (std::ptrdiff_t c = 0; c < chunks; ++c) {
    const std::size_t begin = std::size_t(c) * gelu_chunk;
    f(begin, std::min(gelu_chunk, n - begin));
  }
}

template <class T>
void gelu_forward(T* out, const T* inp, std::size_t n) {
  constexpr T k0 = GeluConstants<T>::k0, k1 = GeluConstants<T>::k1;
  for_each_gelu_chunk(n, 30, [&](std::size_t begin, std::size_t len) {
    const auto x = ConstArrayMap<T>(inp + begin, ix(len));
    ArrayMap<T>(out + begin, ix(len)) = T(0.5) * x * (T(1) + (k0 * (x + k1 * x.cube())).tanh());
  });
}

// dinp [n] = dout · gelu'(inp); dinp may be dout (in place).
template <class T>
void gelu_backward(T* dinp, const T* inp, const T* dout, std::size_t n) {
  constexpr T k0 = GeluConstants<T>::k0, k1 = GeluConstants<T>::k1;
  for_each_gelu_chunk(n, 40, [&](std::size_t begin, std::size_t len) {
    const auto x = ConstArrayMap<T>(inp + begin, ix(len));
    const Eigen::Array<T, Eigen::Dynamic, 1> t = (k0 * (x + k1 * x.cube())).tanh();
    const auto local = T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t.square()) * k0 * (T(1) + T(3) * k1 * x.square());
    ArrayMap<T>(dinp + begin, ix(len)) = local * ConstArrayMap<T>(dout + begin, ix(len));
  });
}

// ---- residual -----------------------------------------------------------------------------------------
// out [n] = a + b (out may alias a or b). Its backward is the identity on both inputs.
template <class T>
void residual_forward(T* out, const T* a, const T* b, std::size_t n) {
  ArrayMap<T>(out, ix(n)) = ConstArrayMap<T>(a, ix(n)) + ConstArrayMap<T>(b, ix(n));
}

// ---- causal self-attention with padding ----------------------------------------------------------------
// real [B, T]: 1 for a real token, 0 for padding. Row b's real tokens lie in [lo, hi) (first real to last
// real); only that block is computed, so a row's result does not depend on how much padding surrounds it.
// Query t attends to the real keys t' ≤ t. Padding queries get zero output and zero probabilities.
inline std::pair<std::size_t, std::size_t> real_span(const std::uint8_t* real, std::size_t T) {
  std::size_t lo = 0, hi = T;
  while (lo < T && !real[lo]) ++lo;
  while (hi > lo && !real[hi - 1]) --hi;
  return {lo, hi};
}

// f(b, h, r, lo, hi) for every row b < B and head h < heads, in parallel when the work (scalar ops) is large:
// r = real + b·T is the row's real flags and [lo, hi) = real_span(r, T). f returns to skip to the next pair.
template <class F>
void for_each_row_head(std::size_t B, std::size_t heads, std::size_t Tn, const std::uint8_t* real, std::size_t work,
                       F f) {
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (work >= parallel_work)
  for (std::ptrdiff_t b = 0; b < static_cast<std::ptrdiff_t>(B); ++b) {
    for (std::ptrdiff_t h = 0; h < static_cast<std::ptrdiff_t>(heads); ++h) {
      const std::uint8_t* r = real + b * Tn;
      const auto [lo, hi] = real_span(r, Tn);
      f(std::size_t(b), std::size_t(h), r, lo, hi);
    }
  }
}

// Row i of a causal block of attention scores (n queries and keys of a row's real span, row stride free; r: the
// span's real flags), in place: a padding query's row is all 0; a real one becomes the softmax over its real keys
// 0 … i, 0 at padding keys and above the diagonal. holes: whether any of the n keys is padding. zero_holes: write
// an exact 0 at the padding keys after the exponent (the GPT's); without it they keep exp(−∞) as Eigen computes it,
// a denormal (≤ 3e−39 in float) on its vectorised paths (the Llama's, kept so that its results stay bit-identical).
template <class T>
void causal_softmax_row(T* row, const std::uint8_t* r, std::size_t i, std::size_t n, bool holes,
                        bool zero_holes = true) {
  if (!r[i]) {
    ArrayMap<T>(row, ix(n)).setZero();
    return;
  }
  auto keys = ArrayMap<T>(row, ix(i + 1));  // keys 0 … i
  if (holes)
    for (std::size_t j = 0; j <= i; ++j)
      if (!r[j]) row[j] = -std::numeric_limits<T>::infinity();
  const T m = keys.maxCoeff();
  keys = (keys - m).exp();
  if (holes && zero_holes)
    for (std::size_t j = 0; j <= i; ++j)
      if (!r[j]) row[j] = T(0);
  keys *= T(1) / keys.sum();
  if (i + 1 < n) ArrayMap<T>(row + i + 1, ix(n - i - 1)).setZero();
}

// out [B, T, C]; att [B, NH, T, T] (softmax probabilities; only each row's real block is written);
// qkv [B, T, 3C] (q, k, v side by side; head h uses channels h·hs … h·hs + hs − 1 of each).
// precision: bf16 takes the two products (Q·Kᵀ, P·V) with bf16 operands and float32 sums (float only); the
// softmax stays float32.
template <class T>
void attention_forward(T* out, T* att, const T* qkv, const std::uint8_t* real, std::size_t B, std::size_t Tn,
                       std::size_t C, std::size_t NH, MatmulPrecision precision = MatmulPrecision::fp32) {
  constexpr bool is_float = std::is_same_v<T, float>;
  const bool in_bf16 = is_float && precision == MatmulPrecision::bf16;
  const std::size_t hs = C / NH, C3 = 3 * C;
  const T scale = T(1) / std::sqrt(T(hs));
  for_each_row_head(B, NH, Tn, real, B * NH * Tn * Tn * hs, [&](std::size_t b, std::size_t h, const std::uint8_t* r,
                                                              std::size_t lo, std::size_t hi) {
    for (std::size_t t = 0; t < Tn; ++t)
      if (t < lo || t >= hi) ArrayMap<T>(out + (b * Tn + t) * C + h * hs, ix(hs)).setZero();
    if (lo == hi) return;
    const std::size_t n = hi - lo;
    bool holes = false;
    for (std::size_t t = lo; t < hi; ++t) holes = holes || !r[t];
    const T* q = qkv + (b * Tn + lo) * C3 + h * hs;
    const ConstStridedMap<T> Q(q, ix(n), ix(hs), Eigen::OuterStride<>(ix(C3)));
    const ConstStridedMap<T> K(q + C, ix(n), ix(hs), Eigen::OuterStride<>(ix(C3)));
    const ConstStridedMap<T> Vv(q + 2 * C, ix(n), ix(hs), Eigen::OuterStride<>(ix(C3)));
    StridedMap<T> P(att + ((b * NH + h) * Tn + lo) * Tn + lo, ix(n), ix(n), Eigen::OuterStride<>(ix(Tn)));
    if (in_bf16) {  // P = Q · Kᵀ, unscaled (the scale is applied row by row below)
      if constexpr (is_float)
        bf16::gemm(P.data(), Tn, bf16::Operand{q, C3, 1}, bf16::Operand{q + C, 1, C3}, n, n, hs, false);
    } else {
      P.noalias() = scale * (Q * K.transpose());
    }
    for (std::size_t i = 0; i < n; ++i) {
      T* row = P.data() + i * Tn;
      if (in_bf16 && r[lo + i]) ArrayMap<T>(row, ix(i + 1)) *= scale;  // keys lo … lo + i
      causal_softmax_row(row, r + lo, i, n, holes);
    }
    T* y = out + (b * Tn + lo) * C + h * hs;
    if (in_bf16) {  // P is zero above its diagonal: the full product is the triangular one
      if constexpr (is_float)
        bf16::gemm(y, C, bf16::Operand{P.data(), Tn, 1}, bf16::Operand{q + 2 * C, C3, 1}, n, hs, n, false);
    } else {
      StridedMap<T>(y, ix(n), ix(hs), Eigen::OuterStride<>(ix(C))).noalias() =
          P.template triangularView<Eigen::Lower>() * Vv;
    }
  });
}

// dqkv [B, T, 3C] = d/dqkv (overwritten); datt [B, NH, T, T] scratch; dout [B, T, C]; qkv, att as in forward.
// precision: bf16 takes the four products (Pᵀ·dY, dY·Vᵀ, dS·K, dSᵀ·Q) with bf16 operands (float only).
template <class T>
void attention_backward(T* dqkv, T* datt, const T* dout, const T* qkv, const T* att, const std::uint8_t* real,
                        std::size_t B, std::size_t Tn, std::size_t C, std::size_t NH,
                        MatmulPrecision precision = MatmulPrecision::fp32) {
  constexpr bool is_float = std::is_same_v<T, float>;
  const bool in_bf16 = is_float && precision == MatmulPrecision::bf16;
  const std::size_t hs = C / NH, C3 = 3 * C;
  const T scale = T(1) / std::sqrt(T(hs));
  for_each_row_head(B, NH, Tn, real, B * NH * Tn * Tn * hs, [&](std::size_t b, std::size_t h, const std::uint8_t*,
                                                              std::size_t lo, std::size_t hi) {
    for (std::size_t t = 0; t < Tn; ++t)
      if (t < lo || t >= hi)
        for (std::size_t part = 0; part < 3; ++part)
          ArrayMap<T>(dqkv + (b * Tn + t) * C3 + part * C + h * hs, ix(hs)).setZero();
    if (lo == hi) return;
    const std::size_t n = hi - lo;
    const std::size_t qoff = (b * Tn + lo) * C3 + h * hs;
    const ConstStridedMap<T> Q(qkv + qoff, ix(n), ix(hs), Eigen::OuterStride<>(ix(C3)));
    const ConstStridedMap<T> K(qkv + qoff + C, ix(n), ix(hs), Eigen::OuterStride<>(ix(C3)));
    const ConstStridedMap<T> Vv(qkv + qoff + 2 * C, ix(n), ix(hs), Eigen::OuterStride<>(ix(C3)));
    StridedMap<T> dQ(dqkv + qoff, ix(n), ix(hs), Eigen::OuterStride<>(ix(C3)));
    StridedMap<T> dK(dqkv + qoff + C, ix(n), ix(hs), Eigen::OuterStride<>(ix(C3)));
    StridedMap<T> dV(dqkv + qoff + 2 * C, ix(n), ix(hs), Eigen::OuterStride<>(ix(C3)));
    const ConstStridedMap<T> dY(dout + (b * Tn + lo) * C + h * hs, ix(n), ix(hs), Eigen::OuterStride<>(ix(C)));
    const std::size_t aoff = ((b * NH + h) * Tn + lo) * Tn + lo;
    const ConstStridedMap<T> P(att + aoff, ix(n), ix(n), Eigen::OuterStride<>(ix(Tn)));
    StridedMap<T> dS(datt + aoff, ix(n), ix(n), Eigen::OuterStride<>(ix(Tn)));

    const T* dy = dout + (b * Tn + lo) * C + h * hs;
    if (in_bf16) {  // P and, below, dS are zero above their diagonals
      if constexpr (is_float) {
        bf16::gemm(dV.data(), C3, bf16::Operand{P.data(), 1, Tn}, bf16::Operand{dy, C, 1}, n, hs, n, false);
        bf16::gemm(dS.data(), Tn, bf16::Operand{dy, C, 1}, bf16::Operand{Vv.data(), 1, C3}, n, n, hs, false);
      }
    } else {
      dV.noalias() = P.template triangularView<Eigen::Lower>().transpose() * dY;
      dS.noalias() = dY * Vv.transpose();  // dP
    }
    // softmax backward: dS_ij = P_ij (dP_ij − Σ_k P_ik dP_ik), times the score scale
    for (std::size_t i = 0; i < n; ++i) {
      auto p = ConstArrayMap<T>(P.data() + i * Tn, ix(i + 1));
      auto d = ArrayMap<T>(dS.data() + i * Tn, ix(i + 1));
      const T dot = (p * d).sum();
      d = scale * p * (d - dot);
      if (i + 1 < n) ArrayMap<T>(dS.data() + i * Tn + i + 1, ix(n - i - 1)).setZero();
    }
    if (in_bf16) {
      if constexpr (is_float) {
        bf16::gemm(dQ.data(), C3, bf16::Operand{dS.data(), Tn, 1}, bf16::Operand{K.data(), C3, 1}, n, hs, n, false);
        bf16::gemm(dK.data(), C3, bf16::Operand{dS.data(), 1, Tn}, bf16::Operand{Q.data(), C3, 1}, n, hs, n, false);
      }
    } else {
      dQ.noalias() = dS.template triangularView<Eigen::Lower>() * K;
      dK.noalias() = dS.template triangularView<Eigen::Lower>().transpose() * Q;
    }
  });
}

}  // namespace rlhf::gpt
