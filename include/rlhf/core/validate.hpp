#pragma once
// Input checks shared by every loss, written against the Backend concept: each names the function,
// the argument and the offending size or value.
#include <cstddef>
#include <limits>
#include <string_view>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/math.hpp"

namespace rlhf {

// The largest label smoothing ε a pairwise loss (DPO, Bradley–Terry) takes: at ε = 0.5 the smoothed target no
// longer prefers either response, so the loss has no direction; the bound stays just below it.
inline constexpr double max_label_smoothing = 0.4999;

}  // namespace rlhf

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

// After a kernel: an output entry that is not finite means its true value lies beyond the scalar type (the
// kernels compute in double, so finite float inputs give no NaN). Names the output and the inputs that caused it.
template <Backend Be>
void require_representable(std::string_view fn, std::string_view output, const typename Be::scalar* x,
                           std::size_t n, std::string_view cause) {
  const double bad = Be::sum(n, non_finite_count<typename Be::scalar>{x});
  if (bad > 0)
    fail<value_error>(fn, ": ", output, " would exceed the range of the scalar type (max ",
                      std::numeric_limits<typename Be::scalar>::max(), ") at ", bad, " of ", n, " entries: ", cause);
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

template <class T>
struct negative_count {
  const T* x;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return x[i] < T(0) ? 1.0 : 0.0; }
};

// Every entry ≥ 0 (token counts, lengths).
template <Backend Be>
void require_nonnegative(std::string_view fn, std::string_view arg, const typename Be::vector& v) {
  const double bad = Be::sum(Be::size(v), negative_count<typename Be::scalar>{Be::data(v)});
  if (bad > 0) fail<value_error>(fn, ": '", arg, "' holds ", bad, " value(s) < 0 among ", Be::size(v));
}

// A per-row batch input: same length as the batch, not empty, all finite.
template <Backend Be>
void require_rows(std::string_view fn, std::string_view arg, const typename Be::vector& v, std::size_t batch) {
  require_size(fn, arg, Be::size(v), batch, "the batch size");
  require_finite<Be>(fn, arg, v);
}

// The token counts of a pair's two sides [B] each (chosen_length, rejected_length): per-row inputs, none < 0.
template <Backend Be>
void require_pair_lengths(std::string_view fn, const typename Be::vector& chosen, const typename Be::vector& rejected,
                          std::size_t batch) {
  require_rows<Be>(fn, "chosen_length", chosen, batch);
  require_rows<Be>(fn, "rejected_length", rejected, batch);
  require_nonnegative<Be>(fn, "chosen_length", chosen);
  require_nonnegative<Be>(fn, "rejected_length", rejected);
}

}  // namespace rlhf::detail

// ---- per-token inputs: backend matrices [B, T] with a 0/1 mask of the same shape ------------------
namespace rlhf::detail {

template <Backend Be>
void require_shape(std::string_view fn, std::string_view arg, const typename Be::matrix& m, std::size_t rows,
                   std::size_t cols, std::string_view want_name) {
  if (Be::rows(m) != rows || Be::cols(m) != cols)
    fail<shape_error>(fn, ": '", arg, "' is [", Be::rows(m), ", ", Be::cols(m), "] but ", want_name, " is [", rows,
                      ", ", cols, "]");
}

template <class T>
struct non_binary_count {
  const T* x;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return x[i] == T(0) || x[i] == T(1) ? 0.0 : 1.0; }
};

// Every entry is exactly 0 or 1.
template <Backend Be>
void require_mask(std::string_view fn, std::string_view arg, const typename Be::scalar* m, std::size_t n) {
  const double bad = Be::sum(n, non_binary_count<typename Be::scalar>{m});
  if (bad > 0) fail<value_error>(fn, ": '", arg, "' holds ", bad, " value(s) other than 0 or 1 among ", n);
}

// Per row of a 0/1 mask: 1 if the row has more than one run of response tokens (gapped).
template <class T>
struct gapped_row_flag {
  const T* mask;
  std::size_t cols;
  RLHF_HOST_DEVICE double operator()(std::size_t b) const {
    std::size_t runs = 0;
    bool previous = false;
    for (std::size_t t = 0; t < cols; ++t) {
      const bool on = mask[b * cols + t] != T(0);
      if (on && !previous) ++runs;
      previous = on;
    }
    return runs > 1 ? 1.0 : 0.0;
  }
};

enum class MaskRule {
  any,      // 0/1 only
  one_run,  // and at most one contiguous run of response tokens per row
};

// The response mask of a per-token loss: [rows, cols] like `like` (named as the message shows it), 0/1, and
// under MaskRule::one_run one contiguous response per row.
template <Backend Be>
void require_token_mask(std::string_view fn, const typename Be::matrix& mask, std::size_t rows, std::size_t cols,
                        std::string_view like, MaskRule rule) {
  require_shape<Be>(fn, "mask", mask, rows, cols, like);
  require_mask<Be>(fn, "mask", Be::data(mask), rows * cols);
  if (rule == MaskRule::any) return;
  const double gapped = Be::sum(rows, gapped_row_flag<typename Be::scalar>{Be::data(mask), cols});
  if (gapped > 0)
    fail<value_error>(fn, ": 'mask' has ", gapped, " row(s) of ", rows,
                      " whose response tokens are not contiguous (a gap of 0s inside the response)");
}

template <class T>
struct non_finite_where_masked_count {
  const T *x, *mask;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const {
    return mask[i] != T(0) && !math::is_finite(x[i]) ? 1.0 : 0.0;
  }
};

// Entries under a 0 in the mask may hold anything (padding, -inf); the others must be finite.
template <Backend Be>
void require_finite_where_masked(std::string_view fn, std::string_view arg, const typename Be::scalar* x,
                                 const typename Be::scalar* mask, std::size_t n) {
  const double bad = Be::sum(n, non_finite_where_masked_count<typename Be::scalar>{x, mask});
  if (bad > 0) fail<value_error>(fn, ": '", arg, "' holds ", bad, " NaN or Inf value(s) where the mask is 1");
}

// A per-token input [B, T] the shape of `mask` (whose shape is that of `like`), finite wherever the (already
// checked) mask is 1; entries under a 0 are never read, so padding may hold anything (0, -inf, NaN).
template <Backend Be>
void require_tokens(std::string_view fn, std::string_view arg, const typename Be::matrix& m,
                    const typename Be::matrix& mask, std::string_view like) {
  require_shape<Be>(fn, arg, m, Be::rows(mask), Be::cols(mask), like);
  require_finite_where_masked<Be>(fn, arg, Be::data(m), Be::data(mask), Be::rows(m) * Be::cols(m));
}

template <class T>
struct empty_row_count {
  const T* mask;  // [rows, cols]
  std::size_t cols;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const {
    for (std::size_t t = 0; t < cols; ++t)
      if (mask[i * cols + t] != T(0)) return 0.0;
    return 1.0;
  }
};

// Every row of a [rows, cols] mask marks at least one token.
template <Backend Be>
void require_no_empty_rows(std::string_view fn, std::string_view arg, const typename Be::matrix& mask) {
  const std::size_t rows = Be::rows(mask), cols = Be::cols(mask);
  const double bad = Be::sum(rows, empty_row_count<typename Be::scalar>{Be::data(mask), cols}, cols);
  if (bad > 0) fail<value_error>(fn, ": '", arg, "' has ", bad, " row(s) of ", rows, " with no token set");
}

}  // namespace rlhf::detail
