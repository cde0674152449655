// Each layer's backward against central finite differences (double), and its forward against a plain
// loop written differently.
#include "rlhf/models/gpt/layers.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "support/gradcheck.hpp"

namespace {

using rlhf::testing::mat;
using rlhf::testing::max_relative_error;
using rlhf::testing::numeric_gradient;
using rlhf::testing::random_matrix;
using rlhf::testing::vec;
namespace gpt = rlhf::gpt;

double dot(const mat& a, const mat& b) { return (a.array() * b.array()).sum(); }

}  // namespace

TEST_CASE("gpt layers: gelu forward is the tanh formula, backward matches finite differences") {
  mat x = random_matrix(1, 50, -5, 5, 1);
  x(0, 0) = 0;
  x(0, 1) = 30;
  x(0, 2) = -30;
  mat y(1, 50), w = random_matrix(1, 50, -1, 1, 2), dx(1, 50);
  gpt::gelu_forward(y.data(), x.data(), 50);
  for (int i = 0; i < 50; ++i) {
    const double v = x(0, i);
    CHECK(y(0, i) == doctest::Approx(0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)))));
  }
  CHECK(y(0, 1) == doctest::Approx(30));
  CHECK(std::abs(y(0, 2)) < 1e-12);
  gpt::gelu_backward(dx.data(), x.data(), w.data(), 50);
  const auto f = [&] {
    gpt::gelu_forward(y.data(), x.data(), 50);
    return dot(y, w);
  };
  CHECK(max_relative_error(dx, numeric_gradient(f, x)) < 1e-7);
  mat inplace = w;  // dinp may alias dout
  gpt::gelu_backward(inplace.data(), x.data(), inplace.data(), 50);
  CHECK((inplace - dx).cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("gpt layers: layernorm forward normalises each row; backward matches finite differences") {
  const std::size_t N = 4, C = 7;
  mat x = random_matrix(N, C, -3, 3, 3), w = random_matrix(1, C, 0.5, 1.5, 4), b = random_matrix(1, C, -1, 1, 5);
  mat y(N, C), up = random_matrix(N, C, -1, 1, 6);
  vec mean(N), rstd(N);
  gpt::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5);
  for (std::size_t n = 0; n < N; ++n) {
    double m = 0, v = 0;
    for (std::size_t c = 0; c < C; ++c) m += x(n, c) / C;
    for (std::size_t c = 0; c < C; ++c) v += (x(n, c) - m) * (x(n, c) - m) / C;
    for (std::size_t c = 0; c < C; ++c)
      CHECK(y(n, c) == doctest::Approx((x(n, c) - m) / std::sqrt(v + 1e-5) * w(0, c) + b(0, c)).epsilon(1e-12));
  }
  mat dx = mat::Constant(N, C, 0.25), dw = mat::Constant(1, C, 0.5), db = mat::Zero(1, C);  // accumulates
  gpt::layernorm_backward(dx.data(), dw.data(), db.data(), up.data(), x.data(), w.data(), mean.data(), rstd.data(),
                          N, C);
  const auto f = [&] {
    gpt::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C, 1e-5);
    return dot(y, up);
  };
  CHECK(max_relative_error(mat(dx.array() - 0.25), numeric_gradient(f, x)) < 1e-7);
  CHECK(max_relative_error(mat(dw.array() - 0.5), numeric_gradient(f, w)) < 1e-7);
  CHECK(max_relative_error(db, numeric_gradient(f, b)) < 1e-7);
}

TEST_CASE("gpt layers: matmul backward matches finite differences; weight and bias gradients accumulate") {
  const std::size_t N = 5, C = 4, OC = 6;
  mat x = random_matrix(N, C, -1, 1, 7), w = random_matrix(C, OC, -1, 1, 8), b = random_matrix(1, OC, -1, 1, 9);
  mat y(N, OC), up = random_matrix(N, OC, -1, 1, 10);
  gpt::matmul_forward(y.data(), x.data(), w.data(), b.data(), N, C, OC);
  CHECK(y(2, 3) == doctest::Approx(x.row(2).dot(w.col(3)) + b(0, 3)));
  mat dx(N, C), dw = mat::Ones(C, OC), db = mat::Ones(1, OC);
  gpt::matmul_backward(dx.data(), dw.data(), db.data(), up.data(), x.data(), w.data(), N, C, OC);
  const auto f = [&] {
    gpt::matmul_forward(y.data(), x.data(), w.data(), b.data(), N, C, OC);
    return dot(y, up);
  };
  CHECK(max_relative_error(dx, numeric_gradient(f, x)) < 1e-8);
  CHECK(max_relative_error(mat(dw.array() - 1), numeric_gradient(f, w)) < 1e-8);
  CHECK(max_relative_error(mat(db.array() - 1), numeric_gradient(f, b)) < 1e-8);
}

