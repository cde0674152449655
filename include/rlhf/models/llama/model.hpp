#pragma once
// A Llama-family decoder on the CPU (Llama 3.x, SmolLM2, TinyLlama, Qwen2/2.5, Qwen3): token embedding, L pre-norm
// blocks (RMSNorm, grouped-query causal attention with rotary positions, RMSNorm, SwiGLU MLP), a final RMSNorm and
// the LM head (tied to the embedding or its own); optionally a scalar head (score.weight) for a reward model or
// a value function. HF's modeling_llama semantics; docs/models/llama.md.
//
// It is a TrainablePolicy, a SamplingPolicy, and (with config.scalar_head) a ValueModel and a RewardModel, with
// the GPT's contract for each (models/gpt/model.hpp): padding (attention_mask 0) is never attended and not
// counted in positions; a backward uses the activations of the last forward, on the same batch (checked by the
// ScoredBatch the GPT uses too, gpt_host/scoring.hpp); buffers grow to the largest batch and are reused. Not
// thread-safe: one model, one caller at a time.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "rlhf/backends/eigen.hpp"
#include "rlhf/core/batch.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/core/validate.hpp"
#include "rlhf/models/gpt/layers.hpp"
#include "rlhf/models/gpt/lm_head_rows.hpp"
#include "rlhf/models/gpt/weights.hpp"
#include "rlhf/models/gpt_host/scored_model.hpp"
#include "rlhf/models/gpt_host/scoring.hpp"
#include "rlhf/models/linear_hook.hpp"
#include "rlhf/models/llama/config.hpp"
#include "rlhf/models/llama/layers.hpp"
#include "rlhf/models/llama/params.hpp"
#include "rlhf/models/llama/rope.hpp"
#include "rlhf/models/llama/sampler.hpp"
#include "rlhf/models/logprob.hpp"

namespace rlhf {

template <class T = float>
class Llama : public gpt_host::ScoredModel<Llama<T>, rlhf::eigen<T>>, public gpt::Weights<T> {
 public:
  using backend = rlhf::eigen<T>;
  using scalar = T;
  using matrix = typename backend::matrix;
  using vector = typename backend::vector;

  // HF's initialisation: weights N(0, 0.02), biases 0, RMSNorm weights 1 (params.hpp).
  explicit Llama(const LlamaConfig& config, std::uint64_t seed = 0)
      : gpt::Weights<T>("rlhf::Llama"), config_(config), rope_(validated(config)) {
    this->allocate(llama_param_count(config_));
    initialize(seed);
  }

  const LlamaConfig& config() const { return config_; }
  // parameters(), gradients(), zero_grad(), weights_trainable(), set_linear_hook, set_matmul_precision: gpt::Weights
  // (gpt/weights.hpp).
  LlamaTensors<T> parameter_tensors() { return llama_tensors(params_.data(), config_); }
  LlamaTensors<const T> parameter_tensors() const { return llama_tensors<const T>(params_.data(), config_); }
  // Frozen: every pointer null (no gradient is computed for it) but `score`, the scalar head's, which stays.
  LlamaTensors<T> gradient_tensors() {
    if (!frozen_) return llama_tensors(grads_.data(), config_);
    LlamaTensors<T> g{};
    g.score = head_grads_.empty() ? nullptr : head_grads_.data();
    return g;
  }

  // false: the weights are frozen, as under LoRA (models/lora/): the gradient buffer is released and the backward
  // skips every weight gradient, computing only what flows to the inputs (and the scalar head's gradient, kept in
  // gradient_tensors().score for an adapter's modules_to_save). true (the default): a fresh zero gradient buffer.
  void set_weights_trainable(bool trainable) {
    this->reset_gradients(trainable, config_.scalar_head ? config_.hidden_size : 0);
  }

  // set_linear_hook: an adapter on the projections (linear_hook.hpp), or null. Its sites: module 0 … 6 = q_proj,
  // k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, and the layer. The model does not own it.
  void initialize(std::uint64_t seed) { llama_initialize_parameters(params_.data(), config_, seed); }

  // set_matmul_precision: the projections' and the LM head's matrix products (q/k/v/o, gate/up/down, the head;
  // not attention's): float32 or bf16 operands with float32 sums (gpt/bf16_matmul.hpp), as the GPT's and the CUDA
  // Llama's. A double model refuses bf16.

