#pragma once
// The GPT-2 policy on the GPU: the CPU model (models/gpt/model.hpp) kernel for kernel, on one contiguous
// parameter buffer in device memory with the CPU model's layout (params.hpp), so moving a model between the
// two is one copy. docs/models/gpt_cuda.md.
//
// It is a TrainablePolicy, a SamplingPolicy and (with config.scalar_head) a ValueModel and a RewardModel on the
// backend rlhf::thrust_cuda<float>: log_probs returns a Thrust-CUDA matrix [B, T] in device memory, backward
// takes one, parameters() and gradients() are std::span<float> over device memory (for rlhf::CudaAdamW; never
// dereference them on the host). The algorithms (rlhf::dpo_step, sft_step, ppo_step, ...) train it unchanged.
//
// Same contract as the CPU model: padding through TokenBatch::attention_mask (positions count real tokens,
// padding is never attended); a backward uses the activations of the last forward, which must have been on the
// same batch (checked); activation buffers grow to the largest batch seen and are reused. One model, one host
// thread; all work on the default stream.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "rlhf/backends/thrust.hpp"
#include "rlhf/core/batch.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/core/validate.hpp"
#include "rlhf/models/gpt/config.hpp"
#include "rlhf/models/gpt/params.hpp"
#include "rlhf/models/gpt_cuda/adamw.cuh"
#include "rlhf/models/gpt_cuda/attention.cuh"
#include "rlhf/models/gpt_cuda/common.cuh"
#include "rlhf/models/gpt_cuda/encoder.cuh"
#include "rlhf/models/gpt_cuda/gelu.cuh"
#include "rlhf/models/gpt_cuda/head.cuh"
#include "rlhf/models/gpt_cuda/layernorm.cuh"
#include "rlhf/models/gpt_cuda/logprob.cuh"
#include "rlhf/models/gpt_cuda/matmul.cuh"
#include "rlhf/models/gpt_cuda/residual.cuh"
#include "rlhf/models/gpt_cuda/sampler.cuh"

namespace rlhf {

struct GptCudaOptions {
  GemmPrecision precision = GemmPrecision::tf32;  // tf32: tensor cores; fp32: exact float products (matmul.cuh)
};

// GPT-2's initialisation from a seed, identical to rlhf::Gpt<float>::initialize (model.hpp), on the host:
// weights N(0, 0.02) (the two residual projections 0.02/√(2L)), biases 0, LayerNorm weights 1.
inline std::vector<float> gpt_initial_parameters(const GptConfig& config, std::uint64_t seed) {
  std::vector<float> params(gpt_param_count(config), 0.0f);
  Rng rng(seed);
  const double std_w = 0.02, std_proj = 0.02 / std::sqrt(2.0 * double(config.layers));
  for (const auto& t : gpt_param_layout(config)) {
    float* p = params.data() + t.offset;
    const bool ln_weight = t.name == "ln1w" || t.name == "ln2w" || t.name == "lnfw";
    const bool bias = t.name.back() == 'b';
    const double sd = (t.name == "attprojw" || t.name == "fcprojw") ? std_proj : std_w;
    for (std::size_t i = 0; i < t.size; ++i) p[i] = ln_weight ? 1.0f : bias ? 0.0f : float(sd * rng.normal());
  }
  return params;
}

class GptCuda {
 public:
  using backend = rlhf::thrust_cuda<float>;
  using scalar = float;
  using matrix = backend::matrix;
  using vector = backend::vector;

  explicit GptCuda(const GptConfig& config, std::uint64_t seed = 0, const GptCudaOptions& options = {})
      : config_(config), options_(options) {
    config_.validate("rlhf::GptCuda");
    blas_ = std::make_unique<gpt_cuda::Blas>(options_.precision);
    params_.resize(gpt_param_count(config_));
    grads_.resize(params_.size());
    grads_.zero();
    flag_.resize(1);
    initialize(seed);
  }

  const GptConfig& config() const { return config_; }
  const GptCudaOptions& options() const { return options_; }
  std::span<float> parameters() { return {params_.data(), params_.size()}; }  // device memory
  std::span<const float> parameters() const { return {params_.data(), params_.size()}; }
  std::span<float> gradients() { return {grads_.data(), grads_.size()}; }  // device memory
  std::span<const float> gradients() const { return {grads_.data(), grads_.size()}; }
  GptTensors<float> params() { return gpt_tensors(params_.data(), config_); }  // device pointers
  GptTensors<const float> params() const { return gpt_tensors<const float>(params_.data(), config_); }
  GptTensors<float> grads() { return gpt_tensors(grads_.data(), config_); }
  void zero_grad() { grads_.zero(); }

