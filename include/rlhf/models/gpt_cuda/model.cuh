#pragma once
// The GPT-2 policy on the GPU: the CPU model (models/gpt/model.hpp) kernel for kernel, on one contiguous
// parameter buffer in device memory with the CPU model's layout (gpt_host/params.hpp), so moving a model between
// the two is one copy. docs/models/gpt_cuda.md.
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
#include "rlhf/models/gpt_cuda/adamw.cuh"
#include "rlhf/models/gpt_cuda/attention.cuh"
#include "rlhf/models/gpt_cuda/common.cuh"
#include "rlhf/models/gpt_cuda/encoder.cuh"
#include "rlhf/models/gpt_cuda/flash_attention.cuh"
#include "rlhf/models/gpt_cuda/gelu.cuh"
#include "rlhf/models/gpt_cuda/head.cuh"
#include "rlhf/models/gpt_cuda/layernorm.cuh"
#include "rlhf/models/gpt_cuda/logprob.cuh"
#include "rlhf/models/gpt_cuda/matmul.cuh"
#include "rlhf/models/gpt_cuda/residual.cuh"
#include "rlhf/models/gpt_cuda/sampler.cuh"
#include "rlhf/models/gpt_host/config.hpp"
#include "rlhf/models/gpt_host/init.hpp"
#include "rlhf/models/gpt_host/params.hpp"
#include "rlhf/models/gpt_host/scoring.hpp"

namespace rlhf {

struct GptCudaOptions {
  // tf32: tensor cores; fp32: exact float products; bf16: bf16 operands, float32 sums and parameters (matmul.cuh)
  GemmPrecision precision = GemmPrecision::tf32;
  // materialized: attention.cuh, keeps [L, B, NH, T, T] probabilities; flash: flash_attention.cuh, keeps
  // [L, B, NH, T] (head size at most 128). flash has not yet run on a GPU: materialized stays the default until it has.
  AttentionKernel attention = AttentionKernel::materialized;
};

class GptCuda {
 public:
  using backend = rlhf::thrust_cuda<float>;
  using scalar = float;
  using matrix = backend::matrix;
  using vector = backend::vector;

  explicit GptCuda(const GptConfig& config, std::uint64_t seed = 0, const GptCudaOptions& options = {})
      : config_(config), options_(options) {
    config_.validate("rlhf::GptCuda");
    if (options_.attention == AttentionKernel::flash)
      gpt_cuda::flash::require_flash_shape({1, 1, config_.heads, config_.heads, config_.channels / config_.heads},
                                           "rlhf::GptCuda (attention = flash)");
    blas_ = std::make_unique<gpt_cuda::Blas>(options_.precision);
    params_.resize(gpt_param_count(config_));
    grads_.resize(params_.size());
    grads_.zero();
    flag_.resize(1);
    initialize(seed);
  }

  static constexpr bool gradients_on_device = true;  // the steps measure no gradient norm on the host (step.hpp)

  const GptConfig& config() const { return config_; }
  const GptCudaOptions& options() const { return options_; }
  // The matrix products from now on (as the CPU model's set_matmul_precision): GemmPrecision::tf32, fp32 or bf16
  // (bf16 operand copies, float32 sums; the parameters, gradients and optimizer stay float32).
  void set_matmul_precision(GemmPrecision precision) {
    options_.precision = precision;
    blas_->set_precision(precision);
  }
  GemmPrecision matmul_precision() const { return options_.precision; }
  std::span<float> parameters() { return {params_.data(), params_.size()}; }  // device memory
  std::span<const float> parameters() const { return {params_.data(), params_.size()}; }
  std::span<float> gradients() { return {grads_.data(), grads_.size()}; }  // device memory
  std::span<const float> gradients() const { return {grads_.data(), grads_.size()}; }
  // The same buffers as named tensors (GptTensors, layout of gpt_host/params.hpp): device pointers.
  GptTensors<float> parameter_tensors() { return gpt_tensors(params_.data(), config_); }
  GptTensors<const float> parameter_tensors() const { return gpt_tensors<const float>(params_.data(), config_); }
  GptTensors<float> gradient_tensors() { return gpt_tensors(grads_.data(), config_); }
  GptTensors<const float> gradient_tensors() const { return gpt_tensors<const float>(grads_.data(), config_); }
  void zero_grad() { grads_.zero(); }

