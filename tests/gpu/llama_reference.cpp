// The CUDA Llama's attention plan checked on the CPU with g++ (no GPU needed; the ctest gpu_llama_reference, built by
// tests/CMakeLists.txt's glob): the six batched products of llama_cuda/gqa_plan.hpp, run through a plain column-major
// GEMM with the permutes and the GPT's softmax references exactly as llama_cuda/attention.cuh runs them on cuBLAS,
// give the CPU Llama's grouped-query attention forward and backward (llama::attention_*), for groups of 1, 2, 3 and 4
// query heads per kv head and with padding; and the embedding references agree with the CPU Llama's logits path.
#include "llama_reference.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "compare.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/models/llama/layers.hpp"

namespace {

namespace lc = rlhf::llama_cuda;
using rlhf::gpu_testing::rel_err;

std::vector<float> uniform_floats(std::size_t n, float lo, float hi, std::uint64_t seed) {
  rlhf::Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = float(lo + (hi - lo) * rng.uniform());
  return v;
}

// Row 0 full, row 1 left-padded by 2, row 2 with a hole at 3, row 3 right-padded by 1 (B ≥ 4, T ≥ 5).
std::vector<std::uint8_t> padded_mask(std::size_t B, std::size_t T) {
  std::vector<std::uint8_t> real(B * T, 1);
  real[1 * T + 0] = real[1 * T + 1] = 0;
  real[2 * T + 3] = 0;
  real[3 * T + T - 1] = 0;
  return real;
}

}  // namespace

TEST_CASE("llama_cuda attention plan: the planned products give the CPU Llama's GQA forward and backward") {
  struct Case {
    std::size_t NH, KVH, hd;
  };
  for (const Case c : {Case{4, 4, 4}, Case{4, 2, 6}, Case{6, 2, 4}, Case{9, 3, 8}, Case{8, 2, 2}}) {
    CAPTURE(c.NH);
    CAPTURE(c.KVH);
    const std::size_t B = 4, T = 7, N = B * T, Q = c.NH * c.hd, K = c.KVH * c.hd;
    const lc::GqaShape s{B, T, c.NH, c.KVH, c.hd};
    const auto real = padded_mask(B, T);
    const auto q = uniform_floats(N * Q, -1.5f, 1.5f, 1), k = uniform_floats(N * K, -1.5f, 1.5f, 2);
    const auto v = uniform_floats(N * K, -1, 1, 3), dout = uniform_floats(N * Q, -1, 1, 4);

    std::vector<float> out(N * Q), att(B * c.NH * T * T, 0.0f), got_out(N * Q), got_att(att.size());
    rlhf::llama::attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), real.data(), B, T, c.NH,
                                   c.KVH, c.hd);
    lc::gqa_attention_forward_by_plan(got_out.data(), got_att.data(), q.data(), k.data(), v.data(), real.data(), s);
    CHECK(rel_err(got_out, out) <= 1e-6);
    CHECK(rel_err(got_att, att) <= 1e-6);

    std::vector<float> dq(N * Q), dk(N * K), dv(N * K), scratch(att.size(), 0.0f);
    rlhf::llama::attention_backward(dq.data(), dk.data(), dv.data(), scratch.data(), dout.data(), q.data(), k.data(),
                                    v.data(), att.data(), real.data(), B, T, c.NH, c.KVH, c.hd);
    std::vector<float> got_dq(N * Q), got_dk(N * K), got_dv(N * K);
    lc::gqa_attention_backward_by_plan(got_dq.data(), got_dk.data(), got_dv.data(), dout.data(), q.data(), k.data(),
                                       v.data(), got_att.data(), s);
    CHECK(rel_err(got_dq, dq) <= 1e-5);
    CHECK(rel_err(got_dk, dk) <= 1e-5);
    CHECK(rel_err(got_dv, dv) <= 1e-5);
    // every kv head carries gradient (a group summed, not one head of it copied)
    double dk_scale = 0;
    for (float x : dk) dk_scale = std::max(dk_scale, double(std::abs(x)));
    CHECK(dk_scale > 0);
  }
}

TEST_CASE("llama_cuda attention plan: a wrong group layout is caught (the check can fail)") {
  // kv head g serves query heads g·G … g·G + G − 1 (HF's repeat_kv); a plan for MHA (KVH = NH) over the same
  // numbers reads other keys and must disagree with the CPU attention
  const std::size_t B = 4, T = 6, NH = 4, KVH = 2, hd = 4, N = B * T;
  const auto real = padded_mask(B, T);
  const auto q = uniform_floats(N * NH * hd, -1.5f, 1.5f, 5), k = uniform_floats(N * KVH * hd, -1.5f, 1.5f, 6);
  const auto v = uniform_floats(N * KVH * hd, -1, 1, 7);
  std::vector<float> out(N * NH * hd), att(B * NH * T * T, 0.0f);
  rlhf::llama::attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), real.data(), B, T, NH, KVH, hd);
  // interleaved sharing (head h reads kv head h % KVH) is not HF's: expand k, v that way and run the MHA plan
  std::vector<float> k_wrong(N * NH * hd), v_wrong(N * NH * hd);
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t h = 0; h < NH; ++h)
      for (std::size_t d = 0; d < hd; ++d) {
        k_wrong[(n * NH + h) * hd + d] = k[(n * KVH + h % KVH) * hd + d];
        v_wrong[(n * NH + h) * hd + d] = v[(n * KVH + h % KVH) * hd + d];
      }
  std::vector<float> wrong(out.size()), wrong_att(att.size());
  lc::gqa_attention_forward_by_plan(wrong.data(), wrong_att.data(), q.data(), k_wrong.data(), v_wrong.data(),
                                    real.data(), {B, T, NH, NH, hd});
  CHECK(rel_err(wrong, out) > 1e-2);
}

TEST_CASE("llama_cuda references: the embedding gather and its backward skip padding") {
  const std::size_t N = 6, C = 3, V = 4;
  const std::vector<std::int32_t> tokens = {1, 3, 1, 0, 2, 1};
  const std::vector<std::uint8_t> real = {1, 1, 1, 0, 1, 1};
  const auto table = uniform_floats(V * C, -1, 1, 8), dout = uniform_floats(N * C, -1, 1, 9);
  std::vector<float> out(N * C), dtable(V * C, 0.0f);
  lc::embedding_forward_reference(out.data(), tokens.data(), table.data(), N, C);
  for (std::size_t c = 0; c < C; ++c) {
    CHECK(out[4 * C + c] == table[2 * C + c]);
    CHECK(out[3 * C + c] == table[0 * C + c]);
  }
  lc::embedding_backward_reference(dtable.data(), dout.data(), tokens.data(), real.data(), N, C);
  for (std::size_t c = 0; c < C; ++c) {
    CHECK(dtable[0 * C + c] == 0.0f);  // token 0 only at a padding row
    CHECK(dtable[1 * C + c] == doctest::Approx(dout[0 * C + c] + dout[2 * C + c] + dout[5 * C + c]));
  }
}
