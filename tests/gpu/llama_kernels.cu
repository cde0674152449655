// Every kernel of the CUDA Llama (include/rlhf/models/llama_cuda/) against its CPU reference: the CPU Llama's own
// layer where it has one (models/llama/layers.hpp, rope.hpp), else llama_reference.hpp; the tolerances of
// support.cuh, which fail on any NaN or infinity the reference does not have (compare.hpp). The kernels shared
// with the GPT are tested in kernels.cu. Needs a GPU (main.cu skips without one).
//
// Status: compiled with nvcc for sm_90; not yet run on a device (docs/models/llama.md, "The CUDA twin").
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "llama_reference.hpp"
#include "rlhf/models/gpt/layers.hpp"
#include "rlhf/models/gpt_cuda/encoder.cuh"
#include "rlhf/models/llama/config.hpp"
#include "rlhf/models/llama/layers.hpp"
#include "rlhf/models/llama/rope.hpp"
#include "rlhf/models/llama_cuda/attention.cuh"
#include "rlhf/models/llama_cuda/embedding.cuh"
#include "rlhf/models/llama_cuda/linear.cuh"
#include "rlhf/models/llama_cuda/rmsnorm.cuh"
#include "rlhf/models/llama_cuda/rope.cuh"
#include "rlhf/models/llama_cuda/swiglu.cuh"
#include "support.cuh"

namespace {

using namespace rlhf::gpu_testing;
namespace gc = rlhf::gpt_cuda;
namespace lc = rlhf::llama_cuda;
namespace llama = rlhf::llama;

const char* name(rlhf::GemmPrecision p) { return p == rlhf::GemmPrecision::tf32 ? "tf32" : "fp32"; }
double tolerance(rlhf::GemmPrecision p) { return p == rlhf::GemmPrecision::tf32 ? tol_tf32 : tol_fp32; }

// Rows of a [B, T] real mask: row 0 full, row 1 left-padded by 2, row 2 with a hole at 3 (B ≥ 3, T ≥ 5).
std::vector<std::uint8_t> padded_mask(std::size_t B, std::size_t T) {
  std::vector<std::uint8_t> real(B * T, 1);
  real[1 * T + 0] = real[1 * T + 1] = 0;
  real[2 * T + 3] = 0;
  return real;
}

}  // namespace

TEST_CASE("llama_cuda kernels: the embedding gather and its bucketed backward equal the references") {
  const std::size_t B = 3, T = 6, C = 10, V = 7, N = B * T;
  rlhf::Rng rng(1);
  std::vector<std::int32_t> tokens(N);
  for (auto& t : tokens) t = std::int32_t(rng.below(V));
  tokens[0] = tokens[5] = tokens[7] = 2;  // one id at several rows: their gradients add
  const auto real = padded_mask(B, T);
  const auto table = uniform(V * C, -1, 1, 2), dout = uniform(N * C, -1, 1, 3);
  std::vector<float> out(N * C), dtable = uniform(V * C, -1, 1, 4);
  auto d_table = to_device(table), d_dout = to_device(dout), d_dtable = to_device(dtable);
  auto d_tokens = to_device(tokens);
  device_buffer<float> d_out(N * C);
  lc::embedding_forward(d_out.data(), d_tokens.data(), d_table.data(), N, C);
  lc::embedding_forward_reference(out.data(), tokens.data(), table.data(), N, C);
  CHECK(to_host(d_out, N * C) == out);  // a copy: exact
  gc::DeviceBuckets by_token;
  by_token.upload(gc::RowBuckets::of(tokens.data(), real.data(), N));
  lc::embedding_backward(d_dtable.data(), d_dout.data(), by_token, C);
  lc::embedding_backward_reference(dtable.data(), dout.data(), tokens.data(), real.data(), N, C);
  CHECK(rel_err(to_host(d_dtable, V * C), dtable) <= tol_elementwise);
}