  // Overwrites the parameters with the initialisation of the constructor: the CPU model's (gpt_host/init.hpp).
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
    const std::size_t C = config_.channels, V = config_.vocab_size, Vp = padded_vocab(), M = scored_.rows;
    gpt_cuda::gather_rows(lnf_rows_.data(), act_.lnf, d_src_.data(), M, C);
    // logits [M, Vp] = lnf rows · wte_pᵀ: column-major logits^T [Vp, M] = (wte_p as column-major [C, Vp])^T ·
    // rows^T; the padding columns come out 0
    gpt_cuda::gemm(*blas_, true, false, Vp, M, C, padded_wte(), C, lnf_rows_.data(), C, logits_.data(), Vp, 0.0f);
    matrix out = backend::matrix_of(batch.batch, batch.time);
    gpt_cuda::logprob_forward(backend::data(out), row_max_.data(), row_log_sum_.data(), logits_.data(),
                              d_targets_.data(), d_dst_.data(), M, V, Vp);
    if (!gpt_cuda::all_finite_at(flag_.data(), backend::data(out), d_dst_.data(), M)) {
      const std::size_t at = first_non_finite(backend::to_host(out));
      fail<value_error>(fn, ": log-prob of token [", at / batch.time, ",", at % batch.time,
                        "] is not finite; the parameters hold NaN or Inf");
    }
    scored_.logits_ready = true;
    return out;
  }

  // Accumulates parameter gradients for d loss / d log_probs [B, T] (device; entries where response_mask is 0
  // are ignored). The preceding forward pass must have been log_probs on this same batch: backward uses its
  // activations and consumes its logits, one backward per log_probs. Gpt<T>::backward's checks, on the host
  // (ScoredBatch::require_logits, gpt_host/scoring.hpp): a shape_error for another [B, T]; a value_error for no
  // forward pass, other tokens or masks, or no unconsumed log_probs on this batch (values or scores in between
  // keep it); a value_error for a non-finite d_logp at a response token.
  void backward(const TokenBatch& batch, const matrix& d_logp) {
    constexpr const char* fn = "rlhf::GptCuda::backward";
    scored_.require_logits(batch, fn);
    detail::require_shape<backend>(fn, "d_logp", d_logp, batch.batch, batch.time, "the batch [B, T]");
    const std::size_t C = config_.channels, V = config_.vocab_size, Vp = padded_vocab(), M = scored_.rows,
                      N = batch.batch * batch.time;
    require_finite_at(fn, "d_logp", backend::data(d_logp), batch.time);
    gpt_cuda::logprob_backward(logits_.data(), d_targets_.data(), d_dst_.data(), backend::data(d_logp),
                               row_max_.data(), row_log_sum_.data(), M, V, Vp);  // now d logits [M, V], stride Vp
    scored_.logits_ready = false;
    float* d_rows = act_.d_atty;  // [M, C], free until the trunk backward
    // d rows [M, C] = dlogits · wte_p: column-major d rows^T [C, M] = (wte_p as column-major [C, Vp]) · dlogits^T
    gpt_cuda::gemm(*blas_, false, false, C, M, Vp, padded_wte(), C, logits_.data(), Vp, d_rows, C, 0.0f);
    // d wte [V, C] += dlogitsᵀ · rows: column-major d wte^T [C, V] += rows^T [C, M] · dlogits [M, V]; with
    // padding, [Vp, C] into a scratch first, then its first V rows added
    float* d_wte = gradient_tensors().wte;
    if (Vp == V) {
      gpt_cuda::gemm(*blas_, false, true, C, V, M, lnf_rows_.data(), C, logits_.data(), Vp, d_wte, C, 1.0f);
    } else {
      gpt_cuda::gemm(*blas_, false, true, C, Vp, M, lnf_rows_.data(), C, logits_.data(), Vp, d_wte_padded_.data(), C,
                     0.0f);
      gpt_cuda::residual_forward(d_wte, d_wte, d_wte_padded_.data(), V * C);
    }
    RLHF_CUDA_CHECK(cudaMemset(act_.d_ln, 0, N * C * sizeof(float)));
    gpt_cuda::scatter_add_rows(act_.d_ln, d_rows, d_src_.data(), M, C);
    trunk_backward();
  }

