// bf16 products (gpt/bf16_matmul.hpp): the rounding against its definition, both paths against a double sum of
// the rounded operands, the packed weight against the unpacked one, and the GPT's linear layers in bf16 against
// float32 within the bound that bf16 rounding allows. The hardware path runs where the CPU has AVX-512 BF16.
#include "rlhf/models/gpt/bf16_matmul.hpp"

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "rlhf/core/rng.hpp"
#include "rlhf/models/gpt/layers.hpp"

namespace {

namespace bf16 = rlhf::gpt::bf16;
using Path = bf16::Path;

std::vector<float> random_values(std::size_t n, std::uint64_t seed) {
  rlhf::Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = float(rng.normal());
  return v;
}

// The bf16 values either side of a finite normal x: x with its low 16 bits cleared, and the next one away from 0.
std::pair<double, double> neighbours(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x) & 0xffff0000u;
  return {std::bit_cast<float>(u), std::bit_cast<float>(u + 0x10000u)};
}

std::vector<Path> paths() {
  std::vector<Path> p{Path::portable};
  if (bf16::hardware_available()) p.push_back(Path::hardware);
  return p;
}

const char* name(Path p) { return p == Path::hardware ? "hardware" : "portable"; }

}  // namespace

TEST_CASE("bf16 rounding: nearest, ties to even, subnormals to zero, Inf and NaN kept") {
  rlhf::Rng rng(1);
  for (int i = 0; i < 20000; ++i) {
    const float x = float(std::ldexp(2 * rng.uniform() - 1, int(rng.below(60)) - 30));
    if (x == 0) continue;
    const float r = bf16::round(x);
    const auto [a, b] = neighbours(x);
    const double da = std::abs(double(x) - a), db = std::abs(double(x) - b);
    CHECK((std::bit_cast<std::uint32_t>(r) & 0xffffu) == 0u);
    if (da < db) CHECK(double(r) == a);
    if (db < da) CHECK(double(r) == b);
    if (da == db) CHECK(((std::bit_cast<std::uint32_t>(r) >> 16) & 1u) == 0u);
  }
  // exact ties: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7 (1 is even); 1 + 3·2^-8 goes up to 1 + 2^-6
  CHECK(bf16::round(1.0f + 0x1p-8f) == 1.0f);
  CHECK(bf16::round(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f);
  CHECK(bf16::round(0x1p-130f) == 0.0f);
  CHECK(std::signbit(bf16::round(-0x1p-130f)));
  CHECK(bf16::round(std::numeric_limits<float>::infinity()) == std::numeric_limits<float>::infinity());
  CHECK(bf16::round(std::numeric_limits<float>::max()) == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(bf16::round(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(bf16::round(std::bit_cast<float>(0x7f800001u))));  // a NaN whose rounding would carry into Inf
}

TEST_CASE("bf16 gemm: both paths equal a double sum of the rounded operands, every layout and edge") {
  MESSAGE("AVX-512 BF16 on this CPU: " << (bf16::hardware_available() ? "yes" : "no, the portable path only"));
  std::uint64_t seed = 10;
  const std::tuple<std::size_t, std::size_t, std::size_t> shapes[] = {
      {1, 1, 1},       {7, 47, 3},       {8, 48, 2},   {9, 49, 5},  {17, 97, 33},
      {97, 100, 193}, {200, 130, 400}, {3, 300, 1000}, {11, 75, 64}, {16, 256, 40}};  // last panel 1-48 columns wide
  for (const Path path : paths())
    for (const auto& shape : shapes)
      for (int layout = 0; layout < 4; ++layout) {
        const std::size_t M = std::get<0>(shape), N = std::get<1>(shape), K = std::get<2>(shape);
        const bool ta = layout & 1, tb = layout & 2, accumulate = layout == 1 || layout == 2;
        const auto A = random_values(M * K, ++seed), B = random_values(K * N, ++seed);
        const std::size_t ldc = N + 3;  // a row stride wider than the product
        std::vector<float> c(M * ldc, 0.25f);
        const bf16::Operand a = ta ? bf16::transposed(A.data(), M) : bf16::row_major(A.data(), K);
        const bf16::Operand b = tb ? bf16::transposed(B.data(), K) : bf16::row_major(B.data(), N);
        bf16::gemm(c.data(), ldc, a, b, M, N, K, accumulate, path);
        double worst = 0;
        for (std::size_t i = 0; i < M; ++i) {
          for (std::size_t j = 0; j < N; ++j) {
            double ref = accumulate ? 0.25 : 0.0, size = std::abs(ref);
            for (std::size_t k = 0; k < K; ++k) {
              const double p = double(bf16::round(a.at(i, k))) * double(bf16::round(b.at(k, j)));
              ref += p, size += std::abs(p);
            }
            // float32 sums of K + 1 terms: at most (K + 1)·2⁻²⁴ of the sum of magnitudes
            worst = std::max(worst, std::abs(c[i * ldc + j] - ref) / (double(K + 1) * 0x1p-24 * size + 1e-30));
          }
          for (std::size_t j = N; j < ldc; ++j) REQUIRE(c[i * ldc + j] == 0.25f);  // past the product: untouched
        }
        INFO(name(path), " M ", M, " N ", N, " K ", K, " layout ", layout);
        CHECK(worst <= 1.0);
      }
}

// x · 1 + 0 · 0 through the product: c = round(x) exactly, so the packing's rounding (vector and scalar code, a
// pair's low and high element, a and b) is held to bf16::round bit for bit, specials included.
TEST_CASE("bf16 gemm: every packing path rounds as bf16::round (ties, subnormals, Inf, NaN)") {
  std::vector<float> x = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -(1.0f + 0x1p-8f), 0x1p-130f, -0x1p-130f, 0.0f, -0.0f,
                          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::max(), std::numeric_limits<float>::quiet_NaN(),
                          std::bit_cast<float>(0x7f800001u), std::bit_cast<float>(0xff80ffffu),
                          std::numeric_limits<float>::min(), 0x1.fffffep-127f};
  rlhf::Rng rng(3);
  while (x.size() < 1000) x.push_back(float(std::ldexp(2 * rng.uniform() - 1, int(rng.below(80)) - 40)));
  const std::size_t n = x.size();
  // exact equality (the sum −0 + 0 is +0, so a zero's sign is not compared); a NaN must stay a NaN
  const auto same = [](float got, float want) { return std::isnan(want) ? std::isnan(got) : got == want; };
  for (const Path path : paths())
    for (const std::size_t slot : {0, 1})  // x as the low or the high element of its k pair
      for (const bool transposed : {false, true}) {
        INFO(name(path), " slot ", slot, " transposed ", transposed);
        // x in a [n, 2] (column slot), b [2, 1] = unit vector at slot: c [n, 1] = round(x)
        std::vector<float> a(2 * n, 0.0f), b(2, 0.0f), c(n, -1.0f);
        for (std::size_t i = 0; i < n; ++i) a[transposed ? slot * n + i : 2 * i + slot] = x[i];
        b[slot] = 1.0f;
        const bf16::Operand ao = transposed ? bf16::transposed(a.data(), n) : bf16::row_major(a.data(), 2);
        bf16::gemm(c.data(), 1, ao, bf16::row_major(b.data(), 1), n, 1, 2, false, path);
        std::size_t wrong_a = 0;
        for (std::size_t i = 0; i < n; ++i) wrong_a += !same(c[i], bf16::round(x[i]));
        CHECK(wrong_a == 0);
        // x in b [2, n] (row slot), a [1, 2] = unit vector at slot: c [1, n] = round(x)
        std::vector<float> bb(2 * n, 0.0f), aa(2, 0.0f), cc(n, -1.0f);
        for (std::size_t j = 0; j < n; ++j) bb[transposed ? 2 * j + slot : slot * n + j] = x[j];
        aa[slot] = 1.0f;
        const bf16::Operand bo = transposed ? bf16::transposed(bb.data(), 2) : bf16::row_major(bb.data(), n);
        bf16::gemm(cc.data(), n, bf16::row_major(aa.data(), 2), bo, 1, n, 2, false, path);
        std::size_t wrong_b = 0;
        for (std::size_t j = 0; j < n; ++j) wrong_b += !same(cc[j], bf16::round(x[j]));
        CHECK(wrong_b == 0);
      }
}

TEST_CASE("bf16 gemm: a weight packed once gives the same product as packing it in the call") {
  for (const Path path : paths())
    for (const auto& shape : {std::tuple<std::size_t, std::size_t, std::size_t>{9, 100, 193}, {64, 768, 256},
                              {5, 49, 1}})
      for (const bool tb : {false, true}) {
        const std::size_t M = std::get<0>(shape), N = std::get<1>(shape), K = std::get<2>(shape);
        const auto A = random_values(M * K, 40 + M), B = random_values(K * N, 50 + N);
        const bf16::Operand b = tb ? bf16::transposed(B.data(), K) : bf16::row_major(B.data(), N);
        bf16::PackedB packed;
        packed.pack(b, K, N, path);
        std::vector<float> c1(M * N), c2(M * N);
        bf16::gemm(c1.data(), N, bf16::row_major(A.data(), K), packed, M, false, path);
        bf16::gemm(c2.data(), N, bf16::row_major(A.data(), K), b, M, N, K, false, path);
        INFO(name(path), " M ", M, " N ", N, " K ", K, " transposed b ", tb);
        CHECK(c1 == c2);
      }
}

TEST_CASE("bf16 gemm: the hardware and portable paths agree to float32 summation order") {
  if (!bf16::hardware_available()) {
    MESSAGE("skipped: this CPU has no AVX-512 BF16");
    return;
  }
  const std::size_t M = 130, N = 250, K = 300;
  const auto A = random_values(M * K, 7), B = random_values(K * N, 8);
  std::vector<float> hw(M * N), portable(M * N);
  bf16::gemm(hw.data(), N, bf16::row_major(A.data(), K), bf16::row_major(B.data(), N), M, N, K, false, Path::hardware);
  bf16::gemm(portable.data(), N, bf16::row_major(A.data(), K), bf16::row_major(B.data(), N), M, N, K, false,
             Path::portable);
  double worst = 0;
  for (std::size_t i = 0; i < M * N; ++i) worst = std::max(worst, double(std::abs(hw[i] - portable[i])));
  CHECK(worst < 1e-4);  // sums of 300 products of size ~1
}

TEST_CASE("bf16 linear layer: forward and backward within bf16 rounding of float32") {
  // Each bf16 product x̃·w̃ is within (2·2⁻⁹ + 2⁻¹⁸)·|x·w| of x·w, so a sum of them is within that of Σ|x·w|.
  const double bound = 2 * 0x1p-9 + 0x1p-18;
  const std::size_t N = 70, C = 40, OC = 120;
  const auto x = random_values(N * C, 1), w = random_values(C * OC, 2), bias = random_values(OC, 3),
             dy = random_values(N * OC, 4);
  MESSAGE("products on the " << (bf16::hardware_available() ? "hardware" : "portable") << " path");
  bf16::PackedB forward, backward;
  forward.pack(bf16::row_major(w.data(), OC), C, OC);
  backward.pack(bf16::transposed(w.data(), OC), OC, C);
  std::vector<float> y32(N * OC), y16(N * OC);
  rlhf::gpt::matmul_forward(y32.data(), x.data(), w.data(), bias.data(), N, C, OC);
  rlhf::gpt::matmul_forward_bf16(y16.data(), x.data(), forward, bias.data(), N, C, OC);
  std::vector<float> dx32(N * C), dx16(N * C), dw32(C * OC, 0.0f), dw16(C * OC, 0.0f), db32(OC, 0.0f), db16(OC, 0.0f);
  rlhf::gpt::matmul_backward(dx32.data(), dw32.data(), db32.data(), dy.data(), x.data(), w.data(), N, C, OC);
  rlhf::gpt::matmul_backward_bf16(dx16.data(), dw16.data(), db16.data(), dy.data(), x.data(), backward, N, C, OC);
  CHECK(db16 == db32);  // the bias gradient is a plain float32 sum in both
  bool rounded_somewhere = false;
  const auto within = [&](float got, float want, double size) {
    rounded_somewhere = rounded_somewhere || got != want;
    return std::abs(double(got) - want) <= bound * size + 1e-6 * std::abs(double(want));
  };
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t o = 0; o < OC; ++o) {
      double size = 0;
      for (std::size_t c = 0; c < C; ++c) size += std::abs(double(x[n * C + c]) * w[c * OC + o]);
      REQUIRE(within(y16[n * OC + o], y32[n * OC + o], size));
    }
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t c = 0; c < C; ++c) {
      double size = 0;
      for (std::size_t o = 0; o < OC; ++o) size += std::abs(double(dy[n * OC + o]) * w[c * OC + o]);
      REQUIRE(within(dx16[n * C + c], dx32[n * C + c], size));
    }
  for (std::size_t c = 0; c < C; ++c)
    for (std::size_t o = 0; o < OC; ++o) {
      double size = 0;
      for (std::size_t n = 0; n < N; ++n) size += std::abs(double(x[n * C + c]) * dy[n * OC + o]);
      REQUIRE(within(dw16[c * OC + o], dw32[c * OC + o], size));
    }
  if (bf16::hardware_available())
    CHECK(rounded_somewhere);  // bf16 did change the results: the bound was tested, not met by float32 itself
  else
    CHECK_FALSE(rounded_somewhere);  // without AVX-512 BF16 the products are float32's (bf16_matmul.hpp)
}

