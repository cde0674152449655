// The CPU references of the CUDA kernels (tests/gpu/reference.hpp), checked on the CPU with g++: the
// fused causal softmax, composed the way the CUDA attention composes it (permute, score GEMM, softmax, GEMM),
// gives the CPU model's attention forward and backward; its backward matches finite differences; the scalar
// head's backward matches finite differences; draw_reference draws what the CPU sampler draws.
// (Built by tests/CMakeLists.txt's glob as the plain ctest gpu_reference: nothing here needs CUDA.)
#include "reference.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "models/gpt_support.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/models/gpt/layers.hpp"
#include "rlhf/models/gpt/model.hpp"

namespace {

namespace gc = rlhf::gpt_cuda;

std::vector<float> uniform_floats(std::size_t n, float lo, float hi, std::uint64_t seed) {
  rlhf::Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = float(lo + (hi - lo) * rng.uniform());
  return v;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
  return worst;
}

// Attention as the CUDA model computes it, with plain loops and the references: raw scores q·k per (b, h),
// the fused softmax, then att · v. out [B, T, C], att [B, NH, T, T].
void attention_by_parts(std::vector<float>& out, std::vector<float>& att, const std::vector<float>& qkv,
                        const std::vector<std::uint8_t>& real, std::size_t B, std::size_t T, std::size_t C,
                        std::size_t NH) {
  const std::size_t hs = C / NH;
  const auto q = [&](std::size_t b, std::size_t t, std::size_t h, std::size_t part, std::size_t d) {
    return double(qkv[(b * T + t) * 3 * C + part * C + h * hs + d]);
  };
  att.assign(B * NH * T * T, 0.0f);
  out.assign(B * T * C, 0.0f);
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t h = 0; h < NH; ++h)
      for (std::size_t t = 0; t < T; ++t)
        for (std::size_t j = 0; j < T; ++j) {
          double s = 0;
          for (std::size_t d = 0; d < hs; ++d) s += q(b, t, h, 0, d) * q(b, j, h, 1, d);
          att[((b * NH + h) * T + t) * T + j] = float(s);
        }
  gc::causal_softmax_forward_reference(att.data(), real.data(), B, NH, T, float(1.0 / std::sqrt(double(hs))));
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t h = 0; h < NH; ++h)
      for (std::size_t t = 0; t < T; ++t)
        for (std::size_t d = 0; d < hs; ++d) {
          double y = 0;
          for (std::size_t j = 0; j < T; ++j) y += att[((b * NH + h) * T + t) * T + j] * q(b, j, h, 2, d);
          out[(b * T + t) * C + h * hs + d] = float(y);
        }
}

// Rows: 0 full, 1 left-padded, 2 with a hole inside, 3 right-padded.
std::vector<std::uint8_t> padded_rows(std::size_t B, std::size_t T) {
  std::vector<std::uint8_t> real(B * T, 1);
  for (std::size_t t = 0; t < 2; ++t) real[1 * T + t] = 0;
  real[2 * T + 3] = 0;
  for (std::size_t t = T - 2; t < T; ++t) real[3 * T + t] = 0;
  return real;
}

}  // namespace

TEST_CASE("gpu reference: score GEMM + fused causal softmax + GEMM is the CPU model's attention forward") {
  const std::size_t B = 4, T = 7, C = 12, NH = 3;
  const auto qkv = uniform_floats(B * T * 3 * C, -1.5f, 1.5f, 1);
  const auto real = padded_rows(B, T);
  std::vector<float> out, att;
  attention_by_parts(out, att, qkv, real, B, T, C, NH);
  std::vector<float> cpu_out(B * T * C, 0.0f), cpu_att(B * NH * T * T, 0.0f);
  rlhf::gpt::attention_forward(cpu_out.data(), cpu_att.data(), qkv.data(), real.data(), B, T, C, NH);
  CHECK(max_abs_diff(att, cpu_att) < 1e-6);
  CHECK(max_abs_diff(out, cpu_out) < 1e-5);
  // the masks hold: nothing above the diagonal, nothing on padding keys, padding queries all zero
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t t = 0; t < T; ++t) {
      double row = 0;
      for (std::size_t j = 0; j < T; ++j) {
        const float p = att[((b * NH + 1) * T + t) * T + j];
        if (j > t || !real[b * T + j] || !real[b * T + t]) CHECK(p == 0.0f);
        row += p;
      }
      CHECK(row == doctest::Approx(real[b * T + t] ? 1.0 : 0.0).epsilon(1e-6));
    }
}

