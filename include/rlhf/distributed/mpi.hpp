#pragma once
// rlhf::Communicator over MPI: CPU ranks started by mpirun (Open MPI from Debian: libopenmpi-dev, openmpi-bin).
//
//   rlhf::MpiSession mpi(argc, argv);          // MPI_Init ... MPI_Finalize, once per process
//   rlhf::MpiCommunicator world;               // MPI_COMM_WORLD
//   rlhf::StepOptions options{.communicator = &world};
//
// Buffers past INT_MAX elements go in several calls (MPI counts are int). docs/distributed.md.
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <span>

#include "rlhf/core/error.hpp"
#include "rlhf/distributed/communicator.hpp"

namespace rlhf {

namespace detail {
inline void mpi_check(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  fail<error>("MPI: ", what, " failed: ", std::string(text, std::size_t(length)));
}
}  // namespace detail

// Initialises MPI for the process (thread level: funneled, the main thread makes every MPI call) and finalises it.
class MpiSession {
 public:
  MpiSession(int& argc, char**& argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      detail::mpi_check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      owner_ = true;
    }
  }
  ~MpiSession() {
    if (owner_) MPI_Finalize();
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

 private:
  bool owner_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
    detail::mpi_check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    detail::mpi_check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce_sum(std::span<float> host) override { reduce(host.data(), host.size(), MPI_FLOAT); }
  void all_reduce_sum(std::span<double> host) override { reduce(host.data(), host.size(), MPI_DOUBLE); }
  void broadcast(std::span<std::byte> host, int root) override {
    for (std::size_t at = 0; at < host.size(); at += chunk) {
      const int n = static_cast<int>(std::min(chunk, host.size() - at));
      detail::mpi_check(MPI_Bcast(host.data() + at, n, MPI_BYTE, root, comm_), "MPI_Bcast");
    }
  }
  void barrier() override { detail::mpi_check(MPI_Barrier(comm_), "MPI_Barrier"); }

 private:
  static constexpr std::size_t chunk = std::size_t(1) << 30;  // elements per call, below INT_MAX
  template <class T>
  void reduce(T* data, std::size_t n, MPI_Datatype type) {
    for (std::size_t at = 0; at < n; at += chunk) {
      const int count = static_cast<int>(std::min(chunk, n - at));
      detail::mpi_check(MPI_Allreduce(MPI_IN_PLACE, data + at, count, type, MPI_SUM, comm_), "MPI_Allreduce");
    }
  }
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

}  // namespace rlhf