TEST_CASE("bf16 attention: forward within the bound bf16 rounding allows; backward close to float32") {
  // B 3 rows of T 53 (two column panels and a ragged one), hs 40 (20 pairs); row 0 has left padding and a hole,
  // row 2 right padding.
  const std::size_t B = 3, T = 53, C = 80, NH = 2, hs = C / NH;
  std::vector<std::uint8_t> real(B * T, 1);
  for (std::size_t t = 0; t < 5; ++t) real[t] = 0;
  real[20] = 0;
  for (std::size_t t = 40; t < T; ++t) real[2 * T + t] = 0;
  const auto qkv = random_values(B * T * 3 * C, 21), up = random_values(B * T * C, 22);
  const auto P = rlhf::gpt::MatmulPrecision::bf16;
  std::vector<float> out32(B * T * C), out16(B * T * C), att32(B * NH * T * T), att16(att32.size());
  rlhf::gpt::attention_forward(out32.data(), att32.data(), qkv.data(), real.data(), B, T, C, NH);
  rlhf::gpt::attention_forward(out16.data(), att16.data(), qkv.data(), real.data(), B, T, C, NH, P);

  // y = Σ_k p_k v_k. Rounding p and v costs at most 2⁻⁸ Σ p_k |v_k| (+ a product's 2⁻¹⁸); rounding q and k moves
  // each score by at most δ = 2⁻⁸ · scale · Σ_i |q_i k_i|, which moves p_k by at most p_k (e^{2δ} − 1).
  const double scale = 1.0 / std::sqrt(double(hs));
  bool rounded_somewhere = false;
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t h = 0; h < NH; ++h)
      for (std::size_t t = 0; t < T; ++t) {
        const float* y32 = out32.data() + (b * T + t) * C + h * hs;
        const float* y16 = out16.data() + (b * T + t) * C + h * hs;
        if (!real[b * T + t]) {
          for (std::size_t i = 0; i < hs; ++i) REQUIRE(y16[i] == 0.0f);
          continue;
        }
        double delta = 0;
        for (std::size_t k = 0; k <= t; ++k) {
          if (!real[b * T + k]) continue;
          double s = 0;
          for (std::size_t i = 0; i < hs; ++i)
            s += std::abs(double(qkv[(b * T + t) * 3 * C + h * hs + i]) * qkv[(b * T + k) * 3 * C + C + h * hs + i]);
          delta = std::max(delta, 0x1p-8 * scale * s);
        }
        const float* p = att32.data() + ((b * NH + h) * T + t) * T;
        for (std::size_t i = 0; i < hs; ++i) {
          double size = 0;
          for (std::size_t k = 0; k <= t; ++k)
            size += p[k] * std::abs(double(qkv[(b * T + k) * 3 * C + 2 * C + h * hs + i]));
          const double bound = size * (0x1p-8 + 0x1p-18 + std::expm1(2 * delta)) + 1e-6;
          rounded_somewhere = rounded_somewhere || y16[i] != y32[i];
          REQUIRE(std::abs(double(y16[i]) - y32[i]) <= bound);
        }
      }
  if (bf16::hardware_available()) CHECK(rounded_somewhere);  // else float32 products, summed in another order

  // The backward's four products compound; compared as a whole with float32's gradient.
  std::vector<float> d32(B * T * 3 * C, 7.0f), d16(B * T * 3 * C, 7.0f), scratch(att32.size());
  rlhf::gpt::attention_backward(d32.data(), scratch.data(), up.data(), qkv.data(), att32.data(), real.data(), B, T, C,
                                NH);
  rlhf::gpt::attention_backward(d16.data(), scratch.data(), up.data(), qkv.data(), att16.data(), real.data(), B, T, C,
                                NH, P);
  double diff = 0, norm = 0, dot = 0, norm16 = 0;
  for (std::size_t i = 0; i < d32.size(); ++i) {
    diff += (double(d16[i]) - d32[i]) * (double(d16[i]) - d32[i]);
    norm += double(d32[i]) * d32[i], norm16 += double(d16[i]) * d16[i], dot += double(d16[i]) * d32[i];
  }
  MESSAGE("bf16 attention gradient: relative error " << std::sqrt(diff / norm) << ", cosine "
                                                     << dot / std::sqrt(norm * norm16));
  // a few times 2⁻⁸ per product over four products and the softmax (3.4e-3 measured)
  CHECK(std::sqrt(diff / norm) < 1e-2);
  CHECK(dot / std::sqrt(norm * norm16) > 0.9999);
  for (std::size_t c = 0; c < 3 * C; ++c) {  // padding and the hole get no gradient
    CHECK(d16[0 * 3 * C + c] == 0.0f);
    CHECK(d16[20 * 3 * C + c] == 0.0f);
    CHECK(d16[(2 * T + 45) * 3 * C + c] == 0.0f);
  }
}
