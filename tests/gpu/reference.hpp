#pragma once
// Plain CPU references for the CUDA kernels that the CPU GPT does not compute in the same form (any C++
// compiler, no CUDA). Every other kernel's reference is the CPU model's own function (gpt/layers.hpp,
// models/logprob.hpp, optim/adamw.hpp); tests/gpu/kernels.cu pairs each kernel with its reference.
//
//   causal_softmax_forward_reference / _backward_reference   the fused softmax of attention.cuh, which the
//       CPU model folds into gpt::attention_forward on the real block of each row instead
//   scalar_head_forward_reference / _backward_reference      head.cuh over M selected rows (the CPU model loops
//       over rows inside Gpt::values / Gpt::scores)
//   draw_reference                                           one draw of sampler.cuh from a row of logits and a
//       uniform, as the CPU sampler draws (a private member there)
//
// Written as directly as possible: plain loops, double accumulators, sorting where the kernels bisect.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "rlhf/core/batch.hpp"

namespace rlhf::gpt_cuda {

// att [B, NH, T, T], in place: row (b, h, t) holds scores x; the result is softmax(scale · x) over the keys
// t' ≤ t with real[b, t'] = 1, and 0 elsewhere (the whole row when real[b, t] = 0).
inline void causal_softmax_forward_reference(float* att, const std::uint8_t* real, std::size_t B, std::size_t NH,
                                             std::size_t T, float scale) {
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t h = 0; h < NH; ++h)
      for (std::size_t t = 0; t < T; ++t) {
        float* x = att + ((b * NH + h) * T + t) * T;
        const auto allowed = [&](std::size_t j) { return real[b * T + t] && j <= t && real[b * T + j]; };
        double mx = -INFINITY;
        for (std::size_t j = 0; j < T; ++j)
          if (allowed(j)) mx = std::max(mx, double(scale) * double(x[j]));
        double total = 0;
        for (std::size_t j = 0; j < T; ++j)
          if (allowed(j)) total += std::exp(double(scale) * double(x[j]) - mx);
        for (std::size_t j = 0; j < T; ++j)
          x[j] = allowed(j) ? float(std::exp(double(scale) * double(x[j]) - mx) / total) : 0.0f;
      }
}

// datt [B, NH, T, T], in place: the gradient with respect to the scores x of the forward above, from the
// gradient dp with respect to its output p (att): dx_j = scale · p_j (dp_j − Σ_k p_k dp_k) for j ≤ t, else 0.
inline void causal_softmax_backward_reference(float* datt, const float* att, std::size_t B, std::size_t NH,
                                              std::size_t T, float scale) {
  for (std::size_t r = 0; r < B * NH * T; ++r) {
    const std::size_t t = r % T;
    const float* p = att + r * T;
    float* d = datt + r * T;
    double dot = 0;
    for (std::size_t j = 0; j <= t; ++j) dot += double(p[j]) * double(d[j]);
    for (std::size_t j = 0; j < T; ++j) d[j] = j <= t ? float(double(scale) * p[j] * (double(d[j]) - dot)) : 0.0f;
  }
}

// out[dst[m]] = lnf[src[m]] · w + b[0] for m < M; lnf [N, C].
inline void scalar_head_forward_reference(float* out, const float* lnf, const float* w, const float* b,
                                          const std::int32_t* src, const std::int32_t* dst, std::size_t M,
                                          std::size_t C) {
  for (std::size_t m = 0; m < M; ++m) {
    double acc = b[0];
    for (std::size_t c = 0; c < C; ++c) acc += double(lnf[std::size_t(src[m]) * C + c]) * double(w[c]);
    out[dst[m]] = float(acc);
  }
}

// With g_m = dout[dst[m]]: dlnf[src[m]] += g_m w, dw += Σ_m g_m lnf[src[m]], db[0] += Σ_m g_m.
inline void scalar_head_backward_reference(float* dlnf, float* dw, float* db, const float* lnf, const float* w,
                                           const float* dout, const std::int32_t* src, const std::int32_t* dst,
                                           std::size_t M, std::size_t C) {
  std::vector<double> sum_w(C, 0.0);
  double sum_b = 0;
  for (std::size_t m = 0; m < M; ++m) {
    const double g = dout[dst[m]];
    const float* x = lnf + std::size_t(src[m]) * C;
    for (std::size_t c = 0; c < C; ++c) {
      dlnf[std::size_t(src[m]) * C + c] += float(g * w[c]);
      sum_w[c] += g * x[c];
    }
    sum_b += g;
  }
  for (std::size_t c = 0; c < C; ++c) dw[c] += float(sum_w[c]);
  db[0] += float(sum_b);
}

// One token from a row of V logits and a uniform u in [0, 1), as the CPU sampler draws it: temperature 0 takes
// the first maximum; otherwise softmax(logits / temperature) over the top_k largest logits (ties: lower id
// first; 0 = all), then — when top_p < 1 — over the smallest prefix, in order of decreasing probability (ties:
// lower id first), whose weight reaches top_p of the total. Without top_p the draw walks the kept tokens in id
// order; with it, in the decreasing order.
inline token_id draw_reference(const float* logits, std::size_t V, float temperature, std::size_t top_k, float top_p,
                               double u) {
  if (temperature == 0.0f) return static_cast<token_id>(std::max_element(logits, logits + V) - logits);
  std::vector<token_id> order(V);
  std::iota(order.begin(), order.end(), token_id(0));
  std::stable_sort(order.begin(), order.end(), [&](token_id a, token_id b) { return logits[a] > logits[b]; });
  const std::size_t kept = top_k > 0 && top_k < V ? top_k : V;
  order.resize(kept);  // decreasing logit, ties by id
  const double mx = logits[order[0]];
  std::vector<double> w(kept);
  double total = 0;
  const double inv_temp = 1.0 / temperature;
  for (std::size_t i = 0; i < kept; ++i) total += w[i] = std::exp((double(logits[order[i]]) - mx) * inv_temp);
  if (top_p < 1.0f) {
    std::size_t n = 0;
    double mass = 0;
    while (n < kept && mass < double(top_p) * total) mass += w[n++];
    double left = u * mass;
    for (std::size_t i = 0; i < n; ++i)
      if ((left -= w[i]) < 0) return order[i];
    return order[n - 1];
  }
  std::vector<std::size_t> by_id(kept);
  std::iota(by_id.begin(), by_id.end(), std::size_t(0));
  std::sort(by_id.begin(), by_id.end(), [&](std::size_t a, std::size_t b) { return order[a] < order[b]; });
  double left = u * total;
  for (std::size_t i : by_id)
    if ((left -= w[i]) < 0) return order[i];
  return order[by_id.back()];
}

}  // namespace rlhf::gpt_cuda