TEST_CASE("llama_cuda kernels: RMSNorm forward and backward (accumulating) equal llama::rmsnorm_*") {
  // C 67: lanes loop three times; C 4: a q/k norm's head vector, narrower than a warp; N 600: three row tiles
  // in the weight gradient's column sums
  struct Shape {
    std::size_t N, C;
  };
  for (const Shape s : {Shape{37, 67}, Shape{600, 67}, Shape{90, 4}}) {
    CAPTURE(s.N);
    CAPTURE(s.C);
    const std::size_t N = s.N, C = s.C;
    const auto x = uniform(N * C, -3, 3, 5), w = uniform(C, 0.5, 1.5, 6), dout = uniform(N * C, -1, 1, 7);
    std::vector<float> y(N * C), rstd(N), dx = uniform(N * C, -1, 1, 8), dw = uniform(C, -1, 1, 9);
    auto d_x = to_device(x), d_w = to_device(w), d_dout = to_device(dout), d_dx = to_device(dx), d_dw = to_device(dw);
    device_buffer<float> d_y(N * C), d_rstd(N), scratch(gc::column_scratch(N, C));
    lc::rmsnorm_forward(d_y.data(), d_rstd.data(), d_x.data(), d_w.data(), N, C, 1e-5f);
    llama::rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f);
    CHECK(rel_err(to_host(d_y, N * C), y) <= tol_elementwise);
    CHECK(rel_err(to_host(d_rstd, N), rstd) <= tol_elementwise);
    lc::rmsnorm_backward(d_dx.data(), d_dw.data(), scratch.data(), d_dout.data(), d_x.data(), d_w.data(),
                         d_rstd.data(), N, C);
    llama::rmsnorm_backward(dx.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);
    CHECK(rel_err(to_host(d_dx, N * C), dx) <= tol_elementwise);
    const double tol_sum = std::max(tol_elementwise, double(N) * 3e-8);  // float sums of N rows, two orders
    CHECK(rel_err(to_host(d_dw, C), dw) <= tol_sum);
  }
}

TEST_CASE("llama_cuda kernels: RMSNorm of a row holding NaN spoils that row only, as on the CPU") {
  const std::size_t N = 4, C = 40;
  auto x = uniform(N * C, -2, 2, 10);
  x[2 * C + 5] = std::numeric_limits<float>::quiet_NaN();
  const auto w = uniform(C, 0.5, 1.5, 11);
  auto d_x = to_device(x), d_w = to_device(w);
  device_buffer<float> d_y(N * C), d_rstd(N);
  lc::rmsnorm_forward(d_y.data(), d_rstd.data(), d_x.data(), d_w.data(), N, C, 1e-5f);
  const auto y = to_host(d_y, N * C);
  std::vector<float> want(N * C), rstd(N);
  llama::rmsnorm_forward(want.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f);
  for (std::size_t n = 0; n < N; ++n) {
    CAPTURE(n);
    const std::vector<float> got_row(y.begin() + n * C, y.begin() + (n + 1) * C);
    const std::vector<float> want_row(want.begin() + n * C, want.begin() + (n + 1) * C);
    if (n == 2) {
      CHECK(std::isnan(got_row[0]));
      CHECK(std::isnan(want_row[0]));
      CHECK(rel_err(got_row, want_row) == not_close);  // NaN never passes a tolerance
    } else {
      CHECK(rel_err(got_row, want_row) <= tol_elementwise);
    }
  }
}