TEST_CASE("gpu reference: the softmax backward composed as the CUDA attention backward is the CPU model's") {
  const std::size_t B = 4, T = 6, C = 8, NH = 2, hs = C / NH;
  const auto qkv = uniform_floats(B * T * 3 * C, -1.5f, 1.5f, 2);
  const auto dout = uniform_floats(B * T * C, -1.0f, 1.0f, 3);
  const auto real = padded_rows(B, T);
  std::vector<float> out, att;
  attention_by_parts(out, att, qkv, real, B, T, C, NH);
  const auto v = [&](std::size_t b, std::size_t t, std::size_t h, std::size_t part, std::size_t d) {
    return double(qkv[(b * T + t) * 3 * C + part * C + h * hs + d]);
  };
  // datt = dy · vᵀ, then the reference softmax backward (scale included), then dq, dk, dv by plain loops
  std::vector<float> datt(B * NH * T * T), dqkv(B * T * 3 * C, 0.0f);
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t h = 0; h < NH; ++h)
      for (std::size_t t = 0; t < T; ++t)
        for (std::size_t j = 0; j < T; ++j) {
          double s = 0;
          for (std::size_t d = 0; d < hs; ++d) s += double(dout[(b * T + t) * C + h * hs + d]) * v(b, j, h, 2, d);
          datt[((b * NH + h) * T + t) * T + j] = float(s);
        }
  gc::causal_softmax_backward_reference(datt.data(), att.data(), B, NH, T, float(1.0 / std::sqrt(double(hs))));
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t h = 0; h < NH; ++h)
      for (std::size_t t = 0; t < T; ++t)
        for (std::size_t d = 0; d < hs; ++d) {
          double dq = 0, dk = 0, dv = 0;
          for (std::size_t j = 0; j < T; ++j) {
            const std::size_t bh = (b * NH + h) * T;
            dq += double(datt[(bh + t) * T + j]) * v(b, j, h, 1, d);
            dk += double(datt[(bh + j) * T + t]) * v(b, j, h, 0, d);
            dv += double(att[(bh + j) * T + t]) * double(dout[(b * T + j) * C + h * hs + d]);
          }
          float* row = dqkv.data() + (b * T + t) * 3 * C + h * hs + d;
          row[0] = float(dq), row[C] = float(dk), row[2 * C] = float(dv);
        }
  std::vector<float> cpu_out(B * T * C, 0.0f), cpu_att(B * NH * T * T, 0.0f), cpu_dqkv(B * T * 3 * C, 0.0f),
      scratch(B * NH * T * T, 0.0f);
  rlhf::gpt::attention_forward(cpu_out.data(), cpu_att.data(), qkv.data(), real.data(), B, T, C, NH);
  rlhf::gpt::attention_backward(cpu_dqkv.data(), scratch.data(), dout.data(), qkv.data(), cpu_att.data(), real.data(),
                                B, T, C, NH);
  CHECK(max_abs_diff(dqkv, cpu_dqkv) < 1e-5);
}

TEST_CASE("gpu reference: causal softmax backward matches finite differences of the forward") {
  const std::size_t B = 2, NH = 1, T = 5;
  const float scale = 0.7f;
  std::vector<std::uint8_t> real(B * T, 1);
  real[1 * T + 0] = 0;  // a padding key in row 1
  const auto x0 = uniform_floats(B * NH * T * T, -2.0f, 2.0f, 4);
  const auto c = uniform_floats(B * NH * T * T, -1.0f, 1.0f, 5);
  const auto f = [&](const std::vector<float>& x) {  // Σ c · softmax(x), in double
    std::vector<float> p = x;
    gc::causal_softmax_forward_reference(p.data(), real.data(), B, NH, T, scale);
    double s = 0;
    for (std::size_t i = 0; i < p.size(); ++i) s += double(c[i]) * p[i];
    return s;
  };
  std::vector<float> att = x0;
  gc::causal_softmax_forward_reference(att.data(), real.data(), B, NH, T, scale);
  std::vector<float> grad = c;
  gc::causal_softmax_backward_reference(grad.data(), att.data(), B, NH, T, scale);
  const float h = 1e-2f;
  for (std::size_t i = 0; i < x0.size(); ++i) {
    auto up = x0, down = x0;
    up[i] += h, down[i] -= h;
    const double numeric = (f(up) - f(down)) / (double(up[i]) - double(down[i]));
    CHECK(grad[i] == doctest::Approx(numeric).epsilon(2e-3).scale(1.0));
  }
}

