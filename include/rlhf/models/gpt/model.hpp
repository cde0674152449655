#pragma once
// The GPT-2 policy on the CPU: token + learned position embeddings, L pre-LayerNorm blocks (causal multi-head
// attention, GELU MLP), a final LayerNorm, and the LM head tied to the token embedding; optionally a scalar
// head (Linear C → 1) for a reward model or a value function. docs/models/gpt.md.
//
// It is a TrainablePolicy, a SamplingPolicy, and (with config.scalar_head) a ValueModel and a RewardModel.
// Padding: TokenBatch::attention_mask marks real tokens; positions count real tokens only and padding is
// never attended, so a row scores the same whichever side it is padded on.
//
// Forward and backward: every forward call (log_probs, values, scores, logits) keeps its activations; a
// backward uses those of the last forward, which must have been on the same batch (checked). Activation
// buffers grow to the largest batch seen and are reused, so steps of one size allocate nothing but their
// results. Not thread-safe: one model, one caller at a time.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "rlhf/backends/eigen.hpp"
#include "rlhf/core/batch.hpp"
#include "rlhf/core/concepts.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/core/validate.hpp"
#include "rlhf/models/logprob.hpp"
#include "rlhf/models/gpt/layers.hpp"
#include "rlhf/models/gpt/lm_head_rows.hpp"
#include "rlhf/models/gpt/sampler.hpp"
#include "rlhf/models/gpt/weights.hpp"
#include "rlhf/models/gpt_host/config.hpp"
#include "rlhf/models/gpt_host/init.hpp"
#include "rlhf/models/gpt_host/params.hpp"
#include "rlhf/models/gpt_host/scored_model.hpp"
#include "rlhf/models/gpt_host/scoring.hpp"
#include "rlhf/models/linear_hook.hpp"

namespace rlhf {

template <class T = float>
class Gpt : public gpt_host::ScoredModel<Gpt<T>, rlhf::eigen<T>>, public gpt::Weights<T> {
 public:
  using backend = rlhf::eigen<T>;
  using scalar = T;
  using matrix = typename backend::matrix;
  using vector = typename backend::vector;

  // GPT-2's initialisation from the seed: weights N(0, 0.02) (the two residual projections 0.02/√(2L)),
  // biases 0, LayerNorm weights 1.
  explicit Gpt(const GptConfig& config, std::uint64_t seed = 0) : gpt::Weights<T>("rlhf::Gpt"), config_(config) {
    config_.validate("rlhf::Gpt");
    this->allocate(gpt_param_count(config_));
    initialize(seed);
  }

  const GptConfig& config() const { return config_; }
  // parameters(), gradients(), zero_grad(), weights_trainable(), set_linear_hook, set_matmul_precision: gpt::Weights
  // (gpt/weights.hpp). The same buffers as named tensors (GptTensors, layout of gpt_host/params.hpp). Frozen: every
  // gradient pointer null but the scalar head's (headw, headb), which stays.
  GptTensors<T> parameter_tensors() { return gpt_tensors(params_.data(), config_); }
  GptTensors<const T> parameter_tensors() const { return gpt_tensors<const T>(params_.data(), config_); }
  GptTensors<T> gradient_tensors() { return gradient_views<T>(grads_.data(), head_grads_.data()); }
  GptTensors<const T> gradient_tensors() const { return gradient_views<const T>(grads_.data(), head_grads_.data()); }

  // false: the weights are frozen, as under LoRA (models/lora/): the gradient buffer is released and the backward
  // skips every weight gradient, computing only what flows to the inputs (and the scalar head's, for an adapter's
  // modules_to_save). true (the default): a fresh zero gradient buffer.
  void set_weights_trainable(bool trainable) {
    gpt::aligned_vector<T>().swap(extra_grads_);
    this->reset_gradients(trainable, config_.scalar_head ? config_.channels + 1 : 0);
  }

  // set_linear_hook: an adapter on the linear layers (linear_hook.hpp), or null. Its sites: module 0 … 3 =
  // attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj, and the layer. With one, the backward runs its tiles on one
  // thread (the adapter's gradients are shared). The model does not own it.

