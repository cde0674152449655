// The backend contract itself, on every backend: allocation, host transfers, for_each, sum, the six row
// primitives.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <utility>

#include "typed.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

template <class T>
struct write_index {  // out[i] += i + 1: an index visited twice or never shows
  T* out;
  RLHF_HOST_DEVICE void operator()(std::size_t i) const { out[i] += T(i % 1000 + 1); }
};
struct one {
  RLHF_HOST_DEVICE double operator()(std::size_t) const { return 1.0; }
};
template <class T>
struct index_value {
  const std::int32_t* x;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return static_cast<double>(x[i]); }
};

// Runs the row primitives on row r of x [rows, n] inside a kernel, as the losses do.
template <class Be>
struct row_probe {
  using T = typename Be::scalar;
  const T* x;
  std::size_t n;
  T *max, *sum_exp, *scaled, *accumulated;  // [rows], [rows], [rows, n], [rows, n]
  T *exp_sum, *exps;                        // [rows], [rows, n]
  RLHF_HOST_DEVICE void operator()(std::size_t r) const {
    const T* row = x + r * n;
    if (r + 1 < rows) Be::row_prefetch(row + n, n);
    max[r] = Be::row_max(row, n);
    sum_exp[r] = Be::row_sum_exp(row, n, max[r]);
    Be::row_scaled_exp(scaled + r * n, row, n, max[r], T(0.5), false);
    Be::row_scaled_exp(accumulated + r * n, row, n, max[r], T(2), true);
    exp_sum[r] = Be::row_exp(exps + r * n, row, n, max[r]);
    Be::row_scale(exps + r * n, n, T(3));
  }
  std::size_t rows;
};

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("backends: zero-filled allocation and host round trips", Be, round_trips) {
  using T = typename Be::scalar;
  const auto v = Be::vector_of(5);
  CHECK(Be::size(v) == 5);
  CHECK(Be::to_host(v) == std::vector<T>(5, T(0)));
  const auto m = Be::matrix_of(3, 4);
  CHECK(Be::rows(m) == 3);
  CHECK(Be::cols(m) == 4);
  CHECK(Be::to_host(m) == std::vector<T>(12, T(0)));
  const std::vector<T> h{T(1.5), T(-2), T(3e-30), T(7)};
  CHECK(Be::to_host(Be::from_host(h)) == h);
  const std::vector<T> hm{1, 2, 3, 4, 5, 6};
  const auto m23 = Be::matrix_from_host(2, 3, hm);
  CHECK(Be::rows(m23) == 2);
  CHECK(Be::cols(m23) == 3);
  CHECK(Be::to_host(m23) == hm);  // row-major
  const auto idx = Be::indices_from_host({4, -1, 9});
  CHECK(Be::size(idx) == 3);
  CHECK(Be::sum(3, index_value<T>{Be::data(idx)}) == 12.0);
  CHECK(Be::size(typename Be::vector{}) == 0);
}
TEST_CASE_TEMPLATE_APPLY(round_trips, all_backends);

// Thrust's data() of an empty vector binds a reference through its null storage (UBSan, issue 10): the
// backend returns nullptr instead, and to_host copies nothing.
TEST_CASE_TEMPLATE_DEFINE("backends: empty tensors have a null data() and an empty to_host", Be, empties) {
  auto v = Be::vector_of(0);
  auto m = Be::matrix_of(0, 3);
  const auto idx = Be::indices_from_host({});
  CHECK(Be::to_host(v).empty());
  CHECK(Be::to_host(m).empty());
  CHECK(Be::sum(0, index_value<typename Be::scalar>{Be::data(idx)}) == 0.0);
  if constexpr (requires { typename Be::system; }) {  // the Thrust backends
    CHECK(Be::data(v) == nullptr);
    CHECK(Be::data(std::as_const(v)) == nullptr);
    CHECK(Be::data(m) == nullptr);
    CHECK(Be::data(idx) == nullptr);
  }
}
TEST_CASE_TEMPLATE_APPLY(empties, all_backends);

