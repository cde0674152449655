#pragma once
// Supervised fine-tuning on preferred responses (preferred-FT / SFT): the negative log-likelihood of
// the response tokens, on per-token log-probabilities [B, T] with a 0/1 mask.
//
//   per sequence b:  ℓ_b = −Σ_t m[b,t] log p[b,t],  n_b = Σ_t m[b,t]
//   loss = (1/B) Σ_b ℓ_b                 (aggregation = sequence_sum, L = 1: the default)
//        = (1/B) Σ_b ℓ_b / n_b           (sequence_mean)
//        = Σ_b ℓ_b / Σ_b n_b             (token_mean: TRL SFTTrainer, OpenRLHF GPTLMLoss)
//        = Σ_b ℓ_b                       (token_sum: what a fairseq criterion returns)
// docs/losses/sft.md has the settings. The masked-row machinery here is shared with unlikelihood.hpp.

#include <cstddef>
#include <utility>
#include <vector>

#include "rlhf/core/concepts.hpp"
#include "rlhf/core/elements.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/core/metric_names.hpp"
#include "rlhf/core/metrics.hpp"
#include "rlhf/core/reduction.hpp"
#include "rlhf/core/validate.hpp"

namespace rlhf {

struct SftConfig {
  // sequence_sum (L = 1), sequence_mean, token_mean or token_sum; not nonempty_sequence_mean
  Aggregation aggregation = Aggregation::sequence_sum;
};

template <class Matrix>
struct SftResult {
  double loss = 0;             // the rows' ℓ_b aggregated as SftConfig::aggregation says
  std::vector<double> losses;  // [B] ℓ_b per row (ℓ_b / n_b under sequence_mean), on the host in double (a row's
                               // total may exceed float)
  Matrix d_logp;               // [B, T] d loss / d log p; zero where the mask is 0
  Metrics metrics;             // nll/token (Σ NLL / Σ tokens over the batch), tokens (response tokens in the batch)
};

// One token's term of a masked sum and its derivative with respect to the token's log-prob.
template <class T>
struct TokenTerm {
  T value, grad;
};

// −log p: the negative log-likelihood of one token.
struct NllToken {
  template <class T>
  RLHF_HOST_DEVICE TokenTerm<T> operator()(T logp) const {
    return {-logp, T(-1)};
  }
};

struct MaskedRowLoss {
  double loss;    // the row's reduced loss ℓ_b
  double total;   // Σ_t m term(log p), before the reduction
  double tokens;  // Σ_t m
};

// One sequence: ℓ = reduce_t(m_t · term(log p_t)); writes d[t] = scale · d ℓ / d log p_t (0 where m_t = 0).
// Masked entries are skipped, never multiplied by 0, so NaN or -inf padding cannot leak in.
// The row must hold at least one token (the entry points check this).
template <class T, class Term>
RLHF_HOST_DEVICE inline MaskedRowLoss masked_row_loss(Term term, const T* logp, const T* mask, std::size_t cols,
                                                      Reduction reduction, T scale, T* d) {
  double total = 0, tokens = 0;
  for (std::size_t t = 0; t < cols; ++t) {
    if (mask[t] != T(0)) {
      const TokenTerm<T> k = term(logp[t]);
      total += static_cast<double>(k.value);
      tokens += 1;
      d[t] = k.grad;
    } else {
      d[t] = T(0);
    }
  }
  const double per_token = reduction == Reduction::mean && tokens > 0 ? 1.0 / tokens : 1.0;
  const T g = scale * T(per_token);
  for (std::size_t t = 0; t < cols; ++t) d[t] *= g;
  return {total * per_token, total, tokens};
}

// Helpers shared by sft.hpp and unlikelihood.hpp, in their own namespace to keep clear of other losses'.
namespace detail::tok {
template <class T, class Term>
struct MaskedRowKernel {
  Term term;
  const T *logp, *mask;  // [B, T]
  std::size_t cols;      // T
  Reduction reduction;
  T scale;                   // d (batch loss) / d ℓ_b
  T* d;                      // [B, T]
  T *row_mean, *row_tokens;  // [B] each

