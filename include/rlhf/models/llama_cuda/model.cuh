#pragma once
// The Llama-family decoder on the GPU: the CPU model (models/llama/model.hpp) step for step, on one contiguous
// parameter buffer in device memory with the CPU model's layout (llama/params.hpp), so moving a model between the
// two is one copy. docs/models/llama.md, "The CUDA twin".
//
// Kernels: RMSNorm, RoPE (the CPU model's cos/sin table, uploaded), SwiGLU and the token embedding are this
// folder's; everything else is the CUDA GPT's (gpt_cuda/): cuBLAS products, the fused causal softmax (grouped-query
// attention is the GPT's attention with one GEMM per kv head and its group of query heads, attention.cuh), the
// fused log-prob, the scalar head, the residual add, the embedding backward, and rlhf::CudaAdamW as the optimizer.
//
// It is a TrainablePolicy, and (with config.scalar_head) a ValueModel and a RewardModel on rlhf::thrust_cuda<float>,
// with GptCuda's contract: log_probs returns a Thrust-CUDA matrix [B, T] in device memory, backward takes one,
// parameters() and gradients() are std::span<float> over device memory (for rlhf::CudaAdamW; never dereference
// them on the host). Padding through TokenBatch::attention_mask (positions count real tokens, padding is never
// attended); a backward uses the activations of the last forward, which must have been on the same batch
// (checked by the ScoredBatch both GPTs and the CPU Llama use, gpt_host/scoring.hpp). Not yet a SamplingPolicy:
// there is no KV-cache sampler on the device yet (docs/models/llama.md). One model, one host thread; all work on
// the default stream.
//
// Status: compiled with nvcc for sm_90 and never yet run on a GPU; tests/gpu/llama_*.cu hold its parity tests.
//
//   auto cpu = rlhf::load_llama("SmolLM2-135M");         // Llama<float> (llama/checkpoint.hpp)
//   auto gpu = rlhf::LlamaCuda::copy_of(cpu);            // the same model on the device
//   rlhf::CudaAdamW opt({.learning_rate = 1e-5f});
//   rlhf::sft_step(gpu, opt, batch);
//   gpu.copy_parameters_to(cpu);                         // back, e.g. for rlhf::save_llama(cpu, "out/")
#include <algorithm>
#include <cmath>
#include <concepts>
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
#include "rlhf/core/validate.hpp"
#include "rlhf/models/gpt_cuda/adamw.cuh"
#include "rlhf/models/gpt_cuda/common.cuh"
#include "rlhf/models/gpt_cuda/encoder.cuh"
#include "rlhf/models/gpt_cuda/head.cuh"
#include "rlhf/models/gpt_cuda/logprob.cuh"
#include "rlhf/models/gpt_cuda/matmul.cuh"
#include "rlhf/models/gpt_cuda/residual.cuh"
#include "rlhf/models/gpt_host/scoring.hpp"
#include "rlhf/models/llama/config.hpp"
#include "rlhf/models/llama/params.hpp"
#include "rlhf/models/gpt_cuda/flash_attention.cuh"
#include "rlhf/models/llama_cuda/attention.cuh"
#include "rlhf/models/llama_cuda/embedding.cuh"
#include "rlhf/models/llama_cuda/linear.cuh"
#include "rlhf/models/llama_cuda/rmsnorm.cuh"
#include "rlhf/models/llama_cuda/rope.cuh"
#include "rlhf/models/llama_cuda/swiglu.cuh"

namespace rlhf {

struct LlamaCudaOptions {
  // tf32: tensor cores; fp32: exact float products; bf16: bf16 operands, float32 sums and parameters (matmul.cuh)
  GemmPrecision precision = GemmPrecision::tf32;
  // materialized: llama_cuda/attention.cuh, keeps [L, B, NH, T, T] probabilities; flash: gpt_cuda/flash_attention.cuh,
  // keeps [L, B, NH, T] (head_dim at most 128). flash has not yet run on a GPU: materialized stays the default.
  AttentionKernel attention = AttentionKernel::materialized;
};

class LlamaCuda {
 public:
  using backend = rlhf::thrust_cuda<float>;
  using scalar = float;
  using matrix = backend::matrix;
  using vector = backend::vector;

