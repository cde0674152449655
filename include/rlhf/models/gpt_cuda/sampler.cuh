#pragma once
// Sampling from the CUDA GPT with a KV cache on the device: the prompts run once (prefill), then each new
// token costs one row per sequence, attending to the cached keys and values of everything before it.
//
// Same semantics and the same draws as the CPU sampler (gpt::Sampler, sampler.hpp): softmax(logits /
// temperature) restricted to the top_k most likely tokens (ties: lower id first), then to the smallest set
// whose probability reaches top_p (in order of decreasing probability); temperature 0 takes the argmax (the
// lowest id among equal maxima). The uniforms come from the caller's rlhf::Rng on the host, one per drawn
// token in row order, exactly as the CPU sampler consumes them, so one seed gives the same tokens on both
// whenever the two models' logits order the same tokens the same way (fp32 GEMMs make that the rule; see
// docs/models/gpt_cuda.md).
//
// The draw itself runs on the device, one block per row, without sorting: the k-th largest logit and the
// top-p cut-off are found by bisection over the bits of an order-preserving integer key of each logit, and
// the draw by bisection over the cumulative weights; every probe is one block reduction over the vocabulary.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "rlhf/backends/thrust.hpp"
#include "rlhf/core/batch.hpp"
#include "rlhf/core/error.hpp"
#include "rlhf/core/rng.hpp"
#include "rlhf/models/gpt_host/config.hpp"
#include "rlhf/models/gpt_host/params.hpp"
#include "rlhf/models/gpt_host/sampling.hpp"
#include "rlhf/models/gpt_cuda/common.cuh"
#include "rlhf/models/gpt_cuda/encoder.cuh"
#include "rlhf/models/gpt_cuda/gelu.cuh"
#include "rlhf/models/gpt_cuda/layernorm.cuh"
#include "rlhf/models/gpt_cuda/logprob.cuh"
#include "rlhf/models/gpt_cuda/matmul.cuh"
#include "rlhf/models/gpt_cuda/residual.cuh"

namespace rlhf::gpt_cuda {

// ---- the KV cache and one-row attention ------------------------------------------------------------------------

// Item i (token of row item_row[i] at position item_pos[i]) writes its key and value into the caches
// kc, vc [B, cap, C] of one layer. qkv [n, 3C].
static __global__ void kv_write_kernel(float* kc, float* vc, const float* qkv, const std::int32_t* item_row,
                                       const std::int32_t* item_pos, std::size_t n, std::size_t cap, std::size_t C) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * C) return;
  const std::size_t item = i / C, c = i % C;
  const std::size_t at = (std::size_t(item_row[item]) * cap + std::size_t(item_pos[item])) * C + c;
  kc[at] = qkv[item * 3 * C + C + c];
  vc[at] = qkv[item * 3 * C + 2 * C + c];
}

// y [n, C]: item i, head h (block (i, h)) attends to the cached keys 0 … item_pos[i] of its row. Dynamic shared
// memory: hs + cap floats (the query, then the scores).
static __global__ void decode_attention_kernel(float* y, const float* qkv, const float* kc, const float* vc,
                                               const std::int32_t* item_row, const std::int32_t* item_pos,
                                               std::size_t cap, std::size_t C, std::size_t NH) {
  extern __shared__ float shared[];
  const std::size_t i = blockIdx.x, h = blockIdx.y, hs = C / NH;
  float* q = shared;        // [hs]
  float* score = shared + hs;  // [cap]
  const std::size_t keys = std::size_t(item_pos[i]) + 1, base = std::size_t(item_row[i]) * cap * C + h * hs;
  for (std::size_t d = threadIdx.x; d < hs; d += blockDim.x) q[d] = qkv[i * 3 * C + h * hs + d];
  __syncthreads();
  const float scale = 1.0f / sqrtf(float(hs));
  float m = -INFINITY;
  for (std::size_t j = threadIdx.x; j < keys; j += blockDim.x) {
    const float* k = kc + base + j * C;
    float s = 0.0f;
    for (std::size_t d = 0; d < hs; ++d) s += q[d] * k[d];
    score[j] = scale * s;
    m = fmaxf(m, score[j]);
  }
  m = block_max(m);
  float total = 0.0f;
  for (std::size_t j = threadIdx.x; j < keys; j += blockDim.x) {
    const float e = expf(score[j] - m);
    score[j] = e;
    total += e;
  }
  const float inv = 1.0f / block_sum(total);  // its syncs also publish the exponentials in `score`
  for (std::size_t d = threadIdx.x; d < hs; d += blockDim.x) {
    float acc = 0.0f;
    for (std::size_t j = 0; j < keys; ++j) acc += score[j] * vc[base + j * C + d];
    y[i * C + h * hs + d] = acc * inv;
  }
}