TEST_CASE("gpt layers: attention forward is a masked causal softmax; backward matches finite differences") {
  const std::size_t B = 2, T = 6, C = 8, NH = 2, hs = C / NH;
  // row 0: left padding (2) and a hole at t = 4; row 1: right padding (1)
  const std::vector<std::uint8_t> real = {0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0};
  mat qkv = random_matrix(B * T, 3 * C, -2, 2, 11), out(B * T, C), up = random_matrix(B * T, C, -1, 1, 12);
  std::vector<double> att(B * NH * T * T), datt(att.size());
  gpt::attention_forward(out.data(), att.data(), qkv.data(), real.data(), B, T, C, NH);
  // the plain formula, query by query
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t h = 0; h < NH; ++h)
      for (std::size_t t = 0; t < T; ++t) {
        std::vector<double> y(hs, 0.0);
        if (real[b * T + t]) {
          std::vector<double> p(T, 0.0);
          double z = 0;
          for (std::size_t k = 0; k <= t; ++k) {
            if (!real[b * T + k]) continue;
            double s = 0;
            for (std::size_t i = 0; i < hs; ++i) s += qkv(b * T + t, h * hs + i) * qkv(b * T + k, C + h * hs + i);
            z += p[k] = std::exp(s / std::sqrt(double(hs)));
          }
          for (std::size_t k = 0; k <= t; ++k)
            for (std::size_t i = 0; i < hs; ++i) y[i] += p[k] / z * qkv(b * T + k, 2 * C + h * hs + i);
        }
        for (std::size_t i = 0; i < hs; ++i) CHECK(out(b * T + t, h * hs + i) == doctest::Approx(y[i]).epsilon(1e-12));
      }
  mat dqkv = mat::Constant(B * T, 3 * C, 7.0);  // overwritten, padding rows included
  gpt::attention_backward(dqkv.data(), datt.data(), up.data(), qkv.data(), att.data(), real.data(), B, T, C, NH);
  const auto f = [&] {
    gpt::attention_forward(out.data(), att.data(), qkv.data(), real.data(), B, T, C, NH);
    return dot(out, up);
  };
  CHECK(max_relative_error(dqkv, numeric_gradient(f, qkv)) < 1e-8);
  CHECK(dqkv.row(0).cwiseAbs().maxCoeff() == 0.0);   // padding: no gradient
  CHECK(dqkv.row(4).cwiseAbs().maxCoeff() == 0.0);   // the hole
  CHECK(dqkv.row(11).cwiseAbs().maxCoeff() == 0.0);  // right padding
}

TEST_CASE("gpt layers: encoder gathers embeddings and scatters gradients to real rows only") {
  const std::size_t N = 4, C = 3;
  const mat wte = random_matrix(5, C, -1, 1, 13), wpe = random_matrix(3, C, -1, 1, 14);
  const std::vector<std::int32_t> tok = {4, 1, 4, 0}, pos = {0, 1, 2, 0};
  const std::vector<std::uint8_t> real = {1, 1, 1, 0};
  mat out(N, C);
  gpt::encoder_forward(out.data(), tok.data(), pos.data(), wte.data(), wpe.data(), N, C);
  CHECK((out.row(2) - wte.row(4) - wpe.row(2)).cwiseAbs().maxCoeff() == 0.0);
  const mat up = random_matrix(N, C, -1, 1, 15);
  mat dwte = mat::Zero(5, C), dwpe = mat::Zero(3, C);
  gpt::encoder_backward(dwte.data(), dwpe.data(), up.data(), tok.data(), pos.data(), real.data(), N, C);
  CHECK((dwte.row(4) - up.row(0) - up.row(2)).cwiseAbs().maxCoeff() < 1e-15);  // token 4 twice
  CHECK(dwte.row(0).cwiseAbs().maxCoeff() == 0.0);                               // only on a padding row
  CHECK((dwpe.row(0) - up.row(0)).cwiseAbs().maxCoeff() == 0.0);
}