  // ---- Policy ------------------------------------------------------------------------------------------
  // [B, T]: log p(tokens[b,t] | real tokens of row b before t) where response_mask is 1, else 0.
  matrix log_probs(const TokenBatch& batch) {
    constexpr const char* fn = "rlhf::Llama::log_probs";
    forward_trunk(batch, fn);
    const std::size_t M = scored_.rows, C = config_.hidden_size, V = config_.vocab_size;
    matrix out = backend::matrix_of(batch.batch, batch.time);
    head_.gather(act_.hf, scored_, 0, M, C);
    logits_product(head_.logits.data(), head_.rows.data(), M);
    head_.logprob_forward(scored_, 0, M, V, out.data());
    this->require_finite_logprobs(batch, out, fn);
    scored_.logits_ready = true;
    return out;
  }

  // Accumulates parameter gradients for d loss / d log_probs [B, T]; the GPT's checks (gpt/model.hpp).
  void backward(const TokenBatch& batch, const matrix& d_logp) {
    this->begin_backward(batch, d_logp, "rlhf::Llama::backward");
    const std::size_t M = scored_.rows, C = config_.hidden_size, V = config_.vocab_size;
    head_.logprob_backward(scored_, 0, M, V, d_logp.data());
    // d rows [M, C] = d logits · W;  d W [V, C] += d logitsᵀ · rows   (W: lm_head, or embed when tied; null g: frozen)
    T* d_rows = act_.d_h;  // [M, C] ⊂ [N, C], free until the trunk's backward
    head_gradient_products(d_rows, gradient_tensors().lm_head, head_.logits.data(), head_.rows.data(), M);
    std::fill_n(act_.d_hf, batch.batch * batch.time * C, T(0));
    head_.scatter_add(act_.d_hf, d_rows, scored_, 0, M, C);
    trunk_backward();
  }

  // logits(batch) [B·T, V]; the ValueModel and RewardModel members (values, backward_values, scores,
  // backward_scores: score · the final hidden state) with config.scalar_head: gpt_host::ScoredModel
  // (gpt_host/scored_model.hpp).

  // ---- SamplingPolicy ------------------------------------------------------------------------------------
  // Continues each prompt with a KV cache (llama/sampler.hpp), its projections in the precision training uses.
  // Leaves the training activations alone.
  TokenBatch sample(const PromptBatch& prompts, const SampleOptions& options, Rng& rng) {
    return sampler_.sample(std::as_const(*this).parameter_tensors(), config_, rope_, prompts, options, rng,
                           precision_);
  }
  // [B, T] log p of each token drawn by the last sample() (temperature 1, unfiltered): PPO's "old" log-probs.
  const gpt::RowMatrix<T>& sampled_log_probs() const { return sampler_.log_probs(); }

 private:
  friend class gpt_host::ScoredModel<Llama<T>, backend>;
  using gpt::Weights<T>::params_, gpt::Weights<T>::grads_, gpt::Weights<T>::head_grads_, gpt::Weights<T>::frozen_,
      gpt::Weights<T>::hook_, gpt::Weights<T>::precision_;
  static constexpr gpt_host::ScoredModelNames scored_names{"rlhf::Llama::logits", "rlhf::Llama::values",
                                                           "rlhf::Llama::backward_values", "rlhf::Llama::scores",
                                                           "rlhf::Llama::backward_scores"};

  static const LlamaConfig& validated(const LlamaConfig& c) {
    c.validate("rlhf::Llama");
    return c;
  }

  struct Activations {  // views into act_buffer_ for a batch B × T, N = B·T; Q = NH·hd, K = KVH·hd
    T* x;          // [L + 1, N, C] the residual stream: x[0] the embedding, x[l + 1] block l's output
    T *h1, *r1;    // [L, N, C], [L, N]      input_layernorm and its rstd
    T *qraw, *rq;  // [L, N, Q], [L, N·NH]   q before q_norm (qk_norm only) and q_norm's rstd
    T *kraw, *rk;  // [L, N, K], [L, N·KVH]
    T *q, *k, *v;  // [L, N, Q], [L, N, K], [L, N, K]   what attention reads (normed, rotated)
    T* att;        // [L, B, NH, T, T]
    T* atty;       // [L, N, Q]
    T* mid;        // [L, N, C]              the stream after attention
    T *h2, *r2;    // [L, N, C], [L, N]      post_attention_layernorm
    T *gate, *up;  // [L, N, F] each
    T *hf, *rf;    // [N, C], [N]            model.norm
    // scratch for one layer at a time
    T* act;        // [N, F]  silu(gate)·up
    T *dgate, *dup;  // [N, F]
    T *d_res, *d_h;  // [N, C]  d of the stream, d of a norm's output
    T* d_hf;       // [N, C]
    T *d_atty, *dq, *dqraw;  // [N, Q]
    T *dk, *dv, *dkraw;      // [N, K]
    T* d_att;      // [B, NH, T, T]
  };

