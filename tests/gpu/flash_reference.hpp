#pragma once
// CPU references for flash attention (include/rlhf/models/gpt_cuda/flash_attention.cuh), plain C++ (any compiler, no
// CUDA), test-only:
//
//   flash_attention_forward_reference / _backward_reference   naive causal attention with padding and grouped-query
//       heads, in double, on flash_tiles.hpp's strided layouts (checked against the CPU Llama's attention by
//       tests/gpu/flash_reference.cpp)
//   flash_forward_emulated / flash_backward_emulated            the CUDA kernels' blocks and threads run one after
//       another: the same shared-memory tiles (rows past T and slots past hd are 0), the same tile ranges and the same
//       per-thread functions of flash_tiles.hpp, in float. What the GPU adds is only the parallel schedule.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "rlhf/core/rng.hpp"
#include "rlhf/models/gpt_cuda/flash_tiles.hpp"

namespace rlhf::gpt_cuda::flash {

// ---- test inputs ---------------------------------------------------------------------------------------------------

// One attention call's inputs in one buffer x, in either of the models' layouts: fused (the GPT's qkv [B, T, 3C], k and
// v C after q, KVH = NH) or separate (the Llama's q [B, T, NH·hd], then k, v [B, T, KVH·hd]). Gradients dq, dk, dv go
// to a buffer of x's size at the same offsets.
struct FlashCase {
  FlashShape s;
  std::size_t q_at, k_at, v_at;     // offsets into x
  std::vector<float> x, dout;       // dout [B, T, out_stride]
  std::vector<std::uint8_t> real;   // [B, T]
  std::size_t out_size() const { return s.B * s.T * s.out_stride; }
  std::size_t lse_size() const { return s.B * s.NH * s.T; }
};

// Padding by row (as many rows as B has, in this order): full; left-padded by 3; a hole at 2 and at T − 2;
// right-padded by 2; no real token at all. Rows shorter than the padding keep their first token.
inline std::vector<std::uint8_t> flash_padding(std::size_t B, std::size_t T) {
  std::vector<std::uint8_t> real(B * T, 1);
  for (std::size_t b = 0; b < B; ++b) {
    std::uint8_t* r = real.data() + b * T;
    switch (b % 5) {
      case 1: for (std::size_t t = 0; t < std::min<std::size_t>(3, T - 1); ++t) r[t] = 0; break;
      case 2: if (T > 3) r[2] = r[T - 2] = 0; break;
      case 3: for (std::size_t t = T > 2 ? T - 2 : 1; t < T; ++t) r[t] = 0; break;
      case 4: for (std::size_t t = 0; t < T; ++t) r[t] = 0; break;
      default: break;
    }
  }
  return real;
}

inline FlashCase make_flash_case(std::size_t B, std::size_t T, std::size_t NH, std::size_t KVH, std::size_t hd,
                                 bool fused, std::uint64_t seed) {
  FlashCase c;
  const std::size_t N = B * T, QD = NH * hd, KD = KVH * hd;
  if (fused) {
    c.s = {B, T, NH, NH, hd, 3 * QD, 3 * QD, QD};
    c.q_at = 0, c.k_at = QD, c.v_at = 2 * QD;
    c.x.resize(N * 3 * QD);
  } else {
    c.s = {B, T, NH, KVH, hd, QD, KD, QD};
    c.q_at = 0, c.k_at = N * QD, c.v_at = N * QD + N * KD;
    c.x.resize(N * (QD + 2 * KD));
  }
  Rng rng(seed);
  for (auto& e : c.x) e = float(-1.5 + 3.0 * rng.uniform());
  c.dout.resize(N * c.s.out_stride);
  for (auto& e : c.dout) e = float(-1.0 + 2.0 * rng.uniform());
  c.real = flash_padding(B, T);
  return c;
}

// max |got − want| / max |want| over the entries where neither is NaN, and +infinity unless both have NaN at exactly
// the same places (so a NaN that leaks, or one that vanishes, fails).
template <class A, class B>
double nan_aware_err(const A& got, const B& want) {
  if (got.size() < want.size()) return INFINITY;
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double x = got[i], y = want[i];
    if (std::isnan(x) != std::isnan(y)) return INFINITY;
    if (std::isnan(y) || x == y) {
      if (std::isfinite(y)) scale = std::max(scale, std::abs(y));
      continue;
    }
    if (!std::isfinite(x) || !std::isfinite(y)) return INFINITY;
    diff = std::max(diff, std::abs(x - y));
    scale = std::max(scale, std::abs(y));
  }
  return scale == 0 ? diff : diff / scale;
}

