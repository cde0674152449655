// Every CUDA GPT kernel against its CPU reference (the CPU model's own layer where one exists, else
// reference.hpp), with the tolerances of support.cuh. Needs a GPU (main.cu skips without one).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "rlhf/backends/eigen.hpp"
#include "rlhf/models/logprob.hpp"
#include "rlhf/models/gpt/layers.hpp"
#include "rlhf/models/gpt_cuda/adamw.cuh"
#include "rlhf/models/gpt_cuda/attention.cuh"
#include "rlhf/models/gpt_cuda/encoder.cuh"
#include "rlhf/models/gpt_cuda/gelu.cuh"
#include "rlhf/models/gpt_cuda/head.cuh"
#include "rlhf/models/gpt_cuda/layernorm.cuh"
#include "rlhf/models/gpt_cuda/logprob.cuh"
#include "rlhf/models/gpt_cuda/matmul.cuh"
#include "rlhf/models/gpt_cuda/residual.cuh"
#include "rlhf/models/gpt_cuda/sampler.cuh"
#include "reference.hpp"
#include "rlhf/optim/adamw.hpp"
#include "support.cuh"

namespace {

using namespace rlhf::gpu_testing;
namespace gc = rlhf::gpt_cuda;
namespace gpt = rlhf::gpt;

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

TEST_CASE("gpt_cuda kernels: encoder forward and the bucketed backward equal gpt::encoder_*") {
  const std::size_t B = 3, T = 5, C = 10, V = 7, Tmax = 6, N = B * T;
  rlhf::Rng rng(1);
  std::vector<std::int32_t> tokens(N), pos(N);
  for (auto& t : tokens) t = std::int32_t(rng.below(V));
  for (auto& p : pos) p = std::int32_t(rng.below(Tmax));
  const auto real = padded_mask(B, T);
  const auto wte = uniform(V * C, -1, 1, 2), wpe = uniform(Tmax * C, -1, 1, 3), dout = uniform(N * C, -1, 1, 4);
  std::vector<float> out(N * C), dwte = uniform(V * C, -1, 1, 5), dwpe = uniform(Tmax * C, -1, 1, 6);
  auto d_out = to_device(out), d_wte = to_device(wte), d_wpe = to_device(wpe), d_dout = to_device(dout);
  auto d_dwte = to_device(dwte), d_dwpe = to_device(dwpe);
  auto d_tokens = to_device(tokens), d_pos = to_device(pos);
  gc::encoder_forward(d_out.data(), d_tokens.data(), d_pos.data(), d_wte.data(), d_wpe.data(), N, C);
  gpt::encoder_forward(out.data(), tokens.data(), pos.data(), wte.data(), wpe.data(), N, C);
  CHECK(rel_err(to_host(d_out, N * C), out) <= tol_elementwise);

  gc::DeviceBuckets by_token, by_position;
  by_token.upload(gc::RowBuckets::of(tokens.data(), real.data(), N));
  by_position.upload(gc::RowBuckets::of(pos.data(), real.data(), N));
  gc::encoder_backward(d_dwte.data(), d_dwpe.data(), d_dout.data(), by_token, by_position, C);
  gpt::encoder_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), pos.data(), real.data(), N, C);
  CHECK(rel_err(to_host(d_dwte, V * C), dwte) <= tol_elementwise);
  CHECK(rel_err(to_host(d_dwpe, Tmax * C), dwpe) <= tol_elementwise);
}

