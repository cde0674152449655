#pragma once
// Sampling from the GPT with a KV cache: the prompts are run once (prefill), then each new token costs one
// row per sequence through the model, attending to the cached keys and values of everything before it.
//
// Each step draws from softmax(logits / temperature), restricted to the top_k most likely tokens and then
// to the smallest set whose probability reaches top_p; temperature 0 takes the argmax. Draws happen in row
// order from the one Rng, so a seed gives the same tokens every time.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "rlhf/backends/eigen.hpp"
#include "rlhf/core/batch.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/models/logprob.hpp"
#include "rlhf/models/gpt/layers.hpp"
#include "rlhf/models/gpt_host/config.hpp"
#include "rlhf/models/gpt_host/params.hpp"
#include "rlhf/models/gpt_host/sampling.hpp"

namespace rlhf::gpt {

template <class T>
class Sampler {
 public:
  using backend = rlhf::eigen<T>;

  // p: the model's parameters. Returns prompt + response per row, right-padded with token 0 (attention_mask
  // 0); the response (including a sampled stop token) is marked in response_mask.
  // packed: in bf16, the model's weights packed for its forward (slots 4l … 4l + 3: qkv, attention projection, fc,
  // fc projection; 4L: the LM head), so sampling multiplies as training does; null in float32.
  TokenBatch sample(const GptTensors<const T>& p, const GptConfig& c, const PromptBatch& x, const SampleOptions& o,
                    Rng& rng, const std::vector<bf16::PackedB>* packed = nullptr) {
    constexpr const char* fn = "rlhf::Gpt::sample";
    packed_ = packed;
    const std::size_t B = x.batch;
    gpt_host::SampledRows<T> rows(fn, c, x, o);
    cap_ = rows.cap;
    reserve(c, B, rows.prompt_tokens);
    items_.prefill(rows, x);  // every prompt token is one item
    step(p, c, B);
    gpt_host::draw_tokens(fn, rows, items_, logits_.data(), c.vocab_size, o, rng, draw_, logprob_of,
                          [&](std::size_t n_out) { step(p, c, n_out); });
    std::vector<T> logp;
    TokenBatch out = rows.to_batch(x, logp);
    log_probs_ = ConstMatrixMap<T>(logp.data(), ix(B), ix(out.time));
    return out;
  }

  // [B, T] log p (temperature 1, no top-k/top-p) of each token the last sample() drew, 0 elsewhere.
  const RowMatrix<T>& log_probs() const { return log_probs_; }

 private:
  static T logprob_of(const T* logits, std::size_t V, token_id token) {
    return row_logprob<backend>(logits, V, token, static_cast<const T*>(nullptr)).logprob;
  }

  // Runs the items of n_out sequences through the model: sequence o owns items items_.begin[o] …
  // items_.begin[o+1]−1 (gpt_host::SamplingItems; a whole prompt in the prefill, one token after).
  // Their keys and values go into the cache, and the logits of each sequence's last item into logits_ row o.
  // As in the model, whole sequences are grouped into tiles of about tile_rows items, and each thread takes
  // whole tiles through every layer.
  static constexpr std::size_t tile_rows = 256;

  void step(const GptTensors<const T>& p, const GptConfig& c, std::size_t n_out) {
    std::size_t threads = 1;
#ifdef _OPENMP
    if (!omp_in_parallel()) threads = std::size_t(std::max(1, omp_get_max_threads()));
#endif
    // at most tile_rows items per tile (a longer prompt is a tile of its own), and one tile per thread or more
    const std::size_t items = items_.begin[n_out];
    const std::size_t cap = std::max<std::size_t>(1, std::min(tile_rows, (items + threads - 1) / threads));
    tile_begin_.clear();
    for (std::size_t o = 0; o < n_out; ++o)
      if (tile_begin_.empty() || items_.begin[o + 1] - items_.begin[tile_begin_.back()] > cap) tile_begin_.push_back(o);
    tile_begin_.push_back(n_out);
    const std::size_t tiles = tile_begin_.size() - 1;
    threads = std::min(threads, tiles);
    if (threads == 1) {
      for (std::size_t k = 0; k < tiles; ++k) step_block(p, c, tile_begin_[k], tile_begin_[k + 1]);
      return;
    }
#pragma omp parallel for schedule(static, 1) num_threads(int(threads))
    for (std::ptrdiff_t k = 0; k < std::ptrdiff_t(tiles); ++k)
      step_block(p, c, tile_begin_[std::size_t(k)], tile_begin_[std::size_t(k) + 1]);
  }