  // set_matmul_precision: the matrix products of forward and backward (attention's included; not sampling's):
  // float32 (the default) or bf16 operands with float32 sums and float32 parameters (gpt/bf16_matmul.hpp; AVX-512
  // BF16 where the CPU has it, float32 speed otherwise: gpt::bf16::hardware_available()). A double model refuses
  // bf16. Copies keep it.

  // Overwrites the parameters with the initialisation of the constructor (gpt_host/init.hpp).
  void initialize(std::uint64_t seed) { gpt_initialize_parameters<T>(params_, config_, seed); }

  // ---- Policy ------------------------------------------------------------------------------------------
  // [B, T]: log p(tokens[b,t] | real tokens of row b before t) where response_mask is 1, else 0. The logits
  // that score token t are those of the last real position before t.
  matrix log_probs(const TokenBatch& batch) {
    constexpr const char* fn = "rlhf::Gpt::log_probs";
    forward_trunk(batch, fn);
    matrix out = backend::matrix_of(batch.batch, batch.time);
    T* o = out.data();
    for_parts(batch.batch, [&](std::size_t b0, std::size_t b1) {
      lm_head_forward(scored_.row_begin[b0], scored_.row_begin[b1], o);
    });
    this->require_finite_logprobs(batch, out, fn);
    scored_.logits_ready = true;
    return out;
  }

  // Accumulates parameter gradients for d loss / d log_probs [B, T] (entries where response_mask is 0 are
  // ignored). Requires the preceding forward pass to have been log_probs on this same batch, and uses its
  // activations and consumes its logits: one backward per log_probs. Checked (gpt_host/scoring.hpp): shape_error
  // when [B, T] differs from the last forward pass's, value_error when there was none, when the tokens or either
  // mask differ, or when no log_probs on this batch has run since the last backward (values or scores on the
  // same batch in between keep the logits; a forward on another batch, or a logits() call, in between makes it
  // throw). Also value_error for a non-finite d_logp at a response token.
  void backward(const TokenBatch& batch, const matrix& d_logp) {
    this->begin_backward(batch, d_logp, "rlhf::Gpt::backward");
    const T* d = d_logp.data();
    pack_weights(true);
    backward_parts(batch.batch, [&](std::size_t b0, std::size_t b1, const GptTensors<T>& g) {
      lm_head_backward(b0, b1, d, g);
      trunk_backward(b0, b1, g);
    });
  }

  // logits(batch) [B·T, V]; the ValueModel and RewardModel members (values, backward_values, scores,
  // backward_scores) with config.scalar_head: gpt_host::ScoredModel (gpt_host/scored_model.hpp).

  // ---- SamplingPolicy ------------------------------------------------------------------------------------
  // Continues each prompt (KV cache; sampler.hpp). Leaves the training activations alone.
  TokenBatch sample(const PromptBatch& prompts, const SampleOptions& options, Rng& rng) {
    pack_weights(false);  // bf16: the forward's packed weights, shared with the sampler
    return sampler_.sample(std::as_const(*this).parameter_tensors(), config_, prompts, options, rng,
                           in_bf16() ? &packed_forward_ : nullptr);
  }
  // [B, T] log p of each token drawn by the last sample() under the model itself (temperature 1, unfiltered):
  // PPO's "old" log-probs, without another forward.
  const matrix& sampled_log_probs() const { return sampler_.log_probs(); }

 private:
  friend class gpt_host::ScoredModel<Gpt<T>, backend>;
  using gpt::Weights<T>::params_, gpt::Weights<T>::grads_, gpt::Weights<T>::head_grads_, gpt::Weights<T>::frozen_,
      gpt::Weights<T>::hook_, gpt::Weights<T>::precision_, gpt::Weights<T>::grad_at;
  static constexpr gpt_host::ScoredModelNames scored_names{"rlhf::Gpt::logits", "rlhf::Gpt::values",
                                                           "rlhf::Gpt::backward_values", "rlhf::Gpt::scores",
                                                           "rlhf::Gpt::backward_scores"};