TEST_CASE("gpt_cuda kernels: layernorm forward and backward (accumulating) equal gpt::layernorm_*") {
  for (const std::size_t N : {std::size_t(37), std::size_t(600)}) {  // 600: the weight gradients sum 3 row tiles
    CAPTURE(N);
    const std::size_t C = 67;
    const auto x = uniform(N * C, -3, 3, 7), w = uniform(C, 0.5, 1.5, 8), b = uniform(C, -1, 1, 9);
    const auto dout = uniform(N * C, -1, 1, 10);
    std::vector<float> y(N * C), mean(N), rstd(N);
    std::vector<float> dx = uniform(N * C, -1, 1, 11), dw = uniform(C, -1, 1, 12), db = uniform(C, -1, 1, 13);
    auto d_x = to_device(x), d_w = to_device(w), d_b = to_device(b), d_dout = to_device(dout), d_y = to_device(y);
    auto d_mean = to_device(mean), d_rstd = to_device(rstd), d_dx = to_device(dx), d_dw = to_device(dw),
         d_db = to_device(db);
    device_buffer<float> scratch(gc::column_scratch(N, C));
    gc::layernorm_forward(d_y.data(), d_mean.data(), d_rstd.data(), d_x.data(), d_w.data(), d_b.data(), N, C, 1e-5f);
    gpt::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5f);
    CHECK(rel_err(to_host(d_y, N * C), y) <= tol_elementwise);
    CHECK(rel_err(to_host(d_mean, N), mean) <= tol_elementwise);
    CHECK(rel_err(to_host(d_rstd, N), rstd) <= tol_elementwise);
    gc::layernorm_backward(d_dx.data(), d_dw.data(), d_db.data(), scratch.data(), d_dout.data(), d_x.data(), d_w.data(),
                           d_mean.data(), d_rstd.data(), N, C);
    gpt::layernorm_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), mean.data(), rstd.data(),
                            N, C);
    CHECK(rel_err(to_host(d_dx, N * C), dx) <= tol_elementwise);
    const double tol_sum = std::max(tol_elementwise, double(N) * 3e-8);  // float sums of N rows, two orders
    CHECK(rel_err(to_host(d_dw, C), dw) <= tol_sum);
    CHECK(rel_err(to_host(d_db, C), db) <= tol_sum);
  }
}

TEST_CASE("gpt_cuda kernels: matmul forward (cuBLASLt bias epilogue and the fallback) and backward") {
  const std::size_t N = 33, C = 40, OC = 72;
  const auto x = uniform(N * C, -1, 1, 14), w = uniform(C * OC, -1, 1, 15), bias = uniform(OC, -1, 1, 16);
  const auto dout = uniform(N * OC, -1, 1, 17);
  for (const auto precision : {rlhf::GemmPrecision::fp32, rlhf::GemmPrecision::tf32}) {
    for (const std::size_t shift : {std::size_t(0), std::size_t(1)}) {  // 1: pointers off 16-byte alignment
      CAPTURE(name(precision));
      CAPTURE(shift);
      gc::Blas blas(precision);
      const double tol = tolerance(precision);
      // every buffer at offset `shift` of its allocation
      const auto put = [&](const std::vector<float>& h) {
        device_buffer<float> d(h.size() + 1);
        d.upload(h.data(), h.size(), shift);
        return d;
      };
      auto d_x = put(x), d_w = put(w), d_bias = put(bias), d_dout = put(dout);
      auto d_y = put(std::vector<float>(N * OC, 0.0f));
      std::vector<float> y(N * OC), y_nobias(N * OC);
      gc::matmul_forward(blas, d_y.data() + shift, d_x.data() + shift, d_w.data() + shift, d_bias.data() + shift, N, C,
                         OC);
      gpt::matmul_forward(y.data(), x.data(), w.data(), bias.data(), N, C, OC);
      std::vector<float> got(N * OC);
      d_y.download(got.data(), N * OC, shift);
      CHECK(rel_err(got, y) <= tol);
      gc::matmul_forward(blas, d_y.data() + shift, d_x.data() + shift, d_w.data() + shift, nullptr, N, C, OC);
      gpt::matmul_forward(y_nobias.data(), x.data(), w.data(), static_cast<const float*>(nullptr), N, C, OC);
      d_y.download(got.data(), N * OC, shift);
      CHECK(rel_err(got, y_nobias) <= tol);

      std::vector<float> dx(N * C), dw = uniform(C * OC, -1, 1, 18), db = uniform(OC, -1, 1, 19);
      auto d_dx = put(dx), d_dw = put(dw), d_db = put(db);
      device_buffer<float> scratch(gc::column_scratch(N, OC));
      gc::matmul_backward(blas, d_dx.data() + shift, d_dw.data() + shift, d_db.data() + shift, scratch.data(),
                          d_dout.data() + shift, d_x.data() + shift, d_w.data() + shift, N, C, OC);
      gpt::matmul_backward(dx.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(), N, C, OC);
      std::vector<float> gdx(N * C), gdw(C * OC), gdb(OC);
      d_dx.download(gdx.data(), N * C, shift), d_dw.download(gdw.data(), C * OC, shift);
      d_db.download(gdb.data(), OC, shift);
      CHECK(rel_err(gdx, dx) <= tol);
      CHECK(rel_err(gdw, dw) <= tol);
      CHECK(rel_err(gdb, db) <= tol_elementwise);  // the bias gradient is a column sum, no GEMM
    }
  }
}