  void initialize(std::uint64_t seed) { set_parameters(gpt_initial_parameters(config_, seed)); }

  // Host ↔ device copies of the whole buffer (layout of params.hpp): one cudaMemcpy each.
  void set_parameters(std::span<const float> host) {
    require_size("rlhf::GptCuda::set_parameters", "host", host.size(), params_.size(), "gpt_param_count(config)");
    params_.upload(host.data(), host.size());
  }
  std::vector<float> parameters_to_host() const {
    std::vector<float> h(params_.size());
    params_.download(h.data(), h.size());
    return h;
  }
  std::vector<float> gradients_to_host() const {
    std::vector<float> h(grads_.size());
    grads_.download(h.data(), h.size());
    return h;
  }

  // ---- Policy ------------------------------------------------------------------------------------------------
  // [B, T] on the device: log p(tokens[b,t] | real tokens of row b before t) where response_mask is 1, else 0.
  matrix log_probs(const TokenBatch& batch) {
    constexpr const char* fn = "rlhf::GptCuda::log_probs";
    forward_trunk(batch, fn);
    const std::size_t C = config_.channels, V = config_.vocab_size, M = n_rows_;
    gpt_cuda::gather_rows(lnf_rows_.data(), act_.lnf, d_src_.data(), M, C);
    // logits [M, V] = lnf rows · wteᵀ: column-major logits^T [V, M] = (wte as column-major [C, V])^T · rows^T
    gpt_cuda::gemm(*blas_, true, false, V, M, C, params().wte, C, lnf_rows_.data(), C, logits_.data(), V, 0.0f);
    matrix out = backend::matrix_of(batch.batch, batch.time);
    gpt_cuda::logprob_forward(backend::data(out), row_max_.data(), row_log_sum_.data(), logits_.data(),
                              d_targets_.data(), d_dst_.data(), M, V);
    if (!gpt_cuda::all_finite_at(flag_.data(), backend::data(out), d_dst_.data(), M)) {
      const std::size_t at = first_non_finite(backend::to_host(out));
      fail<value_error>(fn, ": log-prob of token [", at / batch.time, ",", at % batch.time,
                        "] is not finite; the parameters hold NaN or Inf");
    }
    logits_ready_ = true;
    return out;
  }

  // Accumulates parameter gradients for d loss / d log_probs [B, T] (device; entries where response_mask is 0
  // are ignored). Consumes the logits of the last log_probs(batch): one backward per log_probs.
  void backward(const TokenBatch& batch, const matrix& d_logps) {
    constexpr const char* fn = "rlhf::GptCuda::backward";
    require_same_batch(batch, fn);
    if (!logits_ready_)
      fail<value_error>(fn, ": no log_probs(batch) since the last backward on this batch; call log_probs first "
                            "(backward consumes the logits of one log_probs)");
    detail::require_shape<backend>(fn, "d_logps", d_logps, batch.batch, batch.time, "the batch [B, T]");
    const std::size_t C = config_.channels, V = config_.vocab_size, M = n_rows_, N = batch.batch * batch.time;
    require_finite_at(fn, "d_logps", backend::data(d_logps), batch.time);
    gpt_cuda::logprob_backward(logits_.data(), d_targets_.data(), d_dst_.data(), backend::data(d_logps),
                               row_max_.data(), row_log_sum_.data(), M, V);  // logits_ now holds d logits [M, V]
    logits_ready_ = false;
    float* d_rows = act_.d_atty;  // [M, C], free until the trunk backward
    // d rows [M, C] = dlogits · wte: column-major d rows^T [C, M] = (wte as column-major [C, V]) · dlogits^T
    gpt_cuda::gemm(*blas_, false, false, C, M, V, params().wte, C, logits_.data(), V, d_rows, C, 0.0f);
    // d wte [V, C] += dlogitsᵀ · rows: column-major d wte^T [C, V] += rows^T [C, M] · dlogits [M, V]
    gpt_cuda::gemm(*blas_, false, true, C, V, M, lnf_rows_.data(), C, logits_.data(), V, grads().wte, C, 1.0f);
    RLHF_CUDA_CHECK(cudaMemset(act_.d_ln, 0, N * C * sizeof(float)));
    gpt_cuda::scatter_add_rows(act_.d_ln, d_rows, d_src_.data(), M, C);
    trunk_backward();
  }

