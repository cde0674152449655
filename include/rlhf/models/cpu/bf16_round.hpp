#pragma once
// Rounding a float32 to bfloat16, as every bf16 path of the CPU models does it: to nearest, ties to even,
// subnormals to ±0 (vdpbf16ps reads subnormal bf16 inputs as zero), NaN kept a NaN (made quiet).
#include <bit>
#include <cstdint>

namespace rlhf::cpu::bf16 {

// The bf16 nearest to x, as its 16 bits.
inline std::uint16_t bits_of(float x) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7f800000u) == 0) return std::uint16_t((u & 0x80000000u) >> 16);  // ±0 and subnormals
  if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u | 0x00400000u) >> 16);  // NaN, made quiet
  u += 0x7fffu + ((u >> 16) & 1u);
  return std::uint16_t(u >> 16);
}
inline float value_of(std::uint16_t b) { return std::bit_cast<float>(std::uint32_t(b) << 16); }
inline float round(float x) { return value_of(bits_of(x)); }

}  // namespace rlhf::cpu::bf16