// ---- naive attention, double ---------------------------------------------------------------------------------------

// out and lse (a padding query: zero output, lse −∞). A NaN score makes its query's row NaN.
inline void flash_attention_forward_reference(float* out, float* lse, const float* q, const float* k, const float* v,
                                              const std::uint8_t* real, const FlashShape& s) {
  const std::size_t T = s.T, hd = s.hd, G = s.group();
  const double scale = 1.0 / std::sqrt(double(hd));
  std::vector<double> p(T);
  for (std::size_t b = 0; b < s.B; ++b)
    for (std::size_t h = 0; h < s.NH; ++h)
      for (std::size_t t = 0; t < T; ++t) {
        float* o = out + (b * T + t) * s.out_stride + h * hd;
        const float* qt = q + (b * T + t) * s.q_stride + h * hd;
        const std::size_t g = h / G;
        if (!real[b * T + t]) {
          for (std::size_t d = 0; d < hd; ++d) o[d] = 0.0f;
          lse[(b * s.NH + h) * T + t] = -INFINITY;
          continue;
        }
        double mx = -INFINITY;
        for (std::size_t j = 0; j <= t; ++j) {
          if (!real[b * T + j]) continue;
          const float* kj = k + (b * T + j) * s.kv_stride + g * hd;
          double dot = 0;
          for (std::size_t d = 0; d < hd; ++d) dot += double(qt[d]) * double(kj[d]);
          p[j] = scale * dot;
          mx = std::isnan(p[j]) || std::isnan(mx) ? NAN : std::max(mx, p[j]);
        }
        double total = 0;
        for (std::size_t j = 0; j <= t; ++j)
          if (real[b * T + j]) total += p[j] = std::exp(p[j] - mx);
        std::vector<double> acc(hd, 0.0);
        for (std::size_t j = 0; j <= t; ++j) {
          if (!real[b * T + j]) continue;
          const float* vj = v + (b * T + j) * s.kv_stride + g * hd;
          for (std::size_t d = 0; d < hd; ++d) acc[d] += p[j] / total * double(vj[d]);
        }
        for (std::size_t d = 0; d < hd; ++d) o[d] = float(acc[d]);
        lse[(b * s.NH + h) * T + t] = float(mx + std::log(total));
      }
}