  struct Activations {  // views into act_buffer_ for a batch B x T, N = B·T
    T* encoded;                 // [N, C]
    T *ln1, *ln1_mean, *ln1_rstd;  // [L, N, C], [L, N], [L, N]
    T* qkv;                     // [L, N, 3C]
    T* att;                     // [L, B, NH, T, T]
    T* atty;                    // [L, N, C]
    T* res2;                    // [L, N, C]
    T *ln2, *ln2_mean, *ln2_rstd;  // [L, N, C], [L, N], [L, N]
    T* fch;                     // [L, N, 4C]
    T* fch_gelu;                // [L, N, 4C]
    T* res3;                    // [L, N, C]
    T *lnf, *lnf_mean, *lnf_rstd;  // [N, C], [N], [N]
    // backward scratch, reused by every layer
    T* d_res;   // [N, C]
    T* d_ln;    // [N, C]
    T* d_atty;  // [N, C]
    T* d_qkv;   // [N, 3C]
    T* d_att;   // [B, NH, T, T]
    T* d_fch;   // [N, 4C]
  };

  void require_head(const char* fn) const { gpt_host::require_scalar_head(config_, fn); }

  template <class U>
  GptTensors<U> gradient_views(U* grads, U* head_grads) const {
    if (!frozen_) return gpt_tensors(grads, config_);
    GptTensors<U> g{};
    if (!head_grads_.empty()) g.headw = head_grads, g.headb = head_grads + config_.channels;
    return g;
  }

  T head_at(std::size_t row) const {
    const auto p = parameter_tensors();
    return gpt::ConstArrayMap<T>(act_.lnf + row * config_.channels, gpt::ix(config_.channels))
               .matrix()
               .dot(gpt::ConstArrayMap<T>(p.headw, gpt::ix(config_.channels)).matrix()) +
           p.headb[0];
  }

  void head_backward(std::size_t row, T g) {
    const std::size_t C = config_.channels;
    auto gr = gradient_tensors();
    gpt::ArrayMap<T>(act_.d_ln + row * C, gpt::ix(C)) +=
        g * gpt::ConstArrayMap<T>(parameter_tensors().headw, gpt::ix(C));
    gpt::ArrayMap<T>(gr.headw, gpt::ix(C)) += g * gpt::ConstArrayMap<T>(act_.lnf + row * C, gpt::ix(C));
    gr.headb[0] += g;
  }

  // ScoredModel's view of the final hidden state [N, C] and its gradient, and the backward from that gradient.
  std::size_t width() const { return config_.channels; }
  const T* final_hidden() const { return act_.lnf; }
  T* d_final_hidden() { return act_.d_ln; }
  void backward_from_final_hidden() {
    pack_weights(true);
    backward_parts(scored_.batch.batch,
                   [&](std::size_t b0, std::size_t b1, const GptTensors<T>& g) { trunk_backward(b0, b1, g); });
  }

  // Checks and records the batch with its positions and scoring rows (gpt_host/scoring.hpp), and runs the blocks
  // and the final LayerNorm. needs_response: whether the batch must carry a response (every scoring call; not
  // logits()).
  void forward_trunk(const TokenBatch& batch, const char* fn, bool needs_response = true) {
    scored_.record(batch, config_, fn, needs_response);
    const std::size_t B = batch.batch;
    reserve(B, batch.time);
    pack_weights(false);
    for_parts(B, [&](std::size_t b0, std::size_t b1) { trunk_forward(b0, b1); });
    scored_.trunk_ready = true;
  }

  // ---- Work split ----------------------------------------------------------------------------------------
  // The batch is cut into tiles of whole sequences of about tile_rows rows (one sequence when T is larger),
  // and each tile runs through every layer on its own: sequences never interact. Small tiles keep a layer's
  // activations in the L2 cache (GEMMs on 256 rows ran at twice the GFLOP/s of GEMMs on 2048 rows here), and
  // with several threads each takes whole tiles (single-threaded GEMMs, no barrier until the end), which keeps
  // two shared cores busy where per-GEMM threading stalls whenever the partner thread is descheduled. In a
  // backward each thread adds into its own gradient buffer (thread 0: gradients()), summed at the end.
  static constexpr std::size_t tile_rows = 256;
  static constexpr std::size_t max_extra_gradient_bytes = std::size_t(1) << 30;  // per-thread gradient copies