TEST_CASE("gpt_cuda kernels: fused causal softmax forward and backward equal the references") {
  const std::size_t B = 3, NH = 2, T = 70;  // T > 64: each lane of a row's warp loops three times
  const auto real = padded_mask(B, T);
  const float scale = 0.35f;
  std::vector<float> att = uniform(B * NH * T * T, -4, 4, 20);
  auto d_att = to_device(att);
  auto d_real = to_device(real);
  gc::causal_softmax_forward(d_att.data(), d_real.data(), B, NH, T, scale);
  gc::causal_softmax_forward_reference(att.data(), real.data(), B, NH, T, scale);
  CHECK(rel_err(to_host(d_att, att.size()), att) <= tol_elementwise);
  std::vector<float> datt = uniform(att.size(), -1, 1, 21);
  auto d_datt = to_device(datt);
  gc::causal_softmax_backward(d_datt.data(), d_att.data(), B, NH, T, scale);
  gc::causal_softmax_backward_reference(datt.data(), att.data(), B, NH, T, scale);
  CHECK(rel_err(to_host(d_datt, datt.size()), datt) <= tol_elementwise);
}

TEST_CASE("gpt_cuda kernels: attention forward and backward (with padding) equal gpt::attention_*") {
  const std::size_t B = 3, T = 9, C = 24, NH = 3, N = B * T;
  const auto qkv = uniform(N * 3 * C, -1.5, 1.5, 22), dout = uniform(N * C, -1, 1, 23);
  const auto real = padded_mask(B, T);
  std::vector<float> out(N * C, 0.0f), att(B * NH * T * T, 0.0f), dqkv(N * 3 * C, 0.0f), scratch(att.size(), 0.0f);
  gpt::attention_forward(out.data(), att.data(), qkv.data(), real.data(), B, T, C, NH);
  gpt::attention_backward(dqkv.data(), scratch.data(), dout.data(), qkv.data(), att.data(), real.data(), B, T, C, NH);
  for (const auto precision : {rlhf::GemmPrecision::fp32, rlhf::GemmPrecision::tf32}) {
    CAPTURE(name(precision));
    gc::Blas blas(precision);
    auto d_qkv = to_device(qkv), d_dout = to_device(dout);
    auto d_real = to_device(real);
    device_buffer<float> d_out(N * C), d_qkvr(3 * N * C), d_att(att.size()), d_y(N * C), d_dqkv(N * 3 * C),
        d_dy(N * C), d_datt(att.size()), d_dqkvr(3 * N * C);
    gc::attention_forward(blas, d_out.data(), d_qkvr.data(), d_att.data(), d_y.data(), d_qkv.data(), d_real.data(), B,
                          T, C, NH);
    CHECK(rel_err(to_host(d_out, N * C), out) <= tolerance(precision));
    CHECK(rel_err(to_host(d_att, att.size()), att) <= tolerance(precision));
    gc::attention_backward(blas, d_dqkv.data(), d_dy.data(), d_datt.data(), d_dqkvr.data(), d_dout.data(),
                           d_qkvr.data(), d_att.data(), B, T, C, NH);
    CHECK(rel_err(to_host(d_dqkv, N * 3 * C), dqkv) <= tolerance(precision));
  }
}

