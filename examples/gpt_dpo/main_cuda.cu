// DPO on the GPT with synthetic preference pairs (train.hpp), on the CPU model or, with --device cuda, on the
// CUDA model: the same templated training function and the same rlhf::dpo_step, called with rlhf::GptCuda and
// rlhf::CudaAdamW. Exits 2 with "no CUDA device" when --device cuda finds no usable GPU.
#include <cuda_runtime.h>

#include <cstdio>
#include <exception>

#include "rlhf/models/gpt/model.hpp"
#include "rlhf/models/gpt_cuda/adamw.cuh"
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
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
      std::fprintf(stderr, "gpt_dpo: --device cuda: no CUDA device (%s)\n",
                   err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
      return 2;
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
