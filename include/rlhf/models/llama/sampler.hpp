#pragma once
// Sampling from the Llama with a KV cache: the prompts run once (prefill), then each new token costs one row per
// sequence through the model, attending to the cached (rotated) keys and values of everything before it. The
// bookkeeping (checks, rows, the draw with temperature, top-k and top-p) is the GPT's (gpt_host/sampling.hpp), so
// a seed draws the same way on either model.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "rlhf/backends/eigen.hpp"
#include "rlhf/core/batch.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/models/cpu/dot_rows.hpp"
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
  // precision: the projections' and the LM head's products, as in training (attention stays float32).
  TokenBatch sample(const LlamaTensors<const T>& p, const LlamaConfig& c, RopeTable<T>& rope, const PromptBatch& x,
                    const SampleOptions& o, Rng& rng, gpt::MatmulPrecision precision) {
    constexpr const char* fn = "rlhf::Llama::sample";
    gpt_host::SampledRows<T> rows(fn, c, x, o);
    cap_ = rows.cap;
    rope.ensure(cap_);
    reserve(c, x.batch, rows.prompt_tokens);
    pack_projections(p, c, precision);
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
    // out [n, O] = in [n, I] · weight [I, O] (+ bias); slot: the weight's place in packed_
    const auto project = [&](T* out, const T* in, std::size_t slot, const T* weight, const T* bias, std::size_t I,
                             std::size_t O) {
      if constexpr (std::is_same_v<T, float>)
        if (packed_ready_) return gpt::matmul_forward_bf16(out, in, packed_[slot], bias, n, I, O);
      linear_forward(out, in, weight, bias, n, I, O, gpt::MatmulPrecision::fp32);
    };
    for (std::size_t i = 0; i < n; ++i) std::copy_n(p.embed + std::size_t(items_.tok[i]) * C, C, x_.data() + i * C);
    for (std::size_t l = 0; l < L; ++l) {
      rmsnorm_forward(h_.data(), r_.data(), x_.data(), p.attn_norm + l * C, n, C, eps);
      const std::size_t slot = projections * l;
      project(q_.data(), h_.data(), slot + 0, p.qw + l * C * Q, c.qkv_bias ? p.qb + l * Q : nullptr, C, Q);
      project(k_.data(), h_.data(), slot + 1, p.kw + l * C * K, c.qkv_bias ? p.kb + l * K : nullptr, C, K);
      project(v_.data(), h_.data(), slot + 2, p.vw + l * C * K, c.qkv_bias ? p.vb + l * K : nullptr, C, K);
      if (c.qk_norm) {  // in place: each row is read before it is written
        rmsnorm_forward(q_.data(), r_.data(), q_.data(), p.q_norm + l * hd, n * NH, hd, eps);
        rmsnorm_forward(k_.data(), r_.data(), k_.data(), p.k_norm + l * hd, n * KVH, hd, eps);
      }
      rope_apply(q_.data(), items_.pos.data(), rope, n, NH, false);
      rope_apply(k_.data(), items_.pos.data(), rope, n, KVH, false);
      T* kc = k_cache_.data() + l * lcache;  // [B, KVH, cap, hd]
      T* vc = v_cache_.data() + l * lcache;
      for (std::size_t i = 0; i < n; ++i)
        for (std::size_t kv = 0; kv < KVH; ++kv) {
          const std::size_t at = head_keys(items_.row[i], kv, KVH, hd) + items_.pos[i] * hd;
          std::copy_n(k_.data() + i * K + kv * hd, hd, kc + at);
          std::copy_n(v_.data() + i * K + kv * hd, hd, vc + at);
        }
      if (n == n_out) {  // a step after the prefill: one item per sequence
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (n * NH * cap_ * hd >= gpt::parallel_work)
        for (std::ptrdiff_t o = 0; o < std::ptrdiff_t(n); ++o)
          for (std::ptrdiff_t kv = 0; kv < std::ptrdiff_t(KVH); ++kv) {
            const std::size_t head = std::size_t(kv) * group, at = std::size_t(o) * Q + head * hd;
            const std::size_t keys_at = head_keys(items_.row[o], std::size_t(kv), KVH, hd);
            attend_one(y_.data() + at, q_.data() + at, kc + keys_at, vc + keys_at,
                       scores_.data() + (std::size_t(o) * NH + head) * cap_, items_.pos[o] + 1, group, hd, scale);
          }
      } else {
        // per sequence and head: its items' queries against every cached key up to the last of them; query j sees
        // keys 0 … its own position
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (n * NH * cap_ * hd >= gpt::parallel_work)
        for (std::ptrdiff_t o = 0; o < std::ptrdiff_t(n_out); ++o) {
          for (std::ptrdiff_t h = 0; h < std::ptrdiff_t(NH); ++h) {
            const std::size_t first = items_.begin[o], m = items_.begin[o + 1] - first;
            const std::size_t pos0 = items_.pos[first], keys = pos0 + m;
            const std::size_t base = head_keys(items_.row[first], std::size_t(h) / group, KVH, hd);
            const gpt::ConstMatrixMap<T> Kc(kc + base, gpt::ix(keys), gpt::ix(hd));
            const gpt::ConstMatrixMap<T> Vc(vc + base, gpt::ix(keys), gpt::ix(hd));
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
      }
      project(h_.data(), y_.data(), slot + 3, p.ow + l * Q * C, c.o_bias ? p.ob + l * C : nullptr, Q, C);
      gpt::residual_forward(x_.data(), x_.data(), h_.data(), n * C);
      rmsnorm_forward(h_.data(), r_.data(), x_.data(), p.mlp_norm + l * C, n, C, eps);
      project(gate_.data(), h_.data(), slot + 4, p.gate + l * C * F, nullptr, C, F);
      project(up_.data(), h_.data(), slot + 5, p.up + l * C * F, nullptr, C, F);
      swiglu_forward(gate_.data(), gate_.data(), up_.data(), n * F);
      project(h_.data(), gate_.data(), slot + 6, p.down + l * F * C, nullptr, F, C);
      gpt::residual_forward(x_.data(), x_.data(), h_.data(), n * C);
    }
    // the final norm and the LM head, for each sequence's last item only
    for (std::size_t o = 0; o < n_out; ++o)
      std::copy_n(x_.data() + (items_.begin[o + 1] - 1) * C, C, last_.data() + o * C);
    rmsnorm_forward(last_.data(), r_.data(), last_.data(), p.norm, n_out, C, eps);
    lm_head_logits(p.lm_head, n_out, C, V);
  }

  // Where sequence `row`'s keys (and values) of KV head kv start in one layer's cache [B, KVH, cap, hd]: each head's
  // keys lie together, so attention streams them.
  std::size_t head_keys(std::size_t row, std::size_t kv, std::size_t KVH, std::size_t hd) const {
    return (row * KVH + kv) * cap_ * hd;
  }

  // y [group, hd] = attention of one new item's queries q [group, hd] (the query heads of one KV head) over the
  // first `keys` cached keys and values (kc, vc [keys, hd]): each key and value read once for the whole group,
  // where a product per head would read them group times. s: scores [group, stride cap_].
  void attend_one(T* y, const T* q, const T* kc, const T* vc, T* s, std::size_t keys, std::size_t group,
                  std::size_t hd, T scale) const {
    // a head's keys (and values) are a few KiB: too short a stream for the hardware prefetcher to reach memory's
    // rate, so each row asks for the one `ahead` rows on
    constexpr std::size_t ahead = 4, line = 64 / sizeof(T);
    for (std::size_t j = 0; j < keys; ++j) {
      const T* key = kc + j * hd;
      for (std::size_t d = 0; d < hd; d += line) __builtin_prefetch(key + ahead * hd + d);
      for (std::size_t g = 0; g < group; ++g) {
        const T* query = q + g * hd;
        T dot = 0;
#pragma omp simd reduction(+ : dot)
        for (std::size_t d = 0; d < hd; ++d) dot += query[d] * key[d];
        s[g * cap_ + j] = scale * dot;
      }
    }
    for (std::size_t g = 0; g < group; ++g) {
      auto p = gpt::ArrayMap<T>(s + g * cap_, gpt::ix(keys));
      p = (p - p.maxCoeff()).exp();
      p *= T(1) / p.sum();
    }
    std::fill_n(y, group * hd, T(0));
    for (std::size_t j = 0; j < keys; ++j) {
      const T* value = vc + j * hd;
      for (std::size_t d = 0; d < hd; d += line) __builtin_prefetch(value + ahead * hd + d);
      for (std::size_t g = 0; g < group; ++g) {
        const T weight = s[g * cap_ + j];
        T* out = y + g * hd;
#pragma omp simd
        for (std::size_t d = 0; d < hd; ++d) out[d] += weight * value[d];
      }
    }
  }

  // logits_ [n_out, V] = last_ [n_out, C] · lm_head [V, C]ᵀ: in bf16 from the head packed by pack_projections (the
  // forward's bf16 product, read at half float32's bytes), else in float32, each logit one row of the head against
  // one of last_ read in place (cpu/dot_rows.hpp). A packed float32 product (Eigen's) copies the whole V × C head
  // at every step: measured at SmolLM2-135M's shape, 16 rows, on a 2-core Zen 4 (AVX-512 BF16), 37–44 ms against
  // 7 ms for dot_rows (bench_llama's head_logits rows).
  void lm_head_logits(const T* lm_head, std::size_t n_out, std::size_t C, std::size_t V) {
    if constexpr (std::is_same_v<T, float>) {
      if (packed_ready_)
        return gpt::bf16::gemm(logits_.data(), V, gpt::bf16::row_major(last_.data(), C), packed_.back(), n_out, false);
      cpu::dot_rows(logits_.data(), V, last_.data(), lm_head, n_out, V, C);
    } else {
      gpt::MatrixMap<T>(logits_.data(), gpt::ix(n_out), gpt::ix(V)).noalias() =
          gpt::ConstMatrixMap<T>(last_.data(), gpt::ix(n_out), gpt::ix(C)) *
          gpt::ConstMatrixMap<T>(lm_head, gpt::ix(V), gpt::ix(C)).transpose();
    }
  }

  // Layer l's q, k, v, o, gate, up and down weights in slots projections·l … projections·l + 6 of packed_; the LM
  // head's transpose [C, V] in the last slot.
  static constexpr std::size_t projections = 7;

  // In bf16 on a CPU with AVX-512 BF16, every projection's weight and the LM head packed once for the whole
  // sample() (the weights stand still while it runs): each step then reads them as bf16, half float32's bytes,
  // which bound a step of a few rows. Elsewhere bf16 multiplies in float32 (gpt/bf16_matmul.hpp), as the unpacked
  // path does.
  void pack_projections(const LlamaTensors<const T>& p, const LlamaConfig& c, gpt::MatmulPrecision precision) {
    packed_ready_ = false;
    if constexpr (std::is_same_v<T, float>) {
      if (precision != gpt::MatmulPrecision::bf16 || !gpt::bf16::hardware_available()) return;
      const std::size_t C = c.hidden_size, Q = c.q_size(), K = c.kv_size(), F = c.intermediate_size;
      const std::size_t in[projections] = {C, C, C, Q, C, C, F}, out[projections] = {Q, K, K, C, F, F, C};
      const float* weight[projections] = {p.qw, p.kw, p.vw, p.ow, p.gate, p.up, p.down};  // [L, in, out] each
      packed_.resize(projections * c.layers + 1);
#pragma omp parallel for schedule(dynamic, 1)
      for (std::ptrdiff_t k = 0; k < std::ptrdiff_t(packed_.size()); ++k) {
        if (std::size_t(k) + 1 == packed_.size()) {
          packed_.back().pack(gpt::bf16::transposed(p.lm_head, C), C, c.vocab_size);
          continue;
        }
        const std::size_t l = std::size_t(k) / projections, j = std::size_t(k) % projections;
        packed_[std::size_t(k)].pack(gpt::bf16::row_major(weight[j] + l * in[j] * out[j], out[j]), in[j], out[j]);
      }
      packed_ready_ = true;
    } else {
      (void)p, (void)c;
    }
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
  gpt::aligned_vector<T> k_cache_, v_cache_;      // [L, B, KVH, cap, hd] rotated keys, values
  gpt::aligned_vector<T> x_, h_;                  // [items, C] the stream, a norm's or a product's output
  gpt::aligned_vector<T> q_, y_, k_, v_;          // [items, NH·hd] ×2, [items, KVH·hd] ×2
  gpt::aligned_vector<T> gate_, up_;              // [items, F]
  gpt::aligned_vector<T> r_;                      // [items · NH] rstd scratch
  gpt::aligned_vector<T> scores_;                 // [items, NH, cap]
  gpt::aligned_vector<T> logits_, last_;          // [B, V], [B, C]
  std::vector<gpt::bf16::PackedB> packed_;          // [7L + 1] in bf16 only (pack_projections)
  bool packed_ready_ = false;                       // packed_ holds this sample()'s weights
  gpt_host::SamplingItems items_;
  gpt_host::RoundDraws<T> draw_;
  gpt::RowMatrix<T> log_probs_;
};

}  // namespace rlhf::llama
