// Flash attention on the GPU (include/rlhf/models/gpt_cuda/flash_attention.cuh) against its CPU references
// (tests/gpu/flash_reference.hpp): the naive attention in double, and the kernels' own tiles run on the CPU; then the
// CUDA GPT with attention = flash against the materialized attention and the CPU GPT. The tolerances fail on any NaN
// or infinity the reference does not have at that place (compare.hpp, flash_reference.hpp's nan_aware_err). Needs a
// GPU (main.cu skips without one).
//
// Status: compiled with nvcc for sm_90; not yet run on a device (docs/models/gpt_cuda.md, "Flash attention").
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "flash_reference.hpp"
#include "model_support.cuh"
#include "rlhf/models/gpt_cuda/flash_attention.cuh"
#include "support.cuh"

namespace {

using namespace rlhf::gpu_testing;
namespace fl = rlhf::gpt_cuda::flash;

struct Outputs {
  std::vector<float> out, lse, dx;
};

// The kernels on one case: forward, then backward from the case's dout.
Outputs run_gpu(const fl::FlashCase& c) {
  auto x = to_device(c.x), dout = to_device(c.dout);
  auto real = to_device(c.real);
  device_buffer<float> out(c.out_size()), lse(c.lse_size()), dsum(c.lse_size()), dx(c.x.size());
  dx.zero();
  const float* xp = x.data();
  rlhf::gpt_cuda::flash_attention_forward(out.data(), lse.data(), xp + c.q_at, xp + c.k_at, xp + c.v_at, real.data(),
                                          c.s);
  rlhf::gpt_cuda::flash_attention_backward(dx.data() + c.q_at, dx.data() + c.k_at, dx.data() + c.v_at, dsum.data(),
                                           dout.data(), xp + c.q_at, xp + c.k_at, xp + c.v_at, out.data(), lse.data(),
                                           real.data(), c.s);
  return {to_host(out, c.out_size()), to_host(lse, c.lse_size()), to_host(dx, c.x.size())};
}

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

// Float sums over up to T keys: the tolerance grows with T (one rounding per term, either order).
double forward_tol(std::size_t T) { return std::max(5e-6, double(T) * 2e-8); }
double backward_tol(std::size_t T) { return std::max(5e-5, double(T) * 2e-7); }

}  // namespace

TEST_CASE("flash attention: forward and backward equal the naive attention and the CPU tiles (random shapes)") {
  struct Shape {
    std::size_t B, T, NH, KVH, hd;
    bool fused;
  };
  // T around and past the tiles (32 keys, 64 rows per block); every head-slot class; groups 1-4; both layouts;
  // one GPT-2-like head (hd 64) at T 1000 (not a multiple of either tile)
  for (const Shape sh : {Shape{5, 1, 2, 2, 8, true}, Shape{5, 7, 2, 1, 4, false}, Shape{5, 31, 3, 3, 32, true},
                         Shape{5, 33, 4, 2, 16, false}, Shape{5, 65, 2, 2, 64, true}, Shape{2, 97, 8, 2, 40, false},
                         Shape{5, 130, 4, 4, 33, true}, Shape{2, 140, 6, 2, 128, false},
                         Shape{2, 200, 12, 3, 100, false}, Shape{2, 1000, 2, 2, 64, true}}) {
    CAPTURE(sh.T);
    CAPTURE(sh.hd);
    CAPTURE(sh.NH);
    CAPTURE(sh.KVH);
    CAPTURE(sh.fused);
    const auto c = fl::make_flash_case(sh.B, sh.T, sh.NH, sh.KVH, sh.hd, sh.fused, sh.T * 13 + sh.hd);
    const auto gpu = run_gpu(c), ref = run_reference(c), emu = run_emulated(c);
    CHECK(rel_err(gpu.out, ref.out) <= forward_tol(sh.T));
    CHECK(fl::nan_aware_err(gpu.lse, ref.lse) <= forward_tol(sh.T));
    CHECK(rel_err(gpu.dx, ref.dx) <= backward_tol(sh.T));
    // the same arithmetic as the CPU tiles, up to expf / fused multiply-adds: a mismatch here and not above would
    // point at the schedule (loads, barriers), a mismatch in both at the algorithm
    CHECK(rel_err(gpu.out, emu.out) <= 1e-5);
    CHECK(rel_err(gpu.dx, emu.dx) <= 1e-4);
  }
}

