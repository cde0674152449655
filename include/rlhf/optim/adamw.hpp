#pragma once
// AdamW: Adam with weight decay decoupled from the gradient (Loshchilov & Hutter, 2019), stepping a flat
// parameter buffer in place. Matches torch.optim.AdamW:
//
//   p ← p − lr·wd·p
//   m ← β1 m + (1 − β1) g,   v ← β2 v + (1 − β2) g²
//   p ← p − lr · (m / (1 − β1^t)) / (√(v / (1 − β2^t)) + ε)
//
// docs/optim/adamw.md. Satisfies rlhf::OptimizerFor<AdamW<T>, P> for every P whose parameters() and
// gradients() convert to std::span<T> and std::span<const T>. state() and restore() carry everything a resumed
// run needs to take the same steps, bit for bit (AdamWState; files: optim/state_file.hpp; docs/optim/state.md).
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "rlhf/core/error.hpp"
#include "rlhf/core/math.hpp"
#include "rlhf/optim/clip.hpp"
#include "rlhf/optim/state.hpp"

namespace rlhf {

struct AdamWConfig {
  float learning_rate = 1e-3f;
  float beta1 = 0.9f;          // decay of the first-moment (mean) estimate
  float beta2 = 0.999f;        // decay of the second-moment estimate
  float epsilon = 1e-8f;       // added to √v̂ so the step stays finite where v̂ = 0
  float weight_decay = 0.01f;  // decoupled: p ← p − lr·wd·p, independent of the gradient
};

// Everything an AdamW holds between steps (torch.optim.AdamW's state_dict names): with the same parameters and
// gradients, an AdamW restored from it takes the same steps as the one it was read from, bit for bit.
template <class T>
struct AdamWState {
  AdamWConfig config;          // as it is now: learning_rate is the one a schedule set last
  std::size_t step = 0;        // t, the updates taken (the bias corrections use it)
  std::vector<T> exp_avg;      // m [n]; empty before the first step
  std::vector<T> exp_avg_sq;   // v [n]
};

namespace detail {
inline void validate_adamw(const AdamWConfig& c, std::string_view fn = "rlhf::AdamW") {
  require_in_range(fn, "learning_rate", c.learning_rate, 0.0, std::numeric_limits<double>::max());
  require_in_range(fn, "beta1", c.beta1, 0.0, 0.999999);
  require_in_range(fn, "beta2", c.beta2, 0.0, 0.999999999);
  require_positive(fn, "epsilon", c.epsilon);
  require_in_range(fn, "weight_decay", c.weight_decay, 0.0, std::numeric_limits<double>::max());
}

// The scalars of update t (≥ 1), in T, computed alike by every AdamW (AdamW<T>; CudaAdamW,
// models/gpt_cuda/adamw.cuh): p ← p·decay − step_size · m / (√v · inv_sqrt_correction2 + eps).
template <class T>
struct AdamWScalars {
  T b1, b2, eps, decay, step_size, inv_sqrt_correction2;
};
template <class T>
AdamWScalars<T> adamw_scalars(const AdamWConfig& c, std::size_t t) {
  const T lr = T(c.learning_rate), b1 = T(c.beta1), b2 = T(c.beta2);
  const T eps = T(c.epsilon), decay = T(1) - lr * T(c.weight_decay);
  const T correction1 = T(1) - T(std::pow(double(c.beta1), double(t)));
  const T correction2 = T(1) - T(std::pow(double(c.beta2), double(t)));
  return {b1, b2, eps, decay, lr / correction1, T(1) / std::sqrt(correction2)};
}

// Update t of one parameter p with gradient g and moments m, v: the one formula of every AdamW, the host loop of
// AdamW<T> and the device kernel of CudaAdamW alike.
template <class T>
RLHF_HOST_DEVICE inline void adamw_update(const AdamWScalars<T>& k, T& p, T g, T& m, T& v) {
  using std::sqrt;
  m = k.b1 * m + (T(1) - k.b1) * g;
  v = k.b2 * v + (T(1) - k.b2) * g * g;
  p = p * k.decay - k.step_size * m / (sqrt(v) * k.inv_sqrt_correction2 + k.eps);
}

// A state some AdamW can be in: a valid config (config_error), moments of one size, empty at step 0
// (shape_error), every value finite and v ≥ 0 (value_error). Messages begin with `fn`.
template <class T>
void validate_adamw_state(std::string_view fn, const AdamWState<T>& s) {
  validate_adamw(s.config, fn);
  require_size(fn, "exp_avg_sq", s.exp_avg_sq.size(), s.exp_avg.size(), "the size of 'exp_avg'");
  if (s.step == 0 && !s.exp_avg.empty())
    fail<shape_error>(fn, ": step is 0 but the moments hold ", s.exp_avg.size(),
                      " values; an AdamW sizes them at its first step");
  require_finite_state(fn, "exp_avg", std::span<const T>(s.exp_avg));
  require_finite_state(fn, "exp_avg_sq", std::span<const T>(s.exp_avg_sq), /*nonnegative=*/true);
}
}  // namespace detail

template <class T = float>
class AdamW {
 public:
  using scalar = T;

  explicit AdamW(const AdamWConfig& config = {}) : config_(config) { detail::validate_adamw(config_); }

  // One update of params from grads (same length). The moments are sized on the first step; a later
  // step with a different length throws, since the state would belong to other parameters.
  void step(std::span<T> params, std::span<const T> grads) {
    constexpr const char* fn = "rlhf::AdamW::step";
    detail::begin_optimizer_step(fn, params, grads, m_.size(), [&] {
      m_.assign(params.size(), T(0));
      v_.assign(params.size(), T(0));
    });
    ++t_;
    const auto k = detail::adamw_scalars<T>(config_, t_);
    T* p = params.data();
    const T* g = grads.data();
    T* m = m_.data();
    T* v = v_.data();
    for (std::size_t i = 0, n = params.size(); i < n; ++i) detail::adamw_update(k, p[i], g[i], m[i], v[i]);
  }

  const AdamWConfig& config() const { return config_; }
  void set_learning_rate(float lr) {  // for schedules; keeps the moments
    require_in_range("rlhf::AdamW::set_learning_rate", "learning_rate", lr, 0.0, std::numeric_limits<double>::max());
    config_.learning_rate = lr;
  }
  std::size_t steps() const { return t_; }
  std::span<const T> first_moment() const { return m_; }   // [n], empty before the first step
  std::span<const T> second_moment() const { return v_; }  // [n]

  // A copy of everything the next step depends on.
  AdamWState<T> state() const { return {config_, t_, m_, v_}; }
  // Continues from `s` (config, learning rate, step and moments); the next step must be on as many parameters as
  // the moments hold. Throws (validate_adamw_state) before anything changes.
  void restore(AdamWState<T> s) {
    detail::validate_adamw_state("rlhf::AdamW::restore", s);
    config_ = s.config;
    t_ = s.step;
    m_ = std::move(s.exp_avg);
    v_ = std::move(s.exp_avg_sq);
  }

  void reset() {
    m_.clear();
    v_.clear();
    t_ = 0;
  }

 private:
  AdamWConfig config_;
  std::vector<T> m_, v_;  // [n] each
  std::size_t t_ = 0;
};

}  // namespace rlhf
