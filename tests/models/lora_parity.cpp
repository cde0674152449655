// LoRA against an independent float64 PyTorch implementation of PEFT's LoRA linear (tests/peers/lora_peft.py), on
// the folders it wrote (tests/data/peers/lora/<case>/): a base model and a PEFT adapter folder under PEFT's names.
//   - the adapter folder loads through rlhf::load_adapter; logits with the adapters on and off, and the gradients
//     of every lora_A and lora_B (of Σ d_logp · log p over the response tokens) agree with the reference:
//     float: max |got − ref| ≤ 1e-5 · max |ref| per tensor (measured: 2.0e-6 at worst); double: 1e-7 for the Llama
//     (measured 4.7e-8), 1e-6 for GPT-2 (measured 4.5e-7): the references are stored as float32
//   - merge_lora gives the adapted logits; saved as a full model folder and loaded back, it still does
//   - save_adapter writes exactly PEFT's tensor names, shapes and config keys (those of the reference's folder),
//     and loads back to the same numbers
// Cases: SmolLM2's shape with all seven projections adapted (α/r), and q/v/down with rsLoRA (α/√r); GPT-2 with
// c_attn, c_proj (attention's and the MLP's: PEFT matches by suffix) and c_fc (fan_in_fan_out), and c_attn plus
// attn.c_proj only, with rsLoRA and r = 3.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/io/safetensors.hpp"
#include "rlhf/models/gpt/checkpoint.hpp"
#include "rlhf/models/llama/checkpoint.hpp"
#include "rlhf/models/lora/files.hpp"
#include "support/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
const fs::path data = fs::path(__FILE__).parent_path().parent_path() / "data" / "peers" / "lora";

struct Expected {
  rlhf::TokenBatch batch;
  std::vector<float> d_logp, logits, base_logits;  // [B, T], [B, T, V] twice
};

Expected expected_of(const rlhf::io::Safetensors& st) {
  const auto& shape = st.info("logits").shape;
  const std::size_t B = shape.at(0), T = shape.at(1), V = shape.at(2);
  std::vector<float> tokens(B * T), mask(B * T);
  Expected e{rlhf::TokenBatch::zeros(B, T), std::vector<float>(B * T), std::vector<float>(B * T * V),
             std::vector<float>(B * T * V)};
  st.read_f32("tokens", {B, T}, tokens);
  st.read_f32("response_mask", {B, T}, mask);
  st.read_f32("d_logp", {B, T}, e.d_logp);
  st.read_f32("logits", {B, T, V}, e.logits);
  st.read_f32("base_logits", {B, T, V}, e.base_logits);
  for (std::size_t i = 0; i < B * T; ++i) {
    e.batch.tokens[i] = rlhf::token_id(tokens[i]);
    e.batch.response_mask[i] = mask[i] != 0;
  }
  return e;
}

template <class Got>
double relative_error(const Got* got, const std::vector<float>& ref) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    diff = std::max(diff, std::abs(double(got[i]) - double(ref[i])));
    scale = std::max(scale, std::abs(double(ref[i])));
  }
  return diff / scale;
}

template <class T>
rlhf::Llama<T> base_of(const fs::path& folder, rlhf::Llama<T>*) {
  return rlhf::load_llama<T>(folder / "base");
}
template <class T>
rlhf::Gpt<T> base_of(const fs::path& folder, rlhf::Gpt<T>*) {
  return rlhf::load_checkpoint<T>(folder / "base" / "model.safetensors");
}

template <class T>
rlhf::Llama<T> saved_and_loaded(const rlhf::Llama<T>& m, const fs::path& dir) {
  rlhf::save_llama(m, dir);
  return rlhf::load_llama<T>(dir);
}
template <class T>
rlhf::Gpt<T> saved_and_loaded(const rlhf::Gpt<T>& m, const fs::path& dir) {
  fs::create_directories(dir);
  rlhf::save_checkpoint(m, dir / "model.safetensors");
  return rlhf::load_checkpoint<T>(dir / "model.safetensors");
}

