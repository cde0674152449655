// Flash attention checked on the CPU with g++ (no GPU needed; the ctest gpu_flash_reference, built by
// tests/CMakeLists.txt's glob):
//   - the naive references of flash_reference.hpp equal the CPU Llama's attention (llama::attention_*), so they mean
//     what the models mean (causal, padding, grouped-query heads in HF's order);
//   - the CUDA kernels' blocks and threads, run on the CPU through the same flash_tiles.hpp functions
//     (flash_*_emulated), equal the naive references: T not a multiple of the tiles, padding of every kind, groups
//     of 1-4 query heads per kv head, head sizes in every slot class, the GPT's fused layout and the Llama's;
//   - the tile ranges visit every attended (query, key) pair exactly once, and no tile without one;
//   - NaN at padding positions never leaks, and a NaN key spoils exactly the queries that attend it.
#include "flash_reference.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "compare.hpp"
#include "rlhf/models/llama/layers.hpp"

namespace {

namespace fl = rlhf::gpt_cuda::flash;
using rlhf::gpu_testing::rel_err;

struct Outputs {
  std::vector<float> out, lse, dx;
};

Outputs run_reference(const fl::FlashCase& c) {
  Outputs o{std::vector<float>(c.out_size()), std::vector<float>(c.lse_size()), std::vector<float>(c.x.size(), 0.0f)};
  const float* x = c.x.data();
  fl::flash_attention_forward_reference(o.out.data(), o.lse.data(), x + c.q_at, x + c.k_at, x + c.v_at,
                                        c.real.data(), c.s);
  fl::flash_attention_backward_reference(o.dx.data() + c.q_at, o.dx.data() + c.k_at, o.dx.data() + c.v_at,
                                         c.dout.data(), x + c.q_at, x + c.k_at, x + c.v_at, c.real.data(), c.s);
  return o;
}

Outputs run_emulated(const fl::FlashCase& c) {
  Outputs o{std::vector<float>(c.out_size()), std::vector<float>(c.lse_size()), std::vector<float>(c.x.size(), 0.0f)};
  const float* x = c.x.data();
  fl::flash_forward_emulated(o.out.data(), o.lse.data(), x + c.q_at, x + c.k_at, x + c.v_at, c.real.data(), c.s);
  fl::flash_backward_emulated(o.dx.data() + c.q_at, o.dx.data() + c.k_at, o.dx.data() + c.v_at, c.dout.data(),
                              x + c.q_at, x + c.k_at, x + c.v_at, o.out.data(), o.lse.data(), c.real.data(), c.s);
  return o;
}

}  // namespace

TEST_CASE("flash reference: the naive attention equals the CPU Llama's, groups 1-4, with padding") {
  struct Shape {
    std::size_t NH, KVH, hd;
  };
  for (const Shape sh : {Shape{4, 4, 8}, Shape{4, 2, 6}, Shape{6, 2, 5}, Shape{8, 2, 4}, Shape{3, 1, 7}}) {
    CAPTURE(sh.NH);
    CAPTURE(sh.KVH);
    const std::size_t B = 5, T = 9;
    const auto c = fl::make_flash_case(B, T, sh.NH, sh.KVH, sh.hd, false, 11 + sh.NH);
    const auto ref = run_reference(c);
    const float* x = c.x.data();
    std::vector<float> out(c.out_size()), att(B * sh.NH * T * T, 0.0f);
    rlhf::llama::attention_forward(out.data(), att.data(), x + c.q_at, x + c.k_at, x + c.v_at, c.real.data(), B, T,
                                   sh.NH, sh.KVH, sh.hd);
    CHECK(rel_err(ref.out, out) <= 1e-6);
    std::vector<float> dx(c.x.size()), datt(att.size(), 0.0f);
    rlhf::llama::attention_backward(dx.data() + c.q_at, dx.data() + c.k_at, dx.data() + c.v_at, datt.data(),
                                    c.dout.data(), x + c.q_at, x + c.k_at, x + c.v_at, att.data(), c.real.data(), B,
                                    T, sh.NH, sh.KVH, sh.hd);
    CHECK(rel_err(ref.dx, dx) <= 1e-5);
    // lse: log Σ_j exp(s_j) over the attended keys, checked on one query of the full row 0
    const std::size_t t = T - 1, h = sh.NH - 1, g = h / (sh.NH / sh.KVH);
    double total = 0;
    for (std::size_t j = 0; j <= t; ++j) {
      double dot = 0;
      for (std::size_t d = 0; d < sh.hd; ++d)
        dot += double(x[c.q_at + t * c.s.q_stride + h * sh.hd + d]) * x[c.k_at + j * c.s.kv_stride + g * sh.hd + d];
      total += std::exp(dot / std::sqrt(double(sh.hd)));
    }
    CHECK(ref.lse[h * T + t] == doctest::Approx(std::log(total)).epsilon(1e-6));
    CHECK(ref.lse[(4 * sh.NH + h) * T + t] == -std::numeric_limits<float>::infinity());  // row 4: all padding
  }
}

