// doctest's main for the CUDA typed tests: exits 77 (ctest: skipped) only when this machine has no GPU (no NVIDIA
// driver, or no device); a GPU that is there but fails (driver too old, initialisation error) exits 1.
#define DOCTEST_CONFIG_IMPLEMENT
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>

#include "rlhf/models/gpt_cuda/device.cuh"

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)  // listing the tests needs no GPU
    if (std::strncmp(argv[i], "--list", 6) == 0 || std::strncmp(argv[i], "-l", 2) == 0)
      return doctest::Context(argc, argv).run();
  const auto probe = rlhf::gpt_cuda::probe_device();
  if (probe.kind == rlhf::gpt_cuda::DeviceProbe::absent) {
    std::printf("cuda_typed_tests: no CUDA device (%s); skipped\n", probe.message.c_str());
    return 77;
  }
  if (probe.kind == rlhf::gpt_cuda::DeviceProbe::broken) {
    std::printf("cuda_typed_tests: CUDA error before any test: %s\n", probe.message.c_str());
    return 1;
  }
  cudaDeviceProp prop{};
  if (const cudaError_t e = cudaGetDeviceProperties(&prop, 0); e != cudaSuccess) {
    std::printf("cuda_typed_tests: cudaGetDeviceProperties: %s\n", cudaGetErrorString(e));
    return 1;
  }
  std::printf("cuda_typed_tests: %s, compute capability %d.%d\n", prop.name, prop.major, prop.minor);
  doctest::Context context(argc, argv);
  return context.run();
}