// ---- the draw -----------------------------------------------------------------------------------------------

// An unsigned key with the order of the float (−0 and +0 equal): larger key ⇔ larger logit.
__device__ inline unsigned order_key(float x) {
  if (x == 0.0f) x = 0.0f;
  const unsigned b = __float_as_uint(x);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

inline constexpr unsigned draw_threads = 1024;

// Σ_v f(v) over [0, V) by the whole block (every thread gets it).
template <class T, class F>
__device__ inline T block_sum_over(std::size_t V, F f) {
  T acc = T(0);
  for (std::size_t v = threadIdx.x; v < V; v += blockDim.x) acc += f(v);
  return block_sum(acc);
}

// The position where the prefix sums of the weights w over `in_set`, taken in decreasing key order and
// increasing id among equal keys, first reach `target` (strict: exceed it). Returns the element's id, or −1 when
// the whole set does not (rounding). keys[v] = order_key(logit v).
template <class InSet>
__device__ inline int crossing_in_key_order(const unsigned* keys, const double* w, std::size_t V, InSet in_set,
                                            double target, bool strict) {
  const auto reaches = [&](double s) { return strict ? s > target : s >= target; };
  // the largest key y whose set {key ≥ y} reaches the target
  const double all = block_sum_over<double>(V, [&](std::size_t v) { return in_set(v) ? w[v] : 0.0; });
  if (!reaches(all)) return -1;
  unsigned y = 0;
  for (int bit = 31; bit >= 0; --bit) {
    const unsigned cand = y | (1u << bit);
    const double s =
        block_sum_over<double>(V, [&](std::size_t v) { return in_set(v) && keys[v] >= cand ? w[v] : 0.0; });
    if (reaches(s)) y = cand;
  }
  // the weight strictly above y, then the ties at y in id order
  const double above = y == 0xffffffffu ? 0.0 : block_sum_over<double>(V, [&](std::size_t v) {
    return in_set(v) && keys[v] > y ? w[v] : 0.0;
  });
  int lo = 0, hi = int(V) - 1;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    const double s = above + block_sum_over<double>(V, [&](std::size_t v) {
                       return in_set(v) && keys[v] == y && int(v) <= mid ? w[v] : 0.0;
                     });
    if (reaches(s))
      hi = mid;
    else
      lo = mid + 1;
  }
  // the crossing is one of the ties; summed in another grouping than S(key ≥ y), their total may fall short of the
  // target by a rounding error, which would leave lo past the last tie
  int last_tie = -1;
  for (std::size_t v = threadIdx.x; v < V; v += blockDim.x)
    if (in_set(v) && keys[v] == y) last_tie = max(last_tie, int(v));
  last_tie = block_reduce(last_tie, max_op{}, -1);
  return lo < last_tie ? lo : last_tie;
}