TEST_CASE("flash reference: the kernels' tiles on the CPU equal the naive attention") {
  struct Shape {
    std::size_t B, T, NH, KVH, hd;
    bool fused;
  };
  // T around the tile sizes (32 keys per tile, 64 rows per block) and past them; every head-slot class (hd ≤ 32,
  // ≤ 64, ≤ 128, with hd below its slots); groups 1-4; the GPT's fused qkv and the Llama's separate q, k, v
  for (const Shape sh : {Shape{5, 1, 2, 2, 8, true}, Shape{5, 7, 2, 1, 4, false}, Shape{5, 31, 3, 3, 32, true},
                         Shape{5, 33, 4, 2, 16, false}, Shape{3, 64, 3, 1, 24, false}, Shape{5, 65, 2, 2, 64, true},
                         Shape{2, 97, 8, 2, 40, false}, Shape{5, 130, 4, 4, 33, true},
                         Shape{2, 140, 6, 2, 128, false}, Shape{1, 200, 4, 1, 100, false}}) {
    CAPTURE(sh.T);
    CAPTURE(sh.hd);
    CAPTURE(sh.NH);
    CAPTURE(sh.KVH);
    CAPTURE(sh.fused);
    const auto c = fl::make_flash_case(sh.B, sh.T, sh.NH, sh.KVH, sh.hd, sh.fused, sh.T * 7 + sh.hd);
    const auto ref = run_reference(c);
    const auto got = run_emulated(c);
    CHECK(rel_err(got.out, ref.out) <= 2e-6);
    CHECK(fl::nan_aware_err(got.lse, ref.lse) <= 2e-6);  // −∞ at the padding queries on both sides
    CHECK(rel_err(got.dx, ref.dx) <= 2e-5);
  }
}

TEST_CASE("flash reference: the tile ranges visit every attended pair once, and no tile without one") {
  constexpr std::size_t R = fl::rows_per_block, K = fl::tile_rows;
  for (std::size_t T = 1; T <= 300; ++T) {
    CAPTURE(T);
    std::vector<int> by_query(T * T, 0), by_key(T * T, 0);
    bool forward_tight = true, backward_tight = true;
    for (std::size_t qb = 0; qb < fl::row_blocks(T); ++qb) {
      const std::size_t tiles = fl::key_tiles_for_query_block(qb, T);
      for (std::size_t kt = 0; kt < tiles; ++kt)
        for (std::size_t t = qb * R; t < std::min(T, qb * R + R); ++t)
          for (std::size_t j = kt * K; j < std::min(T, kt * K + K); ++j)
            if (j <= t) ++by_query[t * T + j];
      // the last tile holds a key the block's last query attends
      forward_tight = forward_tight && (tiles - 1) * K <= std::min(T, qb * R + R) - 1;
    }
    for (std::size_t kb = 0; kb < fl::row_blocks(T); ++kb) {
      const std::size_t first = fl::first_query_tile_for_key_block(kb);
      for (std::size_t qt = first; qt < fl::query_tiles(T); ++qt)
        for (std::size_t j = kb * R; j < std::min(T, kb * R + R); ++j)
          for (std::size_t t = qt * K; t < std::min(T, qt * K + K); ++t)
            if (j <= t) ++by_key[t * T + j];
      // the first query tile holds a query that attends the block's first key
      backward_tight = backward_tight && first * K + K - 1 >= kb * R;
    }
    bool once = true;
    for (std::size_t t = 0; t < T; ++t)
      for (std::size_t j = 0; j <= t; ++j) once = once && by_query[t * T + j] == 1 && by_key[t * T + j] == 1;
    CHECK(once);
    CHECK(forward_tight);
    CHECK(backward_tight);
  }
  CHECK(fl::head_slots(1) == 32);
  CHECK(fl::head_slots(33) == 64);
  CHECK(fl::head_slots(128) == 128);
  CHECK(fl::head_slots(129) == 0);
}

TEST_CASE("flash reference: NaN at padding never leaks; a NaN key spoils exactly the queries that attend it") {
  for (const bool fused : {true, false}) {
    CAPTURE(fused);
    auto c = fl::make_flash_case(5, 70, 4, fused ? 4 : 2, 16, fused, 3);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const std::size_t T = c.s.T, per_row_q = c.s.NH * c.s.hd, per_row_kv = c.s.KVH * c.s.hd;
    for (std::size_t n = 0; n < c.s.B * T; ++n)
      if (!c.real[n]) {
        for (std::size_t i = 0; i < per_row_q; ++i) c.x[c.q_at + n * c.s.q_stride + i] = nan;
        for (std::size_t i = 0; i < per_row_kv; ++i) {
          c.x[c.k_at + n * c.s.kv_stride + i] = nan;
          c.x[c.v_at + n * c.s.kv_stride + i] = nan;
        }
        for (std::size_t i = 0; i < per_row_q; ++i) c.dout[n * c.s.out_stride + i] = nan;
      }
    auto ref = run_reference(c);
    auto got = run_emulated(c);
    CHECK(rel_err(ref.out, got.out) <= 2e-6);  // rel_err: any NaN fails
    CHECK(rel_err(got.dx, ref.dx) <= 2e-5);
    // one real key of row 0 (full) at position 40, kv head 0: queries t ≥ 40 of the heads reading kv head 0 go NaN
    c.x[c.k_at + 40 * c.s.kv_stride + 3] = nan;
    ref = run_reference(c);
    got = run_emulated(c);
    CHECK(std::isnan(ref.out[40 * c.s.out_stride]));
    CHECK(!std::isnan(ref.out[39 * c.s.out_stride]));
    CHECK(fl::nan_aware_err(got.out, ref.out) <= 2e-6);
    CHECK(fl::nan_aware_err(got.lse, ref.lse) <= 2e-6);
  }
}