  // [B·T, V] on the device: the logits at every position (padding included), for inspection and parity tests.
  matrix logits(const TokenBatch& batch) {
    forward_trunk(batch, "rlhf::GptCuda::logits", false);
    const std::size_t N = batch.batch * batch.time, C = config_.channels, V = config_.vocab_size;
    matrix out = backend::matrix_of(N, V);
    gpt_cuda::gemm(*blas_, true, false, V, N, C, params().wte, C, act_.lnf, C, backend::data(out), V, 0.0f);
    trunk_ready_ = false;  // not a scoring forward: nothing to differentiate
    return out;
  }

  // ---- ValueModel (scalar head) ------------------------------------------------------------------------------
  // [B, T]: V(prefix) = head(final hidden state of the last real position before t) for each response token t.
  matrix values(const TokenBatch& batch) {
    constexpr const char* fn = "rlhf::GptCuda::values";
    require_head(fn);
    forward_trunk(batch, fn);
    matrix out = backend::matrix_of(batch.batch, batch.time);
    const auto p = params();
    gpt_cuda::head_forward(backend::data(out), act_.lnf, p.headw, p.headb, d_src_.data(), d_dst_.data(), n_rows_,
                           config_.channels);
    return out;
  }

  void backward_values(const TokenBatch& batch, const matrix& d_values) {
    constexpr const char* fn = "rlhf::GptCuda::backward_values";
    require_head(fn);
    require_same_batch(batch, fn);
    detail::require_shape<backend>(fn, "d_values", d_values, batch.batch, batch.time, "the batch [B, T]");
    require_finite_at(fn, "d_values", backend::data(d_values), batch.time);
    head_backward(backend::data(d_values), d_src_.data(), d_dst_.data(), n_rows_);
  }

  // ---- RewardModel (scalar head) -----------------------------------------------------------------------------
  // [B]: head(final hidden state at the last response token of each row).
  vector scores(const TokenBatch& batch) {
    constexpr const char* fn = "rlhf::GptCuda::scores";
    require_head(fn);
    forward_trunk(batch, fn);
    vector out = backend::vector_of(batch.batch);
    const auto p = params();
    gpt_cuda::head_forward(backend::data(out), act_.lnf, p.headw, p.headb, d_last_.data(), d_iota_.data(),
                           batch.batch, config_.channels);
    return out;
  }

  void backward_scores(const TokenBatch& batch, const vector& d_scores) {
    constexpr const char* fn = "rlhf::GptCuda::backward_scores";
    require_head(fn);
    require_same_batch(batch, fn);
    require_size(fn, "d_scores", backend::size(d_scores), batch.batch, "the batch size B");
    const auto host = backend::to_host(d_scores);
    for (std::size_t b = 0; b < host.size(); ++b)
      if (!std::isfinite(host[b])) fail<value_error>(fn, ": upstream gradient ", host[b], " is not finite");
    head_backward(backend::data(d_scores), d_last_.data(), d_iota_.data(), batch.batch);
  }

  // ---- SamplingPolicy ------------------------------------------------------------------------------------------
  // Continues each prompt (KV cache on the device; sampler.cuh). Leaves the training activations alone.
  TokenBatch sample(const PromptBatch& prompts, const SampleOptions& options, Rng& rng) {
    return sampler_.sample(*blas_, std::as_const(*this).params(), config_, prompts, options, rng);
  }
  // [B, T] log p of each token drawn by the last sample() under the model itself (temperature 1, unfiltered).
  const matrix& sampled_log_probs() const { return sampler_.log_probs(); }

