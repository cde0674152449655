#pragma once
// The one driver of the per-token losses on [B, T] with a 0/1 mask (ppo.hpp's policy and value losses, kl.hpp's
// estimate): a token kernel gives one token's loss ℓ and its derivative, the aggregation (aggregation.hpp) gives
// each row's weight w_b, and
//
//   loss    = Σ_b w_b Σ_t m[b,t] ℓ(b,t)        summed in double
//   d[b,t]  = w_b · dℓ(b,t)                     0 where m = 0; masked entries are never read
//
// A token kernel is a functor `RLHF_HOST_DEVICE TokenLoss<W> operator()(std::size_t i) const` over the flat index
// i = b·T + t, computing in the wide type W (double for float inputs).
#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/validate.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/losses/aggregation.hpp"

namespace rlhf {

template <class W>
struct TokenLoss {
  W loss;
  W grad;  // d loss / d the token's input
};

namespace detail::token_loss {

// One row of the gradient: the row's weight times each token's derivative. Run once per row.
template <class T, class Token>
struct gradient_row {
  Token token;
  aggregation::Weights weights;
  const T* mask;  // [B, T]
  std::size_t cols;
  T* d;  // [B, T]
  RLHF_HOST_DEVICE void operator()(std::size_t b) const {
    using W = math::wide_t<T>;
    const W w = W(aggregation::row_weight(weights, aggregation::row_tokens(mask, b, cols)));
    for (std::size_t i = b * cols; i < (b + 1) * cols; ++i) d[i] = mask[i] != T(0) ? T(token(i).grad * w) : T(0);
  }
};

// One row's share of the loss: its weight times the sum of its tokens' losses.
template <class T, class Token>
struct loss_row {
  Token token;
  aggregation::Weights weights;
  const T* mask;
  std::size_t cols;
  RLHF_HOST_DEVICE double operator()(std::size_t b) const {
    double total = 0;
    for (std::size_t i = b * cols; i < (b + 1) * cols; ++i)
      if (mask[i] != T(0)) total += static_cast<double>(token(i).loss);
    return total * aggregation::row_weight(weights, aggregation::row_tokens(mask, b, cols));
  }
};

}  // namespace detail::token_loss

// d ← the aggregated loss's gradient [B, T] (d is sized by the caller, like mask).
template <Backend Be, class Token>
void token_loss_gradient(const Token& token, const detail::aggregation::Weights& weights,
                         const typename Be::matrix& mask, typename Be::matrix& d) {
  using T = typename Be::scalar;
  const std::size_t rows = Be::rows(mask), cols = Be::cols(mask);
  Be::for_each(rows, detail::token_loss::gradient_row<T, Token>{token, weights, Be::data(mask), cols, Be::data(d)},
               cols);
}

// The aggregated loss, in double.
template <Backend Be, class Token>
double token_loss_value(const Token& token, const detail::aggregation::Weights& weights,
                        const typename Be::matrix& mask) {
  using T = typename Be::scalar;
  const std::size_t rows = Be::rows(mask), cols = Be::cols(mask);
  return Be::sum(rows, detail::token_loss::loss_row<T, Token>{token, weights, Be::data(mask), cols}, cols);
}

// The inputs of a token loss, checked: a 0/1 mask the shape of the first input, and each input finite where the
// mask is 1 (entries under a 0 are never read).
template <Backend Be>
void require_token_inputs(std::string_view fn, const typename Be::matrix& mask,
                          std::initializer_list<std::pair<const char*, const typename Be::matrix*>> inputs) {
  const auto& [first_name, first] = *inputs.begin();
  const std::string like = detail::cat("'", first_name, "'");
  detail::require_token_mask<Be>(fn, mask, Be::rows(*first), Be::cols(*first), like, detail::MaskRule::any);
  for (const auto& [name, input] : inputs) detail::require_tokens<Be>(fn, name, *input, mask, like);
}

// The checks and row weights every token loss starts from: a valid aggregation (L = `max_tokens` for
// sequence_sum), the inputs as require_token_inputs checks them, then the weights of the mask's rows.
template <Backend Be>
detail::aggregation::Weights token_loss_weights(
    std::string_view fn, Aggregation how, double max_tokens, const typename Be::matrix& mask,
    std::initializer_list<std::pair<const char*, const typename Be::matrix*>> inputs) {
  detail::aggregation::require_valid(fn, how, max_tokens, "max_tokens");
  require_token_inputs<Be>(fn, mask, inputs);
  return detail::aggregation::weights_of<Be>(how, mask, max_tokens);
}

// Both halves at once: d ← the gradient (value_error naming `d_name` and `d_cause` where it exceeds the scalar
// type), then the loss (value_error with `loss_cause` where it exceeds double).
template <Backend Be, class Token>
double token_loss(std::string_view fn, const Token& token, const detail::aggregation::Weights& weights,
                  const typename Be::matrix& mask, typename Be::matrix& d, std::string_view d_name,
                  std::string_view d_cause, std::string_view loss_cause) {
  d = Be::matrix_of(Be::rows(mask), Be::cols(mask));
  token_loss_gradient<Be>(token, weights, mask, d);
  detail::require_representable<Be>(fn, d_name, Be::data(d), Be::rows(d) * Be::cols(d), d_cause);
  const double loss = token_loss_value<Be>(token, weights, mask);
  if (!std::isfinite(loss))
    fail<value_error>(fn, ": the loss (", loss, ") is beyond the range of double: ", loss_cause);
  return loss;
}

}  // namespace rlhf
