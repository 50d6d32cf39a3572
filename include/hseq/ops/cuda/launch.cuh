// SPDX-License-Identifier: MIT
/// @file
/// @brief What every CUDA op shares: launch checks, grid sizes, grid-stride loops, the scratch
/// carving of `cuda::Context::scratch`, block reductions (CUB) and a synchronous device->host read.
///
/// Only nvcc compiles this (the ops headers include their `cuda/` counterparts under `__CUDACC__`).
#pragma once

#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "hseq/backend/cuda.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"

/// Throws hseq::Error naming the kernel when its launch failed (bad configuration, no device...).
#define HSEQ_CUDA_LAUNCH_CHECK(what)                                                          \
  do {                                                                                        \
    cudaError_t hseq_launch_err_ = cudaGetLastError();                                        \
    HSEQ_CHECK(hseq_launch_err_ == cudaSuccess,                                               \
               what << ": kernel launch failed: " << cudaGetErrorString(hseq_launch_err_));   \
  } while (0)

namespace hseq::ops::cuda_detail {

inline constexpr int kThreads = 256;

/// Blocks for a grid-stride loop over n elements (capped: the loop covers the rest).
inline unsigned grid_for(std::int64_t n, int threads = kThreads) {
  std::int64_t b = (n + threads - 1) / threads;
  return unsigned(std::max<std::int64_t>(1, std::min<std::int64_t>(b, 65536)));
}

/// Carves aligned pieces out of the context's grow-only scratch: ask all sizes first (measuring),
/// then `ctx.scratch(total)` once, then hand out the pieces. Same protocol as the Arena.
class ScratchPlan {
 public:
  template <class T>
  std::size_t add(std::int64_t n) {
    std::size_t at = total_;
    total_ += aligned_bytes<T>(n);
    return at;
  }
  void add_bytes(std::size_t bytes, std::size_t* at) {
    *at = total_;
    total_ += (bytes + kWorkspaceAlignment - 1) / kWorkspaceAlignment * kWorkspaceAlignment;
  }
  std::size_t total() const { return total_ == 0 ? kWorkspaceAlignment : total_; }

 private:
  std::size_t total_ = 0;
};

template <class T>
T* at(void* base, std::size_t offset) {
  return reinterpret_cast<T*>(static_cast<std::byte*>(base) + offset);
}

/// Copies n elements device -> host and waits (for the few values an op must return).
template <class T>
void read_back(cuda::Context& ctx, T* host, T const* dev, std::size_t n) {
  HSEQ_CUDA_CHECK(cudaMemcpyAsync(host, dev, n * sizeof(T), cudaMemcpyDeviceToHost, ctx.stream()));
  HSEQ_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
}

/// Sum over the block of one value per thread (result valid in thread 0), via cub::BlockReduce.
/// Deterministic: the reduction tree depends only on the block size.
template <class T, int kBlock>
__device__ T block_sum(T v) {
  using Reduce = cub::BlockReduce<T, kBlock>;
  __shared__ typename Reduce::TempStorage tmp;
  T r = Reduce(tmp).Sum(v);
  __syncthreads();  // tmp is reused by the next call
  return r;
}
/// Sum broadcast to every thread of the block.
template <class T, int kBlock>
__device__ T block_sum_all(T v) {
  __shared__ T result;
  T r = block_sum<T, kBlock>(v);
  if (threadIdx.x == 0) result = r;
  __syncthreads();
  T out = result;
  __syncthreads();
  return out;
}
template <class T>
struct MaxOp {
  __device__ T operator()(T a, T b) const { return a > b ? a : b; }
};
/// Maximum broadcast to every thread of the block.
template <class T, int kBlock>
__device__ T block_max_all(T v) {
  using Reduce = cub::BlockReduce<T, kBlock>;
  __shared__ typename Reduce::TempStorage tmp;
  __shared__ T result;
  T r = Reduce(tmp).Reduce(v, MaxOp<T>{});
  if (threadIdx.x == 0) result = r;
  __syncthreads();
  T out = result;
  __syncthreads();
  return out;
}

/// Deterministic column sums: out[c] += sum_r f(r, c) for r < rows, c < cols. Phase 1 writes
/// per-chunk partials [chunks, cols] (32x8 threads per block, fixed-order tree inside a block);
/// phase 2 adds the chunks in order. No atomics, so results are bit-reproducible.
inline constexpr int kColTile = 32, kColRows = 8;
inline constexpr std::int64_t kRowsPerChunk = 256;

template <class T, class F>
__global__ void column_partials_kernel(F f, std::int64_t rows, std::int64_t cols, T* partial) {
  __shared__ T tile[kColRows][kColTile + 1];
  std::int64_t c = std::int64_t(blockIdx.x) * kColTile + threadIdx.x;
  std::int64_t r0 = std::int64_t(blockIdx.y) * kRowsPerChunk, r1 = r0 + kRowsPerChunk < rows ? r0 + kRowsPerChunk : rows;
  T acc = T(0);
  if (c < cols)
    for (std::int64_t r = r0 + threadIdx.y; r < r1; r += kColRows) acc += f(r, c);
  tile[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    T s = tile[0][threadIdx.x];
    for (int k = 1; k < kColRows; ++k) s += tile[k][threadIdx.x];
    partial[std::int64_t(blockIdx.y) * cols + c] = s;
  }
}
template <class T>
__global__ void column_finish_kernel(T const* partial, std::int64_t chunks, std::int64_t cols, T* out) {
  for (std::int64_t c = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < cols;
       c += std::int64_t(gridDim.x) * blockDim.x) {
    T s = T(0);
    for (std::int64_t k = 0; k < chunks; ++k) s += partial[k * cols + c];
    out[c] += s;
  }
}
/// f(r, c) = x[r * cols + c]: the plain column sum.
template <class T>
struct RowValue {
  T const* x;
  std::int64_t cols;
  __device__ T operator()(std::int64_t r, std::int64_t c) const { return x[r * cols + c]; }
};

/// out[c] += sum_r f(r, c), deterministic; partials live in the context's scratch.
template <class T, class F>
void column_sum_accumulate(cuda::Context& ctx, F f, std::int64_t rows, std::int64_t cols, T* out, char const* who) {
  if (rows == 0 || cols == 0) return;
  std::int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  T* partial = static_cast<T*>(ctx.scratch(aligned_bytes<T>(chunks * cols)));
  dim3 grid(unsigned((cols + kColTile - 1) / kColTile), unsigned(chunks));
  column_partials_kernel<T><<<grid, dim3(kColTile, kColRows), 0, ctx.stream()>>>(f, rows, cols, partial);
  HSEQ_CUDA_LAUNCH_CHECK(who);
  column_finish_kernel<T><<<grid_for(cols), kThreads, 0, ctx.stream()>>>(partial, chunks, cols, out);
  HSEQ_CUDA_LAUNCH_CHECK(who);
}

}  // namespace hseq::ops::cuda_detail
