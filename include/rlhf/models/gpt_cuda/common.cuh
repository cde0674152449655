#pragma once
// Shared by the CUDA GPT's kernels: error checks, an owning device buffer, and the warp/block reductions.
// Everything runs on the default stream (stream 0, as Thrust's cuda::par does), so kernels, cuBLAS calls
// and the Thrust backend's kernels are ordered without events.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "rlhf/core/error.hpp"  // rlhf::cuda_error

// After every CUDA runtime call, and after every kernel launch as RLHF_CUDA_CHECK(cudaGetLastError()).
#define RLHF_CUDA_CHECK(expr)                                                                                \
  do {                                                                                                       \
    const cudaError_t rlhf_status_ = (expr);                                                                 \
    if (rlhf_status_ != cudaSuccess)                                                                         \
      ::rlhf::fail<::rlhf::cuda_error>(__FILE__, ":", __LINE__, ": ", #expr, " failed: ",                   \
                                       cudaGetErrorName(rlhf_status_), " (", cudaGetErrorString(rlhf_status_), \
                                       ")");                                                                 \
  } while (0)

#define RLHF_CUBLAS_CHECK(expr)                                                                              \
  do {                                                                                                       \
    const cublasStatus_t rlhf_status_ = (expr);                                                              \
    if (rlhf_status_ != CUBLAS_STATUS_SUCCESS)                                                               \
      ::rlhf::fail<::rlhf::cuda_error>(__FILE__, ":", __LINE__, ": ", #expr, " failed: cuBLAS status ",     \
                                       static_cast<int>(rlhf_status_));                                      \
  } while (0)

namespace rlhf::gpt_cuda {

inline constexpr unsigned warp_size = 32;

inline unsigned ceil_div(std::size_t n, std::size_t d) { return static_cast<unsigned>((n + d - 1) / d); }

// An owning device array of n elements (uninitialised). Move-only.
template <class T>
class device_buffer {
 public:
  device_buffer() = default;
  explicit device_buffer(std::size_t n) { resize(n); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  device_buffer(device_buffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  device_buffer& operator=(device_buffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~device_buffer() { release(); }

  // Reallocates (contents lost) when n exceeds the current size; never shrinks.
  void reserve(std::size_t n) {
    if (n > size_) resize(n);
  }
  void resize(std::size_t n) {
    release();
    if (n) RLHF_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr_), n * sizeof(T)));
    size_ = n;
  }
  void zero() {
    if (size_) RLHF_CUDA_CHECK(cudaMemset(ptr_, 0, size_ * sizeof(T)));
  }
  void upload(const T* host, std::size_t n, std::size_t at = 0) {
    if (n) RLHF_CUDA_CHECK(cudaMemcpy(ptr_ + at, host, n * sizeof(T), cudaMemcpyHostToDevice));
  }
  void download(T* host, std::size_t n, std::size_t at = 0) const {
    if (n) RLHF_CUDA_CHECK(cudaMemcpy(host, ptr_ + at, n * sizeof(T), cudaMemcpyDeviceToHost));
  }
  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  std::size_t size() const { return size_; }

