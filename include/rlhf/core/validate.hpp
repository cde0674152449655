#pragma once
// Input checks shared by every loss, written against the Backend concept: each names the function,
// the argument and the offending size or value.
#include <cstddef>
#include <string_view>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/math.hpp"

namespace rlhf::detail {

template <class T>
struct non_finite_count {
  const T* x;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return math::is_finite(x[i]) ? 0.0 : 1.0; }
};

template <Backend Be>
void require_finite(std::string_view fn, std::string_view arg, const typename Be::scalar* x, std::size_t n) {
  const double bad = Be::sum(n, non_finite_count<typename Be::scalar>{x});
  if (bad > 0) fail<value_error>(fn, ": '", arg, "' holds ", bad, " NaN or Inf value(s) among ", n);
}

template <Backend Be>
void require_finite(std::string_view fn, std::string_view arg, const typename Be::vector& v) {
  require_finite<Be>(fn, arg, Be::data(v), Be::size(v));
}

template <class T>
struct non_positive_count {
  const T* x;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return x[i] > T(0) ? 0.0 : 1.0; }
};

template <Backend Be>
void require_all_positive(std::string_view fn, std::string_view arg, const typename Be::vector& v) {
  const double bad = Be::sum(Be::size(v), non_positive_count<typename Be::scalar>{Be::data(v)});
  if (bad > 0) fail<value_error>(fn, ": '", arg, "' holds ", bad, " value(s) <= 0 among ", Be::size(v));
}

// A per-row batch input: same length as the batch, not empty, all finite.
template <Backend Be>
void require_rows(std::string_view fn, std::string_view arg, const typename Be::vector& v, std::size_t batch) {
  require_size(fn, arg, Be::size(v), batch, "the batch size");
  require_finite<Be>(fn, arg, v);
}

}  // namespace rlhf::detail