  // [B·T, V] on the device: the logits at every position (padding included), for inspection and parity tests.
  matrix logits(const TokenBatch& batch) {
    forward_trunk(batch, "rlhf::GptCuda::logits", false);
    const std::size_t N = batch.batch * batch.time, C = config_.channels, V = config_.vocab_size;
    matrix out = backend::matrix_of(N, V);
    gpt_cuda::gemm(*blas_, true, false, V, N, C, parameter_tensors().wte, C, act_.lnf, C, backend::data(out), V,
                   0.0f);
    scored_.trunk_ready = false;  // not a scoring forward: nothing to differentiate
    return out;
  }

  // ---- ValueModel (scalar head) ------------------------------------------------------------------------------
  // [B, T]: V(prefix) = head(final hidden state of the last real position before t) for each response token t.
  matrix values(const TokenBatch& batch) {
    constexpr const char* fn = "rlhf::GptCuda::values";
    require_head(fn);
    forward_trunk(batch, fn);
    matrix out = backend::matrix_of(batch.batch, batch.time);
    const auto p = parameter_tensors();
    gpt_cuda::head_forward(backend::data(out), act_.lnf, p.headw, p.headb, d_src_.data(), d_dst_.data(), scored_.rows,
                           config_.channels);
    return out;
  }

  void backward_values(const TokenBatch& batch, const matrix& d_values) {
    constexpr const char* fn = "rlhf::GptCuda::backward_values";
    require_head(fn);
    require_same_batch(batch, fn);
    detail::require_shape<backend>(fn, "d_values", d_values, batch.batch, batch.time, "the batch [B, T]");
    require_finite_at(fn, "d_values", backend::data(d_values), batch.time);
    head_backward(backend::data(d_values), d_src_.data(), d_dst_.data(), scored_.rows);
  }

  // ---- RewardModel (scalar head) -----------------------------------------------------------------------------
  // [B]: head(final hidden state at the last response token of each row).
  vector scores(const TokenBatch& batch) {
    constexpr const char* fn = "rlhf::GptCuda::scores";
    require_head(fn);
    forward_trunk(batch, fn);
    vector out = backend::vector_of(batch.batch);
    const auto p = parameter_tensors();
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
    return sampler_.sample(*blas_, std::as_const(*this).parameter_tensors(), config_, prompts, options, rng);
  }
  // [B, T] log p of each token drawn by the last sample() under the model itself (temperature 1, unfiltered).
  const matrix& sampled_log_probs() const { return sampler_.log_probs(); }

 private:
  struct Activations {  // device views into act_buffer_ for a batch B x T, N = B·T
    float* encoded;                       // [N, C]
    float *ln1, *ln1_mean, *ln1_rstd;     // [L, N, C], [L, N], [L, N]
    float* qkvr;                          // [L, 3, B, NH, T, hs] q, k, v per head (kept for the backward);
                                          // flash: [L, N, 3C], the qkv projection itself (read in place)
    float* att;                           // [L, B, NH, T, T] softmax probabilities (flash: none)
    float* lse;                           // flash: [L, B, NH, T] log Σ exp of each query's scores (else none)
    float* atty;                          // [L, N, C]
    float* res2;                          // [L, N, C]
    float *ln2, *ln2_mean, *ln2_rstd;     // [L, N, C], [L, N], [L, N]
    float* fch;                           // [L, N, 4C]
    float* fch_gelu;                      // [L, N, 4C]
    float* res3;                          // [L, N, C]
    float *lnf, *lnf_mean, *lnf_rstd;     // [N, C], [N], [N]
    // scratch, reused by every layer
    float* qkv;     // [N, 3C] the qkv projection before permuting (flash: none)
    float* heads;   // [B, NH, T, hs] attention output per head (forward), its gradient (backward) (flash: none)
    float* d_res;   // [N, C]
    float* d_ln;    // [N, C]
    float* d_atty;  // [N, C]
    float* d_qkv;   // [N, 3C]
    float* d_qkvr;  // [3, B, NH, T, hs] (flash: none)
    float* d_att;   // [B, NH, T, T] (flash: none)
    float* dsum;    // flash: [B, NH, T] dout·out per query (else none)
    float* d_fch;   // [N, 4C]
    float* column;  // column_scratch(N, 4C): partial sums of the bias and LayerNorm weight gradients
  };

