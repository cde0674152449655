#pragma once
// The seams of the library, as concepts. Each is as small as the algorithms allow; docs/concepts.md
// shows the smallest class that satisfies each one.
#include <concepts>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "rlhf/core/batch.hpp"
#include "rlhf/core/rng.hpp"

namespace rlhf {

// ---- Backend: where the numbers live --------------------------------------------------------------
// A backend is a class with static members only. Losses are written once as per-element kernels
// (functors with operator()(std::size_t i)) run by for_each, plus sums; docs/backends.md.
namespace detail {
struct index_probe {  // stands in for a loss kernel when the concept is checked
  void operator()(std::size_t) const {}
};
struct sum_probe {
  double operator()(std::size_t) const { return 0.0; }
};
}  // namespace detail

template <class Be>
concept Backend = requires(std::size_t n, typename Be::vector& v, const typename Be::vector& cv,
                           typename Be::matrix& m, const typename Be::matrix& cm,
                           const typename Be::index_vector& ci, std::vector<typename Be::scalar> host) {
  typename Be::scalar;        // float or double
  typename Be::vector;        // owning, 1-D
  typename Be::matrix;        // owning, 2-D, row-major
  typename Be::index_vector;  // owning, 1-D, std::int32_t
  { Be::vector_of(n) } -> std::same_as<typename Be::vector>;     // zero-filled [n]
  { Be::matrix_of(n, n) } -> std::same_as<typename Be::matrix>;  // zero-filled [rows, cols]
  { Be::size(cv) } -> std::convertible_to<std::size_t>;
  { Be::rows(cm) } -> std::convertible_to<std::size_t>;
  { Be::cols(cm) } -> std::convertible_to<std::size_t>;
  { Be::size(ci) } -> std::convertible_to<std::size_t>;
  { Be::data(v) } -> std::same_as<typename Be::scalar*>;
  { Be::data(cv) } -> std::same_as<const typename Be::scalar*>;
  { Be::data(m) } -> std::same_as<typename Be::scalar*>;
  { Be::data(cm) } -> std::same_as<const typename Be::scalar*>;
  { Be::data(ci) } -> std::same_as<const std::int32_t*>;
  { Be::to_host(cv) } -> std::same_as<std::vector<typename Be::scalar>>;
  { Be::from_host(host) } -> std::same_as<typename Be::vector>;
  Be::for_each(n, detail::index_probe{});                               // f(i) for i in [0, n)
  { Be::sum(n, detail::sum_probe{}) } -> std::convertible_to<double>;  // Σ f(i), accumulated in double
};

// Maps a tensor type to its backend (specialised in each backends/*.hpp), so losses deduce the
// backend from their arguments: rlhf::dpo_loss(pairs) works for Eigen, xtensor and Thrust alike.
template <class Tensor>
struct backend_of;
template <class Tensor>
using backend_of_t = typename backend_of<std::remove_cvref_t<Tensor>>::type;

// ---- Policies: what an algorithm needs from a model ----------------------------------------------
// Per-token log p(token | prefix) of a batch, [B, T], zero where response_mask is 0.
template <class P>
concept HasBackend = requires { typename P::backend; } && Backend<typename P::backend>;

template <class P>
concept HasLogProbs = HasBackend<P> && requires(P& p, const TokenBatch& b) {
  { p.log_probs(b) } -> std::same_as<typename P::backend::matrix>;
};
template <class P>
concept Policy = HasLogProbs<P>;

// Accumulates parameter gradients for d loss / d log p [B, T]; exposes parameters for an optimizer.
template <class P>
concept HasBackward = HasBackend<P> && requires(P& p, const TokenBatch& b, const typename P::backend::matrix& g) {
  p.zero_grad();
  p.backward(b, g);
};
template <class P>
concept HasParameters = requires(P& p) {
  p.parameters();
  p.gradients();
};
template <class P>
concept TrainablePolicy = Policy<P> && HasBackward<P> && HasParameters<P>;

// Continues each prompt with sampled tokens; the result marks the sampled tokens as the response.
template <class P>
concept SamplingPolicy = requires(P& p, const PromptBatch& x, const SampleOptions& o, Rng& r) {
  { p.sample(x, o, r) } -> std::same_as<TokenBatch>;
};

// What the critic and the reward model have besides their forward and backward: a backend, and parameters with
// gradients that zero_grad() clears.
template <class M>
concept HasTrainableParameters = HasBackend<M> && HasParameters<M> && requires(M& m) { m.zero_grad(); };

// PPO's critic: a value V(prefix) for every position [B, T], and its backward.
template <class M>
concept ValueModel = HasTrainableParameters<M> &&
                     requires(M& m, const TokenBatch& b, const typename M::backend::matrix& g) {
                       { m.values(b) } -> std::same_as<typename M::backend::matrix>;
                       m.backward_values(b, g);
                     };

// A trained scorer: one scalar reward per sequence [B], and its backward (reward-model training and PPO).
template <class M>
concept RewardModel = HasTrainableParameters<M> &&
                      requires(M& m, const TokenBatch& b, const typename M::backend::vector& d) {
                        { m.scores(b) } -> std::same_as<typename M::backend::vector>;
                        m.backward_scores(b, d);
                      };

// A model that can stand in every role the algorithms give one: the policy trained and sampled from, PPO's value
// model and the reward model (the bundled model families are each of them).
template <class M>
concept EveryRoleModel = TrainablePolicy<M> && SamplingPolicy<M> && ValueModel<M> && RewardModel<M>;

// An optimizer updates parameters in place from their gradients.
template <class O, class P>
concept OptimizerFor = HasParameters<P> && requires(O& o, P& p) { o.step(p.parameters(), p.gradients()); };

}  // namespace rlhf

