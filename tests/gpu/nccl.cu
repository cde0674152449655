// NcclCommunicator on one GPU: its scaling kernel against the plain CPU product (tol_elementwise), and a
// one-rank all-reduce, which must leave the buffer as it is. Two ranks need two GPUs; docs/distributed.md says what
// has been run. Needs a GPU (main.cu skips without one).
#include <doctest/doctest.h>

#include <vector>

#include "rlhf/distributed/nccl.cuh"
#include "support.cuh"

using namespace rlhf::gpu_testing;

TEST_CASE("NcclCommunicator: scale_device equals the CPU product; a one-rank all-reduce is the identity") {
  rlhf::SingleProcess host;
  rlhf::NcclCommunicator world(host, 0);
  CHECK(world.size() == 1);
  const std::size_t n = 100003;  // not a multiple of the block size
  const auto x = uniform(n, -3, 3, 5);
  auto d = to_device(x);
  world.scale_device(std::span<float>(d.data(), n), 0.375f);
  std::vector<float> expected(n);
  for (std::size_t i = 0; i < n; ++i) expected[i] = x[i] * 0.375f;
  const auto scaled = to_host(d, n);
  CHECK(rel_err(scaled, expected) <= tol_elementwise);
  world.all_reduce_sum_device(std::span<float>(d.data(), n));
  CHECK(to_host(d, n) == scaled);
}