  // The row's mean term, not its total: a mean of finite terms always fits T, where a total (Σ of log-probs
  // of −3e38, say) may not; the host multiplies back in double.
  RLHF_HOST_DEVICE void operator()(std::size_t i) const {
    const MaskedRowLoss r =
        masked_row_loss<T>(term, logp + i * cols, mask + i * cols, cols, reduction, scale, d + i * cols);
    row_mean[i] = r.tokens > 0 ? T(r.total / r.tokens) : T(0);  // a row with no token (token_mean, token_sum)
    row_tokens[i] = T(r.tokens);
  }
};

template <class T>
struct masked_row_product {
  const T *a, *b;
  RLHF_HOST_DEVICE double operator()(std::size_t i) const { return static_cast<double>(a[i]) * b[i]; }
};

inline void require_aggregation(const char* fn, Aggregation how) {
  if (how != Aggregation::sequence_sum && how != Aggregation::sequence_mean && how != Aggregation::token_mean &&
      how != Aggregation::token_sum)
    fail<config_error>(fn, ": aggregation must be Aggregation::sequence_sum, ::sequence_mean, ::token_mean or "
                           "::token_sum (got ", static_cast<int>(how), ")");
}

// Each row's tokens are averaged under sequence_mean and summed under the other points.
inline Reduction row_reduction(Aggregation how) {
  return how == Aggregation::sequence_mean ? Reduction::mean : Reduction::sum;
}

// Checks for a per-token input and its mask: same shape, non-empty batch, 0/1 mask, finite where the
// mask is 1. A row with no token (an empty completion) is valid where the peers take it, under token_sum or
// token_mean (ℓ_b = 0); under sequence_sum and sequence_mean every row needs a token, and token_mean needs one in
// the batch.
template <Backend Be>
void validate_masked_tokens(const char* fn, const char* logp_name, const typename Be::matrix& logp,
                            const char* mask_name, const typename Be::matrix& mask, Aggregation how) {
  require_nonempty(fn, logp_name, Be::rows(logp));
  require_shape<Be>(fn, mask_name, mask, Be::rows(logp), Be::cols(logp), cat("'", logp_name, "'"));
  const std::size_t n = Be::rows(logp) * Be::cols(logp);
  require_mask<Be>(fn, mask_name, Be::data(mask), n);
  require_finite_where_masked<Be>(fn, logp_name, Be::data(logp), Be::data(mask), n);
  if (how == Aggregation::sequence_sum || how == Aggregation::sequence_mean) {
    require_no_empty_rows<Be>(fn, mask_name, mask);
  } else if (how == Aggregation::token_mean &&
             Be::sum(n, element_as_double<typename Be::scalar>{Be::data(mask)}) == 0) {
    fail<value_error>(fn, ": '", mask_name, "' sets no token in the whole batch; token_mean divides by their count");
  }
}

struct MaskedBatch {
  double loss;                // the rows' ℓ_b aggregated over the batch, before any outer weight
  double total;               // Σ_b Σ_t m term
  double tokens;              // Σ_b Σ_t m
  std::vector<double> rows;   // [B] ℓ_b
};

// Runs `term` over every row and aggregates the rows; fills d with weight · d loss / d log p.
template <class Be, class Term>
MaskedBatch masked_rows(Term term, const typename Be::matrix& logp, const typename Be::matrix& mask, Aggregation how,
                        double weight, typename Be::matrix& d) {
  using T = typename Be::scalar;
  const std::size_t rows = Be::rows(logp), cols = Be::cols(logp);
  const Reduction reduction = row_reduction(how);
  const double mask_tokens =
      how == Aggregation::token_mean ? Be::sum(rows * cols, element_as_double<T>{Be::data(mask)}) : 0.0;
  const double per_batch = how == Aggregation::sequence_sum || how == Aggregation::sequence_mean
                               ? 1.0 / static_cast<double>(rows)
                           : how == Aggregation::token_mean ? 1.0 / mask_tokens
                                                            : 1.0;
  d = Be::matrix_of(rows, cols);
  typename Be::vector row_mean = Be::vector_of(rows), row_tokens = Be::vector_of(rows);
  Be::for_each(rows,
               MaskedRowKernel<T, Term>{term, Be::data(logp), Be::data(mask), cols, reduction, T(weight * per_batch),
                                        Be::data(d), Be::data(row_mean), Be::data(row_tokens)},
               cols);
  MaskedBatch out;
  out.total = Be::sum(rows, masked_row_product<T>{Be::data(row_mean), Be::data(row_tokens)});
  out.tokens = Be::sum(rows, element_as_double<T>{Be::data(row_tokens)});
  const double summed =
      reduction == Reduction::mean ? Be::sum(rows, element_as_double<T>{Be::data(row_mean)}) : out.total;
  out.loss = summed * per_batch;
  const auto mean_host = Be::to_host(row_mean), tokens_host = Be::to_host(row_tokens);
  out.rows.resize(rows);
  for (std::size_t b = 0; b < rows; ++b) {
    const double mean = static_cast<double>(mean_host[b]);
    out.rows[b] = reduction == Reduction::mean ? mean : mean * static_cast<double>(tokens_host[b]);
  }
  return out;
}
}  // namespace detail::tok

// logps: [B, T] per-token log p of the response; mask: [B, T], 1 on response tokens, 0 elsewhere.
template <class Matrix, class Be = backend_of_t<Matrix>>
SftResult<Matrix> sft_loss(const Matrix& logps, const Matrix& mask, const SftConfig& config = {}) {
  constexpr const char* fn = "rlhf::sft_loss";
  detail::tok::require_aggregation(fn, config.aggregation);
  detail::tok::validate_masked_tokens<Be>(fn, "logps", logps, "mask", mask, config.aggregation);
  SftResult<Matrix> out;
  detail::tok::MaskedBatch s =
      detail::tok::masked_rows<Be>(NllToken{}, logps, mask, config.aggregation, 1.0, out.d_logp);
  out.loss = s.loss;
  out.losses = std::move(s.rows);
  out.metrics.set(metric::nll_token, s.total / s.tokens, Combine::token_mean, s.tokens);
  out.metrics.set(metric::tokens, s.tokens, Combine::sum);
  return out;
}

}  // namespace rlhf