  void require_head(const char* fn) const { gpt_host::require_scalar_head(config_, fn); }

  // d head output (device, read at dst[m]) for rows src[m] → every parameter gradient.
  void head_backward(const float* d_out, const std::int32_t* src, const std::int32_t* dst, std::size_t M) {
    const std::size_t N = scored_.batch.batch * scored_.batch.time, C = config_.channels;
    RLHF_CUDA_CHECK(cudaMemset(act_.d_ln, 0, N * C * sizeof(float)));
    auto g = gradient_tensors();
    gpt_cuda::head_backward(act_.d_ln, g.headw, g.headb, act_.column, act_.lnf, parameter_tensors().headw, d_out, src,
                            dst, M, C);
    trunk_backward();
  }

  // Throws when a device [B, T] upstream gradient holds NaN/Inf at a response token (the CPU model's check).
  void require_finite_at(const char* fn, const char* arg, const float* d, std::size_t T) {
    if (gpt_cuda::all_finite_at(flag_.data(), d, d_dst_.data(), scored_.rows)) return;
    std::vector<float> host(scored_.batch.batch * T);
    RLHF_CUDA_CHECK(cudaMemcpy(host.data(), d, host.size() * sizeof(float), cudaMemcpyDeviceToHost));
    for (std::size_t m = 0; m < scored_.rows; ++m)
      if (!std::isfinite(host[scored_.dst[m]]))
        fail<value_error>(fn, ": ", arg, "[", scored_.dst[m] / T, ",", scored_.dst[m] % T, "] is ",
                          host[scored_.dst[m]], " at a response token");
  }

  std::size_t first_non_finite(const std::vector<float>& host) const {
    for (std::size_t m = 0; m < scored_.rows; ++m)
      if (!std::isfinite(host[scored_.dst[m]])) return std::size_t(scored_.dst[m]);
    return 0;
  }

  // Checks and records the batch with its positions and scoring rows (gpt_host/scoring.hpp), uploads them, and
  // runs the blocks and the final LayerNorm.
  void forward_trunk(const TokenBatch& batch, const char* fn, bool needs_response = true) {
    const std::size_t B = batch.batch, Tn = batch.time, C = config_.channels, L = config_.layers,
                      NH = config_.heads, N = B * Tn;
    scored_.record(batch, config_, fn, needs_response);
    reserve(B, Tn);
    d_tokens_.upload(batch.tokens.data(), N);
    d_pos_.upload(scored_.pos.data(), N);
    d_real_.upload(scored_.real.data(), N);
    d_src_.upload(scored_.src.data(), scored_.rows);
    d_dst_.upload(scored_.dst.data(), scored_.rows);
    d_targets_.upload(scored_.targets.data(), scored_.rows);
    d_last_.upload(scored_.last.data(), B);
    by_token_.upload(gpt_cuda::RowBuckets::of(batch.tokens.data(), scored_.real.data(), N));
    by_position_.upload(gpt_cuda::RowBuckets::of(scored_.pos.data(), scored_.real.data(), N));

    const auto p = parameter_tensors();
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
      if (flash()) {
        float* qkv = a.qkvr + l * 3 * N * C;  // [N, 3C], kept
        gpt_cuda::matmul_forward(blas, qkv, ln1, p.qkvw + l * C * 3 * C, p.qkvb + l * 3 * C, N, C, 3 * C);
        gpt_cuda::flash_attention_forward(atty, a.lse + l * B * NH * Tn, qkv, qkv + C, qkv + 2 * C, d_real_.data(),
                                          flash_shape(B, Tn));
      } else {
        gpt_cuda::matmul_forward(blas, a.qkv, ln1, p.qkvw + l * C * 3 * C, p.qkvb + l * 3 * C, N, C, 3 * C);
        gpt_cuda::attention_forward(blas, atty, a.qkvr + l * 3 * N * C, a.att + l * att_size, a.heads, a.qkv,
                                    d_real_.data(), B, Tn, C, NH);
      }
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
    scored_.trunk_ready = true;
  }