  struct Tiles {
    std::size_t batch, per_tile, count;  // B, sequences per tile, tiles
    std::pair<std::size_t, std::size_t> operator[](std::size_t k) const {
      return {k * per_tile, std::min(batch, (k + 1) * per_tile)};
    }
  };
  // At most tile_rows rows per tile, and at least as many tiles as threads when the batch allows.
  static Tiles tiles_of(std::size_t B, std::size_t Tn) {
    std::size_t threads = 1;
#ifdef _OPENMP
    threads = std::size_t(std::max(1, omp_get_max_threads()));
#endif
    const std::size_t per_tile = std::max<std::size_t>(
        1, std::min(tile_rows / std::max<std::size_t>(Tn, 1), (B + threads - 1) / threads));
    return {B, per_tile, (B + per_tile - 1) / per_tile};
  }

  std::size_t threads_for(std::size_t tiles, bool backward) const {
#ifdef _OPENMP
    if (omp_in_parallel()) return 1;
    std::size_t n = std::min<std::size_t>(std::size_t(std::max(1, omp_get_max_threads())), tiles);
    if (backward && (frozen_ || hook_)) return 1;  // one gradient buffer: the adapter's, or the head's
    if (backward) n = std::min(n, 1 + max_extra_gradient_bytes / (params_.size() * sizeof(T)));
    return std::max<std::size_t>(n, 1);
#else
    (void)tiles, (void)backward;
    return 1;
#endif
  }

  // f(b0, b1) for every tile of sequences [b0, b1) of a batch of B.
  template <class F>
  void for_parts(std::size_t B, F f) {
    const Tiles tiles = tiles_of(B, scored_.batch.time);
    const std::size_t threads = threads_for(tiles.count, false);
    if (threads == 1) {
      for (std::size_t k = 0; k < tiles.count; ++k) f(tiles[k].first, tiles[k].second);
      return;
    }
#pragma omp parallel for schedule(static, 1) num_threads(int(threads))
    for (std::ptrdiff_t k = 0; k < std::ptrdiff_t(tiles.count); ++k) f(tiles[k].first, tiles[k].second);
  }

  // f(b0, b1, gradient views) for every tile; the views are those of the calling thread's gradient buffer.
  template <class F>
  void backward_parts(std::size_t B, F f) {
    const Tiles tiles = tiles_of(B, scored_.batch.time);
    const std::size_t threads = threads_for(tiles.count, true), count = params_.size();
    if (threads == 1) {
      const auto g = gradient_tensors();
      for (std::size_t k = 0; k < tiles.count; ++k) f(tiles[k].first, tiles[k].second, g);
      return;
    }
    if (extra_grads_.size() < (threads - 1) * count) extra_grads_.resize((threads - 1) * count);
#pragma omp parallel num_threads(int(threads))
    {
#ifdef _OPENMP
      const std::size_t t = std::size_t(omp_get_thread_num());
#else
      const std::size_t t = 0;
#endif
      T* buffer = t == 0 ? grads_.data() : extra_grads_.data() + (t - 1) * count;
      if (t > 0) std::fill_n(buffer, count, T(0));
      const auto g = gpt_tensors(buffer, config_);
#pragma omp for schedule(static, 1)
      for (std::ptrdiff_t k = 0; k < std::ptrdiff_t(tiles.count); ++k) f(tiles[k].first, tiles[k].second, g);
    }
    const std::ptrdiff_t chunks = std::ptrdiff_t((count + 4095) / 4096);
#pragma omp parallel for schedule(static) num_threads(int(threads))
    for (std::ptrdiff_t c = 0; c < chunks; ++c) {
      const std::size_t begin = std::size_t(c) * 4096, len = std::min<std::size_t>(4096, count - begin);
      auto total = gpt::ArrayMap<T>(grads_.data() + begin, gpt::ix(len));
      for (std::size_t k = 1; k < threads; ++k)
        total += gpt::ConstArrayMap<T>(extra_grads_.data() + (k - 1) * count + begin, gpt::ix(len));
    }
  }