TEST_CASE("gpt_cuda kernels: GELU and the residual equal gpt::gelu_* and gpt::residual_forward") {
  const std::size_t n = 1000;
  auto x = uniform(n, -6, 6, 24);
  x[0] = 0.0f, x[1] = 30.0f, x[2] = -30.0f;
  const auto dout = uniform(n, -1, 1, 25), other = uniform(n, -1, 1, 26);
  std::vector<float> y(n), dx(n), sum(n);
  auto d_x = to_device(x), d_dout = to_device(dout), d_other = to_device(other);
  device_buffer<float> d_y(n), d_dx(n);
  gc::gelu_forward(d_y.data(), d_x.data(), n);
  gpt::gelu_forward(y.data(), x.data(), n);
  CHECK(rel_err(to_host(d_y, n), y) <= tol_elementwise);
  // The backward's 0.5 x (1 - t^2) cancels where |t| -> 1: a tanh off by one ulp moves the term by ~1e-6 of the
  // largest gradient, and the CPU (Eigen's rational tanh) and the GPU (tanhf) are each a few ulp off, in
  // different places (the CPU 3.0e-6 from double; the GPU 2.2e-6 from the CPU on an H200). Both are held to a
  // double evaluation of the same formula, and to each other, at tol_gelu_backward; a wrong formula is off by
  // orders of magnitude more.
  std::vector<float> dx_double(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double xi = x[i], k0 = gc::gelu_k0, k1 = gc::gelu_k1, t = std::tanh(k0 * (xi + k1 * xi * xi * xi));
    dx_double[i] = float((0.5 * (1 + t) + 0.5 * xi * (1 - t * t) * k0 * (1 + 3 * k1 * xi * xi)) * dout[i]);
  }
  gc::gelu_backward(d_dx.data(), d_x.data(), d_dout.data(), n);
  gpt::gelu_backward(dx.data(), x.data(), dout.data(), n);
  CHECK(rel_err(to_host(d_dx, n), dx_double) <= tol_gelu_backward);
  CHECK(rel_err(dx, dx_double) <= tol_gelu_backward);
  CHECK(rel_err(to_host(d_dx, n), dx) <= tol_gelu_backward);
  gc::gelu_backward(d_dout.data(), d_x.data(), d_dout.data(), n);  // in place
  CHECK(rel_err(to_host(d_dout, n), dx) <= tol_gelu_backward);
  gc::residual_forward(d_y.data(), d_x.data(), d_other.data(), n);
  gpt::residual_forward(sum.data(), x.data(), other.data(), n);
  CHECK(to_host(d_y, n) == sum);  // one float addition: exact
}

TEST_CASE("gpt_cuda kernels: fused log-softmax + gather and its backward equal row_logprob / row_logprob_backward") {
  using Be = rlhf::eigen<float>;
  // ld: the row stride; the model pads GPT-2's 50257 to 50272. The padding holds NaN: read by the forward, it
  // would spoil the row.
  const std::pair<std::size_t, std::size_t> shapes[] = {{13, 13}, {13, 16}, {50257, 50257}, {50257, 50272}};
  for (const auto& shape : shapes) {
    const std::size_t V = shape.first, ld = shape.second;
    CAPTURE(V);
    CAPTURE(ld);
    const std::size_t M = 5, BT = 12;
    std::vector<float> logits = uniform(M * V, -8, 8, 27);
    logits[1 * V + 2] = -std::numeric_limits<float>::infinity();  // an impossible token (not a target)
    std::vector<float> strided(M * ld, std::numeric_limits<float>::quiet_NaN());
    for (std::size_t m = 0; m < M; ++m) std::copy_n(logits.data() + m * V, V, strided.data() + m * ld);
    const std::vector<std::int32_t> targets = {0, 3, std::int32_t(V - 1), 7, 1}, dst = {1, 4, 5, 9, 11};
    const auto d_up = uniform(BT, -2, 2, 28);
    auto d_logits = to_device(strided), d_g = to_device(d_up);
    auto d_targets = to_device(targets), d_dst = to_device(dst);
    device_buffer<float> d_out(BT), d_max(M), d_log_sum(M);
    d_out.zero();
    gc::logprob_forward(d_out.data(), d_max.data(), d_log_sum.data(), d_logits.data(), d_targets.data(), d_dst.data(),
                        M, V, ld);
    const auto out = to_host(d_out, BT), mx = to_host(d_max, M), log_sum = to_host(d_log_sum, M);
    std::vector<float> want_dx(M * V);
    for (std::size_t m = 0; m < M; ++m) {
      const auto r = rlhf::row_logprob<Be>(logits.data() + m * V, V, targets[m], static_cast<const float*>(nullptr));
      // Σ exp over 50257 entries in float, in SIMD lanes on the CPU and per thread here: ~1e-6 apart
      CHECK(out[dst[m]] == doctest::Approx(r.logprob).epsilon(1e-5));
      CHECK(mx[m] == r.max);
      CHECK(log_sum[m] == doctest::Approx(r.log_sum).epsilon(1e-5));
      rlhf::row_logprob_backward<Be>(want_dx.data() + m * V, logits.data() + m * V, V, targets[m], r.max, r.log_sum,
                                     d_up[dst[m]], false);
    }
    CHECK(out[0] == 0.0f);  // not a destination: untouched
    gc::logprob_backward(d_logits.data(), d_targets.data(), d_dst.data(), d_g.data(), d_max.data(), d_log_sum.data(),
                         M, V, ld);
    const auto got = to_host(d_logits, M * ld);
    std::vector<float> got_dx(M * V);
    std::size_t padding_not_zero = 0;  // the backward zeroes it: the LM head's products read it
    for (std::size_t m = 0; m < M; ++m) {
      std::copy_n(got.data() + m * ld, V, got_dx.data() + m * V);
      for (std::size_t v = V; v < ld; ++v) padding_not_zero += got[m * ld + v] != 0.0f;
    }
    CHECK(rel_err(got_dx, want_dx) <= tol_elementwise);
    CHECK(padding_not_zero == 0);
  }
}