  void require_head(const char* fn) const {
    if (!config_.scalar_head) fail<config_error>(fn, ": the model has no scalar head (LlamaConfig::scalar_head)");
  }
  T head_at(std::size_t row) const {
    const std::size_t C = config_.hidden_size;
    return gpt::ConstArrayMap<T>(act_.hf + row * C, gpt::ix(C)).matrix().dot(
        gpt::ConstArrayMap<T>(parameter_tensors().score, gpt::ix(C)).matrix());
  }
  void head_backward(std::size_t row, T g) {
    const std::size_t C = config_.hidden_size;
    gpt::ArrayMap<T>(act_.d_hf + row * C, gpt::ix(C)) += g * gpt::ConstArrayMap<T>(parameter_tensors().score, gpt::ix(C));
    gpt::ArrayMap<T>(gradient_tensors().score, gpt::ix(C)) += g * gpt::ConstArrayMap<T>(act_.hf + row * C, gpt::ix(C));
  }

  // ScoredModel's view of the final hidden state [N, C] and its gradient, and the backward from that gradient.
  std::size_t width() const { return config_.hidden_size; }
  const T* final_hidden() const { return act_.hf; }
  T* d_final_hidden() { return act_.d_hf; }
  void backward_from_final_hidden() { trunk_backward(); }

  // logits [M, V] = hidden [M, C] · Wᵀ (W: lm_head [V, C], the embedding when tied)
  void logits_product(T* logits, const T* hidden, std::size_t M) {
    const std::size_t C = config_.hidden_size, V = config_.vocab_size;
    const T* W = parameter_tensors().lm_head;
    if constexpr (std::is_same_v<T, float>) {
      if (precision_ == gpt::MatmulPrecision::bf16)
        return gpt::bf16::gemm(logits, V, gpt::bf16::row_major(hidden, C), gpt::bf16::transposed(W, C), M, V, C, false);
    }
    gpt::LmHeadRows<backend>::logits_product(logits, hidden, W, M, C, V);
  }

  // d_rows [M, C] = d logits [M, V] · W [V, C];  d_W [V, C] += d logitsᵀ · rows [M, C] (null d_W: frozen)
  void head_gradient_products(T* d_rows, T* d_W, const T* dlogits, const T* rows, std::size_t M) {
    const std::size_t C = config_.hidden_size, V = config_.vocab_size;
    const T* W = parameter_tensors().lm_head;
    if constexpr (std::is_same_v<T, float>) {
      if (precision_ == gpt::MatmulPrecision::bf16) {
        namespace b16 = gpt::bf16;
        b16::gemm(d_rows, C, b16::row_major(dlogits, V), b16::row_major(W, C), M, C, V, false);
        if (d_W) b16::gemm(d_W, C, b16::transposed(dlogits, V), b16::row_major(rows, C), V, C, M, true);
        return;
      }
    }
    gpt::LmHeadRows<backend>::gradient_products(d_rows, d_W, dlogits, rows, W, M, C, V);
  }

  void forward_trunk(const TokenBatch& batch, const char* fn, bool needs_response = true) {
    scored_.record(batch, config_, fn, needs_response);
    reserve(batch.batch, batch.time);
    std::size_t longest = 1;
    for (std::size_t n = 0; n < batch.batch * batch.time; ++n) longest = std::max(longest, std::size_t(scored_.pos[n]) + 1);
    rope_.ensure(longest);
    trunk_forward();
    scored_.trunk_ready = true;
  }