  // HF's initialisation, as the CPU model's (llama/params.hpp): the same seed gives the same parameters.
  explicit LlamaCuda(const LlamaConfig& config, std::uint64_t seed = 0, const LlamaCudaOptions& options = {})
      : config_(validated(config)), options_(options), rope_(config_) {
    if (flash())
      gpt_cuda::flash::require_flash_shape({1, 1, config_.heads, config_.kv_heads, config_.head_size()},
                                           "rlhf::LlamaCuda (attention = flash)");
    blas_ = std::make_unique<gpt_cuda::Blas>(options_.precision);
    params_.resize(llama_param_count(config_));
    grads_.resize(params_.size());
    grads_.zero();
    flag_.resize(1);
    head_bias_.resize(1), head_bias_.zero();  // the scalar head has no bias: gpt_cuda::head_* read a zero
    head_bias_grad_.resize(1);               // and write its gradient here, unread
    initialize(seed);
  }

  // A device copy of a CPU model of float parameters (Llama<float>, e.g. from rlhf::load_llama): same config, same
  // parameters.
  template <class HostModel>
    requires requires(const HostModel& m) {
      { m.config() } -> std::convertible_to<const LlamaConfig&>;
      { m.parameters() } -> std::convertible_to<std::span<const float>>;
    }
  static LlamaCuda copy_of(const HostModel& host, const LlamaCudaOptions& options = {}) {
    LlamaCuda out(host.config(), 0, options);
    out.set_parameters(std::span<const float>(host.parameters()));
    return out;
  }

  // Copies the parameters into a CPU model of the same config (rlhf::config_error otherwise).
  template <class HostModel>
    requires requires(HostModel& m) {
      { m.config() } -> std::convertible_to<const LlamaConfig&>;
      { m.parameters() } -> std::convertible_to<std::span<float>>;
    }
  void copy_parameters_to(HostModel& host) const {
    if (!(host.config() == config_))
      fail<config_error>("rlhf::LlamaCuda::copy_parameters_to: the CPU model's config differs from this one's");
    const std::span<float> dst(host.parameters());
    params_.download(dst.data(), params_.size());
  }

  static constexpr bool gradients_on_device = true;  // the steps measure no gradient norm on the host (step.hpp)

  const LlamaConfig& config() const { return config_; }
  const LlamaCudaOptions& options() const { return options_; }
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
  // The same buffers as named tensors (layout of llama/params.hpp): device pointers.
  LlamaTensors<float> parameter_tensors() { return llama_tensors(params_.data(), config_); }
  LlamaTensors<const float> parameter_tensors() const { return llama_tensors<const float>(params_.data(), config_); }
  LlamaTensors<float> gradient_tensors() { return llama_tensors(grads_.data(), config_); }
  void zero_grad() { grads_.zero(); }

  void initialize(std::uint64_t seed) {
    std::vector<float> host(params_.size());
    llama_initialize_parameters(host.data(), config_, seed);
    set_parameters(host);
  }

  // Host ↔ device copies of the whole buffer (layout of llama/params.hpp): one cudaMemcpy each.
  void set_parameters(std::span<const float> host) {
    require_size("rlhf::LlamaCuda::set_parameters", "host", host.size(), params_.size(), "llama_param_count(config)");
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
    constexpr const char* fn = "rlhf::LlamaCuda::log_probs";
    forward_trunk(batch, fn);
    const std::size_t C = config_.hidden_size, V = config_.vocab_size, M = scored_.rows;
    gpt_cuda::gather_rows(hf_rows_.data(), act_.hf, d_src_.data(), M, C);
    logits_product(logits_.data(), hf_rows_.data(), M);
    matrix out = backend::matrix_of(batch.batch, batch.time);
    gpt_cuda::logprob_forward(backend::data(out), row_max_.data(), row_log_sum_.data(), logits_.data(),
                              d_targets_.data(), d_dst_.data(), M, V, V);
    if (!gpt_cuda::all_finite_at(flag_.data(), backend::data(out), d_dst_.data(), M)) {
      const auto host = backend::to_host(out);
      for (std::size_t m = 0; m < M; ++m)
        if (!std::isfinite(host[scored_.dst[m]]))
          fail<value_error>(fn, ": log-prob of token [", scored_.dst[m] / batch.time, ",",
                            scored_.dst[m] % batch.time, "] is not finite; the parameters hold NaN or Inf");
    }
    scored_.logits_ready = true;
    return out;
  }

