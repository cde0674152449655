// DPO on the GPT with synthetic preference pairs (train.hpp), on the CPU model or, with --device cuda, on the
// CUDA model: the same templated training function and the same rlhf::dpo_step, called with rlhf::GptCuda and
// rlhf::CudaAdamW. With --device cuda: exits 2 with "no CUDA device" on a machine without a GPU, 1 when a GPU is
// there but its driver or runtime fails.
#include <cuda_runtime.h>

#include <cstdio>
#include <exception>

#include "rlhf/models/gpt/model.hpp"
#include "rlhf/models/gpt_cuda/adamw.cuh"
#include "rlhf/models/gpt_cuda/device.cuh"
#include "rlhf/models/gpt_cuda/model.cuh"
#include "rlhf/optim/adamw.hpp"
#include "train.hpp"

namespace {

struct DeviceSync {
  void operator()() const { RLHF_CUDA_CHECK(cudaDeviceSynchronize()); }
};

}  // namespace

int main(int argc, char** argv) {
  gpt_dpo::Options o;
  if (const int code = gpt_dpo::parse_options(argc, argv, o); code >= 0) return code;
  try {
    if (o.device == "cpu") {
      gpt_dpo::print_header(o);
      gpt_dpo::train_on_cpu<rlhf::Gpt<float>, rlhf::AdamW<float>>(o);
      return 0;
    }
    const auto probe = rlhf::gpt_cuda::probe_device();
    if (probe.kind == rlhf::gpt_cuda::DeviceProbe::absent) {
      std::fprintf(stderr, "gpt_dpo: --device cuda: no CUDA device (%s)\n", probe.message.c_str());
      return 2;
    }
    if (probe.kind == rlhf::gpt_cuda::DeviceProbe::broken) {
      std::fprintf(stderr, "gpt_dpo: --device cuda: the GPU cannot be used: %s\n", probe.message.c_str());
      return 1;
    }
    cudaDeviceProp prop{};
    RLHF_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    gpt_dpo::print_header(o);
    std::printf("device: %s\n", prop.name);
    rlhf::GptCuda policy(o.gpt(), o.seed), reference(o.gpt(), o.seed);
    rlhf::CudaAdamW optimizer({.learning_rate = o.learning_rate});
    gpt_dpo::train(policy, reference, optimizer, o, DeviceSync{});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpt_dpo: %s\n", e.what());
    return 1;
  }
  return 0;
}