  // ---- Linear layers in either precision ------------------------------------------------------------------
  // Slots of the packed bf16 weights: layer l's qkv, attention projection, fc and fc projection at 4l … 4l + 3,
  // then the LM head (wte). Packed at the start of each forward (W, wteᵀ) and each backward (Wᵀ, wte), while the
  // parameters stand still, and shared by every tile.
  std::size_t head_slot() const { return 4 * config_.layers; }
  bool in_bf16() const {
    if constexpr (std::is_same_v<T, float>) return precision_ == gpt::MatmulPrecision::bf16;
    return false;
  }

  void pack_weights(bool for_backward) {
    if constexpr (std::is_same_v<T, float>) {
      if (!in_bf16()) return;
      const std::size_t C = config_.channels, L = config_.layers, V = config_.vocab_size, slots = 4 * L + 1;
      auto& packed = for_backward ? packed_backward_ : packed_forward_;
      packed.resize(slots);
      const auto p = parameter_tensors();
      const std::size_t in[4] = {C, C, C, 4 * C}, out[4] = {3 * C, C, 4 * C, C};
      const float* weight[4] = {p.qkvw, p.attprojw, p.fcw, p.fcprojw};
#pragma omp parallel for schedule(dynamic, 1) if (!omp_in_parallel() && params_.size() >= (std::size_t(1) << 20))
      for (std::ptrdiff_t k = 0; k < std::ptrdiff_t(slots); ++k) {
        const std::size_t slot = std::size_t(k);
        if (slot == head_slot()) {  // logits = hidden · wteᵀ; d hidden = d logits · wte
          if (for_backward)
            packed[slot].pack(gpt::bf16::row_major(p.wte, C), V, C);
          else
            packed[slot].pack(gpt::bf16::transposed(p.wte, C), C, V);
          continue;
        }
        const std::size_t l = slot / 4, j = slot % 4, I = in[j], O = out[j];
        const float* w = weight[j] + l * I * O;  // [I, O]
        if (for_backward)
          packed[slot].pack(gpt::bf16::transposed(w, O), O, I);
        else
          packed[slot].pack(gpt::bf16::row_major(w, O), I, O);
      }
    } else {
      (void)for_backward;
    }
  }

  void linear_forward(std::size_t slot, T* out, const T* inp, const T* weight, const T* bias, std::size_t n,
                      std::size_t C, std::size_t OC) {
    if constexpr (std::is_same_v<T, float>) {
      if (in_bf16()) return gpt::matmul_forward_bf16(out, inp, packed_forward_[slot], bias, n, C, OC);
    }
    gpt::matmul_forward(out, inp, weight, bias, n, C, OC);
  }

  void linear_backward(std::size_t slot, T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                       std::size_t n, std::size_t C, std::size_t OC) {
    if constexpr (std::is_same_v<T, float>) {
      if (in_bf16()) return gpt::matmul_backward_bf16(dinp, dweight, dbias, dout, inp, packed_backward_[slot], n, C, OC);
    }
    gpt::matmul_backward(dinp, dweight, dbias, dout, inp, weight, n, C, OC);
  }