template <class Model>
void check_case(const std::string& name, double bound) {
  using T = typename Model::scalar;
  CAPTURE(name);
  CAPTURE(sizeof(T));
  const fs::path folder = data / name;
  auto lora = rlhf::load_adapter(folder / "adapter", base_of(folder, static_cast<Model*>(nullptr)));
  const auto st = rlhf::io::Safetensors::load(folder / "expected.safetensors");
  const Expected e = expected_of(st);

  const auto logits = lora.logits(e.batch);
  CHECK(relative_error(logits.data(), e.logits) <= bound);
  {
    rlhf::AdaptersOff off(lora);
    const auto base = lora.logits(e.batch);
    CHECK(relative_error(base.data(), e.base_logits) <= bound);
  }
  // the adapters change the logits: the comparison above is not of the base model twice
  CHECK(relative_error(e.base_logits.data(), e.logits) > 100 * bound);

  lora.zero_grad();
  lora.log_probs(e.batch);
  typename Model::matrix d = Model::backend::matrix_of(e.batch.batch, e.batch.time);
  for (std::size_t i = 0; i < e.d_logp.size(); ++i) d.data()[i] = T(e.d_logp[i]);
  lora.backward(e.batch, d);
  const auto grads = lora.gradients();
  double worst = 0;
  std::size_t compared = 0;
  for (const auto& t : rlhf::detail::lora_files::adapter_tensors(lora)) {
    CAPTURE(t.name);
    std::size_t n = 1;
    for (auto s : t.shape) n *= s;
    std::vector<float> ref(n);
    st.read_f32("grad." + t.name, t.shape, ref);
    const double err = relative_error(grads.data() + t.offset, ref);
    worst = std::max(worst, err);
    CHECK(err <= bound);
    ++compared;
  }
  MESSAGE(name << " (" << sizeof(T) * 8 << "-bit): " << compared << " LoRA gradients, worst " << worst);
  CHECK(compared == 2 * lora.adapters().size());
  CHECK(compared >= 8);

  // merge: the plain model scores as the adapted one, also after a round trip through a full model folder
  rlhf::test::TempDir dir("rlhf-lora-parity");
  auto merged = rlhf::merge_lora(lora);
  CHECK(relative_error(merged.logits(e.batch).data(), e.logits) <= bound);
  auto reloaded = saved_and_loaded(merged, dir / "merged");
  CHECK(relative_error(reloaded.logits(e.batch).data(), e.logits) <= (sizeof(T) == 4 ? bound : 1e-6));
}

const char* const llama_cases[] = {"llama_all", "llama_rslora"};
const char* const gpt_cases[] = {"gpt2_all", "gpt2_rslora"};

nlohmann::json json_of(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

template <class Model>
void check_saved(const std::string& name) {
  CAPTURE(name);
  const fs::path folder = data / name;
  rlhf::test::TempDir dir("rlhf-lora-save");
  auto lora = rlhf::load_adapter(folder / "adapter", base_of(folder, static_cast<Model*>(nullptr)));
  rlhf::save_adapter(lora, dir.path);
  const auto ours = rlhf::io::Safetensors::load(dir / "adapter_model.safetensors");
  const auto theirs = rlhf::io::Safetensors::load(folder / "adapter" / "adapter_model.safetensors");
  std::map<std::string, std::vector<std::size_t>> a, b;
  for (const auto& t : ours.tensors()) a[t.name] = t.shape;
  for (const auto& t : theirs.tensors()) b[t.name] = t.shape;
  CHECK(a == b);
  for (const auto& [n, shape] : b) {
    CAPTURE(n);
    CHECK(ours.info(n).dtype == rlhf::io::Dtype::f32);
    const auto x = ours.bytes(n), y = theirs.bytes(n);
    CHECK(std::equal(x.begin(), x.end(), y.begin(), y.end()));  // the numbers, bit for bit
  }
  const auto cfg = json_of(dir / "adapter_config.json"), ref = json_of(folder / "adapter" / "adapter_config.json");
  CHECK(cfg.size() == ref.size());
  for (const auto& [key, value] : ref.items()) {
    CAPTURE(key);
    REQUIRE(cfg.contains(key));
    if (key == "target_modules") {  // a set in PEFT: any order
      auto x = cfg[key].template get<std::vector<std::string>>(), y = value.template get<std::vector<std::string>>();
      std::sort(x.begin(), x.end()), std::sort(y.begin(), y.end());
      CHECK(x == y);
    } else {
      CHECK(cfg[key] == value);
    }
  }
  // and back: the same parameters
  const auto again = rlhf::load_adapter(dir.path, base_of(folder, static_cast<Model*>(nullptr)));
  const auto p = lora.parameters(), q = again.parameters();
  CHECK(std::equal(p.begin(), p.end(), q.begin(), q.end()));
}

}  // namespace

TEST_CASE("lora parity (float): logits and the gradients of A and B within 1e-5 of the PyTorch PEFT reference") {
  for (const char* name : llama_cases) check_case<rlhf::Llama<float>>(name, 1e-5);
  for (const char* name : gpt_cases) check_case<rlhf::Gpt<float>>(name, 1e-5);
}

TEST_CASE("lora parity (double): within the float32 rounding of the stored float64 references") {
  for (const char* name : llama_cases) check_case<rlhf::Llama<double>>(name, 1e-7);
  for (const char* name : gpt_cases) check_case<rlhf::Gpt<double>>(name, 1e-6);  // measured 4.5e-7
}

TEST_CASE("save_adapter writes PEFT's names, shapes and config keys, and loads back to the same numbers") {
  for (const char* name : llama_cases) check_saved<rlhf::Llama<float>>(name);
  for (const char* name : gpt_cases) check_saved<rlhf::Gpt<float>>(name);
}
