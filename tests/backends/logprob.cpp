// The fused sequence log-prob (forward, backward, forward+backward) on every backend against Eigen.
#include "rlhf/models/logprob.hpp"

#include "typed.hpp"

using namespace rlhf;
using namespace rlhf::testing;

namespace {

struct Logits {
  std::size_t batch, time, vocab;
  std::vector<double> logits, mask;
  std::vector<std::int32_t> targets;
  std::size_t rows() const { return batch * time; }
};

// Logits uniform in ±spread; padding rows hold NaN and an out-of-range target (never read); some -inf
// logits away from the targets (probability 0).
Logits logits(std::size_t batch, std::size_t time, std::size_t vocab, double spread, std::uint64_t seed) {
  Logits l{batch,
           time,
           vocab,
           uniform(batch * time * vocab, -spread, spread, seed),
           response_mask(batch, time, seed + 1),
           std::vector<std::int32_t>(batch * time)};
  Rng rng(seed + 2);
  for (std::size_t r = 0; r < l.rows(); ++r) {
    l.targets[r] = static_cast<std::int32_t>(rng.below(vocab));
    double* row = l.logits.data() + r * vocab;
    if (l.mask[r] == 0) {
      l.targets[r] = -100;
      row[rng.below(vocab)] = std::nan("");
    } else if (r % 3 == 0) {
      row[(static_cast<std::size_t>(l.targets[r]) + 1) % vocab] = -INFINITY;
    }
  }
  return l;
}

template <class Be>
struct OnBackend {
  typename Be::matrix logits;
  typename Be::index_vector targets;
  typename Be::vector mask;
  explicit OnBackend(const Logits& l)
      : logits(to_backend<Be>(l.rows(), l.vocab, l.logits)),
        targets(Be::indices_from_host(l.targets)),
        mask(to_backend<Be>(l.mask)) {}
};

template <class Be>
void check_forward(const SequenceLogprobResult<Be>& got, const SequenceLogprobResult<reference_of<Be>>& want) {
  check_tensor<Be>("sequence", got.sequence, want.sequence);
  check_tensor<Be>("tokens", got.tokens, want.tokens);
  check_tensor<Be>("row_max", got.row_max, want.row_max);
  check_tensor<Be>("row_log_sum", got.row_log_sum, want.row_log_sum);
  check_tensor<Be>("response_length", got.response_length, want.response_length);
  check_metrics<Be>(got.metrics, want.metrics);
}

template <class Be>
void check_logprob(const Logits& l) {
  using Ref = reference_of<Be>;
  const OnBackend<Be> in(l);
  const OnBackend<Ref> ref(l);
  const std::size_t n = l.rows();
  const auto upstream = uniform(n, -1, 1, 99);  // d loss / d output: [B] or [B, T]
  for (const auto reduction : {Reduction::sum, Reduction::mean, Reduction::per_token}) {
    CAPTURE(static_cast<int>(reduction));
    const SequenceLogprobConfig c{.reduction = reduction};
    const bool per_token = reduction == Reduction::per_token;
    const std::vector<double> up(upstream.begin(),
                                 upstream.begin() + static_cast<std::ptrdiff_t>(per_token ? n : l.batch));
    const auto fwd = sequence_logprob(in.logits, in.targets, in.mask, l.batch, c);
    const auto ref_fwd = sequence_logprob(ref.logits, ref.targets, ref.mask, l.batch, c);
    check_forward<Be>(fwd, ref_fwd);

    for (const auto write : {GradWrite::overwrite, GradWrite::accumulate}) {
      CAPTURE(static_cast<int>(write));
      // Backward after the forward, and the fused pass, into buffers that start at 0.5 (seen only when accumulating).
      auto d = to_backend<Be>(n, l.vocab, constant(n * l.vocab, 0.5));
      auto d_fused = d;
      auto ref_d = to_backend<Ref>(n, l.vocab, constant(n * l.vocab, 0.5));
      auto ref_d_fused = ref_d;
      if (per_token) {
        const auto g = to_backend<Be>(l.batch, l.time, up);
        const auto ref_g = to_backend<Ref>(l.batch, l.time, up);
        sequence_logprob_backward(d, in.logits, in.targets, in.mask, fwd, g, write);
        sequence_logprob_backward(ref_d, ref.logits, ref.targets, ref.mask, ref_fwd, ref_g, write);
        check_forward<Be>(
            sequence_logprob_with_grad(d_fused, in.logits, in.targets, in.mask, l.batch, g, c, write),
            sequence_logprob_with_grad(ref_d_fused, ref.logits, ref.targets, ref.mask, l.batch, ref_g, c, write));
      } else {
        const auto g = to_backend<Be>(up);
        const auto ref_g = to_backend<Ref>(up);
        sequence_logprob_backward(d, in.logits, in.targets, in.mask, fwd, g, write);
        sequence_logprob_backward(ref_d, ref.logits, ref.targets, ref.mask, ref_fwd, ref_g, write);
        check_forward<Be>(
            sequence_logprob_with_grad(d_fused, in.logits, in.targets, in.mask, l.batch, g, c, write),
            sequence_logprob_with_grad(ref_d_fused, ref.logits, ref.targets, ref.mask, l.batch, ref_g, c, write));
      }
      check_tensor<Be>("d_logits", d, ref_d);
      check_tensor<Be>("d_logits (fused)", d_fused, ref_d_fused);
    }
  }
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("backends/logprob: forward and backward agree with Eigen", Be, logprob_agrees) {
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    check_logprob<Be>(logits(2 + seed, 5 + seed, 37 * seed + 5, 6, seed));  // odd vocabularies: SIMD tails
  }
  check_logprob<Be>(logits(4, 16, 1031, 6, 4));  // rows x vocab above the parallel threshold
}
TEST_CASE_TEMPLATE_APPLY(logprob_agrees, backends_under_test);

TEST_CASE_TEMPLATE_DEFINE("backends/logprob: logits of ±1e4 agree with Eigen and stay finite", Be, logprob_extreme) {
  const auto l = logits(3, 6, 64, 1e4, 5);
  check_logprob<Be>(l);
  const OnBackend<Be> in(l);
  const auto r = sequence_logprob(in.logits, in.targets, in.mask, l.batch);
  for (const double x : to_host_double<Be>(r.sequence)) CHECK(std::isfinite(x));
}
TEST_CASE_TEMPLATE_APPLY(logprob_extreme, backends_under_test);

TEST_CASE_TEMPLATE_DEFINE("backends/logprob: bad input is named the same way", Be, logprob_bad) {
  auto l = logits(2, 4, 16, 3, 6);
  const std::size_t bad_row = l.mask[0] != 0 ? 0 : 4;  // a response row
  l.mask[0] = 1;
  l.targets[bad_row] = 16;
  const OnBackend<Be> in(l);
  CHECK_THROWS_WITH_AS(sequence_logprob(in.logits, in.targets, in.mask, l.batch),
                       doctest::Contains("is outside the vocabulary"), value_error);
}
TEST_CASE_TEMPLATE_APPLY(logprob_bad, backends_under_test);