  void trunk_forward() {
    const LlamaConfig& c = config_;
    const auto [B, Tn, N, C, L, NH, KVH, hd, Q, K, F, V, att_size] =
        pass_sizes(scored_.batch.batch, scored_.batch.time);
    const auto p = parameter_tensors();
    const Activations& a = act_;
    const T eps = T(c.rms_norm_eps);
    const std::int32_t* tokens = scored_.batch.tokens.data();
    for (std::size_t n = 0; n < N; ++n)
      std::copy_n(p.embed + std::size_t(tokens[n]) * C, C, a.x + n * C);
    for (std::size_t l = 0; l < L; ++l) {
      const T* x = a.x + l * N * C;
      T* h1 = a.h1 + l * N * C;
      T *q = a.q + l * N * Q, *k = a.k + l * N * K, *v = a.v + l * N * K;
      T *mid = a.mid + l * N * C, *h2 = a.h2 + l * N * C;
      T *gate = a.gate + l * N * F, *up = a.up + l * N * F;
      llama::rmsnorm_forward(h1, a.r1 + l * N, x, p.attn_norm + l * C, N, C, eps);
      T* qlin = c.qk_norm ? a.qraw + l * N * Q : q;
      T* klin = c.qk_norm ? a.kraw + l * N * K : k;
      llama::linear_forward(qlin, h1, p.qw + l * C * Q, c.qkv_bias ? p.qb + l * Q : nullptr, N, C, Q, precision_);
      hook_forward(0, l, qlin, h1, N);
      llama::linear_forward(klin, h1, p.kw + l * C * K, c.qkv_bias ? p.kb + l * K : nullptr, N, C, K, precision_);
      hook_forward(1, l, klin, h1, N);
      llama::linear_forward(v, h1, p.vw + l * C * K, c.qkv_bias ? p.vb + l * K : nullptr, N, C, K, precision_);
      hook_forward(2, l, v, h1, N);
      if (c.qk_norm) {
        llama::rmsnorm_forward(q, a.rq + l * N * NH, qlin, p.q_norm + l * hd, N * NH, hd, eps);
        llama::rmsnorm_forward(k, a.rk + l * N * KVH, klin, p.k_norm + l * hd, N * KVH, hd, eps);
      }
      llama::rope_apply(q, scored_.pos.data(), rope_, N, NH, false);
      llama::rope_apply(k, scored_.pos.data(), rope_, N, KVH, false);
      llama::attention_forward(a.atty + l * N * Q, a.att + l * att_size, q, k, v, scored_.real.data(), B, Tn, NH,
                               KVH, hd);
      llama::linear_forward(mid, a.atty + l * N * Q, p.ow + l * Q * C, c.o_bias ? p.ob + l * C : nullptr, N, Q, C,
                            precision_);
      hook_forward(3, l, mid, a.atty + l * N * Q, N);
      gpt::residual_forward(mid, mid, x, N * C);
      llama::rmsnorm_forward(h2, a.r2 + l * N, mid, p.mlp_norm + l * C, N, C, eps);
      llama::linear_forward(gate, h2, p.gate + l * C * F, static_cast<const T*>(nullptr), N, C, F, precision_);
      hook_forward(4, l, gate, h2, N);
      llama::linear_forward(up, h2, p.up + l * C * F, static_cast<const T*>(nullptr), N, C, F, precision_);
      hook_forward(5, l, up, h2, N);
      llama::swiglu_forward(a.act, gate, up, N * F);
      T* out = a.x + (l + 1) * N * C;
      llama::linear_forward(out, a.act, p.down + l * F * C, static_cast<const T*>(nullptr), N, F, C, precision_);
      hook_forward(6, l, out, a.act, N);
      gpt::residual_forward(out, out, mid, N * C);
    }
    llama::rmsnorm_forward(a.hf, a.rf, a.x + L * N * C, p.norm, N, C, eps);
  }

  void hook_forward(std::size_t module, std::size_t l, T* out, const T* inp, std::size_t N) {
    if (hook_) hook_->forward({module, l}, out, inp, 0, N, N);
  }
  void hook_backward(std::size_t module, std::size_t l, T* dinp, const T* dout, const T* inp, std::size_t N) {
    if (hook_) hook_->backward({module, l}, dinp, dout, inp, 0, N);
  }
  static T* at(T* gradient, std::size_t offset) { return gpt::Weights<T>::grad_at(gradient, offset); }