// One token per row k of logits [rows, V]: tokens[k], and its log-prob under softmax(logits) (temperature 1,
// unfiltered) in logps[k]. uniforms[k] in [0, 1) drives the draw. Scratch: keys [rows, V], w [rows, V].
static __global__ void __launch_bounds__(draw_threads)
    draw_kernel(std::int32_t* tokens, float* logps, const float* logits, const double* uniforms, unsigned* keys_buf,
                double* w_buf, std::size_t V, float temperature, std::size_t top_k, float top_p) {
  const std::size_t k = blockIdx.x;
  const float* x = logits + k * V;
  unsigned* keys = keys_buf + k * V;
  double* w = w_buf + k * V;
  float mx = -INFINITY;
  for (std::size_t v = threadIdx.x; v < V; v += blockDim.x) {
    keys[v] = order_key(x[v]);
    mx = fmaxf(mx, x[v]);
  }
  mx = block_max(mx);  // also publishes keys
  const float sum1 = block_sum_over<float>(V, [&](std::size_t v) { return expf(x[v] - mx); });

  int token = 0;
  if (temperature == 0.0f) {
    int first = int(V);
    for (std::size_t v = threadIdx.x; v < V; v += blockDim.x)
      if (x[v] == mx) first = min(first, int(v));
    token = block_reduce(first, min_op{}, int(V));
  } else {
    // top-k: kept(v) ⇔ key > kth, or key = kth and v ≤ tie_last
    unsigned kth = 0;
    int tie_last = int(V) - 1;
    if (top_k > 0 && top_k < V) {
      for (int bit = 31; bit >= 0; --bit) {
        const unsigned cand = kth | (1u << bit);
        const unsigned count = block_sum_over<unsigned>(V, [&](std::size_t v) { return keys[v] >= cand ? 1u : 0u; });
        if (count >= top_k) kth = cand;
      }
      const unsigned greater = block_sum_over<unsigned>(V, [&](std::size_t v) { return keys[v] > kth ? 1u : 0u; });
      const unsigned ties = unsigned(top_k) - greater;  // ≥ 1: the lowest ids among the logits equal to the k-th
      int lo = 0, hi = int(V) - 1;
      while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        const unsigned c =
            block_sum_over<unsigned>(V, [&](std::size_t v) { return keys[v] == kth && int(v) <= mid ? 1u : 0u; });
        if (c >= ties)
          hi = mid;
        else
          lo = mid + 1;
      }
      tie_last = lo;
    }
    const auto kept = [&](std::size_t v) { return keys[v] > kth || (keys[v] == kth && int(v) <= tie_last); };
    const double inv_temp = 1.0 / double(temperature);
    double part = 0.0;
    for (std::size_t v = threadIdx.x; v < V; v += blockDim.x) {
      const double wv = kept(v) ? exp((double(x[v]) - double(mx)) * inv_temp) : 0.0;
      w[v] = wv;
      part += wv;
    }
    const double total = block_sum(part);  // also publishes w
    const double u = uniforms[k];
    if (top_p < 1.0f) {
      // the nucleus: the first elements in decreasing order whose weight reaches top_p · total
      const int last = crossing_in_key_order(keys, w, V, kept, double(top_p) * total, false);
      const unsigned cut_key = last >= 0 ? keys[last] : 0u;
      const int cut_id = last >= 0 ? last : int(V) - 1;
      const auto nucleus = [&](std::size_t v) {
        return kept(v) && (keys[v] > cut_key || (keys[v] == cut_key && int(v) <= cut_id));
      };
      const double nucleus_sum = block_sum_over<double>(V, [&](std::size_t v) { return nucleus(v) ? w[v] : 0.0; });
      token = crossing_in_key_order(keys, w, V, nucleus, u * nucleus_sum, true);
      if (token < 0) {  // rounding: the last element of the nucleus in its order (smallest key, largest id)
        const unsigned low = block_reduce(
            [&] {
              unsigned m = 0xffffffffu;
              for (std::size_t v = threadIdx.x; v < V; v += blockDim.x)
                if (nucleus(v)) m = min(m, keys[v]);
              return m;
            }(),
            min_op{}, 0xffffffffu);
        int id = -1;
        for (std::size_t v = threadIdx.x; v < V; v += blockDim.x)
          if (nucleus(v) && keys[v] == low) id = max(id, int(v));
        token = block_reduce(id, max_op{}, -1);
      }
    } else {
      // in id order over the kept tokens: the first whose running sum exceeds u · total
      const double target = u * total;
      int lo = 0, hi = int(V) - 1;
      while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        const double s = block_sum_over<double>(V, [&](std::size_t v) { return int(v) <= mid ? w[v] : 0.0; });
        if (s > target)
          hi = mid;
        else
          lo = mid + 1;
      }
      token = lo;
      // rounding can leave the target above every prefix: the CPU then takes the last kept token
      const double s_all = block_sum_over<double>(V, [&](std::size_t v) { return w[v]; });
      if (!(s_all > target)) {
        int id = -1;
        for (std::size_t v = threadIdx.x; v < V; v += blockDim.x)
          if (kept(v)) id = max(id, int(v));
        token = block_reduce(id, max_op{}, -1);
      }  // else token is kept: the prefix sums only grow at kept ids
    }
  }
  if (token < 0 || token >= int(V)) token = 0;  // only with NaN logits (no maximum, no weights)
  if (threadIdx.x == 0) {
    tokens[k] = token;
    logps[k] = (x[token] - mx) - logf(sum1);
  }
}