  // Accumulates parameter gradients for d loss / d log_probs [B, T] (device; entries where response_mask is 0
  // are ignored), with the checks of Llama<T>::backward: the preceding forward must be log_probs on this batch,
  // one backward per log_probs; a non-finite d_logp at a response token is a value_error.
  void backward(const TokenBatch& batch, const matrix& d_logp) {
    constexpr const char* fn = "rlhf::LlamaCuda::backward";
    scored_.require_logits(batch, fn);
    detail::require_shape<backend>(fn, "d_logp", d_logp, batch.batch, batch.time, "the batch [B, T]");
    const std::size_t C = config_.hidden_size, V = config_.vocab_size, M = scored_.rows,
                      N = batch.batch * batch.time;
    require_finite_at(fn, "d_logp", backend::data(d_logp), batch.time);
    gpt_cuda::logprob_backward(logits_.data(), d_targets_.data(), d_dst_.data(), backend::data(d_logp),
                               row_max_.data(), row_log_sum_.data(), M, V, V);  // now d logits [M, V]
    scored_.logits_ready = false;
    const float* W = parameter_tensors().lm_head;  // [V, C]: lm_head, or the embedding when tied
    float* d_rows = act_.d_h;                      // [M, C] ⊂ [N, C], free until the trunk backward
    // d rows [M, C] = d logits · W: column-major d rowsᵀ [C, M] = (W as column-major [C, V]) · d logitsᵀ
    gpt_cuda::gemm(*blas_, false, false, C, M, V, W, C, logits_.data(), V, d_rows, C, 0.0f);
    // d W [V, C] += d logitsᵀ · rows: column-major d Wᵀ [C, V] += rowsᵀ [C, M] · d logits [M, V]
    gpt_cuda::gemm(*blas_, false, true, C, V, M, hf_rows_.data(), C, logits_.data(), V, gradient_tensors().lm_head, C,
                   1.0f);
    RLHF_CUDA_CHECK(cudaMemset(act_.d_hf, 0, N * C * sizeof(float)));
    gpt_cuda::scatter_add_rows(act_.d_hf, d_rows, d_src_.data(), M, C);
    trunk_backward();
  }

  // [B·T, V] on the device: the logits at every position (padding included), for inspection and parity tests.
  matrix logits(const TokenBatch& batch) {
    forward_trunk(batch, "rlhf::LlamaCuda::logits", false);
    const std::size_t N = batch.batch * batch.time;
    matrix out = backend::matrix_of(N, config_.vocab_size);
    logits_product(backend::data(out), act_.hf, N);
    scored_.trunk_ready = false;  // not a scoring forward: nothing to differentiate
    return out;
  }

  // ---- ValueModel and RewardModel (scalar head) --------------------------------------------------------------
  // [B, T]: score · (final hidden state of the last real position before t) for each response token t.
  matrix values(const TokenBatch& batch) {
    constexpr const char* fn = "rlhf::LlamaCuda::values";
    require_head(fn);
    forward_trunk(batch, fn);
    matrix out = backend::matrix_of(batch.batch, batch.time);
    head_forward(backend::data(out), d_src_.data(), d_dst_.data(), scored_.rows);
    return out;
  }

  void backward_values(const TokenBatch& batch, const matrix& d_values) {
    constexpr const char* fn = "rlhf::LlamaCuda::backward_values";
    require_head_backward(batch, fn);
    detail::require_shape<backend>(fn, "d_values", d_values, batch.batch, batch.time, "the batch [B, T]");
    require_finite_at(fn, "d_values", backend::data(d_values), batch.time);
    head_backward(backend::data(d_values), d_src_.data(), d_dst_.data(), scored_.rows);
  }

  // [B]: score · (final hidden state at the last response token of each row).
  vector scores(const TokenBatch& batch) {
    constexpr const char* fn = "rlhf::LlamaCuda::scores";
    require_head(fn);
    forward_trunk(batch, fn);
    vector out = backend::vector_of(batch.batch);
    head_forward(backend::data(out), d_last_.data(), d_iota_.data(), batch.batch);
    return out;
  }

  void backward_scores(const TokenBatch& batch, const vector& d_scores) {
    constexpr const char* fn = "rlhf::LlamaCuda::backward_scores";
    require_head_backward(batch, fn);
    require_size(fn, "d_scores", backend::size(d_scores), batch.batch, "the batch size B");
    const auto host = backend::to_host(d_scores);
    for (std::size_t b = 0; b < host.size(); ++b)
      if (!std::isfinite(host[b])) fail<value_error>(fn, ": upstream gradient ", host[b], " is not finite");
    head_backward(backend::data(d_scores), d_last_.data(), d_iota_.data(), batch.batch);
  }