TEST_CASE("gpt_cuda kernels: gather/scatter of scoring rows and the non-finite check") {
  const std::size_t N = 6, C = 5, M = 3;
  const auto in = uniform(N * C, -1, 1, 29), rows = uniform(M * C, -1, 1, 30);
  const std::vector<std::int32_t> src = {4, 0, 5};
  auto d_in = to_device(in), d_rows = to_device(rows);
  auto d_src = to_device(src);
  device_buffer<float> d_gathered(M * C);
  gc::gather_rows(d_gathered.data(), d_in.data(), d_src.data(), M, C);
  const auto gathered = to_host(d_gathered, M * C);
  for (std::size_t m = 0; m < M; ++m)
    for (std::size_t c = 0; c < C; ++c) CHECK(gathered[m * C + c] == in[std::size_t(src[m]) * C + c]);
  gc::scatter_add_rows(d_in.data(), d_rows.data(), d_src.data(), M, C);
  const auto scattered = to_host(d_in, N * C);
  for (std::size_t m = 0; m < M; ++m)
    for (std::size_t c = 0; c < C; ++c)
      CHECK(scattered[std::size_t(src[m]) * C + c] == in[std::size_t(src[m]) * C + c] + rows[m * C + c]);
  CHECK(scattered[1 * C] == in[1 * C]);  // row 1 is no source

  std::vector<float> values(N, 1.0f);
  values[2] = std::numeric_limits<float>::quiet_NaN();  // not at a dst
  device_buffer<int> flag(1);
  const std::vector<std::int32_t> dst = {0, 3, 5};
  auto d_dst = to_device(dst);
  CHECK(gc::all_finite_at(flag.data(), to_device(values).data(), d_dst.data(), M));
  values[3] = std::numeric_limits<float>::infinity();
  CHECK_FALSE(gc::all_finite_at(flag.data(), to_device(values).data(), d_dst.data(), M));
}

TEST_CASE("gpt_cuda kernels: scalar head forward and backward equal the references") {
  const std::size_t N = 9, C = 70, M = 4, BT = 9;
  const auto lnf = uniform(N * C, -1, 1, 31), w = uniform(C, -1, 1, 32), b = uniform(1, -1, 1, 33);
  const auto dout = uniform(BT, -1, 1, 34);
  const std::vector<std::int32_t> src = {0, 3, 4, 8}, dst = {1, 4, 5, 8};
  std::vector<float> out(BT, 0.0f), dlnf = uniform(N * C, -1, 1, 35), dw = uniform(C, -1, 1, 36),
                                    db = uniform(1, -1, 1, 37);
  auto d_lnf = to_device(lnf), d_w = to_device(w), d_b = to_device(b), d_dout = to_device(dout), d_out = to_device(out);
  auto d_dlnf = to_device(dlnf), d_dw = to_device(dw), d_db = to_device(db);
  auto d_src = to_device(src), d_dst = to_device(dst);
  device_buffer<float> scratch(gc::column_scratch(M, C));
  gc::head_forward(d_out.data(), d_lnf.data(), d_w.data(), d_b.data(), d_src.data(), d_dst.data(), M, C);
  gc::scalar_head_forward_reference(out.data(), lnf.data(), w.data(), b.data(), src.data(), dst.data(), M, C);
  CHECK(rel_err(to_host(d_out, BT), out) <= tol_elementwise);
  gc::head_backward(d_dlnf.data(), d_dw.data(), d_db.data(), scratch.data(), d_lnf.data(), d_w.data(), d_dout.data(),
                    d_src.data(), d_dst.data(), M, C);
  gc::scalar_head_backward_reference(dlnf.data(), dw.data(), db.data(), lnf.data(), w.data(), dout.data(), src.data(),
                                     dst.data(), M, C);
  CHECK(rel_err(to_host(d_dlnf, N * C), dlnf) <= tol_elementwise);
  CHECK(rel_err(to_host(d_dw, C), dw) <= tol_elementwise);
  CHECK(rel_err(to_host(d_db, 1), db) <= tol_elementwise);
}

