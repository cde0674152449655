#pragma once
// PEFT's adapter folder, read and written:
//
//   adapter_config.json         peft_type "LORA", r, lora_alpha, lora_dropout, target_modules, bias, fan_in_fan_out,
//                               use_rslora, modules_to_save, task_type, base_model_name_or_path (+ PEFT's defaults
//                               for the keys it always writes: use_dora false, rank_pattern {}, ...)
//   adapter_model.safetensors   base_model.model.<module path>.lora_A.weight [r, in]
//                               base_model.model.<module path>.lora_B.weight [out, r]
//                               base_model.model.score.weight [1, C] (+ score.bias [1], GPT-2) for modules_to_save
//
// F32, no adapter name in the tensor names (PEFT strips "default"). A folder PEFT wrote loads here, one written
// here loads in PEFT (PeftModel.from_pretrained). Refused, with the file and key or tensor named: another
// peft_type, a setting this library does not implement (DoRA, rank_pattern, alpha_pattern, layers_to_transform,
// a regular-expression target_modules), fan_in_fan_out that disagrees with the family, missing or unexpected
// tensors, shapes that differ.
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "rlhf/core/error.hpp"
#include "rlhf/io/atomic_file.hpp"
#include "rlhf/io/json_file.hpp"
#include "rlhf/io/safetensors.hpp"
#include "rlhf/models/lora/model.hpp"