  void step_block(const GptTensors<const T>& p, const GptConfig& c, std::size_t o0, std::size_t o1) {
    const std::size_t C = c.channels, L = c.layers, NH = c.heads, hs = C / NH, V = c.vocab_size;
    const std::size_t lcache = batch_ * cap_ * C;  // one layer of the cache
    const std::size_t i0 = items_.begin[o0], n = items_.begin[o1] - i0, n_out = o1 - o0;
    const T eps = T(c.layer_norm_eps);
    T* x = x_.data() + i0 * C;
    T* ln = ln_.data() + i0 * C;
    T* qkv = qkv_.data() + i0 * 3 * C;
    T* y = y_.data() + i0 * C;
    T* fch = fch_.data() + i0 * 4 * C;
    T* fchg = fchg_.data() + i0 * 4 * C;
    T* mean = mean_.data() + i0;
    T* rstd = rstd_.data() + i0;
    const std::size_t* row = items_.row.data() + i0;
    const std::size_t* pos = items_.pos.data() + i0;
    for (std::size_t i = 0; i < n; ++i)
      ArrayMap<T>(x + i * C, ix(C)) = ConstArrayMap<T>(p.wte + std::size_t(items_.tok[i0 + i]) * C, ix(C)) +
                                      ConstArrayMap<T>(p.wpe + pos[i] * C, ix(C));
    const T scale = T(1) / std::sqrt(T(hs));
    const bool in_bf16 = std::is_same_v<T, float> && packed_;
    // out [n, O] = in [n, I] · weight [I, O] + bias; slot: the weight's place in *packed_
    const auto project = [&](T* out, const T* in, std::size_t slot, const T* weight, const T* bias, std::size_t I,
                             std::size_t O) {
      if constexpr (std::is_same_v<T, float>)
        if (packed_) return matmul_forward_bf16(out, in, (*packed_)[slot], bias, n, I, O);
      matmul_forward(out, in, weight, bias, n, I, O);
    };
    for (std::size_t l = 0; l < L; ++l) {
      layernorm_forward(ln, mean, rstd, x, p.ln1w + l * C, p.ln1b + l * C, n, C, eps);
      project(qkv, ln, 4 * l, p.qkvw + l * C * 3 * C, p.qkvb + l * 3 * C, C, 3 * C);
      T* kc = k_cache_.data() + l * lcache;  // [B, cap, C]
      T* vc = v_cache_.data() + l * lcache;
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t at = (row[i] * cap_ + pos[i]) * C;
        std::copy_n(qkv + i * 3 * C + C, C, kc + at);
        std::copy_n(qkv + i * 3 * C + 2 * C, C, vc + at);
      }
      // per sequence and head: its items' queries (consecutive positions) against every cached key up to the
      // last of them, as two GEMMs; query j sees keys 0 … its own position.
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (n * NH * cap_ * hs >= parallel_work)
      for (std::ptrdiff_t o = std::ptrdiff_t(o0); o < std::ptrdiff_t(o1); ++o) {
        for (std::ptrdiff_t h = 0; h < static_cast<std::ptrdiff_t>(NH); ++h) {
          const std::size_t first = items_.begin[o] - i0, m = items_.begin[o + 1] - items_.begin[o];
          const std::size_t pos0 = pos[first], keys = pos0 + m, base = row[first] * cap_ * C + h * hs;
          const ConstStridedMap<T> K(kc + base, ix(keys), ix(hs), Eigen::OuterStride<>(ix(C)));
          const ConstStridedMap<T> Vv(vc + base, ix(keys), ix(hs), Eigen::OuterStride<>(ix(C)));
          const ConstStridedMap<T> Q(qkv + first * 3 * C + h * hs, ix(m), ix(hs), Eigen::OuterStride<>(ix(3 * C)));
          MatrixMap<T> S(scores_.data() + (items_.begin[o] * NH + std::size_t(h) * m) * cap_, ix(m), ix(keys));
          T* yh = y + first * C + h * hs;
          // in bf16 the two products as the training forward takes them (gpt/layers.hpp attention_forward):
          // bf16 operands, the scale after Q·Kᵀ
          if (in_bf16) {
            if constexpr (std::is_same_v<T, float>)
              bf16::gemm(S.data(), keys, bf16::Operand{Q.data(), 3 * C, 1}, bf16::Operand{K.data(), 1, C}, m, keys,
                         hs, false);
            S *= scale;
          } else {
            S.noalias() = scale * (Q * K.transpose());
          }
          for (std::size_t j = 0; j < m; ++j) {
            auto visible = ArrayMap<T>(S.data() + j * keys, ix(pos0 + j + 1));
            visible = (visible - visible.maxCoeff()).exp();
            visible *= T(1) / visible.sum();
            if (j + 1 < m) ArrayMap<T>(S.data() + j * keys + pos0 + j + 1, ix(m - j - 1)).setZero();
          }
          if (in_bf16) {
            if constexpr (std::is_same_v<T, float>)
              bf16::gemm(yh, C, bf16::Operand{S.data(), keys, 1}, bf16::Operand{Vv.data(), C, 1}, m, hs, keys, false);
          } else {
            StridedMap<T>(yh, ix(m), ix(hs), Eigen::OuterStride<>(ix(C))).noalias() = S * Vv;
          }
        }
      }
      project(fch, y, 4 * l + 1, p.attprojw + l * C * C, p.attprojb + l * C, C, C);
      residual_forward(x, x, fch, n * C);
      layernorm_forward(ln, mean, rstd, x, p.ln2w + l * C, p.ln2b + l * C, n, C, eps);
      project(fch, ln, 4 * l + 2, p.fcw + l * C * 4 * C, p.fcb + l * 4 * C, C, 4 * C);
      gelu_forward(fchg, fch, n * 4 * C);
      project(y, fchg, 4 * l + 3, p.fcprojw + l * 4 * C * C, p.fcprojb + l * C, 4 * C, C);
      residual_forward(x, x, y, n * C);
    }
    // the final LayerNorm and the LM head, for each sequence's last item only
    T* last = last_.data() + o0 * C;
    for (std::size_t o = o0; o < o1; ++o)
      std::copy_n(x_.data() + (items_.begin[o + 1] - 1) * C, C, last + (o - o0) * C);
    layernorm_forward(last, last_mean_.data() + o0, last_rstd_.data() + o0, last, p.lnfw, p.lnfb, n_out, C, eps);
    if constexpr (std::is_same_v<T, float>)
      if (packed_) return bf16::gemm(logits_.data() + o0 * V, V, bf16::row_major(last, C), (*packed_)[4 * L], n_out,
                                     false);
    MatrixMap<T>(logits_.data() + o0 * V, ix(n_out), ix(V)).noalias() =
        ConstMatrixMap<T>(last, ix(n_out), ix(C)) * ConstMatrixMap<T>(p.wte, ix(V), ix(C)).transpose();
  }