  // ---- The blocks, on sequences [b0, b1) ------------------------------------------------------------------
  // Embeddings, L blocks and the final LayerNorm.
  void trunk_forward(std::size_t b0, std::size_t b1) {
    const std::size_t Tn = scored_.batch.time, C = config_.channels, L = config_.layers, NH = config_.heads,
                      N = scored_.batch.batch * Tn, att_size = scored_.batch.batch * NH * Tn * Tn;
    const std::size_t r0 = b0 * Tn, n = (b1 - b0) * Tn, B = b1 - b0;  // first row, rows of this block
    const auto p = parameter_tensors();
    const Activations& a = act_;
    const T eps = T(config_.layer_norm_eps);
    T* encoded = a.encoded + r0 * C;
    gpt::encoder_forward(encoded, scored_.batch.tokens.data() + r0, scored_.pos.data() + r0, p.wte, p.wpe, n, C);
    for (std::size_t l = 0; l < L; ++l) {
      const std::size_t at = l * N + r0;  // this block's first row in layer l's [N, …] buffers
      const T* res_in = l == 0 ? encoded : a.res3 + (at - N) * C;
      T* ln1 = a.ln1 + at * C;
      T* qkv = a.qkv + at * 3 * C;
      T* atty = a.atty + at * C;
      T* res2 = a.res2 + at * C;
      T* ln2 = a.ln2 + at * C;
      T* fch = a.fch + at * 4 * C;
      T* fch_gelu = a.fch_gelu + at * 4 * C;
      T* res3 = a.res3 + at * C;
      gpt::layernorm_forward(ln1, a.ln1_mean + at, a.ln1_rstd + at, res_in, p.ln1w + l * C, p.ln1b + l * C, n, C,
                             eps);
      linear_forward(l * 4 + 0, qkv, ln1, p.qkvw + l * C * 3 * C, p.qkvb + l * 3 * C, n, C, 3 * C);
      hook_forward(0, l, qkv, ln1, r0, n, N);
      gpt::attention_forward(atty, a.att + l * att_size + b0 * NH * Tn * Tn, qkv, scored_.real.data() + r0, B, Tn, C,
                             NH, precision_);
      linear_forward(l * 4 + 1, res2, atty, p.attprojw + l * C * C, p.attprojb + l * C, n, C, C);
      hook_forward(1, l, res2, atty, r0, n, N);
      gpt::residual_forward(res2, res2, res_in, n * C);
      gpt::layernorm_forward(ln2, a.ln2_mean + at, a.ln2_rstd + at, res2, p.ln2w + l * C, p.ln2b + l * C, n, C, eps);
      linear_forward(l * 4 + 2, fch, ln2, p.fcw + l * C * 4 * C, p.fcb + l * 4 * C, n, C, 4 * C);
      hook_forward(2, l, fch, ln2, r0, n, N);
      gpt::gelu_forward(fch_gelu, fch, n * 4 * C);
      linear_forward(l * 4 + 3, res3, fch_gelu, p.fcprojw + l * 4 * C * C, p.fcprojb + l * C, n, 4 * C, C);
      hook_forward(3, l, res3, fch_gelu, r0, n, N);
      gpt::residual_forward(res3, res3, res2, n * C);
    }
    gpt::layernorm_forward(a.lnf + r0 * C, a.lnf_mean + r0, a.lnf_rstd + r0, a.res3 + ((L - 1) * N + r0) * C,
                           p.lnfw, p.lnfb, n, C, eps);
  }

  // Logits [m1 − m0, V] of the scoring rows m0 … m1 − 1 (wte as the LM head), and their log-probs into out.
  void lm_head_forward(std::size_t m0, std::size_t m1, T* out) {
    const std::size_t C = config_.channels, V = config_.vocab_size, M = m1 - m0;
    head_.gather(act_.lnf, scored_, m0, m1, C);
    logits_product(head_.logits.data() + m0 * V, head_.rows.data() + m0 * C, M);
    head_.logprob_forward(scored_, m0, m1, V, out);
  }

  // logits [M, V] = hidden [M, C] · wteᵀ
  void logits_product(T* logits, const T* hidden, std::size_t M) {
    const std::size_t C = config_.channels, V = config_.vocab_size;
    const T* wte = parameter_tensors().wte;
    if constexpr (std::is_same_v<T, float>) {
      if (in_bf16())
        return gpt::bf16::gemm(logits, V, gpt::bf16::row_major(hidden, C), packed_forward_[head_slot()], M, false);
    }
    gpt::LmHeadRows<backend>::logits_product(logits, hidden, wte, M, C, V);
  }

  // d_rows [M, C] = d logits [M, V] · wte [V, C];  d wte [V, C] += d logitsᵀ · rows [M, C] (null d_wte: skipped)
  void head_gradient_products(T* d_rows, T* d_wte, const T* dlogits, const T* rows, const T* wte, std::size_t M) {
    const std::size_t C = config_.channels, V = config_.vocab_size;
    if constexpr (std::is_same_v<T, float>) {
      if (in_bf16()) {
        gpt::bf16::gemm(d_rows, C, gpt::bf16::row_major(dlogits, V), packed_backward_[head_slot()], M, false);
        if (d_wte)  // null: frozen
          gpt::bf16::gemm(d_wte, C, gpt::bf16::transposed(dlogits, V), gpt::bf16::row_major(rows, C), V, C, M, true);
        return;
      }
    }
    gpt::LmHeadRows<backend>::gradient_products(d_rows, d_wte, dlogits, rows, wte, M, C, V);
  }

