// doctest's main for the CUDA GPT tests: exits 77 (ctest: skipped) when there is no usable GPU.
#define DOCTEST_CONFIG_IMPLEMENT
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <cstdio>

int main(int argc, char** argv) {
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status != cudaSuccess || devices == 0) {
    std::printf("%s: no CUDA device (%s); skipped\n", argc > 0 ? argv[0] : "gpt_cuda test",
                status != cudaSuccess ? cudaGetErrorString(status) : "0 devices");
    return 77;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("%s: %s, compute capability %d.%d\n", argc > 0 ? argv[0] : "gpt_cuda test", prop.name, prop.major,
              prop.minor);
  doctest::Context context(argc, argv);
  return context.run();
}
