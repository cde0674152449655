#pragma once
// rlhf::Communicator for CUDA models: gradients (device memory) are summed over the ranks by NCCL; host data
// (losses, metrics, token counts, NCCL's own id at start-up) goes through a host communicator of the same ranks,
// MPI in practice:
//
//   rlhf::MpiSession mpi(argc, argv);
//   rlhf::MpiCommunicator host;
//   rlhf::NcclCommunicator world(host, /*device=*/host.rank() % gpus_per_node);
//   rlhf::StepOptions options{.communicator = &world};   // a GptCuda's steps now all-reduce over NCCL
//
// One GPU per rank. Every call synchronises its stream before returning, so the optimizer that follows sees the
// reduced gradient. docs/distributed.md says what has and has not been run.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstddef>
#include <span>
#include <string>

#include "rlhf/core/error.hpp"
#include "rlhf/distributed/communicator.hpp"

namespace rlhf {

namespace detail {

inline void nccl_check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) fail<error>("NCCL: ", what, " failed: ", ncclGetErrorString(r));
}
inline void cuda_check_nccl(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail<error>("CUDA: ", what, " failed: ", cudaGetErrorString(e));
}

static __global__ void scale_kernel(float* x, std::size_t n, float factor) {
  const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= factor;
}

}  // namespace detail

class NcclCommunicator final : public Communicator {
 public:
  // `host` must outlive this communicator; every rank calls this constructor together.
  NcclCommunicator(Communicator& host, int device) : host_(host) {
    detail::cuda_check_nccl(cudaSetDevice(device), "cudaSetDevice");
    ncclUniqueId id{};
    if (host.rank() == 0) detail::nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    host.broadcast(std::as_writable_bytes(std::span(&id, 1)), 0);
    detail::nccl_check(ncclCommInitRank(&comm_, host.size(), id, host.rank()), "ncclCommInitRank");
    detail::cuda_check_nccl(cudaStreamCreate(&stream_), "cudaStreamCreate");
  }
  ~NcclCommunicator() override {
    cudaStreamDestroy(stream_);
    ncclCommDestroy(comm_);
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  void all_reduce_sum(std::span<float> host) override { host_.all_reduce_sum(host); }
  void all_reduce_sum(std::span<double> host) override { host_.all_reduce_sum(host); }
  void broadcast(std::span<std::byte> host, int root) override { host_.broadcast(host, root); }
  void barrier() override { host_.barrier(); }

  void all_reduce_sum_device(std::span<float> device) override {
    detail::nccl_check(ncclAllReduce(device.data(), device.data(), device.size(), ncclFloat, ncclSum, comm_, stream_),
                       "ncclAllReduce");
    detail::cuda_check_nccl(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }
  void scale_device(std::span<float> device, float factor) override {
    if (device.empty()) return;
    const unsigned threads = 256;
    const auto blocks = static_cast<unsigned>((device.size() + threads - 1) / threads);
    detail::scale_kernel<<<blocks, threads, 0, stream_>>>(device.data(), device.size(), factor);
    detail::cuda_check_nccl(cudaGetLastError(), "scale_kernel launch");
    detail::cuda_check_nccl(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

 private:
  Communicator& host_;
  ncclComm_t comm_{};
  cudaStream_t stream_{};
};

}  // namespace rlhf