// dq, dk, dv (overwritten at every row t < T; zero at padding) from dout.
inline void flash_attention_backward_reference(float* dq, float* dk, float* dv, const float* dout, const float* q,
                                               const float* k, const float* v, const std::uint8_t* real,
                                               const FlashShape& s) {
  const std::size_t T = s.T, hd = s.hd, G = s.group();
  const double scale = 1.0 / std::sqrt(double(hd));
  std::vector<double> gq(s.B * T * s.NH * hd, 0.0), gk(s.B * T * s.KVH * hd, 0.0), gv(gk.size(), 0.0);
  std::vector<double> p(T), dp(T);
  for (std::size_t b = 0; b < s.B; ++b)
    for (std::size_t h = 0; h < s.NH; ++h)
      for (std::size_t t = 0; t < T; ++t) {
        if (!real[b * T + t]) continue;
        const std::size_t g = h / G;
        const float* qt = q + (b * T + t) * s.q_stride + h * hd;
        const float* dot_ = dout + (b * T + t) * s.out_stride + h * hd;
        const auto kj = [&](std::size_t j) { return k + (b * T + j) * s.kv_stride + g * hd; };
        const auto vj = [&](std::size_t j) { return v + (b * T + j) * s.kv_stride + g * hd; };
        double mx = -INFINITY;
        for (std::size_t j = 0; j <= t; ++j) {
          if (!real[b * T + j]) continue;
          double dot = 0;
          for (std::size_t d = 0; d < hd; ++d) dot += double(qt[d]) * double(kj(j)[d]);
          p[j] = scale * dot;
          mx = std::isnan(p[j]) || std::isnan(mx) ? NAN : std::max(mx, p[j]);
        }
        double total = 0;
        for (std::size_t j = 0; j <= t; ++j)
          if (real[b * T + j]) total += p[j] = std::exp(p[j] - mx);
        double dsum = 0;  // Σ_j p_j dp_j = dout·out
        for (std::size_t j = 0; j <= t; ++j) {
          if (!real[b * T + j]) continue;
          p[j] /= total;
          double x = 0;
          for (std::size_t d = 0; d < hd; ++d) x += double(dot_[d]) * double(vj(j)[d]);
          dp[j] = x;
          dsum += p[j] * x;
        }
        for (std::size_t j = 0; j <= t; ++j) {
          if (!real[b * T + j]) continue;
          const double ds = p[j] * (dp[j] - dsum);
          for (std::size_t d = 0; d < hd; ++d) {
            gq[((b * T + t) * s.NH + h) * hd + d] += scale * ds * double(kj(j)[d]);
            gk[((b * T + j) * s.KVH + g) * hd + d] += scale * ds * double(qt[d]);
            gv[((b * T + j) * s.KVH + g) * hd + d] += p[j] * double(dot_[d]);
          }
        }
      }
  for (std::size_t n = 0; n < s.B * T; ++n) {
    for (std::size_t i = 0; i < s.NH * hd; ++i) dq[n * s.q_stride + i] = float(gq[n * s.NH * hd + i]);
    for (std::size_t i = 0; i < s.KVH * hd; ++i) {
      dk[n * s.kv_stride + i] = float(gk[n * s.KVH * hd + i]);
      dv[n * s.kv_stride + i] = float(gv[n * s.KVH * hd + i]);
    }
  }
}

// ---- the kernels' tiles on the CPU ---------------------------------------------------------------------------------

// load_rows of flash_attention.cuh: rows row0 … row0 + n − 1 of row b (src offset to its head), D slots each, dst_stride
// apart; rows past T and slots past hd are 0.
template <int D>
void load_rows_emulated(float* dst, std::size_t dst_stride, const float* src, std::size_t src_stride, std::size_t b,
                        std::size_t row0, std::size_t n, std::size_t T, std::size_t hd) {
  for (std::size_t r = 0; r < n; ++r)
    for (std::size_t d = 0; d < std::size_t(D); ++d) {
      const std::size_t t = row0 + r;
      dst[r * dst_stride + d] = (t < T && d < hd) ? src[(b * T + t) * src_stride + d] : 0.0f;
    }
}