  // From d loss / d final hidden state (act_.d_hf) to every parameter's gradient.
  void trunk_backward() {
    const LlamaConfig& c = config_;
    const auto [B, Tn, N, C, L, NH, KVH, hd, Q, K, F, V, att_size] =
        pass_sizes(scored_.batch.batch, scored_.batch.time);
    const auto p = parameter_tensors();
    const auto g = gradient_tensors();
    const Activations& a = act_;
    const gpt::MatmulPrecision pr = precision_;
    T* d_res = a.d_res;
    std::fill_n(d_res, N * C, T(0));
    llama::rmsnorm_backward(d_res, g.norm, a.d_hf, a.x + L * N * C, p.norm, a.rf, N, C);
    for (std::size_t l = L; l-- > 0;) {
      const T* x = a.x + l * N * C;
      const T *mid = a.mid + l * N * C, *h2 = a.h2 + l * N * C, *h1 = a.h1 + l * N * C;
      const T *gate = a.gate + l * N * F, *up = a.up + l * N * F;
      // MLP: out = mid + down(silu(gate(h2)) · up(h2)),  h2 = norm(mid)
      llama::swiglu_forward(a.act, gate, up, N * F);  // recomputed rather than kept: [L, N, F] saved
      llama::linear_backward(a.dgate, at(g.down, l * F * C), static_cast<T*>(nullptr), d_res, a.act,
                             p.down + l * F * C, N, F, C, pr);  // d act, into dgate
      hook_backward(6, l, a.dgate, d_res, a.act, N);
      llama::swiglu_backward(a.dgate, a.dup, a.dgate, gate, up, N * F);
      llama::linear_backward(a.d_h, at(g.gate, l * C * F), static_cast<T*>(nullptr), a.dgate, h2, p.gate + l * C * F,
                             N, C, F, pr);
      hook_backward(4, l, a.d_h, a.dgate, h2, N);
      llama::linear_backward(a.d_h, at(g.up, l * C * F), static_cast<T*>(nullptr), a.dup, h2, p.up + l * C * F, N, C,
                             F, pr, true);
      hook_backward(5, l, a.d_h, a.dup, h2, N);
      llama::rmsnorm_backward(d_res, at(g.mlp_norm, l * C), a.d_h, mid, p.mlp_norm + l * C, a.r2 + l * N, N, C);
      // attention: mid = x + o(attention(rope(norm(q(h1))), rope(norm(k(h1))), v(h1))),  h1 = norm(x)
      llama::linear_backward(a.d_atty, at(g.ow, l * Q * C), c.o_bias ? at(g.ob, l * C) : nullptr, d_res,
                             a.atty + l * N * Q, p.ow + l * Q * C, N, Q, C, pr);
      hook_backward(3, l, a.d_atty, d_res, a.atty + l * N * Q, N);
      llama::attention_backward(a.dq, a.dk, a.dv, a.d_att, a.d_atty, a.q + l * N * Q, a.k + l * N * K,
                                a.v + l * N * K, a.att + l * att_size, scored_.real.data(), B, Tn, NH, KVH, hd);
      llama::rope_apply(a.dq, scored_.pos.data(), rope_, N, NH, true);
      llama::rope_apply(a.dk, scored_.pos.data(), rope_, N, KVH, true);
      T *dq = a.dq, *dk = a.dk;
      if (c.qk_norm) {
        std::fill_n(a.dqraw, N * Q, T(0));
        std::fill_n(a.dkraw, N * K, T(0));
        llama::rmsnorm_backward(a.dqraw, at(g.q_norm, l * hd), a.dq, a.qraw + l * N * Q, p.q_norm + l * hd,
                                a.rq + l * N * NH, N * NH, hd);
        llama::rmsnorm_backward(a.dkraw, at(g.k_norm, l * hd), a.dk, a.kraw + l * N * K, p.k_norm + l * hd,
                                a.rk + l * N * KVH, N * KVH, hd);
        dq = a.dqraw, dk = a.dkraw;
      }
      llama::linear_backward(a.d_h, at(g.qw, l * C * Q), c.qkv_bias ? at(g.qb, l * Q) : nullptr, dq, h1,
                             p.qw + l * C * Q, N, C, Q, pr);
      hook_backward(0, l, a.d_h, dq, h1, N);
      llama::linear_backward(a.d_h, at(g.kw, l * C * K), c.qkv_bias ? at(g.kb, l * K) : nullptr, dk, h1,
                             p.kw + l * C * K, N, C, K, pr, true);
      hook_backward(1, l, a.d_h, dk, h1, N);
      llama::linear_backward(a.d_h, at(g.vw, l * C * K), c.qkv_bias ? at(g.vb, l * K) : nullptr, a.dv, h1,
                             p.vw + l * C * K, N, C, K, pr, true);
      hook_backward(2, l, a.d_h, a.dv, h1, N);
      llama::rmsnorm_backward(d_res, at(g.attn_norm, l * C), a.d_h, x, p.attn_norm + l * C, a.r1 + l * N, N, C);
    }
    // the embedding: padding rows get no gradient; serial, as rows may share a token
    const std::int32_t* tokens = scored_.batch.tokens.data();
    for (std::size_t n = 0; n < N; ++n)
      if (scored_.real[n] && g.embed)
        gpt::ArrayMap<T>(g.embed + std::size_t(tokens[n]) * C, gpt::ix(C)) +=
            gpt::ConstArrayMap<T>(d_res + n * C, gpt::ix(C));
  }

