#pragma once
// rlhf-train merge: an adapter folder that rlhf-train (use_peft) or PEFT wrote, merged into its base as a full
// model folder (PEFT's merge_and_unload, then save_pretrained): config.json, model.safetensors, tokenizer files.
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <string>

#include "model_family.hpp"
#include "output_lock.hpp"

namespace trainer {

inline int merge_main(int argc, char** argv) {
  const char* usage =
      "usage: rlhf-train merge --adapter_path DIR --output_dir DIR [--base_model_name_or_path DIR]\n"
      "  Merges the LoRA adapters of DIR (adapter_config.json, adapter_model.safetensors) into their base model\n"
      "  (adapter_config.json's base_model_name_or_path, unless given) and writes a full model folder.\n";
  std::string adapter, output, base;
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") return std::printf("%s", usage), 0;
    std::string* field = flag == "--adapter_path"             ? &adapter
                         : flag == "--output_dir"             ? &output
                         : flag == "--base_model_name_or_path" ? &base
                                                              : nullptr;
    if (!field) return std::fprintf(stderr, "rlhf-train merge: unknown flag '%.60s' (--help)\n", argv[i]), 2;
    if (i + 1 >= argc || std::strncmp(argv[i + 1], "--", 2) == 0)
      return std::fprintf(stderr, "rlhf-train merge: %s needs a value\n", flag.c_str()), 2;
    *field = argv[++i];
  }
  if (adapter.empty() || output.empty())
    return std::fprintf(stderr, "rlhf-train merge: --adapter_path and --output_dir are required (--help)\n"), 2;
  try {
    if (!is_adapter_folder(adapter))
      rlhf::fail<rlhf::io_error>("'", adapter, "' is not an adapter folder (adapter_config.json, and no config.json)");
    const auto settings = rlhf::load_adapter_settings(adapter);
    if (base.empty()) base = settings.base_model_name_or_path;
    const bool reward = std::find(settings.modules_to_save.begin(), settings.modules_to_save.end(), "score") !=
                        settings.modules_to_save.end();
    std::error_code ec;
    for (const auto& input : {fs::path(adapter), fs::path(base)})
      if (fs::exists(output, ec) && fs::equivalent(output, input, ec))
        rlhf::fail<rlhf::config_error>("--output_dir '", output, "' is an input folder; give the merged model its own");
    if (fs::exists(fs::path(output) / "model.safetensors", ec) || fs::exists(fs::path(output) / "config.json", ec))
      rlhf::fail<rlhf::io_error>("--output_dir '", output, "' already holds a model; choose another folder");
    const Model merged = load_merged_adapter(adapter, reward, 0, base);
    const fs::path tokenizer = fs::exists(fs::path(adapter) / "tokenizer.json") ||
                                       fs::exists(fs::path(adapter) / "vocab.json") ||
                                       fs::exists(fs::path(adapter) / "encoder.json")
                                   ? fs::path(adapter)
                                   : fs::path(base);
    const TextCodec codec = load_text_codec(tokenizer);
    const OutputDirLock lock(output);
    save_model(merged, codec, output);
    std::printf("rlhf-train merge: %s + adapters %s (%zu target modules) -> %s (config.json, model.safetensors, tokenizer "
                "files from %s)\n",
                base.c_str(), adapter.c_str(), std::size_t(settings.target_modules.size()), output.c_str(),
                tokenizer.string().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rlhf-train merge: %s\n", e.what());
    return 1;
  }
}

}  // namespace trainer