TEST_CASE("gpu reference: scalar head forward is a dot product; its backward matches finite differences") {
  const std::size_t N = 5, C = 4, M = 3;
  auto lnf = uniform_floats(N * C, -1, 1, 6);
  auto w = uniform_floats(C, -1, 1, 7);
  std::vector<float> b = {0.25f};
  const std::vector<std::int32_t> src = {4, 0, 2}, dst = {1, 3, 0};
  const auto g = uniform_floats(4, -1, 1, 8);  // d out, read at dst
  std::vector<float> out(4, 0.0f);
  gc::scalar_head_forward_reference(out.data(), lnf.data(), w.data(), b.data(), src.data(), dst.data(), M, C);
  CHECK(out[1] == doctest::Approx(lnf[16] * w[0] + lnf[17] * w[1] + lnf[18] * w[2] + lnf[19] * w[3] + 0.25));
  CHECK(out[2] == 0.0f);  // not a destination
  std::vector<float> dlnf(N * C, 0.0f), dw(C, 0.0f), db(1, 0.0f);
  gc::scalar_head_backward_reference(dlnf.data(), dw.data(), db.data(), lnf.data(), w.data(), g.data(), src.data(),
                                     dst.data(), M, C);
  const auto loss = [&] {
    std::vector<float> o(4, 0.0f);
    gc::scalar_head_forward_reference(o.data(), lnf.data(), w.data(), b.data(), src.data(), dst.data(), M, C);
    double s = 0;
    for (std::size_t m = 0; m < M; ++m) s += double(g[dst[m]]) * o[dst[m]];
    return s;
  };
  const auto check = [&](std::vector<float>& x, const std::vector<float>& analytic) {
    for (std::size_t i = 0; i < x.size(); ++i) {
      const float saved = x[i];
      x[i] = saved + 1e-2f;
      const double up = loss();
      x[i] = saved - 1e-2f;
      const double down = loss();
      x[i] = saved;
      CHECK(analytic[i] == doctest::Approx((up - down) / 2e-2).epsilon(1e-3).scale(1.0));
    }
  };
  check(lnf, dlnf), check(w, dw), check(b, db);
  CHECK(dlnf[1 * C] == 0.0f);  // row 1 is not a source
}

TEST_CASE("gpu reference: draw_reference on hand-made rows (ties, top-k, top-p, greedy)") {
  const std::vector<float> flat(6, 0.5f);  // all equal: top_k keeps the lowest ids; draws in id order
  CHECK(gc::draw_reference(flat.data(), 6, 1.0f, 3, 1.0f, 0.0) == 0);
  CHECK(gc::draw_reference(flat.data(), 6, 1.0f, 3, 1.0f, 0.5) == 1);
  CHECK(gc::draw_reference(flat.data(), 6, 1.0f, 3, 1.0f, 0.99) == 2);
  CHECK(gc::draw_reference(flat.data(), 6, 1.0f, 0, 1.0f, 0.99) == 5);
  CHECK(gc::draw_reference(flat.data(), 6, 0.0f, 0, 1.0f, 0.99) == 0);  // greedy: the first maximum
  // one dominant token: top_p 0.5 keeps it alone; without top_p a high u reaches the tail
  const std::vector<float> peaked = {0.0f, 0.0f, 5.0f, 0.0f};
  CHECK(gc::draw_reference(peaked.data(), 4, 1.0f, 0, 0.5f, 0.999) == 2);
  CHECK(gc::draw_reference(peaked.data(), 4, 1.0f, 0, 1.0f, 0.999) == 3);
  CHECK(gc::draw_reference(peaked.data(), 4, 1.0f, 1, 1.0f, 0.999) == 2);
  // top_p walks in decreasing order: two tokens 2 > 1 > rest; u near 1 within the nucleus {2, 1} gives 1
  const std::vector<float> two = {0.0f, 3.0f, 4.0f, 0.0f};
  CHECK(gc::draw_reference(two.data(), 4, 1.0f, 0, 0.9f, 0.99) == 1);
  CHECK(gc::draw_reference(two.data(), 4, 1.0f, 0, 0.9f, 0.01) == 2);
}

TEST_CASE("gpu reference: draw_reference draws the CPU sampler's first token for the same uniform") {
  auto config = rlhf::testing::tiny_gpt_config();
  config.vocab_size = 23;
  rlhf::Gpt<float> model(config, 3);
  rlhf::testing::randomize(model, 4, 0.8);
  const rlhf::PromptBatch prompt{1, 3, {5, 1, 7}, {3}};
  rlhf::TokenBatch whole = rlhf::TokenBatch::zeros(1, 3);
  whole.tokens = prompt.tokens;
  const auto logits = model.logits(whole);  // [3, V]; row 2 predicts the first new token
  const float* row = logits.data() + 2 * config.vocab_size;
  const rlhf::SampleOptions options[] = {{.max_new_tokens = 1, .temperature = 1.0f},
                                         {.max_new_tokens = 1, .temperature = 0.7f, .top_k = 5},
                                         {.max_new_tokens = 1, .temperature = 1.3f, .top_p = 0.8f},
                                         {.max_new_tokens = 1, .temperature = 1.0f, .top_k = 6, .top_p = 0.7f},
                                         {.max_new_tokens = 1, .temperature = 0.0f}};
  int mismatches = 0, distinct_mask = 0;
  for (const auto& o : options)
    for (std::uint64_t seed = 0; seed < 200; ++seed) {
      rlhf::Rng a(seed), b(seed);
      const auto out = model.sample(prompt, o, a);
      const double u = o.temperature == 0.0f ? 0.0 : b.uniform();
      const auto token = gc::draw_reference(row, config.vocab_size, o.temperature, o.top_k, o.top_p, u);
      mismatches += out.token(0, 3) != token;
      distinct_mask |= 1 << (token % 30);
    }
  CHECK(mismatches == 0);
  CHECK(__builtin_popcount(unsigned(distinct_mask)) > 5);  // the draws are not all one token
}
