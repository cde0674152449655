#pragma once
// Sampling from the Llama with a KV cache: the prompts run once (prefill), then each new token costs one row per
// sequence through the model, attending to the cached (rotated) keys and values of everything before it. The
// bookkeeping (checks, rows, the draw with temperature, top-k and top-p) is the GPT's (gpt_host/sampling.hpp), so
// a seed draws the same way on either model.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "rlhf/backends/eigen.hpp"
#include "rlhf/core/batch.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/models/gpt/layers.hpp"
#include "rlhf/models/gpt_host/sampling.hpp"
#include "rlhf/models/llama/config.hpp"
#include "rlhf/models/llama/layers.hpp"
#include "rlhf/models/llama/params.hpp"
#include "rlhf/models/llama/rope.hpp"
#include "rlhf/models/logprob.hpp"

namespace rlhf::llama {

template <class T>
class Sampler {
 public:
  using backend = rlhf::eigen<T>;

  // Returns prompt + response per row, right-padded with token 0 (attention_mask 0); the response (a drawn stop
  // token included) is marked in response_mask.
  TokenBatch sample(const LlamaTensors<const T>& p, const LlamaConfig& c, RopeTable<T>& rope, const PromptBatch& x,
                    const SampleOptions& o, Rng& rng) {
    constexpr const char* fn = "rlhf::Llama::sample";
    gpt_host::SampledRows<T> rows(fn, c, x, o);
    cap_ = rows.cap;
    rope.ensure(cap_);
    reserve(c, x.batch, rows.prompt_tokens);
    items_.prefill(rows, x);  // every prompt token is one item
    step(p, c, rope, x.batch);
    gpt_host::draw_tokens(fn, rows, items_, logits_.data(), c.vocab_size, o, rng, draw_, logprob_of,
                          [&](std::size_t n_out) { step(p, c, rope, n_out); });
    std::vector<T> logp;
    TokenBatch out = rows.to_batch(x, logp);
    log_probs_ = gpt::ConstMatrixMap<T>(logp.data(), gpt::ix(x.batch), gpt::ix(out.time));
    return out;
  }

  // [B, T] log p (temperature 1, no top-k/top-p) of each token the last sample() drew, 0 elsewhere.
  const gpt::RowMatrix<T>& log_probs() const { return log_probs_; }

 private:
  static T logprob_of(const T* logits, std::size_t V, token_id token) {
    return row_logprob<backend>(logits, V, token, static_cast<const T*>(nullptr)).logprob;
  }

