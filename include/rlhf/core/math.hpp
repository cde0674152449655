#pragma once
// Numerically stable scalar functions shared by every loss kernel, host or device.
#include <cmath>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define RLHF_HOST_DEVICE __host__ __device__
#else
#define RLHF_HOST_DEVICE
#endif

namespace rlhf::math {

// log σ(x) = -log(1 + e^{-x}), finite for every finite x.
template <class T>
RLHF_HOST_DEVICE inline T log_sigmoid(T x) {
  using std::exp;
  using std::log1p;
  return x >= T(0) ? -log1p(exp(-x)) : x - log1p(exp(x));
}

template <class T>
RLHF_HOST_DEVICE inline T sigmoid(T x) {
  using std::exp;
  if (x >= T(0)) return T(1) / (T(1) + exp(-x));
  const T e = exp(x);
  return e / (T(1) + e);
}

// log(1 - e^x) for x <= 0 (Mächler's log1mexp); -inf at x = 0.
template <class T>
RLHF_HOST_DEVICE inline T log1m_exp(T x) {
  using std::exp;
  using std::expm1;
  using std::log;
  using std::log1p;
  return x > T(-0.6931471805599453) ? log(-expm1(x)) : log1p(-exp(x));
}

template <class T>
RLHF_HOST_DEVICE inline T square(T x) {
  return x * x;
}

template <class T>
RLHF_HOST_DEVICE inline T clamp(T x, T lo, T hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

// The type a kernel computes in: double for float inputs (so differences and products of finite floats such as
// ±3e38 stay finite), T itself for double.
template <class T>
using wide_t = decltype(T{} + 0.0);

template <class T>
RLHF_HOST_DEVICE inline bool is_finite(T x) {
  return x - x == T(0);  // false for NaN and ±Inf; works under nvcc and -ffast-math alike
}

}  // namespace rlhf::math