TEST_CASE("gpt_cuda kernels: CudaAdamW takes the steps of rlhf::AdamW") {
  const std::size_t n = 1000;
  std::vector<float> p = uniform(n, -1, 1, 38);
  auto d_p = to_device(p);
  const rlhf::AdamWConfig config{.learning_rate = 0.01f, .weight_decay = 0.1f};
  rlhf::AdamW<float> cpu(config);
  rlhf::CudaAdamW gpu(config);
  for (std::uint64_t step = 0; step < 3; ++step) {
    const auto g = uniform(n, -1, 1, 39 + step);
    auto d_g = to_device(g);
    cpu.step(p, g);
    gpu.step({d_p.data(), n}, {d_g.data(), n});
  }
  CHECK(gpu.steps() == 3);
  CHECK(rel_err(to_host(d_p, n), p) <= tol_elementwise);
  CHECK(rel_err(gpu.first_moment(), std::vector<float>(cpu.first_moment().begin(), cpu.first_moment().end())) <=
        tol_elementwise);
  CHECK_THROWS_AS(gpu.step({d_p.data(), n - 1}, {d_p.data(), n - 1}), rlhf::shape_error);
  CHECK_THROWS_AS(rlhf::CudaAdamW({.beta1 = 1.5f}), rlhf::config_error);
}

TEST_CASE("gpt_cuda kernels: CudaAdamW's state restores into a fresh CudaAdamW (bit for bit) and into rlhf::AdamW") {
  const std::size_t n = 1000;
  const rlhf::AdamWConfig config{.learning_rate = 0.01f, .beta2 = 0.99f, .weight_decay = 0.1f};
  auto d_a = to_device(uniform(n, -1, 1, 50));
  rlhf::CudaAdamW a(config);
  for (std::uint64_t step = 0; step < 2; ++step) {
    auto d_g = to_device(uniform(n, -1, 1, 51 + step));
    a.step({d_a.data(), n}, {d_g.data(), n});
  }
  auto d_b = to_device(to_host(d_a, n));
  rlhf::CudaAdamW b({.learning_rate = 0.5f});
  b.restore(a.state());
  CHECK(b.steps() == 2);
  CHECK(b.config().beta2 == 0.99f);
  rlhf::AdamW<float> cpu;
  cpu.restore(b.state());  // the same value type: either optimizer resumes from the other's state
  CHECK(cpu.steps() == 2);
  for (std::uint64_t step = 2; step < 5; ++step) {
    auto d_g = to_device(uniform(n, -1, 1, 51 + step));
    a.step({d_a.data(), n}, {d_g.data(), n});
    b.step({d_b.data(), n}, {d_g.data(), n});
  }
  CHECK(to_host(d_a, n) == to_host(d_b, n));
  CHECK(a.second_moment() == b.second_moment());
  auto bad = a.state();
  bad.exp_avg[7] = NAN;
  CHECK_THROWS_AS(b.restore(bad), rlhf::value_error);
  CHECK(b.steps() == 5);
}