  // Grows the buffers (never shrinks them), so repeated calls of one size allocate nothing.
  void reserve(const GptConfig& c, std::size_t B, std::size_t items) {
    const std::size_t C = c.channels, V = c.vocab_size;
    batch_ = B;
    const auto grow = [](auto& v, std::size_t n) {
      if (v.size() < n) v.resize(n);
    };
    items = std::max(items, B);
    grow(k_cache_, c.layers * B * cap_ * C);  // [L, B, cap, C]
    grow(v_cache_, c.layers * B * cap_ * C);
    grow(x_, items * C), grow(ln_, items * C), grow(y_, items * C);
    grow(qkv_, items * 3 * C), grow(fch_, items * 4 * C), grow(fchg_, items * 4 * C);
    grow(mean_, items), grow(rstd_, items);
    grow(scores_, items * c.heads * cap_);
    grow(logits_, B * V), grow(last_, B * C), grow(last_mean_, B), grow(last_rstd_, B);
    items_.reserve(items, B);
    draw_.reserve(V);
  }

  std::size_t batch_ = 0, cap_ = 0;  // B and the longest prompt + max_new_tokens
  const std::vector<bf16::PackedB>* packed_ = nullptr;  // [4L + 1] the model's, this sample() only; null: float32
  aligned_vector<T> k_cache_, v_cache_;                   // [L, B, cap, C]
  aligned_vector<T> x_, ln_, y_, qkv_, fch_, fchg_;       // [items, C | 3C | 4C]
  aligned_vector<T> mean_, rstd_;                         // [items]
  aligned_vector<T> scores_;                              // [items, NH, cap]
  aligned_vector<T> logits_;                              // [B, V]
  aligned_vector<T> last_, last_mean_, last_rstd_;        // [B, C], [B], [B]: each sequence's last item
  gpt_host::SamplingItems items_;
  std::vector<std::size_t> tile_begin_;                   // first sequence of each tile, then n_out
  gpt_host::RoundDraws<T> draw_;
  RowMatrix<T> log_probs_;
};

}  // namespace rlhf::gpt
