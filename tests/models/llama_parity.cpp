// The Llama against an independent float64 PyTorch implementation of HF's LlamaForCausalLM / Qwen2ForCausalLM /
// Qwen3ForCausalLM (tests/peers/llama_family.py), on HF model folders it wrote (tests/data/peers/llama/<case>/):
// the folder loads through rlhf::load_llama, and the logits and the gradient of every weight (of
// Σ d_logp · log p over the response tokens) agree with the reference:
//   float : max |got − ref| ≤ 1e-5 · max |ref|, per tensor (measured: 2.1e-6 at worst)
//   double: 1e-7 · max |ref|: the stored references are float32, rounded within 6e-8 of the float64 values
//           (measured: 5.7e-8)
// Cases: GQA 3:1 tied (SmolLM2), 7:1 with q/k/v biases (Qwen2.5), 2:1 with q/k norms and head_dim ≠ C/NH
// (Qwen3), 4:1 untied with llama3 rope scaling and attention_bias (Llama 3.2), linear rope scaling (TinyLlama's
// shape), and a BF16 checkpoint in two shards with an index.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "rlhf/io/safetensors.hpp"
#include "rlhf/models/llama/checkpoint.hpp"

namespace {

namespace fs = std::filesystem;
const fs::path data = fs::path(__FILE__).parent_path().parent_path() / "data" / "peers" / "llama";

struct Expected {
  rlhf::TokenBatch batch;
  std::vector<float> d_logp, logits;  // [B, T], [B, T, V]
};

Expected expected_of(const fs::path& folder, std::size_t V) {
  const auto st = rlhf::io::Safetensors::load(folder / "expected.safetensors");
  const auto& shape = st.info("tokens").shape;
  const std::size_t B = shape.at(0), T = shape.at(1);
  std::vector<float> tokens(B * T), mask(B * T);
  Expected e{rlhf::TokenBatch::zeros(B, T), std::vector<float>(B * T), std::vector<float>(B * T * V)};
  st.read_f32("tokens", {B, T}, tokens);
  st.read_f32("response_mask", {B, T}, mask);
  st.read_f32("d_logp", {B, T}, e.d_logp);
  st.read_f32("logits", {B, T, V}, e.logits);
  for (std::size_t i = 0; i < B * T; ++i) {
    e.batch.tokens[i] = rlhf::token_id(tokens[i]);
    e.batch.response_mask[i] = mask[i] != 0;
  }
  return e;
}

// max |got − ref| / max |ref|
template <class Got>
double relative_error(const Got& got, const std::vector<float>& ref) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    diff = std::max(diff, std::abs(double(got[i]) - double(ref[i])));
    scale = std::max(scale, std::abs(double(ref[i])));
  }
  return diff / scale;
}

template <class T>
void check_case(const std::string& name, double bound) {
  CAPTURE(name);
  const fs::path folder = data / name;
  auto model = rlhf::load_llama<T>(folder);
  const auto& c = model.config();
  const Expected e = expected_of(folder, c.vocab_size);

  const auto logits = model.logits(e.batch);
  const double logit_error = relative_error(logits.data(), e.logits);
  MESSAGE(name << " (" << sizeof(T) * 8 << "-bit): logits " << logit_error);
  CHECK(logit_error <= bound);

  model.zero_grad();
  model.log_probs(e.batch);
  typename rlhf::Llama<T>::matrix d = rlhf::Llama<T>::backend::matrix_of(e.batch.batch, e.batch.time);
  for (std::size_t i = 0; i < e.d_logp.size(); ++i) d.data()[i] = T(e.d_logp[i]);
  model.backward(e.batch, d);

  const auto st = rlhf::io::Safetensors::load(folder / "expected.safetensors");
  const auto grads = model.gradients();
  double worst = 0;
  std::size_t compared = 0;
  for (const auto& t : rlhf::llama_checkpoint_tensors(c)) {
    CAPTURE(t.name);
    std::vector<float> ref(t.size);
    st.read_f32("grad." + t.name, t.shape, ref);
    std::vector<double> got(t.size);  // ours in HF's layout
    for (std::size_t j = 0; j < t.size; ++j)
      got[j] = double(grads[t.offset + (t.transposed ? (j % t.shape[1]) * t.shape[0] + j / t.shape[1] : j)]);
    const double err = relative_error(got, ref);
    worst = std::max(worst, err);
    CHECK(err <= bound);
    ++compared;
  }
  MESSAGE(name << " (" << sizeof(T) * 8 << "-bit): " << compared << " gradients, worst " << worst);
  CHECK(compared >= 10);
}

const char* const cases[] = {"smollm2", "qwen2", "qwen3", "llama32", "tinyllama", "bf16_sharded"};

}  // namespace

TEST_CASE("llama parity (float): logits and every weight's gradient within 1e-5 of the PyTorch reference") {
  for (const char* name : cases) check_case<float>(name, 1e-5);
}

TEST_CASE("llama parity (double): within the float32 rounding of the stored float64 references") {
  for (const char* name : cases) check_case<double>(name, 1e-7);
}

TEST_CASE("llama parity: the folders' configs are read as the reference wrote them") {
  const auto smol = rlhf::load_llama_config(data / "smollm2");
  CHECK(smol.kv_heads * 3 == smol.heads);
  CHECK(smol.tie_word_embeddings);
  CHECK(!smol.qkv_bias);
  const auto qwen2 = rlhf::load_llama_config(data / "qwen2");
  CHECK((qwen2.qkv_bias && !qwen2.o_bias && qwen2.kv_heads * 7 == qwen2.heads && qwen2.rms_norm_eps == 1e-6f));
  const auto qwen3 = rlhf::load_llama_config(data / "qwen3");
  CHECK((qwen3.qk_norm && qwen3.head_size() == 16 && qwen3.hidden_size / qwen3.heads == 8));
  const auto l32 = rlhf::load_llama_config(data / "llama32");
  CHECK((l32.rope_scaling == rlhf::RopeScaling::llama3 && l32.rope_factor == 32.0 && !l32.tie_word_embeddings &&
         l32.o_bias && l32.qkv_bias));
  const auto tiny = rlhf::load_llama_config(data / "tinyllama");
  CHECK((tiny.rope_scaling == rlhf::RopeScaling::linear && tiny.rope_factor == 2.0));
}