// One static_assert per requirement, each naming the missing member and the docs page: nvcc reports
// only that a constraint failed, and g++'s report is pages long. Use at every algorithm entry point.
#define RLHF_REQUIRE_POLICY(P, where)                                                                   \
  static_assert(::rlhf::HasBackend<P>, where ": the policy type has no member type 'backend' naming an "   \
                                             "rlhf backend (e.g. using backend = rlhf::eigen<float>;); "  \
                                             "see docs/concepts.md#policy");                              \
  static_assert(::rlhf::HasLogProbs<P>, where ": the policy type has no member "                         \
                                              "'log_probs(const rlhf::TokenBatch&)' returning backend::matrix " \
                                              "of per-token log-probs [B,T]; see docs/concepts.md#policy")

#define RLHF_REQUIRE_TRAINABLE_POLICY(P, where)                                                         \
  RLHF_REQUIRE_POLICY(P, where);                                                                          \
  static_assert(::rlhf::HasBackward<P>, where ": the policy type has no members 'zero_grad()' and "        \
                                              "'backward(const rlhf::TokenBatch&, const backend::matrix&)'; " \
                                              "see docs/concepts.md#trainablepolicy");                     \
  static_assert(::rlhf::HasParameters<P>, where ": the policy type has no members 'parameters()' and "     \
                                                "'gradients()'; see docs/concepts.md#trainablepolicy")

#define RLHF_REQUIRE_SAMPLING_POLICY(P, where)                                                          \
  static_assert(::rlhf::SamplingPolicy<P>, where ": the policy type has no member "                        \
                                                 "'sample(const rlhf::PromptBatch&, const rlhf::SampleOptions&, " \
                                                 "rlhf::Rng&)' returning rlhf::TokenBatch; "                \
                                                 "see docs/concepts.md#samplingpolicy")

#define RLHF_REQUIRE_VALUE_MODEL(M, where)                                                              \
  static_assert(::rlhf::ValueModel<M>, where ": the value model has no members 'values(const rlhf::TokenBatch&)', " \
                                             "'zero_grad()', 'backward_values(batch, d_values)', "          \
                                             "'parameters()' and 'gradients()'; see docs/concepts.md#valuemodel")

#define RLHF_REQUIRE_REWARD_MODEL(M, where)                                                             \
  static_assert(::rlhf::RewardModel<M>, where ": the reward model has no members 'using backend', "         \
                                              "'scores(const rlhf::TokenBatch&)' returning backend::vector [B], " \
                                              "'zero_grad()', 'backward_scores(batch, d_scores)', "          \
                                              "'parameters()' and 'gradients()'; see docs/concepts.md#rewardmodel")

#define RLHF_REQUIRE_OPTIMIZER(O, P, where)                                                             \
  static_assert(::rlhf::OptimizerFor<O, P>, where ": the optimizer has no member 'step(params, grads)' "    \
                                                  "accepting the model's parameters() and gradients(); "     \
                                                  "see docs/concepts.md#optimizer")

// A training step's two: P a TrainablePolicy, O an optimizer of its parameters.
#define RLHF_REQUIRE_TRAINING_STEP(P, O, where) \
  RLHF_REQUIRE_TRAINABLE_POLICY(P, where);      \
  RLHF_REQUIRE_OPTIMIZER(O, P, where)
