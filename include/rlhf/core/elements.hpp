#pragma once
// The per-element readers that Backend::sum and Backend::for_each take: entry i of a flat buffer (a vector, or a
// [B, T] matrix in row-major order), widened to double so that sums of float buffers accumulate in double.
#include <cstddef>

#include "rlhf/core/math.hpp"

namespace rlhf::detail {

template <class T>
struct element_as_double {  // x[i]
  const T* x;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return static_cast<double>(x[i]); }
};

template <class T>
struct masked_count {  // 1 where mask[i] ≠ 0: summed, the response tokens of a 0/1 mask
  const T* mask;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return mask[i] != T(0) ? 1.0 : 0.0; }
};

template <class T>
struct masked_element {  // x[i] where mask[i] ≠ 0, else 0 (entries under a 0 are never read)
  const T *x, *mask;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return mask[i] != T(0) ? static_cast<double>(x[i]) : 0.0; }
};

template <class T>
struct masked_square_deviation {  // (x[i] − mean)² where mask[i] ≠ 0, else 0
  const T *x, *mask;
  double mean;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const {
    const double d = static_cast<double>(x[i]) - mean;
    return mask[i] != T(0) ? d * d : 0.0;
  }
};

}  // namespace rlhf::detail