 private:
  static const LlamaConfig& validated(const LlamaConfig& c) {
    c.validate("rlhf::LlamaCuda");
    return c;
  }

  struct Activations {  // device views into act_buffer_ for a batch B × T, N = B·T; Q = NH·hd, K = KVH·hd
    float* x;             // [L + 1, N, C] the residual stream: x[0] the embedding, x[l + 1] block l's output
    float *h1, *r1;       // [L, N, C], [L, N]      input_layernorm and its rstd
    float *qraw, *rq;     // [L, N, Q], [L, N·NH]   q before q_norm and q_norm's rstd (qk_norm only)
    float *kraw, *rk;     // [L, N, K], [L, N·KVH]
    float *qh, *kh, *vh;  // [L, B, NH, T, hd], [L, B, KVH, T, hd] x2   what attention read (normed, rotated);
                          // flash: [L, N, Q], [L, N, K] x2, the rows themselves (read in place)
    float* att;           // [L, B, NH, T, T] softmax probabilities (flash: none)
    float* atty;          // [L, N, Q]
    float* mid;           // [L, N, C]              the stream after attention
    float *h2, *r2;       // [L, N, C], [L, N]      post_attention_layernorm
    float *gate, *up;     // [L, N, F] each
    float *hf, *rf;       // [N, C], [N]            model.norm
    // scratch, reused by every layer
    float *q, *k, *v;     // [N, Q], [N, K], [N, K]  rows of the rotated q, k and of v
    float* y;             // [B, NH, T, hd] attention output per head (flash: none)
    float* act;           // [N, F]  silu(gate)·up (recomputed in the backward)
    float *dgate, *dup;   // [N, F]
    float *d_res, *d_h;   // [N, C]  d of the stream, d of a norm's output
    float* d_hf;          // [N, C]
    float *d_atty, *dq;   // [N, Q]
    float *dk, *dv;       // [N, K]
    float *dqraw, *dkraw;  // [N, Q], [N, K] (qk_norm only)
    float *dy, *dqh;      // [B, NH, T, hd] (flash: none)
    float *dkh, *dvh;     // [B, KVH, T, hd] (flash: none)
    float* d_att;         // [B, NH, T, T] (flash: none)
    float* column;        // column sums' partials: bias, RMSNorm and score gradients
    float* lse;           // flash: [L, B, NH, T] log Σ exp of each query's scores (else none)
    float* dsum;          // flash: [B, NH, T] dout·out per query (else none)
  };

  bool flash() const { return options_.attention == AttentionKernel::flash; }
  // The flash kernels' view of the rotated q [N, Q] and k, v [N, K] rows.
  gpt_cuda::flash::FlashShape flash_shape(std::size_t B, std::size_t Tn) const {
    const LlamaConfig& c = config_;
    return {B, Tn, c.heads, c.kv_heads, c.head_size(), c.q_size(), c.kv_size(), c.q_size()};
  }

  void require_head(const char* fn) const {
    if (!config_.scalar_head) fail<config_error>(fn, ": the model has no scalar head (LlamaConfig::scalar_head)");
  }