  // d logits in place (one backward per log_probs), then d lnf for sequences [b0, b1) into act_.d_ln and
  // d wte += d logitsᵀ · lnf rows.
  void lm_head_backward(std::size_t b0, std::size_t b1, const T* d_logp, const GptTensors<T>& g) {
    const std::size_t C = config_.channels, V = config_.vocab_size, Tn = scored_.batch.time;
    const std::size_t m0 = scored_.row_begin[b0], m1 = scored_.row_begin[b1], M = m1 - m0;
    head_.logprob_backward(scored_, m0, m1, V, d_logp);
    const T* dlogits = head_.logits.data() + m0 * V;  // [M, V]
    const T* rows = head_.rows.data() + m0 * C;        // [M, C]
    const T* wte = parameter_tensors().wte;            // [V, C]
    T* d_rows = act_.d_atty + b0 * Tn * C;  // [M, C] within this block's rows of a scratch buffer not yet in use
    head_gradient_products(d_rows, g.wte, dlogits, rows, wte, M);
    std::fill_n(act_.d_ln + b0 * Tn * C, (b1 - b0) * Tn * C, T(0));
    head_.scatter_add(act_.d_ln, d_rows, scored_, m0, m1, C);
  }

  void hook_forward(std::size_t module, std::size_t l, T* out, const T* inp, std::size_t r0, std::size_t n,
                    std::size_t N) {
    if (hook_) hook_->forward({module, l}, out, inp, r0, n, N);
  }
  void hook_backward(std::size_t module, std::size_t l, T* dinp, const T* dout, const T* inp, std::size_t r0,
                     std::size_t n) {
    if (hook_) hook_->backward({module, l}, dinp, dout, inp, r0, n);
  }

  // From d loss / d lnf (act_.d_ln, rows of sequences [b0, b1)) to the parameter gradients g.
  void trunk_backward(std::size_t b0, std::size_t b1, const GptTensors<T>& g) {
    const std::size_t Tn = scored_.batch.time, C = config_.channels, L = config_.layers, NH = config_.heads,
                      N = scored_.batch.batch * Tn, att_size = scored_.batch.batch * NH * Tn * Tn;
    const std::size_t r0 = b0 * Tn, n = (b1 - b0) * Tn, B = b1 - b0;
    const auto p = parameter_tensors();
    const Activations& a = act_;
    // this block's rows of the backward scratch buffers
    T* d_res = a.d_res + r0 * C;
    T* d_ln = a.d_ln + r0 * C;
    T* d_atty = a.d_atty + r0 * C;
    T* d_qkv = a.d_qkv + r0 * 3 * C;
    T* d_fch = a.d_fch + r0 * 4 * C;
    T* d_att = a.d_att + b0 * NH * Tn * Tn;
    std::fill_n(d_res, n * C, T(0));
    gpt::layernorm_backward(d_res, g.lnfw, g.lnfb, d_ln, a.res3 + ((L - 1) * N + r0) * C, p.lnfw, a.lnf_mean + r0,
                            a.lnf_rstd + r0, n, C);
    for (std::size_t l = L; l-- > 0;) {
      const std::size_t at = l * N + r0;
      const T* res_in = l == 0 ? a.encoded + r0 * C : a.res3 + (at - N) * C;
      linear_backward(l * 4 + 3, d_fch, grad_at(g.fcprojw, l * 4 * C * C), grad_at(g.fcprojb, l * C), d_res,
                      a.fch_gelu + at * 4 * C, p.fcprojw + l * 4 * C * C, n, 4 * C, C);
      hook_backward(3, l, d_fch, d_res, a.fch_gelu + at * 4 * C, r0, n);
      gpt::gelu_backward(d_fch, a.fch + at * 4 * C, d_fch, n * 4 * C);
      linear_backward(l * 4 + 2, d_ln, grad_at(g.fcw, l * C * 4 * C), grad_at(g.fcb, l * 4 * C), d_fch,
                      a.ln2 + at * C, p.fcw + l * C * 4 * C, n, C, 4 * C);
      hook_backward(2, l, d_ln, d_fch, a.ln2 + at * C, r0, n);
      gpt::layernorm_backward(d_res, grad_at(g.ln2w, l * C), grad_at(g.ln2b, l * C), d_ln, a.res2 + at * C, p.ln2w + l * C,
                              a.ln2_mean + at, a.ln2_rstd + at, n, C);
      linear_backward(l * 4 + 1, d_atty, grad_at(g.attprojw, l * C * C), grad_at(g.attprojb, l * C), d_res,
                      a.atty + at * C, p.attprojw + l * C * C, n, C, C);
      hook_backward(1, l, d_atty, d_res, a.atty + at * C, r0, n);
      gpt::attention_backward(d_qkv, d_att, d_atty, a.qkv + at * 3 * C, a.att + l * att_size + b0 * NH * Tn * Tn,
                              scored_.real.data() + r0, B, Tn, C, NH, precision_);
      linear_backward(l * 4 + 0, d_ln, grad_at(g.qkvw, l * C * 3 * C), grad_at(g.qkvb, l * 3 * C), d_qkv,
                      a.ln1 + at * C, p.qkvw + l * C * 3 * C, n, C, 3 * C);
      hook_backward(0, l, d_ln, d_qkv, a.ln1 + at * C, r0, n);
      gpt::layernorm_backward(d_res, grad_at(g.ln1w, l * C), grad_at(g.ln1b, l * C), d_ln, res_in, p.ln1w + l * C, a.ln1_mean + at,
                              a.ln1_rstd + at, n, C);
    }
    gpt::encoder_backward(g.wte, g.wpe, d_res, scored_.batch.tokens.data() + r0, scored_.pos.data() + r0,
                          scored_.real.data() + r0, n, C);
  }

