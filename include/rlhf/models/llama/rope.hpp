#pragma once
// Rotary position embedding in Hugging Face's rotate-half layout: a head vector x of hd channels is rotated
// pairwise as (x[i], x[i + hd/2]) by the angle pos · inv_freq[i], i < hd/2:
//   out[i]        = x[i] cos − x[i + hd/2] sin
//   out[i + hd/2] = x[i + hd/2] cos + x[i] sin
// inv_freq[i] = rope_theta^(−2i / hd), rescaled by rope_scaling (linear: ÷ factor; llama3: HF's
// _compute_llama3_parameters, low frequencies ÷ factor, high ones kept, a smooth blend between). Angles are
// taken in double and their cos/sin rounded once to T, so positions far out lose nothing to float32 products.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <vector>

#include "rlhf/models/llama/config.hpp"

namespace rlhf::llama {

// [hd / 2] the rotary frequencies of the config, after rope_scaling.
inline std::vector<double> inverse_frequencies(const LlamaConfig& c) {
  const std::size_t hd = c.head_size(), half = hd / 2;
  std::vector<double> inv(half);
  for (std::size_t i = 0; i < half; ++i) inv[i] = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(hd));
  if (c.rope_scaling == RopeScaling::linear) {
    for (auto& f : inv) f /= c.rope_factor;
  } else if (c.rope_scaling == RopeScaling::llama3) {
    const double old_len = double(c.rope_original_max_positions);
    const double low_wavelen = old_len / c.rope_low_freq_factor, high_wavelen = old_len / c.rope_high_freq_factor;
    for (auto& f : inv) {
      const double wavelen = 2 * std::numbers::pi / f;
      if (wavelen > low_wavelen) {
        f /= c.rope_factor;
      } else if (wavelen >= high_wavelen) {  // between: blend the scaled and the original frequency
        const double smooth = (old_len / wavelen - c.rope_low_freq_factor) /
                              (c.rope_high_freq_factor - c.rope_low_freq_factor);
        f = (1 - smooth) * f / c.rope_factor + smooth * f;
      }
    }
  }
  return inv;
}

// cos and sin of every position's angles, [positions, hd / 2] each; grows on demand.
template <class T>
class RopeTable {
 public:
  explicit RopeTable(const LlamaConfig& c) : inv_freq_(inverse_frequencies(c)) {}

  void ensure(std::size_t positions) {
    const std::size_t half = inv_freq_.size();
    for (std::size_t p = cos_.size() / half; p < positions; ++p)
      for (std::size_t i = 0; i < half; ++i) {
        const double angle = double(p) * inv_freq_[i];
        cos_.push_back(T(std::cos(angle)));
        sin_.push_back(T(std::sin(angle)));
      }
  }
  std::size_t half() const { return inv_freq_.size(); }
  const T* cos(std::size_t pos) const { return cos_.data() + pos * inv_freq_.size(); }
  const T* sin(std::size_t pos) const { return sin_.data() + pos * inv_freq_.size(); }

 private:
  std::vector<double> inv_freq_;  // [hd / 2]
  std::vector<T> cos_, sin_;      // [positions, hd / 2]
};

// x [N, heads, hd] rotated in place, row n at position pos[n]. inverse: the transposed rotation (the backward:
// d x = Rᵀ d out).
template <class T, class Pos>
void rope_apply(T* x, const Pos* pos, const RopeTable<T>& table, std::size_t N, std::size_t heads, bool inverse) {
  const std::size_t half = table.half(), hd = 2 * half;
#pragma omp parallel for schedule(static) if (N * heads * hd >= (std::size_t(1) << 15))
  for (std::ptrdiff_t n = 0; n < std::ptrdiff_t(N); ++n) {
    const T* cs = table.cos(std::size_t(pos[n]));
    const T* sn = table.sin(std::size_t(pos[n]));
    for (std::size_t h = 0; h < heads; ++h) {
      T* v = x + (std::size_t(n) * heads + h) * hd;
      for (std::size_t i = 0; i < half; ++i) {
        const T a = v[i], b = v[i + half], s = inverse ? -sn[i] : sn[i];
        v[i] = a * cs[i] - b * s;
        v[i + half] = b * cs[i] + a * s;
      }
    }
  }
}

}  // namespace rlhf::llama
