#pragma once
// AdamW on the GPU: rlhf::AdamW's update (detail::adamw_update in optim/adamw.hpp, the CPU reference's own
// formula) on device spans, one thread per parameter, moments in device memory.
// Satisfies rlhf::OptimizerFor<CudaAdamW, GptCuda>:
//   opt.step(model.parameters(), model.gradients())   // std::span<float>, std::span<const float>, device memory
// state() and restore() go through rlhf::AdamWState<float> on the host, the same value (and, through
// optim/state_file.hpp, the same file) as rlhf::AdamW<float>'s, so either optimizer resumes from the other's state.
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "rlhf/models/gpt_cuda/common.cuh"
#include "rlhf/optim/adamw.hpp"

namespace rlhf {

namespace gpt_cuda {

static __global__ void adamw_kernel(float* p, const float* g, float* m, float* v, std::size_t n,
                                    detail::AdamWScalars<float> k) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) detail::adamw_update(k, p[i], g[i], m[i], v[i]);
}

}  // namespace gpt_cuda

class CudaAdamW {
 public:
  using scalar = float;

  explicit CudaAdamW(const AdamWConfig& config = {}) : config_(config) { detail::validate_adamw(config_); }

  // One update of params from grads, both device memory of the same length. The moments are sized (and
  // zeroed) on the first step; a later step with another length throws.
  void step(std::span<float> params, std::span<const float> grads) {
    constexpr const char* fn = "rlhf::CudaAdamW::step";
    const auto size_state = [&] {
      m_.resize(params.size()), v_.resize(params.size());
      m_.zero(), v_.zero();
      n_ = params.size();
    };
    detail::begin_optimizer_step(fn, params, grads, m_.size(), size_state, /*host_gradients=*/false);
    ++t_;
    const auto k = detail::adamw_scalars<float>(config_, t_);  // the scalars of rlhf::AdamW, by the same code
    if (n_ == 0) return;
    gpt_cuda::adamw_kernel<<<gpt_cuda::ceil_div(n_, 256), 256>>>(params.data(), grads.data(), m_.data(), v_.data(), n_,
                                                                 k);
    RLHF_CUDA_CHECK(cudaGetLastError());
  }

  const AdamWConfig& config() const { return config_; }
  void set_learning_rate(float lr) {
    require_in_range("rlhf::CudaAdamW::set_learning_rate", "learning_rate", lr, 0.0,
                     std::numeric_limits<double>::max());
    config_.learning_rate = lr;
  }
  std::size_t steps() const { return t_; }
  // Host copies of the moments [n] (empty before the first step).
  std::vector<float> first_moment() const { return to_host(m_); }
  std::vector<float> second_moment() const { return to_host(v_); }

  // A host copy of everything the next step depends on.
  AdamWState<float> state() const { return {config_, t_, first_moment(), second_moment()}; }
  // Continues from `s` (validated as rlhf::AdamW::restore does, before anything changes); the moments are
  // uploaded to new device buffers, so a failed upload leaves this optimizer as it was.
  void restore(const AdamWState<float>& s) {
    detail::validate_adamw_state("rlhf::CudaAdamW::restore", s);
    const std::size_t n = s.exp_avg.size();
    gpt_cuda::device_buffer<float> m(n), v(n);
    m.upload(s.exp_avg.data(), n);
    v.upload(s.exp_avg_sq.data(), n);
    m_ = std::move(m), v_ = std::move(v);
    n_ = n, t_ = s.step;
    config_ = s.config;
  }

  void reset() {
    m_ = {}, v_ = {};
    n_ = t_ = 0;
  }

 private:
  std::vector<float> to_host(const gpt_cuda::device_buffer<float>& b) const {
    std::vector<float> h(n_);
    if (m_.size()) b.download(h.data(), n_);
    return h;
  }

  AdamWConfig config_;
  gpt_cuda::device_buffer<float> m_, v_;  // [n] each
  std::size_t n_ = 0, t_ = 0;
};

}  // namespace rlhf