TEST_CASE("llama_cuda kernels: RoPE forward and inverse equal llama::rope_apply (llama3 and linear scaling)") {
  rlhf::LlamaConfig llama3{.hidden_size = 32, .heads = 4, .kv_heads = 2, .head_dim = 8, .rope_theta = 500000.0,
                           .rope_scaling = rlhf::RopeScaling::llama3, .rope_factor = 8.0,
                           .rope_original_max_positions = 16};
  rlhf::LlamaConfig linear{.hidden_size = 24, .heads = 2, .kv_heads = 1, .head_dim = 12, .rope_theta = 10000.0,
                           .rope_scaling = rlhf::RopeScaling::linear, .rope_factor = 2.0};
  for (const auto& c : {llama3, linear}) {
    CAPTURE(c.head_size());
    const std::size_t N = 45, heads = c.heads, hd = c.head_size();
    std::vector<std::int32_t> pos(N);
    for (std::size_t n = 0; n < N; ++n) pos[n] = std::int32_t((n * 7) % 40);  // out of order, up to 39
    llama::RopeTable<float> table(c);
    table.ensure(40);
    lc::RopeCache cache(c);
    cache.ensure(10);
    cache.ensure(40);  // grown: the second upload replaces the first
    const auto x = uniform(N * heads * hd, -2, 2, 12);
    auto d_x = to_device(x);
    auto d_pos = to_device(pos);
    std::vector<float> want = x;
    lc::rope_apply(d_x.data(), d_pos.data(), cache, N, heads, false);
    llama::rope_apply(want.data(), pos.data(), table, N, heads, false);
    CHECK(rel_err(to_host(d_x, x.size()), want) <= tol_elementwise);
    lc::rope_apply(d_x.data(), d_pos.data(), cache, N, heads, true);  // the transposed rotation undoes it
    llama::rope_apply(want.data(), pos.data(), table, N, heads, true);
    CHECK(rel_err(to_host(d_x, x.size()), want) <= tol_elementwise);
    CHECK(rel_err(to_host(d_x, x.size()), x) <= 1e-5);
  }
}

TEST_CASE("llama_cuda kernels: SwiGLU forward and backward equal llama::swiglu_*") {
  const std::size_t n = 1000;
  auto gate = uniform(n, -8, 8, 13);
  gate[0] = 0.0f, gate[1] = 30.0f, gate[2] = -30.0f, gate[3] = -90.0f;  // σ saturates; exp(90) overflows to inf
  const auto up = uniform(n, -2, 2, 14), dout = uniform(n, -1, 1, 15);
  std::vector<float> out(n), dgate(n), dup(n);
  auto d_gate = to_device(gate), d_up = to_device(up), d_dout = to_device(dout);
  device_buffer<float> d_out(n), d_dgate(n), d_dup(n);
  lc::swiglu_forward(d_out.data(), d_gate.data(), d_up.data(), n);
  llama::swiglu_forward(out.data(), gate.data(), up.data(), n);
  CHECK(rel_err(to_host(d_out, n), out) <= tol_elementwise);
  lc::swiglu_backward(d_dgate.data(), d_dup.data(), d_dout.data(), d_gate.data(), d_up.data(), n);
  llama::swiglu_backward(dgate.data(), dup.data(), dout.data(), gate.data(), up.data(), n);
  CHECK(rel_err(to_host(d_dgate, n), dgate) <= tol_elementwise);
  CHECK(rel_err(to_host(d_dup, n), dup) <= tol_elementwise);
  lc::swiglu_backward(d_dout.data(), d_dup.data(), d_dout.data(), d_gate.data(), d_up.data(), n);  // dgate = dout
  CHECK(rel_err(to_host(d_dout, n), dgate) <= tol_elementwise);
}

TEST_CASE("llama_cuda kernels: the projections' backward, overwriting and accumulating, equals llama::linear_*") {
  const std::size_t N = 33, C = 40, OC = 24;
  const auto x = uniform(N * C, -1, 1, 16), w = uniform(C * OC, -1, 1, 17), b = uniform(OC, -1, 1, 18);
  const auto dout = uniform(N * OC, -1, 1, 19);
  for (const auto precision : {rlhf::GemmPrecision::fp32, rlhf::GemmPrecision::tf32}) {
    for (const bool accumulate : {false, true}) {
      CAPTURE(name(precision));
      CAPTURE(accumulate);
      gc::Blas blas(precision);
      std::vector<float> y(N * OC), dx = uniform(N * C, -1, 1, 20), dw = uniform(C * OC, -1, 1, 21),
                                    db = uniform(OC, -1, 1, 22);
      auto d_x = to_device(x), d_w = to_device(w), d_b = to_device(b), d_dout = to_device(dout);
      auto d_dx = to_device(dx), d_dw = to_device(dw), d_db = to_device(db);
      device_buffer<float> d_y(N * OC), scratch(gc::column_scratch(N, OC));
      lc::linear_forward(blas, d_y.data(), d_x.data(), d_w.data(), d_b.data(), N, C, OC);
      llama::linear_forward(y.data(), x.data(), w.data(), b.data(), N, C, OC, rlhf::gpt::MatmulPrecision::fp32);
      CHECK(rel_err(to_host(d_y, N * OC), y) <= tolerance(precision));
      lc::linear_backward(blas, d_dx.data(), d_dw.data(), d_db.data(), scratch.data(), d_dout.data(), d_x.data(),
                          d_w.data(), N, C, OC, accumulate);
      llama::linear_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), N, C, OC,
                             rlhf::gpt::MatmulPrecision::fp32, accumulate);
      CHECK(rel_err(to_host(d_dx, N * C), dx) <= tolerance(precision));
      CHECK(rel_err(to_host(d_dw, C * OC), dw) <= tolerance(precision));
      CHECK(rel_err(to_host(d_db, OC), db) <= tol_elementwise);
    }
  }
}

