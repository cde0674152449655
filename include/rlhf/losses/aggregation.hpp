#pragma once
// How the per-token values x of a batch [B, T] with a 0/1 mask m become one number: the points of Aggregation
// (core/reduction.hpp) as the PPO and policy-gradient losses and kl_estimate's mean take them. Each is one weight
// per row:
//
//   result = Σ_b w_b Σ_t m[b,t] x[b,t]        d result / d x[b,t] = w_b m[b,t]
//
//   token_mean     w_b = 1 / Σ m              every token alike (0 when the batch holds no token)
//   sequence_mean  w_b = 1 / (B · n_b)        every row alike, its tokens averaged (0 for a row with no token,
//                                             which still counts in B)
//   sequence_sum   w_b = 1 / (B · L)          L a constant: Dr. GRPO's fixed normaliser (L = 1: the mean over
//                                             rows of each row's sum)
//   nonempty_sequence_mean                    OpenRLHF's aggregate_loss for sequence_mean: w_b = 1 / (B' (n_b + 1e-8))
//                  over the B' rows with a token; a row with none is left out of the mean (0 if no row has one)
//   token_sum      w_b = 1                    not a mean: SFT and unlikelihood take it (fairseq's); require_valid,
//                                             for the PPO family and KL, does not
// docs/losses/ppo.md#aggregation names the peers' option for each.
#include <cmath>
#include <cstddef>
#include <string_view>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/elements.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/reduction.hpp"
#include "rlhf/core/validate.hpp"

namespace rlhf {

namespace detail::aggregation {

// The batch-wide numbers a row's weight depends on, gathered once on the host.
struct Weights {
  Aggregation how;
  double tokens;    // Σ m over the batch
  double rows;      // B
  double constant;  // L of sequence_sum
  double nonempty_rows = 0;  // B' of nonempty_sequence_mean: rows with at least one token
};

// OpenRLHF's masked_mean denominator: n_b + ε.
inline constexpr double nonempty_sequence_eps = 1e-8;

RLHF_HOST_DEVICE inline double row_weight(const Weights& w, double row_tokens) {
  switch (w.how) {
    case Aggregation::token_mean:
      return w.tokens > 0 ? 1.0 / w.tokens : 0.0;
    case Aggregation::sequence_mean:
      return row_tokens > 0 ? 1.0 / (w.rows * row_tokens) : 0.0;
    case Aggregation::sequence_sum:
      return 1.0 / (w.rows * w.constant);
    case Aggregation::nonempty_sequence_mean:
      return row_tokens > 0 ? 1.0 / (w.nonempty_rows * (row_tokens + nonempty_sequence_eps)) : 0.0;
    case Aggregation::token_sum:
      return 1.0;
  }
  return 0.0;
}

// Response tokens in row b of a [B, cols] mask.
template <class T>
RLHF_HOST_DEVICE inline double row_tokens(const T* mask, std::size_t b, std::size_t cols) {
  double n = 0;
  for (std::size_t i = b * cols; i < (b + 1) * cols; ++i) n += mask[i] != T(0) ? 1.0 : 0.0;
  return n;
}

// The weights of a [B, T] mask's rows under `how`; L = `constant` for sequence_sum.
template <Backend Be>
Weights weights_of(Aggregation how, const typename Be::matrix& mask, double constant) {
  using T = typename Be::scalar;
  const std::size_t rows = Be::rows(mask), cols = Be::cols(mask);
  Weights w{how, Be::sum(rows * cols, element_as_double<T>{Be::data(mask)}), double(rows), constant};
  if (how == Aggregation::nonempty_sequence_mean)
    w.nonempty_rows = double(rows) - Be::sum(rows, empty_row_count<T>{Be::data(mask), cols}, cols);
  return w;
}

inline void require_valid(std::string_view fn, Aggregation how, double constant, std::string_view constant_name) {
  if (how != Aggregation::token_mean && how != Aggregation::sequence_mean && how != Aggregation::sequence_sum &&
      how != Aggregation::nonempty_sequence_mean)
    fail<config_error>(fn, ": aggregation must be Aggregation::token_mean, ::sequence_mean, ::sequence_sum or "
                           "::nonempty_sequence_mean (got ", static_cast<int>(how), ")");
  if (!(constant > 0) || !std::isfinite(constant))
    fail<config_error>(fn, ": ", constant_name, " must be finite and > 0 (got ", constant, ")");
}

}  // namespace detail::aggregation
}  // namespace rlhf