  // Sizes every buffer for B x T; grows, never shrinks.
  void reserve(std::size_t B, std::size_t Tn) {
    const std::size_t C = config_.channels, L = config_.layers, NH = config_.heads, V = config_.vocab_size,
                      N = B * Tn, att = B * NH * Tn * Tn;
    const std::size_t sizes[] = {N * C,     L * N * C, L * N,     L * N,     L * N * 3 * C, L * att,
                                 L * N * C, L * N * C, L * N * C, L * N,     L * N,         L * N * 4 * C,
                                 L * N * 4 * C, L * N * C, N * C, N,         N,             N * C,
                                 N * C,     N * C,     N * 3 * C, att,       N * 4 * C};
    std::size_t total = 0;
    for (auto s : sizes) total += s;
    if (act_buffer_.size() < total) act_buffer_.resize(total);
    T* ptrs[std::size(sizes)];
    T* at = act_buffer_.data();
    for (std::size_t i = 0; i < std::size(sizes); ++i) ptrs[i] = at, at += sizes[i];
    act_ = {ptrs[0],  ptrs[1],  ptrs[2],  ptrs[3],  ptrs[4],  ptrs[5],  ptrs[6],  ptrs[7],
            ptrs[8],  ptrs[9],  ptrs[10], ptrs[11], ptrs[12], ptrs[13], ptrs[14], ptrs[15],
            ptrs[16], ptrs[17], ptrs[18], ptrs[19], ptrs[20], ptrs[21], ptrs[22]};
    head_.reserve(N, C, V);
  }

  GptConfig config_;
  std::vector<gpt::bf16::PackedB> packed_forward_, packed_backward_;  // [4L + 1] each, in bf16 only (head_slot)
  gpt::aligned_vector<T> act_buffer_;      // every activation, viewed through act_
  Activations act_{};
  gpt_host::ScoredBatch<std::size_t> scored_;  // the last forward's batch and scoring rows; act_ holds its pass
  gpt::LmHeadRows<backend> head_;              // the LM head's rows, logits (d logits after backward) and their sums
  gpt::aligned_vector<T> extra_grads_;    // [parts − 1, parameters] gradients of the other backward blocks
  // gpt::Weights: params_, grads_ ([gpt_param_count(config)] each; layout in gpt_host/params.hpp), head_grads_
  // ([C + 1] the scalar head's gradient (headw, headb) while frozen), frozen_, hook_, precision_
  gpt::Sampler<T> sampler_;
};

static_assert(EveryRoleModel<Gpt<float>>);
static_assert(TrainablePolicy<Gpt<double>>);

}  // namespace rlhf