// ---- the sampler ------------------------------------------------------------------------------------------------

class Sampler {
 public:
  using backend = rlhf::thrust_cuda<float>;

  // p: the model's parameters (device). Returns prompt + response per row, right-padded with token 0
  // (attention_mask 0); the response (a sampled stop token included) is marked in response_mask.
  TokenBatch sample(Blas& blas, const GptTensors<const float>& p, const GptConfig& c, const PromptBatch& x,
                    const SampleOptions& o, Rng& rng) {
    const std::size_t B = x.batch;
    gpt_host::SampledRows<float> rows("rlhf::GptCuda::sample", c, x, o);
    cap_ = rows.cap;
    reserve(c, B, rows.prompt_tokens);

    // prefill: every prompt token is one item
    std::size_t n = 0;
    for (std::size_t b = 0; b < B; ++b) {
      for (std::size_t t = 0; t < rows.len[b]; ++t, ++n)
        item_row_[n] = std::int32_t(b), item_pos_[n] = std::int32_t(t), item_tok_[n] = x.tokens[b * x.time + t];
      selected_[b] = std::int32_t(n - 1);  // the last prompt token predicts the first new one
    }
    step(blas, p, c, n, B);

    std::vector<double> uniforms(B);
    std::vector<std::int32_t> drawn(B);
    std::vector<float> drawn_logp(B);
    for (std::size_t generated = 0;; ++generated) {
      const std::size_t active = rows.active.size();
      for (std::size_t k = 0; k < active; ++k) uniforms[k] = o.temperature == 0.0f ? 0.0 : rng.uniform();
      draw(c, active, o, uniforms, drawn, drawn_logp);
      for (std::size_t k = 0; k < active; ++k) rows.append(rows.active[k], drawn[k], drawn_logp[k]);
      if (!rows.drop_stopped(o.stop_token) || generated + 1 == o.max_new_tokens) break;
      for (std::size_t k = 0; k < rows.active.size(); ++k) {
        const std::size_t b = rows.active[k];
        item_row_[k] = std::int32_t(b), item_pos_[k] = std::int32_t(rows.len[b] - 1);
        item_tok_[k] = rows.last_token(b);
        selected_[k] = std::int32_t(k);
      }
      step(blas, p, c, rows.active.size(), rows.active.size());
    }

    std::vector<float> lp;
    TokenBatch out = rows.to_batch(x, lp);
    log_probs_ = backend::matrix_from_host(B, out.time, lp);
    return out;
  }

  // [B, T] log p (temperature 1, no top-k/top-p) of each token the last sample() drew, 0 elsewhere (device).
  const backend::matrix& log_probs() const { return log_probs_; }