 private:
  struct Activations {  // device views into act_buffer_ for a batch B x T, N = B·T
    float* encoded;                       // [N, C]
    float *ln1, *ln1_mean, *ln1_rstd;     // [L, N, C], [L, N], [L, N]
    float* qkvr;                          // [L, 3, B, NH, T, hs] q, k, v per head (kept for the backward)
    float* att;                           // [L, B, NH, T, T] softmax probabilities
    float* atty;                          // [L, N, C]
    float* res2;                          // [L, N, C]
    float *ln2, *ln2_mean, *ln2_rstd;     // [L, N, C], [L, N], [L, N]
    float* fch;                           // [L, N, 4C]
    float* fch_gelu;                      // [L, N, 4C]
    float* res3;                          // [L, N, C]
    float *lnf, *lnf_mean, *lnf_rstd;     // [N, C], [N], [N]
    // scratch, reused by every layer
    float* qkv;     // [N, 3C] the qkv projection before permuting
    float* heads;   // [B, NH, T, hs] attention output per head (forward), its gradient (backward)
    float* d_res;   // [N, C]
    float* d_ln;    // [N, C]
    float* d_atty;  // [N, C]
    float* d_qkv;   // [N, 3C]
    float* d_qkvr;  // [3, B, NH, T, hs]
    float* d_att;   // [B, NH, T, T]
    float* d_fch;   // [N, 4C]
    float* column;  // column_scratch(N, 4C): partial sums of the bias and LayerNorm weight gradients
  };

  void require_head(const char* fn) const {
    if (!config_.scalar_head) fail<config_error>(fn, ": the model has no scalar head (GptConfig::scalar_head)");
  }

  // d head output (device, read at dst[m]) for rows src[m] → every parameter gradient.
  void head_backward(const float* d_out, const std::int32_t* src, const std::int32_t* dst, std::size_t M) {
    const std::size_t N = cached_.batch * cached_.time, C = config_.channels;
    RLHF_CUDA_CHECK(cudaMemset(act_.d_ln, 0, N * C * sizeof(float)));
    auto g = grads();
    gpt_cuda::head_backward(act_.d_ln, g.headw, g.headb, act_.column, act_.lnf, params().headw, d_out, src, dst, M, C);
    trunk_backward();
  }

  // Throws when a device [B, T] upstream gradient holds NaN/Inf at a response token (the CPU model's check).
  void require_finite_at(const char* fn, const char* arg, const float* d, std::size_t T) {
    if (gpt_cuda::all_finite_at(flag_.data(), d, d_dst_.data(), n_rows_)) return;
    std::vector<float> host(cached_.batch * T);
    RLHF_CUDA_CHECK(cudaMemcpy(host.data(), d, host.size() * sizeof(float), cudaMemcpyDeviceToHost));
    for (std::size_t m = 0; m < n_rows_; ++m)
      if (!std::isfinite(host[dst_[m]]))
        fail<value_error>(fn, ": ", arg, "[", dst_[m] / T, ",", dst_[m] % T, "] is ", host[dst_[m]],
                          " at a response token");
  }

  std::size_t first_non_finite(const std::vector<float>& host) const {
    for (std::size_t m = 0; m < n_rows_; ++m)
      if (!std::isfinite(host[dst_[m]])) return std::size_t(dst_[m]);
    return 0;
  }

