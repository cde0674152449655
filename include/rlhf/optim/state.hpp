#pragma once
// The checks an optimizer's state passes before it is restored, written or accepted from a file: every value
// finite (and, for a running mean of squares, not negative), so that no saved or restored state holds NaN.
// The state types themselves live with their optimizers (AdamWState in adamw.hpp, RmspropState in rmsprop.hpp);
// their files in optim/state_file.hpp. docs/optim/state.md.
#include <cmath>
#include <cstddef>
#include <span>
#include <string_view>

#include "rlhf/core/error.hpp"
#include "rlhf/optim/clip.hpp"

namespace rlhf::detail {

// value_error naming `fn`, the field and the first bad index unless every value of `values` is finite (and,
// with `nonnegative`, ≥ 0; −0 counts as 0).
template <class T>
void require_finite_state(std::string_view fn, std::string_view field, std::span<const T> values,
                          bool nonnegative = false) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double v = double(values[i]);
    if (!std::isfinite(v))
      fail<value_error>(fn, ": '", field, "' holds ", v, " at index ", i, " of ", values.size(),
                        "; an optimizer state must be finite");
    if (nonnegative && v < 0)
      fail<value_error>(fn, ": '", field, "' holds ", v, " at index ", i, " of ", values.size(),
                        "; a mean of squares is never negative");
  }
}

// What opens every optimizer's step: `grads` as long as `params` and, for host gradients, finite — before anything
// changes, so that a refused step leaves everything as it was; on the first step (an empty state, `state_size`
// 0) `size_state()` sizes the state for `params`; a later step's `params` must be as long as the state.
template <class T, class SizeState>
void begin_optimizer_step(std::string_view fn, std::span<T> params, std::span<const T> grads, std::size_t state_size,
                          SizeState&& size_state, bool host_gradients = true) {
  require_size(fn, "grads", grads.size(), params.size(), "the number of parameters");
  if (host_gradients) require_finite_gradient(fn, "grads", grads);
  if (state_size == 0) {
    size_state();
    state_size = params.size();
  }
  require_size(fn, "params", params.size(), state_size, "the size of the optimizer state");
}

}  // namespace rlhf::detail