 private:
  // Runs items 0 … n−1 through the model, writing their keys and values into the cache, then the logits of
  // the items selected_[0 … n_out) into logits_ [n_out, V].
  void step(Blas& blas, const GptTensors<const float>& p, const GptConfig& c, std::size_t n, std::size_t n_out) {
    const std::size_t C = c.channels, L = c.layers, NH = c.heads, hs = C / NH, V = c.vocab_size;
    const std::size_t lcache = batch_ * cap_ * C;  // one layer of the cache
    const float eps = c.layer_norm_eps;
    d_item_row_.upload(item_row_.data(), n);
    d_item_pos_.upload(item_pos_.data(), n);
    d_item_tok_.upload(item_tok_.data(), n);
    d_selected_.upload(selected_.data(), n_out);
    float *x = x_.data(), *ln = ln_.data(), *qkv = qkv_.data(), *y = y_.data(), *fch = fch_.data(),
          *fchg = fchg_.data();
    encoder_forward(x, d_item_tok_.data(), d_item_pos_.data(), p.wte, p.wpe, n, C);
    const std::size_t shared = (hs + cap_) * sizeof(float);
    for (std::size_t l = 0; l < L; ++l) {
      layernorm_forward(ln, mean_.data(), rstd_.data(), x, p.ln1w + l * C, p.ln1b + l * C, n, C, eps);
      matmul_forward(blas, qkv, ln, p.qkvw + l * C * 3 * C, p.qkvb + l * 3 * C, n, C, 3 * C);
      float* kc = k_cache_.data() + l * lcache;  // [B, cap, C]
      float* vc = v_cache_.data() + l * lcache;
      kv_write_kernel<<<ceil_div(n * C, 256), 256>>>(kc, vc, qkv, d_item_row_.data(), d_item_pos_.data(), n, cap_, C);
      RLHF_CUDA_CHECK(cudaGetLastError());
      decode_attention_kernel<<<dim3(unsigned(n), unsigned(NH)), 128, shared>>>(y, qkv, kc, vc, d_item_row_.data(),
                                                                                 d_item_pos_.data(), cap_, C, NH);
      RLHF_CUDA_CHECK(cudaGetLastError());
      matmul_forward(blas, fch, y, p.attprojw + l * C * C, p.attprojb + l * C, n, C, C);
      residual_forward(x, x, fch, n * C);
      layernorm_forward(ln, mean_.data(), rstd_.data(), x, p.ln2w + l * C, p.ln2b + l * C, n, C, eps);
      matmul_forward(blas, fch, ln, p.fcw + l * C * 4 * C, p.fcb + l * 4 * C, n, C, 4 * C);
      gelu_forward(fchg, fch, n * 4 * C);
      matmul_forward(blas, y, fchg, p.fcprojw + l * 4 * C * C, p.fcprojb + l * C, n, 4 * C, C);
      residual_forward(x, x, y, n * C);
    }
    gather_rows(y, x, d_selected_.data(), n_out, C);
    layernorm_forward(ln, mean_.data(), rstd_.data(), y, p.lnfw, p.lnfb, n_out, C, eps);
    // logits [n_out, V] = ln · wteᵀ: column-major logits^T [V, n_out] = (wte as column-major [C, V])^T · ln^T
    gemm(blas, true, false, V, n_out, C, p.wte, C, ln, C, logits_.data(), V, 0.0f);
  }

  void draw(const GptConfig& c, std::size_t rows, const SampleOptions& o, const std::vector<double>& uniforms,
            std::vector<std::int32_t>& tokens, std::vector<float>& logps) {
    const std::size_t V = c.vocab_size;
    d_uniforms_.upload(uniforms.data(), rows);
    draw_kernel<<<unsigned(rows), draw_threads>>>(d_tokens_.data(), d_logps_.data(), logits_.data(), d_uniforms_.data(),
                                                  keys_.data(), weights_.data(), V, o.temperature, o.top_k, o.top_p);
    RLHF_CUDA_CHECK(cudaGetLastError());
    d_tokens_.download(tokens.data(), rows);
    d_logps_.download(logps.data(), rows);
  }