  // Checks the batch, uploads its tokens, positions and scoring rows, and runs the blocks and the final LayerNorm.
  void forward_trunk(const TokenBatch& batch, const char* fn, bool needs_response = true) {
    const std::size_t B = batch.batch, Tn = batch.time, C = config_.channels, L = config_.layers,
                      NH = config_.heads, N = B * Tn;
    if (needs_response) {
      batch.validate(config_.vocab_size);
    } else {
      require_nonempty(fn, "batch", B);
      require_size(fn, "tokens", batch.tokens.size(), N, "B*T");
      if (!batch.attention_mask.empty()) require_size(fn, "attention_mask", batch.attention_mask.size(), N, "B*T");
      for (auto id : batch.tokens)
        if (id < 0 || std::size_t(id) >= config_.vocab_size)
          fail<value_error>(fn, ": token id ", id, " is outside the vocabulary [0, ", config_.vocab_size, ")");
    }
    if (!same_batch(batch)) logits_ready_ = false;
    cached_ = batch;
    cached_.response_mask.resize(N, 0);
    reserve(B, Tn);

    // positions count real tokens; each response token is scored from the last real position before it
    n_rows_ = 0;
    for (std::size_t b = 0; b < B; ++b) {
      std::size_t count = 0;
      std::int32_t prev = -1;
      last_[b] = std::int32_t(b * Tn);
      for (std::size_t t = 0; t < Tn; ++t) {
        const std::size_t n = b * Tn + t;
        const bool is_real = batch.real(b, t);
        real_[n] = is_real;
        pos_[n] = static_cast<std::int32_t>(is_real ? count : 0);
        if (cached_.response_mask[n]) {
          src_[n_rows_] = prev, dst_[n_rows_] = std::int32_t(n), targets_[n_rows_] = batch.tokens[n];
          ++n_rows_;
          last_[b] = std::int32_t(n);
        }
        if (is_real) prev = std::int32_t(n), ++count;
      }
      if (count > config_.max_seq_len)
        fail<shape_error>(fn, ": row ", b, " has ", count, " real tokens but max_seq_len is ", config_.max_seq_len);
    }
    d_tokens_.upload(batch.tokens.data(), N);
    d_pos_.upload(pos_.data(), N);
    d_real_.upload(real_.data(), N);
    d_src_.upload(src_.data(), n_rows_);
    d_dst_.upload(dst_.data(), n_rows_);
    d_targets_.upload(targets_.data(), n_rows_);
    d_last_.upload(last_.data(), B);
    by_token_.upload(gpt_cuda::RowBuckets::of(batch.tokens.data(), real_.data(), N));
    by_position_.upload(gpt_cuda::RowBuckets::of(pos_.data(), real_.data(), N));

    const auto p = params();
    const Activations& a = act_;
    const float eps = config_.layer_norm_eps;
    const std::size_t att_size = B * NH * Tn * Tn;
    gpt_cuda::Blas& blas = *blas_;
    gpt_cuda::encoder_forward(a.encoded, d_tokens_.data(), d_pos_.data(), p.wte, p.wpe, N, C);
    for (std::size_t l = 0; l < L; ++l) {
      const float* res_in = l == 0 ? a.encoded : a.res3 + (l - 1) * N * C;
      float* ln1 = a.ln1 + l * N * C;
      float* atty = a.atty + l * N * C;
      float* res2 = a.res2 + l * N * C;
      float* ln2 = a.ln2 + l * N * C;
      float* fch = a.fch + l * N * 4 * C;
      float* fch_gelu = a.fch_gelu + l * N * 4 * C;
      float* res3 = a.res3 + l * N * C;
      gpt_cuda::layernorm_forward(ln1, a.ln1_mean + l * N, a.ln1_rstd + l * N, res_in, p.ln1w + l * C,
                                  p.ln1b + l * C, N, C, eps);
      gpt_cuda::matmul_forward(blas, a.qkv, ln1, p.qkvw + l * C * 3 * C, p.qkvb + l * 3 * C, N, C, 3 * C);
      gpt_cuda::attention_forward(blas, atty, a.qkvr + l * 3 * N * C, a.att + l * att_size, a.heads, a.qkv,
                                  d_real_.data(), B, Tn, C, NH);
      gpt_cuda::matmul_forward(blas, res2, atty, p.attprojw + l * C * C, p.attprojb + l * C, N, C, C);
      gpt_cuda::residual_forward(res2, res2, res_in, N * C);
      gpt_cuda::layernorm_forward(ln2, a.ln2_mean + l * N, a.ln2_rstd + l * N, res2, p.ln2w + l * C,
                                  p.ln2b + l * C, N, C, eps);
      gpt_cuda::matmul_forward(blas, fch, ln2, p.fcw + l * C * 4 * C, p.fcb + l * 4 * C, N, C, 4 * C);
      gpt_cuda::gelu_forward(fch_gelu, fch, N * 4 * C);
      gpt_cuda::matmul_forward(blas, res3, fch_gelu, p.fcprojw + l * 4 * C * C, p.fcprojb + l * C, N, 4 * C, C);
      gpt_cuda::residual_forward(res3, res3, res2, N * C);
    }
    gpt_cuda::layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, a.res3 + (L - 1) * N * C, p.lnfw, p.lnfb, N, C, eps);
    trunk_ready_ = true;
  }