  // The sizes of a pass over a batch B × T, N = B·T rows: the config's, and att = B·NH·T·T.
  struct Sizes {
    std::size_t B, Tn, N, C, L, NH, KVH, hd, Q, K, F, V, att;
  };
  Sizes pass_sizes(std::size_t B, std::size_t Tn) const {
    const LlamaConfig& c = config_;
    return {B,          Tn,         B * Tn,     c.hidden_size,        c.layers,     c.heads,
            c.kv_heads, c.head_size(), c.q_size(), c.kv_size(), c.intermediate_size, c.vocab_size,
            B * c.heads * Tn * Tn};
  }

  // Sizes every buffer for B × T; grows, never shrinks.
  void reserve(std::size_t B, std::size_t Tn) {
    const LlamaConfig& c = config_;
    const auto [B_, Tn_, N, C, L, NH, KVH, hd, Q, K, F, V, att] = pass_sizes(B, Tn);
    const std::size_t qk = c.qk_norm ? 1 : 0;
    const std::size_t sizes[] = {
        (L + 1) * N * C, L * N * C, L * N,                     // x, h1, r1
        qk * L * N * Q,  qk * L * N * NH, qk * L * N * K, qk * L * N * KVH,  // qraw, rq, kraw, rk
        L * N * Q,       L * N * K, L * N * K, L * att, L * N * Q,  // q, k, v, att, atty
        L * N * C,       L * N * C, L * N, L * N * F, L * N * F,    // mid, h2, r2, gate, up
        N * C,           N,                                       // hf, rf
        N * F,           N * F, N * F,                            // act, dgate, dup
        N * C,           N * C, N * C,                            // d_res, d_h, d_hf
        N * Q,           N * Q, qk * N * Q,                       // d_atty, dq, dqraw
        N * K,           N * K, qk * N * K,                       // dk, dv, dkraw
        att};
    std::size_t total = 0;
    for (auto s : sizes) total += (s + 15) / 16 * 16;  // every buffer 64-byte aligned (as the GPT's, see layers.hpp)
    if (act_buffer_.size() < total) act_buffer_.resize(total);
    T* at = act_buffer_.data();
    T* ptr[std::size(sizes)];
    for (std::size_t i = 0; i < std::size(sizes); ++i) ptr[i] = at, at += (sizes[i] + 15) / 16 * 16;
    act_ = {ptr[0],  ptr[1],  ptr[2],  ptr[3],  ptr[4],  ptr[5],  ptr[6],  ptr[7],  ptr[8],  ptr[9],  ptr[10],
            ptr[11], ptr[12], ptr[13], ptr[14], ptr[15], ptr[16], ptr[17], ptr[18], ptr[19], ptr[20], ptr[21],
            ptr[22], ptr[23], ptr[24], ptr[25], ptr[26], ptr[27], ptr[28], ptr[29], ptr[30], ptr[31]};
    head_.reserve(N, C, V);
  }

  LlamaConfig config_;
  llama::RopeTable<T> rope_;
  // gpt::Weights: params_, grads_ ([llama_param_count(config)] each; layout in llama/params.hpp), head_grads_ ([C]
  // the scalar head's gradient while frozen), frozen_, hook_, precision_
  gpt::aligned_vector<T> act_buffer_;      // every activation, viewed through act_
  Activations act_{};
  gpt_host::ScoredBatch<std::size_t> scored_;  // the last forward's batch and scoring rows
  gpt::LmHeadRows<backend> head_;              // the LM head's rows, logits (d logits after backward) and their sums
  llama::Sampler<T> sampler_;
};

static_assert(EveryRoleModel<Llama<float>>);
static_assert(TrainablePolicy<Llama<double>>);

}  // namespace rlhf