namespace rlhf {

namespace detail::lora_files {

inline const std::string prefix = "base_model.model.";

// Every tensor of an adapter file: name, shape, and the slice of Lora::parameters() it holds.
struct AdapterTensor {
  std::string name;
  std::vector<std::size_t> shape;
  std::size_t offset = 0;
};

template <class Model>
std::vector<AdapterTensor> adapter_tensors(const Lora<Model>& lora) {
  std::vector<AdapterTensor> out;
  const std::size_t r = lora.settings().r;
  for (const auto& a : lora.adapters()) {
    out.push_back({prefix + a.path + ".lora_A.weight", {r, a.in}, a.a_offset});
    out.push_back({prefix + a.path + ".lora_B.weight", {a.out, r}, a.b_offset});
  }
  std::size_t at = lora.saved_head_offset();
  if (lora.saved_head_size())
    for (const auto& [name, shape] : LoraFamily<Model>::head_tensors(lora.base())) {
      out.push_back({prefix + name, shape, at});
      at += shape.size() == 2 ? shape[0] * shape[1] : shape[0];
    }
  return out;
}

inline nlohmann::ordered_json config_json(const LoraSettings& s, bool fan_in_fan_out) {
  nlohmann::ordered_json j;
  j["peft_type"] = "LORA";
  j["task_type"] = s.task_type;
  j["base_model_name_or_path"] = s.base_model_name_or_path.empty() ? nlohmann::ordered_json(nullptr)
                                                                    : nlohmann::ordered_json(s.base_model_name_or_path);
  j["r"] = s.r;
  j["lora_alpha"] = s.lora_alpha;
  j["lora_dropout"] = s.lora_dropout;
  j["target_modules"] = s.target_modules;
  j["bias"] = s.bias;
  j["fan_in_fan_out"] = fan_in_fan_out;
  j["use_rslora"] = s.use_rslora;
  j["modules_to_save"] = s.modules_to_save.empty() ? nlohmann::ordered_json(nullptr)
                                                   : nlohmann::ordered_json(s.modules_to_save);
  // PEFT's defaults for the keys it always writes: what this library implements
  j["inference_mode"] = true;
  j["init_lora_weights"] = true;
  j["use_dora"] = false;
  j["rank_pattern"] = nlohmann::ordered_json::object();
  j["alpha_pattern"] = nlohmann::ordered_json::object();
  j["layers_to_transform"] = nullptr;
  j["layers_pattern"] = nullptr;
  j["revision"] = nullptr;
  return j;
}

// The settings an adapter_config.json describes (and its fan_in_fan_out).
inline std::pair<LoraSettings, bool> settings_of(const nlohmann::json& j, const std::string& where) {
  const auto bad = [&](const char* key, const auto&... why) { fail<io_error>(where, ": '", key, "' ", why...); };
  if (!j.is_object()) fail<io_error>(where, ": not a JSON object");
  if (!j.contains("peft_type") || j["peft_type"] != "LORA")
    bad("peft_type", "must be \"LORA\" (got ", j.contains("peft_type") ? j["peft_type"].dump() : "nothing", ")");
  LoraSettings s;
  const auto number = [&](const char* key, double fallback) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_number()) bad(key, "must be a number (got ", j[key].dump(), ")");
    return j[key].get<double>();
  };
  const auto flag = [&](const char* key, bool fallback) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_boolean()) bad(key, "must be true or false (got ", j[key].dump(), ")");
    return j[key].get<bool>();
  };
  const auto text = [&](const char* key, std::string fallback) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_string()) bad(key, "must be a string (got ", j[key].dump(), ")");
    return j[key].get<std::string>();
  };
  const auto names = [&](const char* key) {
    std::vector<std::string> out;
    if (!j.contains(key) || j[key].is_null()) return out;
    if (j[key].is_string())
      bad(key, "is a string (", j[key].dump(), "), which PEFT reads as a regular expression over module paths; "
               "this library takes a list of module names (or [\"all-linear\"])");
    if (!j[key].is_array()) bad(key, "must be a list of module names (got ", j[key].dump(), ")");
    for (const auto& n : j[key]) {
      if (!n.is_string()) bad(key, "must list strings (got ", n.dump(), ")");
      out.push_back(n.get<std::string>());
    }
    return out;
  };
  const double r = number("r", 8);
  if (!(r >= 1 && r <= double(LoraSettings::max_rank) && r == std::floor(r)))
    bad("r", "must be an integer in [1, ", LoraSettings::max_rank, "] (got ", j.value("r", nlohmann::json()).dump(), ")");
  s.r = std::size_t(r);
  s.lora_alpha = number("lora_alpha", 8);
  s.lora_dropout = number("lora_dropout", 0);
  s.use_rslora = flag("use_rslora", false);
  s.bias = text("bias", "none");
  s.task_type = text("task_type", "CAUSAL_LM");
  s.base_model_name_or_path = text("base_model_name_or_path", "");
  s.target_modules = names("target_modules");
  if (s.target_modules.empty()) bad("target_modules", "is missing or empty");
  s.modules_to_save = names("modules_to_save");
  if (flag("use_dora", false)) bad("use_dora", "is true: DoRA is not implemented here");
  for (const char* key : {"rank_pattern", "alpha_pattern"})
    if (j.contains(key) && !j[key].is_null() && !(j[key].is_object() && j[key].empty()))
      bad(key, "is not empty (", j[key].dump(), "): per-module ranks and alphas are not implemented here");
  for (const char* key : {"layers_to_transform", "layer_replication"})
    if (j.contains(key) && !j[key].is_null()) bad(key, "is set (", j[key].dump(), "): not implemented here");
  try {
    s.validate("adapter_config.json");
  } catch (const config_error& e) {
    fail<io_error>(where, ": ", e.what());
  }
  return {s, flag("fan_in_fan_out", false)};
}

}  // namespace detail::lora_files