template <int D>
void flash_forward_emulated_slots(float* out, float* lse, const float* q, const float* k, const float* v,
                                  const std::uint8_t* real, const FlashShape& s) {
  constexpr std::size_t R = rows_per_block, K = tile_rows, S = own_stride(D);
  const std::size_t T = s.T, G = s.group();
  const float scale = 1.0f / std::sqrt(float(s.hd));
  std::vector<float> q_own(R * S), k_tile(K * D), v_tile(K * D);
  std::vector<std::uint8_t> key_real(K);
  for (std::size_t b = 0; b < s.B; ++b)
    for (std::size_t h = 0; h < s.NH; ++h)
      for (std::size_t qb = 0; qb < row_blocks(T); ++qb) {  // one block
        const std::size_t g = h / G;
        load_rows_emulated<D>(q_own.data(), S, q + h * s.hd, s.q_stride, b, qb * R, R, T, s.hd);
        std::vector<RowState<D>> st(R);
        for (std::size_t kt = 0; kt < key_tiles_for_query_block(qb, T); ++kt) {
          const std::size_t key0 = kt * K;
          load_rows_emulated<D>(k_tile.data(), D, k + g * s.hd, s.kv_stride, b, key0, K, T, s.hd);
          load_rows_emulated<D>(v_tile.data(), D, v + g * s.hd, s.kv_stride, b, key0, K, T, s.hd);
          for (std::size_t r = 0; r < K; ++r) key_real[r] = key0 + r < T && real[b * T + key0 + r];
          for (std::size_t r = 0; r < R; ++r) {  // the block's threads
            const std::size_t t = qb * R + r;
            forward_tile<D>(st[r], q_own.data() + r * S, t < T && real[b * T + t], t, k_tile.data(), v_tile.data(),
                            key_real.data(), key0, scale);
          }
        }
        for (std::size_t r = 0; r < R; ++r) {
          const std::size_t t = qb * R + r;
          if (t < T)
            forward_finish<D>(out + (b * T + t) * s.out_stride + h * s.hd, lse + (b * s.NH + h) * T + t, st[r],
                              real[b * T + t] != 0, s.hd);
        }
      }
}