TEST_CASE("llama_cuda kernels: grouped-query attention forward and backward equal llama::attention_*") {
  struct Case {
    std::size_t NH, KVH, hd;
  };
  // groups of 1 (multi-head), 2, 3 (SmolLM2's ratio) and 4; T 40 > a warp, so each row's softmax lanes loop
  for (const Case c : {Case{4, 4, 8}, Case{4, 2, 8}, Case{6, 2, 16}, Case{8, 2, 4}}) {
    const std::size_t B = 3, T = 40, N = B * T, Q = c.NH * c.hd, K = c.KVH * c.hd;
    const auto real = padded_mask(B, T);
    const auto q = uniform(N * Q, -1.5, 1.5, 23), k = uniform(N * K, -1.5, 1.5, 24), v = uniform(N * K, -1, 1, 25);
    const auto dout = uniform(N * Q, -1, 1, 26);
    std::vector<float> out(N * Q), att(B * c.NH * T * T, 0.0f), dq(N * Q), dk(N * K), dv(N * K),
        scratch(att.size(), 0.0f);
    llama::attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), real.data(), B, T, c.NH, c.KVH,
                             c.hd);
    llama::attention_backward(dq.data(), dk.data(), dv.data(), scratch.data(), dout.data(), q.data(), k.data(),
                              v.data(), att.data(), real.data(), B, T, c.NH, c.KVH, c.hd);
    for (const auto precision : {rlhf::GemmPrecision::fp32, rlhf::GemmPrecision::tf32}) {
      CAPTURE(c.NH);
      CAPTURE(c.KVH);
      CAPTURE(name(precision));
      gc::Blas blas(precision);
      const lc::GqaShape s{B, T, c.NH, c.KVH, c.hd};
      auto d_q = to_device(q), d_k = to_device(k), d_v = to_device(v), d_dout = to_device(dout);
      auto d_real = to_device(real);
      device_buffer<float> d_out(N * Q), d_qh(N * Q), d_kh(N * K), d_vh(N * K), d_att(att.size()), d_y(N * Q);
      device_buffer<float> d_dq(N * Q), d_dk(N * K), d_dv(N * K), d_dy(N * Q), d_dqh(N * Q), d_dkh(N * K),
          d_dvh(N * K), d_datt(att.size());
      lc::gqa_attention_forward(blas, d_out.data(), d_qh.data(), d_kh.data(), d_vh.data(), d_att.data(), d_y.data(),
                                d_q.data(), d_k.data(), d_v.data(), d_real.data(), s);
      CHECK(rel_err(to_host(d_out, N * Q), out) <= tolerance(precision));
      CHECK(rel_err(to_host(d_att, att.size()), att) <= tolerance(precision));
      lc::gqa_attention_backward(blas, d_dq.data(), d_dk.data(), d_dv.data(), d_dy.data(), d_dqh.data(), d_dkh.data(),
                                 d_dvh.data(), d_datt.data(), d_dout.data(), d_qh.data(), d_kh.data(), d_vh.data(),
                                 d_att.data(), s);
      CHECK(rel_err(to_host(d_dq, N * Q), dq) <= tolerance(precision));
      CHECK(rel_err(to_host(d_dk, N * K), dk) <= tolerance(precision));
      CHECK(rel_err(to_host(d_dv, N * K), dv) <= tolerance(precision));
    }
  }
}