// Writes `folder` (created if absent): adapter_config.json and adapter_model.safetensors, each through a temporary
// file and a rename. Refuses non-finite values (value_error naming the tensor), writing nothing.
template <class Model>
void save_adapter(const Lora<Model>& lora, const std::filesystem::path& folder) {
  namespace f = detail::lora_files;
  const auto params = lora.parameters();
  const auto tensors = f::adapter_tensors(lora);
  std::vector<std::vector<float>> data(tensors.size());
  std::vector<io::TensorView> views;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    std::size_t n = 1;
    for (auto d : tensors[i].shape) n *= d;
    data[i].resize(n);
    for (std::size_t k = 0; k < n; ++k) {
      data[i][k] = float(params[tensors[i].offset + k]);
      if (!std::isfinite(data[i][k]))
        fail<value_error>("rlhf::save_adapter: tensor '", tensors[i].name, "' holds ", data[i][k], " at flat index ",
                          k, "; nothing is written to ", folder.string());
    }
    views.push_back({.name = tensors[i].name, .shape = tensors[i].shape, .data = data[i].data()});
  }
  std::filesystem::create_directories(folder);
  io::save_safetensors(folder / "adapter_model.safetensors", views, {{"format", "pt"}});
  io::write_file_atomic(folder / "adapter_config.json",
                        f::config_json(lora.settings(), LoraFamily<Model>::fan_in_fan_out).dump(2) + "\n");
}

// The settings of the adapter folder `folder` (adapter_config.json alone).
inline LoraSettings load_adapter_settings(const std::filesystem::path& folder) {
  const auto path = folder / "adapter_config.json";
  const std::string where = "rlhf::load_adapter '" + path.string() + "'";
  const auto j = io::parse_json_text(io::read_regular_file(path, std::size_t(1) << 20), where);
  return detail::lora_files::settings_of(j, where).first;
}

// Attaches the adapters of the PEFT folder `folder` to `base`: the settings from adapter_config.json, A, B and
// the saved head from adapter_model.safetensors (F32, F16, BF16 or F64). Every expected tensor must be there with
// its shape, and no other.
template <class Model>
Lora<Model> load_adapter(const std::filesystem::path& folder, Model base) {
  using T = typename Model::scalar;
  const auto config_path = folder / "adapter_config.json";
  const std::string where = "rlhf::load_adapter '" + config_path.string() + "'";
  const auto j = io::parse_json_text(io::read_regular_file(config_path, std::size_t(1) << 20), where);
  const auto [settings, fan_in_fan_out] = detail::lora_files::settings_of(j, where);
  if (fan_in_fan_out != LoraFamily<Model>::fan_in_fan_out)
    fail<io_error>(where, ": 'fan_in_fan_out' is ", fan_in_fan_out ? "true" : "false", " but this model's layers ",
                   LoraFamily<Model>::fan_in_fan_out ? "are GPT-2's Conv1D [in, out] (true)"
                                                      : "are nn.Linear [out, in] (false)");
  const auto weights = folder / "adapter_model.safetensors";
  if (!std::filesystem::exists(weights) && std::filesystem::exists(folder / "adapter_model.bin"))
    fail<io_error>("rlhf::load_adapter '", weights.string(),
                   "': absent; the folder has adapter_model.bin (a PyTorch pickle), which is not read: save it with "
                   "safe_serialization=True");
  Rng unused(0);  // A is drawn, then overwritten by the file's
  Lora<Model> lora(std::move(base), settings, unused);
  const auto st = io::Safetensors::load(weights);
  const auto tensors = detail::lora_files::adapter_tensors(lora);
  std::set<std::string, std::less<>> expected;
  auto params = lora.parameters();
  for (const auto& t : tensors) {
    expected.insert(t.name);
    std::size_t n = 1;
    for (auto d : t.shape) n *= d;
    std::vector<float> values(n);
    st.read_f32(t.name, t.shape, values);
    for (std::size_t k = 0; k < n; ++k) params[t.offset + k] = T(values[k]);
  }
  for (const auto& t : st.tensors())
    if (!expected.contains(t.name))
      fail<io_error>("rlhf::load_adapter '", weights.string(), "': unexpected tensor '", t.name, "' of shape ",
                     io::detail::shape_str(t.shape), " (adapter_config.json's target_modules and modules_to_save "
                     "name ", tensors.size(), " tensors, not this one)");
  return lora;
}

}  // namespace rlhf