  // Runs the items of n_out sequences through the model: sequence o owns items items_.begin[o] …
  // items_.begin[o+1]−1 at consecutive positions (gpt_host::SamplingItems). Their keys and values go into the
  // cache, the logits of each sequence's last item into logits_ row o.
  void step(const LlamaTensors<const T>& p, const LlamaConfig& c, const RopeTable<T>& rope, std::size_t n_out) {
    const std::size_t C = c.hidden_size, L = c.layers, NH = c.heads, KVH = c.kv_heads, hd = c.head_size(),
                      Q = c.q_size(), K = c.kv_size(), F = c.intermediate_size, V = c.vocab_size, group = NH / KVH;
    const std::size_t n = items_.begin[n_out], lcache = batch_ * cap_ * K;  // items; one layer of the cache
    const T eps = T(c.rms_norm_eps), scale = T(1) / std::sqrt(T(hd));
    const gpt::MatmulPrecision fp32 = gpt::MatmulPrecision::fp32;
    for (std::size_t i = 0; i < n; ++i) std::copy_n(p.embed + std::size_t(items_.tok[i]) * C, C, x_.data() + i * C);
    for (std::size_t l = 0; l < L; ++l) {
      rmsnorm_forward(h_.data(), r_.data(), x_.data(), p.attn_norm + l * C, n, C, eps);
      linear_forward(q_.data(), h_.data(), p.qw + l * C * Q, c.qkv_bias ? p.qb + l * Q : nullptr, n, C, Q, fp32);
      linear_forward(k_.data(), h_.data(), p.kw + l * C * K, c.qkv_bias ? p.kb + l * K : nullptr, n, C, K, fp32);
      linear_forward(v_.data(), h_.data(), p.vw + l * C * K, c.qkv_bias ? p.vb + l * K : nullptr, n, C, K, fp32);
      if (c.qk_norm) {  // in place: each row is read before it is written
        rmsnorm_forward(q_.data(), r_.data(), q_.data(), p.q_norm + l * hd, n * NH, hd, eps);
        rmsnorm_forward(k_.data(), r_.data(), k_.data(), p.k_norm + l * hd, n * KVH, hd, eps);
      }
      rope_apply(q_.data(), items_.pos.data(), rope, n, NH, false);
      rope_apply(k_.data(), items_.pos.data(), rope, n, KVH, false);
      T* kc = k_cache_.data() + l * lcache;  // [B, cap, K]
      T* vc = v_cache_.data() + l * lcache;
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t at = (items_.row[i] * cap_ + items_.pos[i]) * K;
        std::copy_n(k_.data() + i * K, K, kc + at);
        std::copy_n(v_.data() + i * K, K, vc + at);
      }
      // per sequence and head: its items' queries against every cached key up to the last of them; query j sees
      // keys 0 … its own position
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (n * NH * cap_ * hd >= gpt::parallel_work)
      for (std::ptrdiff_t o = 0; o < std::ptrdiff_t(n_out); ++o) {
        for (std::ptrdiff_t h = 0; h < std::ptrdiff_t(NH); ++h) {
          const std::size_t first = items_.begin[o], m = items_.begin[o + 1] - first;
          const std::size_t pos0 = items_.pos[first], keys = pos0 + m;
          const std::size_t base = items_.row[first] * cap_ * K + std::size_t(h) / group * hd;
          const gpt::ConstStridedMap<T> Kc(kc + base, gpt::ix(keys), gpt::ix(hd), Eigen::OuterStride<>(gpt::ix(K)));
          const gpt::ConstStridedMap<T> Vc(vc + base, gpt::ix(keys), gpt::ix(hd), Eigen::OuterStride<>(gpt::ix(K)));
          const gpt::ConstStridedMap<T> Qm(q_.data() + first * Q + h * hd, gpt::ix(m), gpt::ix(hd),
                                           Eigen::OuterStride<>(gpt::ix(Q)));
          gpt::MatrixMap<T> S(scores_.data() + (first * NH + std::size_t(h) * m) * cap_, gpt::ix(m), gpt::ix(keys));
          S.noalias() = scale * (Qm * Kc.transpose());
          for (std::size_t j = 0; j < m; ++j) {
            auto visible = gpt::ArrayMap<T>(S.data() + j * keys, gpt::ix(pos0 + j + 1));
            visible = (visible - visible.maxCoeff()).exp();
            visible *= T(1) / visible.sum();
            if (j + 1 < m) gpt::ArrayMap<T>(S.data() + j * keys + pos0 + j + 1, gpt::ix(m - j - 1)).setZero();
          }
          gpt::StridedMap<T>(y_.data() + first * Q + h * hd, gpt::ix(m), gpt::ix(hd),
                             Eigen::OuterStride<>(gpt::ix(Q))).noalias() = S * Vc;
        }
      }
      linear_forward(h_.data(), y_.data(), p.ow + l * Q * C, c.o_bias ? p.ob + l * C : nullptr, n, Q, C, fp32);
      gpt::residual_forward(x_.data(), x_.data(), h_.data(), n * C);
      rmsnorm_forward(h_.data(), r_.data(), x_.data(), p.mlp_norm + l * C, n, C, eps);
      linear_forward(gate_.data(), h_.data(), p.gate + l * C * F, static_cast<const T*>(nullptr), n, C, F, fp32);
      linear_forward(up_.data(), h_.data(), p.up + l * C * F, static_cast<const T*>(nullptr), n, C, F, fp32);
      swiglu_forward(gate_.data(), gate_.data(), up_.data(), n * F);
      linear_forward(h_.data(), gate_.data(), p.down + l * F * C, static_cast<const T*>(nullptr), n, F, C, fp32);
      gpt::residual_forward(x_.data(), x_.data(), h_.data(), n * C);
    }
    // the final norm and the LM head, for each sequence's last item only
    for (std::size_t o = 0; o < n_out; ++o)
      std::copy_n(x_.data() + (items_.begin[o + 1] - 1) * C, C, last_.data() + o * C);
    rmsnorm_forward(last_.data(), r_.data(), last_.data(), p.norm, n_out, C, eps);
    gpt::MatrixMap<T>(logits_.data(), gpt::ix(n_out), gpt::ix(V)).noalias() =
        gpt::ConstMatrixMap<T>(last_.data(), gpt::ix(n_out), gpt::ix(C)) *
        gpt::ConstMatrixMap<T>(p.lm_head, gpt::ix(V), gpt::ix(C)).transpose();
  }

  // Grows the buffers (never shrinks them), so repeated calls of one size allocate nothing.
  void reserve(const LlamaConfig& c, std::size_t B, std::size_t items) {
    const std::size_t C = c.hidden_size, Q = c.q_size(), K = c.kv_size(), F = c.intermediate_size;
    batch_ = B;
    const auto grow = [](auto& v, std::size_t n) {
      if (v.size() < n) v.resize(n);
    };
    items = std::max(items, B);
    grow(k_cache_, c.layers * B * cap_ * K), grow(v_cache_, c.layers * B * cap_ * K);
    grow(x_, items * C), grow(h_, items * C), grow(q_, items * Q), grow(y_, items * Q);
    grow(k_, items * K), grow(v_, items * K), grow(gate_, items * F), grow(up_, items * F);
    grow(r_, items * c.heads);
    grow(scores_, items * c.heads * cap_);
    grow(logits_, B * c.vocab_size), grow(last_, B * C);
    items_.reserve(items, B);
    draw_.reserve(c.vocab_size);
  }

  std::size_t batch_ = 0, cap_ = 0;               // B and the longest prompt + max_new_tokens
  gpt::aligned_vector<T> k_cache_, v_cache_;      // [L, B, cap, KVH·hd] rotated keys, values
  gpt::aligned_vector<T> x_, h_;                  // [items, C] the stream, a norm's or a product's output
  gpt::aligned_vector<T> q_, y_, k_, v_;          // [items, NH·hd] ×2, [items, KVH·hd] ×2
  gpt::aligned_vector<T> gate_, up_;              // [items, F]
  gpt::aligned_vector<T> r_;                      // [items · NH] rstd scratch
  gpt::aligned_vector<T> scores_;                 // [items, NH, cap]
  gpt::aligned_vector<T> logits_, last_;          // [B, V], [B, C]
  gpt_host::SamplingItems items_;
  gpt_host::TokenDraw<T> draw_;
  gpt::RowMatrix<T> log_probs_;
};

}  // namespace rlhf::llama
