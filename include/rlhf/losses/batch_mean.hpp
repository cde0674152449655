#pragma once
// The mean over a batch's n rows that the per-row losses (DPO, ORPO, Bradley–Terry, Plackett–Luce, listwise DPO)
// report as their loss and metrics: a per-row reader (core/elements.hpp) summed in double, times 1/n.
#include <cstddef>
#include <initializer_list>
#include <string_view>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/elements.hpp"
#include "rlhf/core/validate.hpp"

namespace rlhf::detail {

template <Backend Be>
struct BatchMean {
  std::size_t n;
  double inv_n = 1.0 / static_cast<double>(n);

  template <class Reader>
  double operator()(const Reader& row) const {
    return Be::sum(n, row) * inv_n;
  }
  double of(const typename Be::vector& v) const {  // v: [n]
    return (*this)(element_as_double<typename Be::scalar>{Be::data(v)});
  }
};

// One gradient a per-row loss's kernel wrote: its name in messages, its entries.
template <class T>
struct KernelGradient {
  std::string_view name;
  const T* x;
  std::size_t n;
};

// How every per-row loss ends: the rows' losses, then each gradient, checked as require_representable does (with
// one cause), and the batch's loss, the rows' mean.
template <Backend Be>
double checked_batch_loss(std::string_view fn, std::string_view cause, const typename Be::vector& losses,
                          std::initializer_list<KernelGradient<typename Be::scalar>> gradients) {
  const std::size_t n = Be::size(losses);
  require_representable<Be>(fn, "the loss", Be::data(losses), n, cause);
  for (const auto& [name, x, size] : gradients) require_representable<Be>(fn, name, x, size, cause);
  return BatchMean<Be>{n}.of(losses);
}

// The NLL term's tokens per pair when a batch brings its own: max(1, Σ chosen_length) / n, as TRL divides by the
// batch's tokens (DPO's NLL term under token_mean, ORPO).
template <Backend Be>
double chosen_tokens_per_pair(const typename Be::vector& chosen_length, std::size_t n) {
  const double tokens = Be::sum(n, element_as_double<typename Be::scalar>{Be::data(chosen_length)});
  return (tokens < 1.0 ? 1.0 : tokens) / static_cast<double>(n);
}

}  // namespace rlhf::detail
