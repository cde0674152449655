#pragma once
// The LoRA term of one linear layer as a forward / backward pair over raw row-major buffers (llm.c style), on
// `rows` rows of its input:
//
//   forward : xd = dropout(x) [rows, in];  xa [rows, r] = xd · Aᵀ;  out [rows, out] += scale · xa · Bᵀ
//   backward: dB [out, r] += scale · doutᵀ · xa;   dxa [rows, r] = scale · dout · B;
//             dA [r, in] += dxaᵀ · xd;             dinp [rows, in] += dropout'(dxa · A)
//
// A [r, in] and B [out, r] in PEFT's layouts. xa is kept from the forward for the backward; the dropout mask is
// not kept but drawn again from its seed (a hash of seed, row and column: the same bits in both passes).
// Parameter gradients accumulate; dinp accumulates (the layer's own backward wrote it first).
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "rlhf/core/rng.hpp"
#include "rlhf/models/gpt/layers.hpp"

namespace rlhf::lora {

using gpt::ConstMatrixMap;
using gpt::ix;
using gpt::MatrixMap;

// PEFT's initialisation of lora_A: kaiming_uniform_(a = √5) = U(−1/√in, 1/√in). lora_B is zero.
template <class T>
void init_a(T* a, std::size_t r, std::size_t in, Rng& rng) {
  const double bound = 1.0 / std::sqrt(double(in));
  for (std::size_t i = 0; i < r * in; ++i) a[i] = T(bound * (2 * rng.uniform() - 1));
}

// Inverted dropout with probability p, its mask a pure function of (seed, row, column): 0 or 1 / (1 − p).
struct DropoutMask {
  std::uint64_t seed = 0;
  double p = 0;
  bool active() const { return p > 0; }
  template <class T>
  T operator()(std::size_t row, std::size_t col) const {
    std::uint64_t z = seed ^ (std::uint64_t(row) * 0x9E3779B97F4A7C15ull) ^ (std::uint64_t(col) * 0xD1B54A32D192ED03ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;  // splitmix64's finaliser
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const double u = double(z >> 11) * 0x1.0p-53;
    return u < p ? T(0) : T(1.0 / (1.0 - p));
  }
};

// xd [rows, in] = dropout(x); rows numbered from row0 within the pass (the mask's row index).
template <class T>
void dropout_rows(T* xd, const T* x, std::size_t row0, std::size_t rows, std::size_t in, const DropoutMask& mask) {
  for (std::size_t n = 0; n < rows; ++n)
    for (std::size_t i = 0; i < in; ++i) xd[n * in + i] = x[n * in + i] * mask.template operator()<T>(row0 + n, i);
}

// out [rows, out] += scale · (xd [rows, in] · Aᵀ) · Bᵀ;  xa [rows, r] = xd · Aᵀ kept
template <class T>
void lora_forward(T* out, T* xa, const T* xd, const T* a, const T* b, std::size_t rows, std::size_t in,
                  std::size_t out_features, std::size_t r, T scale) {
  MatrixMap<T> XA(xa, ix(rows), ix(r));
  XA.noalias() = ConstMatrixMap<T>(xd, ix(rows), ix(in)) * ConstMatrixMap<T>(a, ix(r), ix(in)).transpose();
  MatrixMap<T>(out, ix(rows), ix(out_features)).noalias() +=
      scale * (XA * ConstMatrixMap<T>(b, ix(out_features), ix(r)).transpose());
}

// da [r, in] += dxaᵀ · xd;  db [out, r] += scale · doutᵀ · xa;  dxd [rows, in] += dxa · A, with
// dxa [rows, r] = scale · dout · B (scratch). Without dropout dxd is the layer's dinp itself.
template <class T>
void lora_backward(T* dxd, T* da, T* db, T* dxa, const T* dout, const T* xd, const T* xa, const T* a, const T* b,
                   std::size_t rows, std::size_t in, std::size_t out_features, std::size_t r, T scale) {
  const ConstMatrixMap<T> dY(dout, ix(rows), ix(out_features));
  MatrixMap<T>(db, ix(out_features), ix(r)).noalias() +=
      scale * (dY.transpose() * ConstMatrixMap<T>(xa, ix(rows), ix(r)));
  MatrixMap<T> dXA(dxa, ix(rows), ix(r));
  dXA.noalias() = scale * (dY * ConstMatrixMap<T>(b, ix(out_features), ix(r)));
  MatrixMap<T>(da, ix(r), ix(in)).noalias() += dXA.transpose() * ConstMatrixMap<T>(xd, ix(rows), ix(in));
  MatrixMap<T>(dxd, ix(rows), ix(in)).noalias() += dXA * ConstMatrixMap<T>(a, ix(r), ix(in));
}

}  // namespace rlhf::lora