TEST_CASE("gpt_cuda kernels: KV-cache writes + one-row attention equal the full causal attention") {
  const std::size_t B = 2, T = 10, C = 16, NH = 2, N = B * T;
  const auto qkv = uniform(N * 3 * C, -1.5, 1.5, 42);
  std::vector<float> out(N * C, 0.0f), att(B * NH * T * T, 0.0f);
  const std::vector<std::uint8_t> real(N, 1);
  gpt::attention_forward(out.data(), att.data(), qkv.data(), real.data(), B, T, C, NH);
  std::vector<std::int32_t> row(N), pos(N);
  for (std::size_t n = 0; n < N; ++n) row[n] = std::int32_t(n / T), pos[n] = std::int32_t(n % T);
  auto d_qkv = to_device(qkv);
  auto d_row = to_device(row), d_pos = to_device(pos);
  device_buffer<float> kc(B * T * C), vc(B * T * C), y(N * C);
  gc::kv_write_kernel<<<gc::ceil_div(N * C, 256), 256>>>(kc.data(), vc.data(), d_qkv.data(), d_row.data(), d_pos.data(),
                                                         N, T, C);
  RLHF_CUDA_CHECK(cudaGetLastError());
  gc::decode_attention_kernel<<<dim3(unsigned(N), unsigned(NH)), 128, (C / NH + T) * sizeof(float)>>>(
      y.data(), d_qkv.data(), kc.data(), vc.data(), d_row.data(), d_pos.data(), T, C, NH);
  RLHF_CUDA_CHECK(cudaGetLastError());
  CHECK(rel_err(to_host(y, N * C), out) <= tol_elementwise * 5);
}

TEST_CASE("gpt_cuda kernels: the device draw equals draw_reference (greedy, temperature, top-k, top-p, ties)") {
  struct Case {
    std::vector<float> logits;
    float temperature;
    std::size_t top_k;
    float top_p;
  };
  std::vector<Case> cases;
  const std::vector<float> flat(6, 0.5f), peaked = {0.0f, 0.0f, 5.0f, 0.0f}, two = {0.0f, 3.0f, 4.0f, 0.0f};
  for (const float t : {0.0f, 1.0f})
    for (const std::size_t k : {std::size_t(0), std::size_t(1), std::size_t(3)})
      for (const float p : {1.0f, 0.5f, 0.9f}) {
        cases.push_back({flat, t, k, p});
        cases.push_back({peaked, t, k, p});
        cases.push_back({two, t, k, p});
      }
  std::vector<float> tied = uniform(50257, -3, 3, 43);
  for (std::size_t v = 0; v < tied.size(); v += 97) tied[v] = 2.9f;  // 519 equal logits across the 1000th largest
  tied[777] = -0.0f, tied[778] = 0.0f;
  const auto big = uniform(50257, -10, 10, 44);
  for (const auto& row : {tied, big})
    for (const float t : {0.0f, 0.7f, 1.0f, 1.5f})
      for (const std::size_t k : {std::size_t(0), std::size_t(1), std::size_t(40), std::size_t(1000)})
        for (const float p : {1.0f, 0.95f, 0.3f}) cases.push_back({row, t, k, p});

  rlhf::Rng rng(45);
  int mismatches = 0, logp_errors = 0;
  for (const auto& c : cases)
    for (int trial = 0; trial < 4; ++trial) {
      const std::size_t V = c.logits.size();
      const double u = rng.uniform();
      auto d_logits = to_device(c.logits);
      auto d_u = to_device(std::vector<double>{u});
      device_buffer<std::int32_t> d_token(1);
      device_buffer<float> d_logp(1);
      device_buffer<unsigned> keys(V);
      device_buffer<double> weights(V);
      gc::draw_kernel<<<1, gc::draw_threads>>>(d_token.data(), d_logp.data(), d_logits.data(), d_u.data(), keys.data(),
                                               weights.data(), V, c.temperature, c.top_k, c.top_p);
      RLHF_CUDA_CHECK(cudaGetLastError());
      const auto token = to_host(d_token, 1)[0];
      const auto want = gc::draw_reference(c.logits.data(), V, c.temperature, c.top_k, c.top_p, u);
      mismatches += token != want;
      const auto r =
          rlhf::row_logprob<rlhf::eigen<float>>(c.logits.data(), V, want, static_cast<const float*>(nullptr));
      logp_errors += !close_scalar(to_host(d_logp, 1)[0], r.logprob, 1e-5);  // a NaN counts as an error
    }
  CHECK(mismatches == 0);
  CHECK(logp_errors == 0);
}