TEST_CASE("flash attention: NaN at padding never leaks; a NaN key spoils exactly the queries that attend it") {
  for (const bool fused : {true, false}) {
    CAPTURE(fused);
    auto c = fl::make_flash_case(5, 100, 4, fused ? 4 : 2, 24, fused, 21);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const std::size_t T = c.s.T, per_q = c.s.NH * c.s.hd, per_kv = c.s.KVH * c.s.hd;
    for (std::size_t n = 0; n < c.s.B * T; ++n)
      if (!c.real[n]) {
        for (std::size_t i = 0; i < per_q; ++i) c.x[c.q_at + n * c.s.q_stride + i] = nan;
        for (std::size_t i = 0; i < per_kv; ++i)
          c.x[c.k_at + n * c.s.kv_stride + i] = c.x[c.v_at + n * c.s.kv_stride + i] = nan;
        for (std::size_t i = 0; i < per_q; ++i) c.dout[n * c.s.out_stride + i] = nan;
      }
    auto gpu = run_gpu(c), ref = run_reference(c);
    CHECK(rel_err(gpu.out, ref.out) <= forward_tol(T));  // any NaN fails rel_err
    CHECK(rel_err(gpu.dx, ref.dx) <= backward_tol(T));
    c.x[c.k_at + 70 * c.s.kv_stride + 5] = nan;  // row 0 (no padding), key 70, kv head 0
    gpu = run_gpu(c), ref = run_reference(c);
    CHECK(std::isnan(ref.out[70 * c.s.out_stride]));
    CHECK(fl::nan_aware_err(gpu.out, ref.out) <= forward_tol(T));
    CHECK(fl::nan_aware_err(gpu.lse, ref.lse) <= forward_tol(T));
  }
}

TEST_CASE("flash attention: two runs give bit-identical results (no atomics)") {
  const auto c = fl::make_flash_case(3, 150, 8, 2, 64, false, 5);
  const auto a = run_gpu(c), b = run_gpu(c);
  CHECK(a.out == b.out);
  CHECK(a.dx == b.dx);
}

TEST_CASE("flash attention: shapes the kernels do not serve are named") {
  const auto c = fl::make_flash_case(1, 4, 2, 2, 8, false, 1);
  device_buffer<float> buf(1024);
  device_buffer<std::uint8_t> real(4);
  auto bad = c.s;
  bad.hd = 129;
  CHECK_THROWS_AS(rlhf::gpt_cuda::flash_attention_forward(buf.data(), buf.data(), buf.data(), buf.data(), buf.data(),
                                                          real.data(), bad),
                  rlhf::value_error);
  bad = c.s;
  bad.NH = 3;
  CHECK_THROWS_AS(rlhf::gpt_cuda::flash_attention_forward(buf.data(), buf.data(), buf.data(), buf.data(), buf.data(),
                                                          real.data(), bad),
                  rlhf::value_error);
}

TEST_CASE("flash attention in the CUDA GPT: log-probs and every gradient equal the materialized path and the CPU") {
  using rlhf::AttentionKernel;
  using rlhf::GemmPrecision;
  using rlhf::GptCuda;
  for (const auto precision : {GemmPrecision::fp32, GemmPrecision::tf32})
    for (const auto& c : configs()) {
      CAPTURE(name(precision));
      CAPTURE(c.channels);
      Pair m(c, precision, 31);
      GptCuda flash(c, 0, {.precision = precision, .attention = AttentionKernel::flash});
      flash.set_parameters(m.cpu.parameters());
      for (const auto side : {Pad::right, Pad::left, Pad::right_masked}) {
        CAPTURE(int(side));
        const auto batch = batch_for(c, side, 32);
        const auto g = upstream(batch, 33);
        m.cpu.zero_grad();
        m.gpu.zero_grad();
        flash.zero_grad();
        const auto cpu_lp = host_eigen(m.cpu.log_probs(batch));
        m.cpu.backward(batch, rlhf::Gpt<float>::backend::matrix_from_host(batch.batch, batch.time, g));
        const auto mat_lp = host(m.gpu.log_probs(batch));
        m.gpu.backward(batch, GptCuda::backend::matrix_from_host(batch.batch, batch.time, g));
        const auto flash_lp = host(flash.log_probs(batch));
        flash.backward(batch, GptCuda::backend::matrix_from_host(batch.batch, batch.time, g));
        CHECK(rel_err(flash_lp, cpu_lp) <= model_tolerance(precision));
        CHECK(rel_err(flash_lp, mat_lp) <= model_tolerance(precision));
        check_per_tensor(c, flash.gradients_to_host(), m.cpu.gradients(), 2 * model_tolerance(precision));
        check_per_tensor(c, flash.gradients_to_host(), m.gpu.gradients_to_host(), 2 * model_tolerance(precision));
      }
    }
}
