// doctest's main for the CUDA GPT tests: exits 77 (ctest: skipped) only when this machine has no GPU (no NVIDIA
// driver, or no device); a GPU that is there but fails (driver too old, initialisation error) exits 1.
#define DOCTEST_CONFIG_IMPLEMENT
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <cstdio>

#include "rlhf/models/gpt_cuda/device.cuh"

int main(int argc, char** argv) {
  const char* self = argc > 0 ? argv[0] : "gpt_cuda test";
  const auto probe = rlhf::gpt_cuda::probe_device();
  if (probe.kind == rlhf::gpt_cuda::DeviceProbe::absent) {
    std::printf("%s: no CUDA device (%s); skipped\n", self, probe.message.c_str());
    return 77;
  }
  if (probe.kind == rlhf::gpt_cuda::DeviceProbe::broken) {
    std::printf("%s: CUDA error before any test: %s\n", self, probe.message.c_str());
    return 1;
  }
  cudaDeviceProp prop{};
  if (const cudaError_t e = cudaGetDeviceProperties(&prop, 0); e != cudaSuccess) {
    std::printf("%s: cudaGetDeviceProperties: %s\n", self, cudaGetErrorString(e));
    return 1;
  }
  std::printf("%s: %s, compute capability %d.%d\n", self, prop.name, prop.major, prop.minor);
  doctest::Context context(argc, argv);
  return context.run();
}