  // From d loss / d lnf (in act_.d_ln, [N, C]) to every parameter gradient.
  void trunk_backward() {
    const std::size_t B = cached_.batch, Tn = cached_.time, C = config_.channels, L = config_.layers,
                      NH = config_.heads, N = B * Tn, att_size = B * NH * Tn * Tn;
    const auto p = params();
    auto g = grads();
    const Activations& a = act_;
    gpt_cuda::Blas& blas = *blas_;
    RLHF_CUDA_CHECK(cudaMemset(a.d_res, 0, N * C * sizeof(float)));
    gpt_cuda::layernorm_backward(a.d_res, g.lnfw, g.lnfb, a.column, a.d_ln, a.res3 + (L - 1) * N * C, p.lnfw,
                                 a.lnf_mean, a.lnf_rstd, N, C);
    for (std::size_t l = L; l-- > 0;) {
      const float* res_in = l == 0 ? a.encoded : a.res3 + (l - 1) * N * C;
      gpt_cuda::matmul_backward(blas, a.d_fch, g.fcprojw + l * 4 * C * C, g.fcprojb + l * C, a.column, a.d_res,
                                a.fch_gelu + l * N * 4 * C, p.fcprojw + l * 4 * C * C, N, 4 * C, C);
      gpt_cuda::gelu_backward(a.d_fch, a.fch + l * N * 4 * C, a.d_fch, N * 4 * C);
      gpt_cuda::matmul_backward(blas, a.d_ln, g.fcw + l * C * 4 * C, g.fcb + l * 4 * C, a.column, a.d_fch,
                                a.ln2 + l * N * C, p.fcw + l * C * 4 * C, N, C, 4 * C);
      gpt_cuda::layernorm_backward(a.d_res, g.ln2w + l * C, g.ln2b + l * C, a.column, a.d_ln, a.res2 + l * N * C,
                                   p.ln2w + l * C, a.ln2_mean + l * N, a.ln2_rstd + l * N, N, C);
      gpt_cuda::matmul_backward(blas, a.d_atty, g.attprojw + l * C * C, g.attprojb + l * C, a.column, a.d_res,
                                a.atty + l * N * C, p.attprojw + l * C * C, N, C, C);
      gpt_cuda::attention_backward(blas, a.d_qkv, a.heads, a.d_att, a.d_qkvr, a.d_atty, a.qkvr + l * 3 * N * C,
                                   a.att + l * att_size, B, Tn, C, NH);
      gpt_cuda::matmul_backward(blas, a.d_ln, g.qkvw + l * C * 3 * C, g.qkvb + l * 3 * C, a.column, a.d_qkv,
                                a.ln1 + l * N * C, p.qkvw + l * C * 3 * C, N, C, 3 * C);
      gpt_cuda::layernorm_backward(a.d_res, g.ln1w + l * C, g.ln1b + l * C, a.column, a.d_ln, res_in,
                                   p.ln1w + l * C, a.ln1_mean + l * N, a.ln1_rstd + l * N, N, C);
    }
    gpt_cuda::encoder_backward(g.wte, g.wpe, a.d_res, by_token_, by_position_, C);
  }

  bool same_batch(const TokenBatch& b) const {
    return trunk_ready_ && b.batch == cached_.batch && b.time == cached_.time && b.tokens == cached_.tokens &&
           b.response_mask == cached_.response_mask && b.attention_mask == cached_.attention_mask;
  }

  void require_same_batch(const TokenBatch& b, const char* fn) const {
    if (!trunk_ready_)
      fail<value_error>(fn, ": no forward pass to differentiate; call the forward on this batch first");
    if (b.batch != cached_.batch || b.time != cached_.time)
      fail<shape_error>(fn, ": the batch is [", b.batch, ", ", b.time, "] but the last forward pass was on [",
                        cached_.batch, ", ", cached_.time, "]; call the forward on this batch first");
    if (!same_batch(b))
      fail<value_error>(fn, ": the batch differs from the one of the last forward pass (tokens or masks); "
                            "call the forward on this batch first");
  }