  // decode_attention_kernel's block needs `dynamic` bytes of shared memory (the query and cap_ scores) on top of
  // its static shared memory (the block reductions' slots). Up to the default per-block limit (48 KiB, static
  // included) that needs nothing; past it the kernel opts in, up to the device's opt-in limit (227 KiB on sm_90).
  void allow_decode_shared(std::size_t dynamic) const {
    cudaFuncAttributes attr{};
    RLHF_CUDA_CHECK(cudaFuncGetAttributes(&attr, decode_attention_kernel));
    int device = 0, optin = 0;
    RLHF_CUDA_CHECK(cudaGetDevice(&device));
    RLHF_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    const std::size_t limit = std::size_t(optin);
    if (attr.sharedSizeBytes + dynamic > limit)
      fail<config_error>("rlhf::GptCuda::sample: prompt + max_new_tokens = ", cap_, " positions need ",
                         attr.sharedSizeBytes + dynamic, " bytes of shared memory per block (", attr.sharedSizeBytes,
                         " static); this GPU allows ", limit);
    if (dynamic > std::size_t(attr.maxDynamicSharedSizeBytes))
      RLHF_CUDA_CHECK(cudaFuncSetAttribute(decode_attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           int(dynamic)));
  }

  // Grows the buffers (never shrinks them), so repeated calls of one size allocate nothing.
  void reserve(const GptConfig& c, std::size_t B, std::size_t items) {
    const std::size_t C = c.channels, V = c.vocab_size;
    batch_ = B;
    items = std::max(items, B);
    allow_decode_shared((C / c.heads + cap_) * sizeof(float));
    k_cache_.reserve(c.layers * B * cap_ * C);  // [L, B, cap, C]
    v_cache_.reserve(c.layers * B * cap_ * C);
    x_.reserve(items * C), ln_.reserve(items * C), y_.reserve(items * C);
    qkv_.reserve(items * 3 * C), fch_.reserve(items * 4 * C), fchg_.reserve(items * 4 * C);
    mean_.reserve(items), rstd_.reserve(items);
    logits_.reserve(B * V), keys_.reserve(B * V), weights_.reserve(B * V);
    d_item_row_.reserve(items), d_item_pos_.reserve(items), d_item_tok_.reserve(items), d_selected_.reserve(items);
    d_uniforms_.reserve(B), d_tokens_.reserve(B), d_logps_.reserve(B);
    const auto grow = [](auto& v, std::size_t n) {
      if (v.size() < n) v.resize(n);
    };
    grow(item_row_, items), grow(item_pos_, items), grow(item_tok_, items), grow(selected_, items);
  }

  std::size_t batch_ = 0, cap_ = 0;  // B and the longest prompt + max_new_tokens
  device_buffer<float> k_cache_, v_cache_;            // [L, B, cap, C]
  device_buffer<float> x_, ln_, y_, qkv_, fch_, fchg_;  // [items, C | 3C | 4C]
  device_buffer<float> mean_, rstd_;                  // [items]
  device_buffer<float> logits_;                       // [B, V]
  device_buffer<unsigned> keys_;                      // [B, V] draw scratch
  device_buffer<double> weights_;                     // [B, V] draw scratch
  device_buffer<std::int32_t> d_item_row_, d_item_pos_, d_item_tok_, d_selected_;  // [items]
  device_buffer<double> d_uniforms_;                  // [B]
  device_buffer<std::int32_t> d_tokens_;              // [B]
  device_buffer<float> d_logps_;                      // [B]
  std::vector<std::int32_t> item_row_, item_pos_, item_tok_, selected_;
  backend::matrix log_probs_;
};

}  // namespace rlhf::gpt_cuda
