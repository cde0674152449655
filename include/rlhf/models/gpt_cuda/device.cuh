#pragma once
// Is there a GPU to run on? What the CUDA tests, benchmarks and examples ask before they start, so that "skipped"
// means only that this machine has no GPU: a GPU whose driver or runtime fails is an error, not a skip.
//
//   absent  no NVIDIA driver installed (cudaDriverGetVersion gives 0; the runtime then reports
//           cudaErrorInsufficientDriver), or the driver sees no device (cudaErrorNoDevice, or 0 devices)
//   ready   at least one device
//   broken  any other answer: an installed driver older than the runtime, a driver that fails to initialise,
//           a device that is busy or lost, ...; `message` holds the CUDA error
#include <cuda_runtime.h>

#include <string>

namespace rlhf::gpt_cuda {

struct DeviceProbe {
  enum Kind { ready, absent, broken } kind = absent;
  int devices = 0;
  std::string message;  // absent / broken: why, in CUDA's words
};

inline DeviceProbe probe_device() {
  int driver = 0;
  const cudaError_t driver_status = cudaDriverGetVersion(&driver);
  if (driver_status == cudaSuccess && driver == 0) return {DeviceProbe::absent, 0, "no NVIDIA driver installed"};
  int devices = 0;
  const cudaError_t status = cudaGetDeviceCount(&devices);
  if (status == cudaErrorNoDevice || (status == cudaSuccess && devices == 0))
    return {DeviceProbe::absent, 0, status == cudaSuccess ? "0 devices" : cudaGetErrorString(status)};
  if (status == cudaSuccess) return {DeviceProbe::ready, devices, {}};
  std::string why = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
  if (driver_status == cudaSuccess) why += " (driver API version " + std::to_string(driver) + ")";
  return {DeviceProbe::broken, 0, why};
}

}  // namespace rlhf::gpt_cuda