  // A backward through the head: the model has one, and the last forward was on this batch.
  void require_head_backward(const TokenBatch& batch, const char* fn) const {
    require_head(fn);
    scored_.require_same(batch, fn);
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

  // The head's output (device, written at dst[m]) for the final hidden rows src[m].
  void head_forward(float* out, const std::int32_t* src, const std::int32_t* dst, std::size_t M) {
    gpt_cuda::head_forward(out, act_.hf, parameter_tensors().score, head_bias_.data(), src, dst, M,
                           config_.hidden_size);
  }

  // d head output (device, read at dst[m]) for rows src[m] → every parameter gradient.
  void head_backward(const float* d_out, const std::int32_t* src, const std::int32_t* dst, std::size_t M) {
    const std::size_t N = scored_.batch.batch * scored_.batch.time, C = config_.hidden_size;
    RLHF_CUDA_CHECK(cudaMemset(act_.d_hf, 0, N * C * sizeof(float)));
    gpt_cuda::head_backward(act_.d_hf, gradient_tensors().score, head_bias_grad_.data(), act_.column, act_.hf,
                            parameter_tensors().score, d_out, src, dst, M, C);
    trunk_backward();
  }

  // logits [M, V] = hidden [M, C] · Wᵀ (W: lm_head [V, C], the embedding when tied): column-major logitsᵀ [V, M] =
  // (W as column-major [C, V])ᵀ · hiddenᵀ
  void logits_product(float* logits, const float* hidden, std::size_t M) {
    const std::size_t C = config_.hidden_size, V = config_.vocab_size;
    gpt_cuda::gemm(*blas_, true, false, V, M, C, parameter_tensors().lm_head, C, hidden, C, logits, V, 0.0f);
  }

  // Checks and records the batch (gpt_host/scoring.hpp), uploads it with its positions and scoring rows, and runs
  // the blocks and the final norm.
  void forward_trunk(const TokenBatch& batch, const char* fn, bool needs_response = true) {
    const std::size_t B = batch.batch, Tn = batch.time, N = B * Tn;
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
    std::size_t longest = 1;
    for (std::size_t n = 0; n < N; ++n) longest = std::max(longest, std::size_t(scored_.pos[n]) + 1);
    rope_.ensure(longest);
    trunk_forward();
    scored_.trunk_ready = true;
  }

  // The sizes both passes of the trunk index the recorded batch's activations by.
  struct TrunkSizes {
    std::size_t B, Tn, N, C, L, NH, KVH, hd, Q, K, F, att_size;
  };
  TrunkSizes trunk_sizes() const {
    const LlamaConfig& c = config_;
    const std::size_t B = scored_.batch.batch, Tn = scored_.batch.time;
    return {B, Tn, B * Tn, c.hidden_size, c.layers, c.heads, c.kv_heads, c.head_size(), c.q_size(), c.kv_size(),
            c.intermediate_size, B * c.heads * Tn * Tn};
  }

  void trunk_forward() {
    const LlamaConfig& c = config_;
    const auto [B, Tn, N, C, L, NH, KVH, hd, Q, K, F, att_size] = trunk_sizes();
    const auto p = parameter_tensors();
    const Activations& a = act_;
    const float eps = c.rms_norm_eps;
    gpt_cuda::Blas& blas = *blas_;
    const llama_cuda::GqaShape shape{B, Tn, NH, KVH, hd};
    llama_cuda::embedding_forward(a.x, d_tokens_.data(), p.embed, N, C);
    for (std::size_t l = 0; l < L; ++l) {
      const float* x = a.x + l * N * C;
      float* h1 = a.h1 + l * N * C;
      float *mid = a.mid + l * N * C, *h2 = a.h2 + l * N * C;
      float *gate = a.gate + l * N * F, *up = a.up + l * N * F;
      llama_cuda::rmsnorm_forward(h1, a.r1 + l * N, x, p.attn_norm + l * C, N, C, eps);
      float* qlin = c.qk_norm ? a.qraw + l * N * Q : a.q;
      float* klin = c.qk_norm ? a.kraw + l * N * K : a.k;
      llama_cuda::linear_forward(blas, qlin, h1, p.qw + l * C * Q, c.qkv_bias ? p.qb + l * Q : nullptr, N, C, Q);
      llama_cuda::linear_forward(blas, klin, h1, p.kw + l * C * K, c.qkv_bias ? p.kb + l * K : nullptr, N, C, K);
      llama_cuda::linear_forward(blas, a.v, h1, p.vw + l * C * K, c.qkv_bias ? p.vb + l * K : nullptr, N, C, K);
      if (c.qk_norm) {
        llama_cuda::rmsnorm_forward(a.q, a.rq + l * N * NH, qlin, p.q_norm + l * hd, N * NH, hd, eps);
        llama_cuda::rmsnorm_forward(a.k, a.rk + l * N * KVH, klin, p.k_norm + l * hd, N * KVH, hd, eps);
      }
      llama_cuda::rope_apply(a.q, d_pos_.data(), rope_, N, NH, false);
      llama_cuda::rope_apply(a.k, d_pos_.data(), rope_, N, KVH, false);
      if (flash()) {  // the rows are kept as they are: q [N, Q], k, v [N, K]
        float *qk = a.qh + l * N * Q, *kk = a.kh + l * N * K, *vk = a.vh + l * N * K;
        RLHF_CUDA_CHECK(cudaMemcpy(qk, a.q, N * Q * sizeof(float), cudaMemcpyDeviceToDevice));
        RLHF_CUDA_CHECK(cudaMemcpy(kk, a.k, N * K * sizeof(float), cudaMemcpyDeviceToDevice));
        RLHF_CUDA_CHECK(cudaMemcpy(vk, a.v, N * K * sizeof(float), cudaMemcpyDeviceToDevice));
        gpt_cuda::flash_attention_forward(a.atty + l * N * Q, a.lse + l * B * NH * Tn, qk, kk, vk, d_real_.data(),
                                          flash_shape(B, Tn));
      } else {
        llama_cuda::gqa_attention_forward(blas, a.atty + l * N * Q, a.qh + l * N * Q, a.kh + l * N * K,
                                          a.vh + l * N * K, a.att + l * att_size, a.y, a.q, a.k, a.v,
                                          d_real_.data(), shape);
      }
      llama_cuda::linear_forward(blas, mid, a.atty + l * N * Q, p.ow + l * Q * C, c.o_bias ? p.ob + l * C : nullptr,
                                 N, Q, C);
      gpt_cuda::residual_forward(mid, mid, x, N * C);
      llama_cuda::rmsnorm_forward(h2, a.r2 + l * N, mid, p.mlp_norm + l * C, N, C, eps);
      llama_cuda::linear_forward(blas, gate, h2, p.gate + l * C * F, nullptr, N, C, F);
      llama_cuda::linear_forward(blas, up, h2, p.up + l * C * F, nullptr, N, C, F);
      llama_cuda::swiglu_forward(a.act, gate, up, N * F);
      float* out = a.x + (l + 1) * N * C;
      llama_cuda::linear_forward(blas, out, a.act, p.down + l * F * C, nullptr, N, F, C);
      gpt_cuda::residual_forward(out, out, mid, N * C);
    }
    llama_cuda::rmsnorm_forward(a.hf, a.rf, a.x + L * N * C, p.norm, N, C, eps);
  }

  // From d loss / d final hidden state (act_.d_hf) to every parameter's gradient.
  void trunk_backward() {
    const LlamaConfig& c = config_;
    const auto [B, Tn, N, C, L, NH, KVH, hd, Q, K, F, att_size] = trunk_sizes();
    const auto p = parameter_tensors();
    const auto g = gradient_tensors();
    const Activations& a = act_;
    gpt_cuda::Blas& blas = *blas_;
    const llama_cuda::GqaShape shape{B, Tn, NH, KVH, hd};
    float* col = a.column;
    RLHF_CUDA_CHECK(cudaMemset(a.d_res, 0, N * C * sizeof(float)));
    llama_cuda::rmsnorm_backward(a.d_res, g.norm, col, a.d_hf, a.x + L * N * C, p.norm, a.rf, N, C);
    for (std::size_t l = L; l-- > 0;) {
      const float* x = a.x + l * N * C;
      const float *mid = a.mid + l * N * C, *h2 = a.h2 + l * N * C, *h1 = a.h1 + l * N * C;
      const float *gate = a.gate + l * N * F, *up = a.up + l * N * F;
      // MLP: out = mid + down(silu(gate(h2)) · up(h2)),  h2 = norm(mid)
      llama_cuda::swiglu_forward(a.act, gate, up, N * F);  // recomputed rather than kept: [L, N, F] saved
      llama_cuda::linear_backward(blas, a.dgate, g.down + l * F * C, nullptr, col, a.d_res, a.act,
                                  p.down + l * F * C, N, F, C);  // d act, into dgate
      llama_cuda::swiglu_backward(a.dgate, a.dup, a.dgate, gate, up, N * F);
      llama_cuda::linear_backward(blas, a.d_h, g.gate + l * C * F, nullptr, col, a.dgate, h2, p.gate + l * C * F, N,
                                  C, F);
      llama_cuda::linear_backward(blas, a.d_h, g.up + l * C * F, nullptr, col, a.dup, h2, p.up + l * C * F, N, C, F,
                                  true);
      llama_cuda::rmsnorm_backward(a.d_res, g.mlp_norm + l * C, col, a.d_h, mid, p.mlp_norm + l * C, a.r2 + l * N, N,
                                   C);
      // attention: mid = x + o(attention(rope(norm(q(h1))), rope(norm(k(h1))), v(h1))),  h1 = norm(x)
      llama_cuda::linear_backward(blas, a.d_atty, g.ow + l * Q * C, c.o_bias ? g.ob + l * C : nullptr, col, a.d_res,
                                  a.atty + l * N * Q, p.ow + l * Q * C, N, Q, C);
      if (flash())
        gpt_cuda::flash_attention_backward(a.dq, a.dk, a.dv, a.dsum, a.d_atty, a.qh + l * N * Q, a.kh + l * N * K,
                                           a.vh + l * N * K, a.atty + l * N * Q, a.lse + l * B * NH * Tn,
                                           d_real_.data(), flash_shape(B, Tn));
      else
        llama_cuda::gqa_attention_backward(blas, a.dq, a.dk, a.dv, a.dy, a.dqh, a.dkh, a.dvh, a.d_att, a.d_atty,
                                           a.qh + l * N * Q, a.kh + l * N * K, a.vh + l * N * K,
                                           a.att + l * att_size, shape);
      llama_cuda::rope_apply(a.dq, d_pos_.data(), rope_, N, NH, true);
      llama_cuda::rope_apply(a.dk, d_pos_.data(), rope_, N, KVH, true);
      const float *dq = a.dq, *dk = a.dk;
      if (c.qk_norm) {
        RLHF_CUDA_CHECK(cudaMemset(a.dqraw, 0, N * Q * sizeof(float)));
        RLHF_CUDA_CHECK(cudaMemset(a.dkraw, 0, N * K * sizeof(float)));
        llama_cuda::rmsnorm_backward(a.dqraw, g.q_norm + l * hd, col, a.dq, a.qraw + l * N * Q, p.q_norm + l * hd,
                                     a.rq + l * N * NH, N * NH, hd);
        llama_cuda::rmsnorm_backward(a.dkraw, g.k_norm + l * hd, col, a.dk, a.kraw + l * N * K, p.k_norm + l * hd,
                                     a.rk + l * N * KVH, N * KVH, hd);
        dq = a.dqraw, dk = a.dkraw;
      }
      llama_cuda::linear_backward(blas, a.d_h, g.qw + l * C * Q, c.qkv_bias ? g.qb + l * Q : nullptr, col, dq, h1,
                                  p.qw + l * C * Q, N, C, Q);
      llama_cuda::linear_backward(blas, a.d_h, g.kw + l * C * K, c.qkv_bias ? g.kb + l * K : nullptr, col, dk, h1,
                                  p.kw + l * C * K, N, C, K, true);
      llama_cuda::linear_backward(blas, a.d_h, g.vw + l * C * K, c.qkv_bias ? g.vb + l * K : nullptr, col, a.dv, h1,
                                  p.vw + l * C * K, N, C, K, true);
      llama_cuda::rmsnorm_backward(a.d_res, g.attn_norm + l * C, col, a.d_h, x, p.attn_norm + l * C, a.r1 + l * N, N,
                                   C);
    }
    llama_cuda::embedding_backward(g.embed, a.d_res, by_token_, C);  // padding rows get no gradient
  }

  // Sizes every buffer for B × T; grows, never shrinks (a growth reallocates: contents are lost).
  void reserve(std::size_t B, std::size_t Tn) {
    const LlamaConfig& c = config_;
    const std::size_t N = B * Tn, C = c.hidden_size, L = c.layers, NH = c.heads, KVH = c.kv_heads, hd = c.head_size(),
                      Q = c.q_size(), K = c.kv_size(), F = c.intermediate_size,
                      att = flash() ? 0 : B * NH * Tn * Tn, rows = flash() ? B * NH * Tn : 0;
    const std::size_t qk = c.qk_norm ? 1 : 0, heads = flash() ? 0 : 1;  // heads: the materialized path's scratch
    using gpt_cuda::column_scratch;
    const std::size_t column = std::max({column_scratch(N, std::max({C, Q, K, F})), column_scratch(N * NH, hd),
                                         column_scratch(N * KVH, hd), column_scratch(N, 1)});
    const std::size_t sizes[] = {
        (L + 1) * N * C, L * N * C, L * N,                                   // x, h1, r1
        qk * L * N * Q,  qk * L * N * NH, qk * L * N * K, qk * L * N * KVH,  // qraw, rq, kraw, rk
        L * N * Q,       L * N * K, L * N * K, L * att, L * N * Q,           // qh, kh, vh, att, atty
        L * N * C,       L * N * C, L * N, L * N * F, L * N * F,             // mid, h2, r2, gate, up
        N * C,           N,                                                  // hf, rf
        N * Q,           N * K, N * K, heads * N * Q,                        // q, k, v, y
        N * F,           N * F, N * F,                                       // act, dgate, dup
        N * C,           N * C, N * C,                                       // d_res, d_h, d_hf
        N * Q,           N * Q, N * K, N * K,                                // d_atty, dq, dk, dv
        qk * N * Q,      qk * N * K,                                         // dqraw, dkraw
        heads * N * Q,   heads * N * Q, heads * N * K, heads * N * K,        // dy, dqh, dkh, dvh
        att,             column, L * rows, rows};                            // d_att, column, lse, dsum
    constexpr std::size_t views = std::size(sizes);
    std::size_t total = 0;
    for (auto s : sizes) total += (s + 63) / 64 * 64;  // every view starts 256-byte aligned (cuBLASLt wants 16)
    act_buffer_.reserve(total);
    float* ptr[views];
    float* at = act_buffer_.data();
    for (std::size_t i = 0; i < views; ++i) ptr[i] = at, at += (sizes[i] + 63) / 64 * 64;
    act_ = {ptr[0],  ptr[1],  ptr[2],  ptr[3],  ptr[4],  ptr[5],  ptr[6],  ptr[7],  ptr[8],  ptr[9],
            ptr[10], ptr[11], ptr[12], ptr[13], ptr[14], ptr[15], ptr[16], ptr[17], ptr[18], ptr[19],
            ptr[20], ptr[21], ptr[22], ptr[23], ptr[24], ptr[25], ptr[26], ptr[27], ptr[28], ptr[29],
            ptr[30], ptr[31], ptr[32], ptr[33], ptr[34], ptr[35], ptr[36], ptr[37], ptr[38], ptr[39],
            ptr[40], ptr[41], ptr[42]};
    static_assert(views == 43, "one view per member of Activations");
    static_assert(sizeof(Activations) == views * sizeof(float*), "one view per member of Activations");
    logits_.reserve(N * c.vocab_size), hf_rows_.reserve(N * C), row_max_.reserve(N), row_log_sum_.reserve(N);
    d_tokens_.reserve(N), d_pos_.reserve(N), d_real_.reserve(N), d_src_.reserve(N), d_dst_.reserve(N);
    d_targets_.reserve(N), d_last_.reserve(B);
    if (d_iota_.size() < B) {
      std::vector<std::int32_t> iota(B);
      for (std::size_t b = 0; b < B; ++b) iota[b] = std::int32_t(b);
      d_iota_.resize(B);
      d_iota_.upload(iota.data(), B);
    }
  }

  LlamaConfig config_;
  LlamaCudaOptions options_;
  std::unique_ptr<gpt_cuda::Blas> blas_;
  llama_cuda::RopeCache rope_;                       // cos/sin of the positions seen, host and device
  gpt_cuda::device_buffer<float> params_, grads_;    // [llama_param_count(config)] each; layout in llama/params.hpp
  gpt_cuda::device_buffer<float> act_buffer_;        // every activation, viewed through act_
  Activations act_{};
  gpt_host::ScoredBatch<std::int32_t> scored_;       // the last forward's batch and scoring rows
  gpt_cuda::device_buffer<float> logits_;            // [M, V] (capacity N rows); d logits after backward
  gpt_cuda::device_buffer<float> hf_rows_;           // [M, C] final hidden rows that score a response token
  gpt_cuda::device_buffer<float> row_max_, row_log_sum_;  // [M]
  gpt_cuda::device_buffer<float> head_bias_, head_bias_grad_;  // [1] each: 0, and a sink
  gpt_cuda::device_buffer<int> flag_;                // [1] non-finite flag
  // the batch on the device: tokens, positions, real [N]; scoring rows src, dst, targets [M]; last [B]
  gpt_cuda::device_buffer<std::int32_t> d_tokens_, d_pos_, d_src_, d_dst_, d_targets_, d_last_, d_iota_;
  gpt_cuda::device_buffer<std::uint8_t> d_real_;
  gpt_cuda::DeviceBuckets by_token_;                 // rows grouped by token id for the embedding backward
};

static_assert(TrainablePolicy<LlamaCuda>);
static_assert(ValueModel<LlamaCuda>);
static_assert(RewardModel<LlamaCuda>);
static_assert(OptimizerFor<CudaAdamW, LlamaCuda>);

}  // namespace rlhf