 private:
  void release() noexcept {
    if (ptr_) cudaFree(ptr_);  // no check: called from destructors
    ptr_ = nullptr;
    size_ = 0;
  }
  T* ptr_ = nullptr;
  std::size_t size_ = 0;
};

// ---- reductions inside a kernel ---------------------------------------------------------------------------

struct plus_op {
  template <class T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
struct max_op {  // NaN-ignoring for floating point (fmax), as a max over a row should be for the max shift
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
  __device__ double operator()(double a, double b) const { return fmax(a, b); }
  __device__ int operator()(int a, int b) const { return a > b ? a : b; }
  __device__ unsigned operator()(unsigned a, unsigned b) const { return a > b ? a : b; }
};
struct min_op {
  __device__ int operator()(int a, int b) const { return a < b ? a : b; }
  __device__ unsigned operator()(unsigned a, unsigned b) const { return a < b ? a : b; }
};

template <class T, class Op>
__device__ inline T warp_reduce(T x, Op op) {
  for (int o = 16; o > 0; o >>= 1) x = op(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
template <class T>
__device__ inline T warp_sum(T x) {
  return warp_reduce(x, plus_op{});
}
template <class T>
__device__ inline T warp_max(T x) {
  return warp_reduce(x, max_op{});
}

// Every thread of the block gets op over the block's x (identity: op's neutral value); the order is fixed by the
// block shape, so results are bit-identical run to run. blockDim.x a multiple of 32, at most 1024; every thread
// must call it. Syncs twice (so consecutive calls may share the shared slots, and global writes made before the
// call are visible to the whole block after it).
template <class T, class Op>
__device__ inline T block_reduce(T x, Op op, T identity) {
  __shared__ T partial[32];
  const unsigned lane = threadIdx.x % warp_size, warp = threadIdx.x / warp_size, warps = blockDim.x / warp_size;
  x = warp_reduce(x, op);
  __syncthreads();  // the previous call's readers are done with `partial`
  if (lane == 0) partial[warp] = x;
  __syncthreads();
  return warp_reduce(lane < warps ? partial[lane] : identity, op);
}

template <class T>
__device__ inline T block_sum(T x) {
  return block_reduce(x, plus_op{}, T(0));
}
__device__ inline float block_max(float x) { return block_reduce(x, max_op{}, -INFINITY); }

// ---- column reductions: out[c] (+)= Σ_n f(n, c), deterministic ----------------------------------------------
// Two passes with a fixed order: tiles of column_rows rows give partial sums [tiles, C], then one thread per
// column adds its partials in tile order. Used for bias gradients and LayerNorm weight gradients (where
// atomics would make results differ run to run).
inline constexpr unsigned column_rows = 256;  // rows per tile

template <class F>
__global__ void column_partial_kernel(float* partial, std::size_t N, std::size_t C, F f) {
  // block (32, 8): threadIdx.x picks the column within a 32-wide stripe, threadIdx.y strides the tile's rows
  __shared__ float cell[8][33];
  const std::size_t c = std::size_t(blockIdx.x) * 32 + threadIdx.x;
  const std::size_t begin = std::size_t(blockIdx.y) * column_rows;
  const std::size_t end = begin + column_rows < N ? begin + column_rows : N;
  float acc = 0.0f;
  if (c < C)
    for (std::size_t n = begin + threadIdx.y; n < end; n += 8) acc += f(n, c);
  cell[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float total = 0.0f;
    for (int y = 0; y < 8; ++y) total += cell[y][threadIdx.x];
    partial[std::size_t(blockIdx.y) * C + c] = total;
  }
}

static __global__ void column_finish_kernel(float* out, const float* partial, std::size_t tiles, std::size_t C,
                                            bool accumulate) {
  const std::size_t c = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float total = 0.0f;
  for (std::size_t t = 0; t < tiles; ++t) total += partial[t * C + c];
  out[c] = accumulate ? out[c] + total : total;
}

struct entries {  // column_reduce functor: x[n, c] of a row-major [N, C] matrix
  const float* x;
  std::size_t C;
  __device__ float operator()(std::size_t n, std::size_t c) const { return x[n * C + c]; }
};

// Scratch floats column_reduce needs for N rows of C columns.
inline std::size_t column_scratch(std::size_t N, std::size_t C) { return std::size_t(ceil_div(N, column_rows)) * C; }

// out [C] (+)= Σ_n f(n, c); scratch holds column_scratch(N, C) floats. f is a __device__ functor.
template <class F>
void column_reduce(float* out, float* scratch, std::size_t N, std::size_t C, F f, bool accumulate) {
  if (C == 0) return;
  const unsigned tiles = N ? ceil_div(N, column_rows) : 1;
  column_partial_kernel<<<dim3(ceil_div(C, 32), tiles), dim3(32, 8)>>>(scratch, N, C, f);
  RLHF_CUDA_CHECK(cudaGetLastError());
  column_finish_kernel<<<ceil_div(C, 256), 256>>>(out, scratch, tiles, C, accumulate);
  RLHF_CUDA_CHECK(cudaGetLastError());
}

}  // namespace rlhf::gpt_cuda