template <int D>
void flash_backward_emulated_slots(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                                   const float* v, const float* out, const float* lse, const std::uint8_t* real,
                                   const FlashShape& s) {
  constexpr std::size_t R = rows_per_block, K = tile_rows, S = own_stride(D);
  const std::size_t T = s.T, G = s.group();
  const float scale = 1.0f / std::sqrt(float(s.hd));
  // flash_dsum_kernel (float, lanes d, d + 32, ... then the warp's tree: summed here in index order)
  std::vector<float> dsum(s.B * s.NH * T, 0.0f);
  for (std::size_t b = 0; b < s.B; ++b)
    for (std::size_t h = 0; h < s.NH; ++h)
      for (std::size_t t = 0; t < T; ++t) {
        if (!real[b * T + t]) continue;
        const std::size_t at = (b * T + t) * s.out_stride + h * s.hd;
        float acc = 0.0f;
        for (std::size_t d = 0; d < s.hd; ++d) acc += out[at + d] * dout[at + d];
        dsum[(b * s.NH + h) * T + t] = acc;
      }
  // flash_dq_kernel
  std::vector<float> own_a(R * S), own_b(R * S), tile_a(K * D), tile_b(K * D);
  std::vector<std::uint8_t> flags(K);
  for (std::size_t b = 0; b < s.B; ++b)
    for (std::size_t h = 0; h < s.NH; ++h)
      for (std::size_t qb = 0; qb < row_blocks(T); ++qb) {
        const std::size_t g = h / G;
        load_rows_emulated<D>(own_a.data(), S, q + h * s.hd, s.q_stride, b, qb * R, R, T, s.hd);
        load_rows_emulated<D>(own_b.data(), S, dout + h * s.hd, s.out_stride, b, qb * R, R, T, s.hd);
        std::vector<float> acc(R * D, 0.0f);
        for (std::size_t kt = 0; kt < key_tiles_for_query_block(qb, T); ++kt) {
          const std::size_t key0 = kt * K;
          load_rows_emulated<D>(tile_a.data(), D, k + g * s.hd, s.kv_stride, b, key0, K, T, s.hd);
          load_rows_emulated<D>(tile_b.data(), D, v + g * s.hd, s.kv_stride, b, key0, K, T, s.hd);
          for (std::size_t r = 0; r < K; ++r) flags[r] = key0 + r < T && real[b * T + key0 + r];
          for (std::size_t r = 0; r < R; ++r) {
            const std::size_t t = qb * R + r;
            const bool query_real = t < T && real[b * T + t];
            const float row_lse = query_real ? lse[(b * s.NH + h) * T + t] : 0.0f;
            const float row_dsum = query_real ? dsum[(b * s.NH + h) * T + t] : 0.0f;
            dq_tile<D>(acc.data() + r * D, own_a.data() + r * S, own_b.data() + r * S, row_lse, row_dsum, query_real,
                       t, tile_a.data(), tile_b.data(), flags.data(), key0, scale);
          }
        }
        for (std::size_t r = 0; r < R; ++r) {
          const std::size_t t = qb * R + r;
          if (t < T)
            for (std::size_t d = 0; d < s.hd; ++d)
              dq[(b * T + t) * s.q_stride + h * s.hd + d] = scale * acc[r * D + d];
        }
      }
  // flash_dkv_kernel
  std::vector<float> lse_tile(K), dsum_tile(K);
  for (std::size_t b = 0; b < s.B; ++b)
    for (std::size_t g = 0; g < s.KVH; ++g)
      for (std::size_t kb = 0; kb < row_blocks(T); ++kb) {
        load_rows_emulated<D>(own_a.data(), S, k + g * s.hd, s.kv_stride, b, kb * R, R, T, s.hd);
        load_rows_emulated<D>(own_b.data(), S, v + g * s.hd, s.kv_stride, b, kb * R, R, T, s.hd);
        std::vector<float> dk_acc(R * D, 0.0f), dv_acc(R * D, 0.0f);
        for (std::size_t h = g * G; h < (g + 1) * G; ++h)
          for (std::size_t qt = first_query_tile_for_key_block(kb); qt < query_tiles(T); ++qt) {
            const std::size_t query0 = qt * K;
            load_rows_emulated<D>(tile_a.data(), D, q + h * s.hd, s.q_stride, b, query0, K, T, s.hd);
            load_rows_emulated<D>(tile_b.data(), D, dout + h * s.hd, s.out_stride, b, query0, K, T, s.hd);
            for (std::size_t r = 0; r < K; ++r) {
              const std::size_t i = query0 + r;
              const bool real_i = i < T && real[b * T + i];
              flags[r] = real_i;
              lse_tile[r] = real_i ? lse[(b * s.NH + h) * T + i] : 0.0f;
              dsum_tile[r] = real_i ? dsum[(b * s.NH + h) * T + i] : 0.0f;
            }
            for (std::size_t r = 0; r < R; ++r) {
              const std::size_t j = kb * R + r;
              dkv_tile<D>(dk_acc.data() + r * D, dv_acc.data() + r * D, own_a.data() + r * S, own_b.data() + r * S,
                          j < T && real[b * T + j], j, tile_a.data(), tile_b.data(), lse_tile.data(), dsum_tile.data(),
                          flags.data(), query0, scale);
            }
          }
        for (std::size_t r = 0; r < R; ++r) {
          const std::size_t j = kb * R + r;
          if (j < T)
            for (std::size_t d = 0; d < s.hd; ++d) {
              dk[(b * T + j) * s.kv_stride + g * s.hd + d] = scale * dk_acc[r * D + d];
              dv[(b * T + j) * s.kv_stride + g * s.hd + d] = dv_acc[r * D + d];
            }
        }
      }
}

inline void flash_forward_emulated(float* out, float* lse, const float* q, const float* k, const float* v,
                                   const std::uint8_t* real, const FlashShape& s) {
  switch (head_slots(s.hd)) {
    case 32: return flash_forward_emulated_slots<32>(out, lse, q, k, v, real, s);
    case 64: return flash_forward_emulated_slots<64>(out, lse, q, k, v, real, s);
    default: return flash_forward_emulated_slots<128>(out, lse, q, k, v, real, s);
  }
}

inline void flash_backward_emulated(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                                    const float* v, const float* out, const float* lse, const std::uint8_t* real,
                                    const FlashShape& s) {
  switch (head_slots(s.hd)) {
    case 32: return flash_backward_emulated_slots<32>(dq, dk, dv, dout, q, k, v, out, lse, real, s);
    case 64: return flash_backward_emulated_slots<64>(dq, dk, dv, dout, q, k, v, out, lse, real, s);
    default: return flash_backward_emulated_slots<128>(dq, dk, dv, dout, q, k, v, out, lse, real, s);
  }
}

}  // namespace rlhf::gpt_cuda::flash