TEST_CASE_TEMPLATE_DEFINE("backends: for_each visits every index once, below and above the parallel threshold", Be,
                          visits) {
  using T = typename Be::scalar;
  for (const std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(37), std::size_t(200003)}) {
    auto out = Be::vector_of(n);
    Be::for_each(n, write_index<T>{Be::data(out)});
    const auto h = Be::to_host(out);
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < n; ++i) wrong += h[i] != T(i % 1000 + 1);
    CHECK_MESSAGE(wrong == 0, "n = ", n);
  }
  auto out = Be::vector_of(1000);  // a large work_per_item hint must not change the result
  Be::for_each(1000, write_index<T>{Be::data(out)}, 1 << 20);
  CHECK(Be::to_host(out)[999] == T(1000));
}
TEST_CASE_TEMPLATE_APPLY(visits, all_backends);

TEST_CASE_TEMPLATE_DEFINE("backends: sum accumulates in double", Be, sums) {
  CHECK(Be::sum(0, one{}) == 0.0);
  CHECK(Be::sum(7, one{}) == 7.0);
  const std::size_t n = (std::size_t(1) << 24) + 5;  // past 2^24, a float accumulator stops counting
  CHECK(Be::sum(n, one{}) == static_cast<double>(n));
  CHECK(Be::sum(1000, one{}, 1 << 20) == 1000.0);
}
TEST_CASE_TEMPLATE_APPLY(sums, all_backends);

TEST_CASE_TEMPLATE_DEFINE("backends: row primitives match the formulas, -inf, NaN and odd lengths included", Be, rows) {
  using T = typename Be::scalar;
  for (const std::size_t n : {std::size_t(1), std::size_t(7), std::size_t(33), std::size_t(42), std::size_t(1000)}) {
    const std::size_t rows = 4;
    auto x = uniform(rows * n, -30, 30, n);
    x[0] = 1e4;                                                      // row 0: one huge logit dominates
    if (n > 1) x[n + 1] = -std::numeric_limits<double>::infinity();  // row 1: a -inf logit has probability 0
    for (std::size_t v = 0; v < n; ++v) x[2 * n + v] = -1e4 + v;     // row 2: all very negative
    if (n > 2) x[3 * n + 2] = std::nan("");                          // row 3: NaN
    auto dx = to_backend<Be>(rows, n, x);
    auto max = Be::vector_of(rows), sum_exp = Be::vector_of(rows);
    auto scaled = Be::matrix_of(rows, n), accumulated = to_backend<Be>(rows, n, constant(rows * n, 1.0));
    auto exp_sum = Be::vector_of(rows);
    auto exps = Be::matrix_of(rows, n);
    Be::for_each(rows, row_probe<Be>{Be::data(dx), n, Be::data(max), Be::data(sum_exp), Be::data(scaled),
                                     Be::data(accumulated), Be::data(exp_sum), Be::data(exps), rows});
    const auto hmax = to_host_double<Be>(max), hsum = to_host_double<Be>(sum_exp);
    const auto hscaled = to_host_double<Be>(scaled), hacc = to_host_double<Be>(accumulated);
    const auto hexp_sum = to_host_double<Be>(exp_sum), hexps = to_host_double<Be>(exps);
    const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-13;
    for (std::size_t r = 0; r < rows; ++r) {
      CAPTURE(n);
      CAPTURE(r);
      const std::vector<double> row(x.begin() + r * n, x.begin() + (r + 1) * n);
      const bool has_nan = r == 3 && n > 2;
      double want_max = -INFINITY, want_sum = 0;
      for (const double v : row)
        if (v == v) want_max = std::max(want_max, static_cast<double>(static_cast<T>(v)));
      if (!has_nan) CHECK(hmax[r] == want_max);
      for (const double v : row) want_sum += std::exp(static_cast<double>(static_cast<T>(v)) - hmax[r]);
      if (has_nan) {
        CHECK(std::isnan(hsum[r]));
        CHECK(std::isnan(hexp_sum[r]));
        continue;
      }
      CHECK(hsum[r] == doctest::Approx(want_sum).epsilon(tol * 10));
      CHECK(hexp_sum[r] == doctest::Approx(want_sum).epsilon(tol * 10));
      for (std::size_t v = 0; v < n; ++v) {
        const double e = std::exp(static_cast<double>(static_cast<T>(row[v])) - hmax[r]);
        CHECK(std::abs(hscaled[r * n + v] - 0.5 * e) <= tol);
        CHECK(std::abs(hacc[r * n + v] - (1 + 2 * e)) <= 4 * tol);
        CHECK(std::abs(hexps[r * n + v] - 3 * e) <= 3 * tol);
      }
    }
  }
}
TEST_CASE_TEMPLATE_APPLY(rows, all_backends);