  // Sizes every buffer for B x T; grows, never shrinks (a growth reallocates: contents are lost).
  void reserve(std::size_t B, std::size_t Tn) {
    const std::size_t C = config_.channels, L = config_.layers, NH = config_.heads, V = config_.vocab_size,
                      N = B * Tn, att = B * NH * Tn * Tn;
    const std::size_t sizes[] = {N * C,         L * N * C,     L * N,     L * N,     L * 3 * N * C, L * att,
                                 L * N * C,     L * N * C,     L * N * C, L * N,     L * N,         L * N * 4 * C,
                                 L * N * 4 * C, L * N * C,     N * C,     N,         N,             N * 3 * C,
                                 N * C,         N * C,         N * C,     N * C,     N * 3 * C,     3 * N * C,
                                 att,           N * 4 * C,     gpt_cuda::column_scratch(N, 4 * C)};
    std::size_t total = 0;
    for (auto s : sizes) total += (s + 63) / 64 * 64;  // every view starts 256-byte aligned (cuBLASLt wants 16)
    act_buffer_.reserve(total);
    float* ptrs[std::size(sizes)];
    float* at = act_buffer_.data();
    for (std::size_t i = 0; i < std::size(sizes); ++i) ptrs[i] = at, at += (sizes[i] + 63) / 64 * 64;
    act_ = {ptrs[0],  ptrs[1],  ptrs[2],  ptrs[3],  ptrs[4],  ptrs[5],  ptrs[6],  ptrs[7],  ptrs[8],
            ptrs[9],  ptrs[10], ptrs[11], ptrs[12], ptrs[13], ptrs[14], ptrs[15], ptrs[16], ptrs[17],
            ptrs[18], ptrs[19], ptrs[20], ptrs[21], ptrs[22], ptrs[23], ptrs[24], ptrs[25], ptrs[26]};
    logits_.reserve(N * V), lnf_rows_.reserve(N * C), row_max_.reserve(N), row_log_sum_.reserve(N);
    d_tokens_.reserve(N), d_pos_.reserve(N), d_real_.reserve(N), d_src_.reserve(N), d_dst_.reserve(N);
    d_targets_.reserve(N), d_last_.reserve(B);
    if (d_iota_.size() < B) {
      std::vector<std::int32_t> iota(B);
      for (std::size_t b = 0; b < B; ++b) iota[b] = std::int32_t(b);
      d_iota_.resize(B);
      d_iota_.upload(iota.data(), B);
    }
    const auto grow = [](auto& v, std::size_t n) {
      if (v.size() < n) v.resize(n);
    };
    grow(src_, N), grow(dst_, N), grow(targets_, N), grow(pos_, N), grow(real_, N), grow(last_, B);
  }

  GptConfig config_;
  GptCudaOptions options_;
  std::unique_ptr<gpt_cuda::Blas> blas_;
  gpt_cuda::device_buffer<float> params_, grads_;  // [gpt_param_count(config)] each; layout in params.hpp
  gpt_cuda::device_buffer<float> act_buffer_;      // every activation, viewed through act_
  Activations act_{};
  TokenBatch cached_;           // the batch of the last forward pass
  bool trunk_ready_ = false;    // act_ holds the forward pass of cached_
  bool logits_ready_ = false;   // logits_ holds the logits of a log_probs on cached_ not yet consumed
  std::size_t n_rows_ = 0;      // M: response tokens in cached_
  gpt_cuda::device_buffer<float> logits_;                 // [M, V] (capacity [N, V]); d logits after backward
  gpt_cuda::device_buffer<float> lnf_rows_;               // [M, C] final hidden rows that score a response token
  gpt_cuda::device_buffer<float> row_max_, row_log_sum_;  // [M]
  gpt_cuda::device_buffer<int> flag_;                     // [1] non-finite flag
  // the batch on the device: tokens, positions, real [N]; scoring rows src, dst, targets [M]; last [B]
  gpt_cuda::device_buffer<std::int32_t> d_tokens_, d_pos_, d_src_, d_dst_, d_targets_, d_last_, d_iota_;
  gpt_cuda::device_buffer<std::uint8_t> d_real_;
  gpt_cuda::DeviceBuckets by_token_, by_position_;  // rows grouped for the embedding backward
  // host copies
  std::vector<std::int32_t> src_, dst_, targets_, pos_, last_;
  std::vector<std::uint8_t> real_;
  gpt_cuda::Sampler sampler_;
};

static_assert(TrainablePolicy<GptCuda>);
static_assert(SamplingPolicy<GptCuda>);
static_assert(ValueModel<GptCuda>);
static_assert(RewardModel<GptCuda>);
static_assert(OptimizerFor<CudaAdamW, GptCuda>);

}  // namespace rlhf