  // From d loss / d lnf (in act_.d_ln, [N, C]) to every parameter gradient.
  void trunk_backward() {
    const std::size_t B = scored_.batch.batch, Tn = scored_.batch.time, C = config_.channels, L = config_.layers,
                      NH = config_.heads, N = B * Tn, att_size = B * NH * Tn * Tn;
    const auto p = parameter_tensors();
    auto g = gradient_tensors();
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
      if (flash()) {
        const float* qkv = a.qkvr + l * 3 * N * C;
        gpt_cuda::flash_attention_backward(a.d_qkv, a.d_qkv + C, a.d_qkv + 2 * C, a.dsum, a.d_atty, qkv, qkv + C,
                                           qkv + 2 * C, a.atty + l * N * C, a.lse + l * B * NH * Tn,
                                           d_real_.data(), flash_shape(B, Tn));
      } else {
        gpt_cuda::attention_backward(blas, a.d_qkv, a.heads, a.d_att, a.d_qkvr, a.d_atty, a.qkvr + l * 3 * N * C,
                                     a.att + l * att_size, B, Tn, C, NH);
      }
      gpt_cuda::matmul_backward(blas, a.d_ln, g.qkvw + l * C * 3 * C, g.qkvb + l * 3 * C, a.column, a.d_qkv,
                                a.ln1 + l * N * C, p.qkvw + l * C * 3 * C, N, C, 3 * C);
      gpt_cuda::layernorm_backward(a.d_res, g.ln1w + l * C, g.ln1b + l * C, a.column, a.d_ln, res_in,
                                   p.ln1w + l * C, a.ln1_mean + l * N, a.ln1_rstd + l * N, N, C);
    }
    gpt_cuda::encoder_backward(g.wte, g.wpe, a.d_res, by_token_, by_position_, C);
  }

  void require_same_batch(const TokenBatch& b, const char* fn) const { scored_.require_same(b, fn); }

  bool flash() const { return options_.attention == AttentionKernel::flash; }
  // The flash kernels' view of the qkv projection [N, 3C]: q, k, v C apart in each row, heads side by side.
  gpt_cuda::flash::FlashShape flash_shape(std::size_t B, std::size_t Tn) const {
    const std::size_t C = config_.channels, NH = config_.heads;
    return {B, Tn, NH, NH, C / NH, 3 * C, 3 * C, C};
  }

  // The LM head's products run over Vp = V rounded up to 32 (128 bytes). With an odd V (GPT-2's 50257) cuBLAS has
  // only unaligned kernels for them (measured on an H200: 4.8-5.4 ms each at B·T = 8192, three per SFT step).
  std::size_t padded_vocab() const { return (config_.vocab_size + 31) / 32 * 32; }

  // wte [V, C] followed by Vp − V zero rows, refreshed from the parameters (one device copy); wte itself when
  // V = Vp. Also sizes d_wte_padded_.
  const float* padded_wte() {
    const std::size_t V = config_.vocab_size, Vp = padded_vocab(), C = config_.channels;
    if (Vp == V) return parameter_tensors().wte;
    if (wte_padded_.size() < Vp * C) {
      wte_padded_.resize(Vp * C), wte_padded_.zero();
      d_wte_padded_.resize(Vp * C);
    }
    RLHF_CUDA_CHECK(cudaMemcpy(wte_padded_.data(), parameter_tensors().wte, V * C * sizeof(float),
                               cudaMemcpyDeviceToDevice));
    return wte_padded_.data();
  }

  // Sizes every buffer for B x T; grows, never shrinks (a growth reallocates: contents are lost).
  void reserve(std::size_t B, std::size_t Tn) {
    const std::size_t C = config_.channels, L = config_.layers, NH = config_.heads, N = B * Tn,
                      att = flash() ? 0 : B * NH * Tn * Tn, rows = flash() ? B * NH * Tn : 0,
                      permuted = flash() ? 0 : N * C;  // the materialized path's per-head scratch
    const std::size_t sizes[] = {N * C,         L * N * C,     L * N,     L * N,     L * 3 * N * C, L * att,
                                 L * rows,      L * N * C,     L * N * C, L * N * C, L * N,         L * N,
                                 L * N * 4 * C, L * N * 4 * C, L * N * C, N * C,     N,             N,
                                 3 * permuted,  permuted,      N * C,     N * C,     N * C,         N * 3 * C,
                                 3 * permuted,  att,           rows,      N * 4 * C, gpt_cuda::column_scratch(N, 4 * C)};
    std::size_t total = 0;
    for (auto s : sizes) total += (s + 63) / 64 * 64;  // every view starts 256-byte aligned (cuBLASLt wants 16)
    act_buffer_.reserve(total);
    float* ptrs[std::size(sizes)];
    float* at = act_buffer_.data();
    for (std::size_t i = 0; i < std::size(sizes); ++i) ptrs[i] = at, at += (sizes[i] + 63) / 64 * 64;
    act_ = {ptrs[0],  ptrs[1],  ptrs[2],  ptrs[3],  ptrs[4],  ptrs[5],  ptrs[6],  ptrs[7],  ptrs[8],  ptrs[9],
            ptrs[10], ptrs[11], ptrs[12], ptrs[13], ptrs[14], ptrs[15], ptrs[16], ptrs[17], ptrs[18], ptrs[19],
            ptrs[20], ptrs[21], ptrs[22], ptrs[23], ptrs[24], ptrs[25], ptrs[26], ptrs[27], ptrs[28]};
    logits_.reserve(N * padded_vocab()), lnf_rows_.reserve(N * C), row_max_.reserve(N), row_log_sum_.reserve(N);
    d_tokens_.reserve(N), d_pos_.reserve(N), d_real_.reserve(N), d_src_.reserve(N), d_dst_.reserve(N);
    d_targets_.reserve(N), d_last_.reserve(B);
    if (d_iota_.size() < B) {
      std::vector<std::int32_t> iota(B);
      for (std::size_t b = 0; b < B; ++b) iota[b] = std::int32_t(b);
      d_iota_.resize(B);
      d_iota_.upload(iota.data(), B);
    }
  }

  GptConfig config_;
  GptCudaOptions options_;
  std::unique_ptr<gpt_cuda::Blas> blas_;
  gpt_cuda::device_buffer<float> params_, grads_;  // [gpt_param_count(config)] each; layout in gpt_host/params.hpp
  gpt_cuda::device_buffer<float> act_buffer_;      // every activation, viewed through act_
  Activations act_{};
  gpt_host::ScoredBatch<std::int32_t> scored_;  // the last forward's batch and scoring rows; act_ holds its pass
  gpt_cuda::device_buffer<float> logits_;  // [M, Vp] (capacity N rows), Vp = padded_vocab(); then d logits
  gpt_cuda::device_buffer<float> wte_padded_, d_wte_padded_;  // [Vp, C] each, only when Vp > V
  gpt_cuda::device_buffer<float> lnf_rows_;               // [M, C] final hidden rows that score a response token
  gpt_cuda::device_buffer<float> row_max_, row_log_sum_;  // [M]
  gpt_cuda::device_buffer<int> flag_;                     // [1] non-finite flag
  // the batch on the device: tokens, positions, real [N]; scoring rows src, dst, targets [M]; last [B]
  gpt_cuda::device_buffer<std::int32_t> d_tokens_, d_pos_, d_src_, d_dst_, d_targets_, d_last_, d_iota_;
  gpt_cuda::device_buffer<std::uint8_t> d_real_;
  gpt_cuda::DeviceBuckets by_token_, by_position_;  // rows grouped for the embedding backward
  gpt_cuda::Sampler sampler_;
};

static_assert(EveryRoleModel<GptCuda>);
static_assert(OptimizerFor<CudaAdamW, GptCuda>);

}  // namespace rlhf
