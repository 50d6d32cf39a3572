// SPDX-License-Identifier: MIT
/// @file
/// @brief CUDA position encodings: learned table (add and its batch-summed gradient), sinusoids, and
/// relative attention's distance-row spread and gather (one block per row).
#pragma once

#include "hseq/ops/cuda/launch.cuh"
#include "hseq/ops/position.hpp"

namespace hseq::ops {

namespace cuda_detail {
template <class T>
__global__ void add_position_table_kernel(T* x, T const* table, std::int64_t offset, std::int64_t bt, std::int64_t t,
                                          std::int64_t c) {
  std::int64_t n = bt * c;
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t r = e / c, j = e % c;
    x[e] += table[(offset + r % t) * c + j];
  }
}
/// Thread per (t, c): sums the batch in order (deterministic, no atomics).
template <class T>
__global__ void position_table_backward_kernel(T const* dy, T* dtable, std::int64_t offset, std::int64_t bsz,
                                               std::int64_t t, std::int64_t c) {
  std::int64_t n = t * c;
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t s = e / c, j = e % c;
    T acc = T(0);
    for (std::int64_t b = 0; b < bsz; ++b) acc += dy[(b * t + s) * c + j];
    dtable[(offset + s) * c + j] += acc;
  }
}
template <class T>
__global__ void add_sinusoidal_kernel(T* x, std::int64_t offset, std::int64_t bt, std::int64_t t, std::int64_t c) {
  std::int64_t n = bt * c;
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t r = e / c, j = e % c;
    x[e] += detail::sinusoid<T>(offset + r % t, j, c);
  }
}

/// One block per row: the row's c = min(n, Dr) distance scores go to shared memory first, so the
/// in-place writes cannot overtake the reads.
template <class T>
__global__ void spread_relative_rows_kernel(T* buf, std::int64_t m, std::int64_t t, std::int64_t dr) {
  extern __shared__ unsigned char relative_smem[];
  T* p = reinterpret_cast<T*>(relative_smem);
  std::int64_t const l = m + t, r = blockIdx.x, n = m + r % t + 1, c = n < dr ? n : dr;
  T* row = buf + r * l;
  for (std::int64_t k = threadIdx.x; k < c; k += blockDim.x) p[k] = row[k];
  __syncthreads();
  for (std::int64_t j = threadIdx.x; j < l; j += blockDim.x) {
    std::int64_t const dist = n - 1 - j;
    row[j] = j < n ? p[dist < dr - 1 ? dist : dr - 1] : T(0);
  }
}
/// One block per row: p[δ] = g[n - 1 - δ] for δ < c, the clamped tail (j <= n - c) summed by a
/// block reduction (deterministic) into p[Dr - 1], then written back.
template <class T>
__global__ void gather_relative_rows_kernel(T* g, std::int64_t m, std::int64_t t, std::int64_t dr) {
  extern __shared__ unsigned char relative_smem[];
  T* p = reinterpret_cast<T*>(relative_smem);
  std::int64_t const l = m + t, r = blockIdx.x, n = m + r % t + 1, c = n < dr ? n : dr;
  T* row = g + r * l;
  T part = T(0);
  if (n > c)
    for (std::int64_t j = threadIdx.x; j <= n - c; j += blockDim.x) part += row[j];
  T const far = block_sum<T, kThreads>(part);  // valid in thread 0
  for (std::int64_t k = threadIdx.x; k < c; k += blockDim.x) p[k] = row[n - 1 - k];
  __syncthreads();
  if (n > c && threadIdx.x == 0) p[c - 1] = far;
  __syncthreads();
  for (std::int64_t k = threadIdx.x; k < dr; k += blockDim.x) row[k] = k < c ? p[k] : T(0);
}
/// Dynamic shared memory of Dr elements; beyond the default 48 KiB the kernel must opt in.
template <class T, class K>
std::size_t relative_rows_smem(K kernel, std::int64_t dr, char const* who) {
  std::size_t const bytes = std::size_t(dr) * sizeof(T);
  if (bytes > 48 * 1024) {
    int dev = 0, most = 0;
    HSEQ_CUDA_CHECK(cudaGetDevice(&dev));
    HSEQ_CUDA_CHECK(cudaDeviceGetAttribute(&most, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    HSEQ_CHECK(bytes <= std::size_t(most), who << ": " << dr << " distances need " << bytes
                                               << " bytes of shared memory per row; this device allows " << most
                                               << " (bound the distances with clamp_len)");
    HSEQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  }
  return bytes;
}
}  // namespace cuda_detail

/// x[b, t, :] += table[offset + t, :].
template <class T>
void add_position_table(cuda::Context& ctx, View<T, DeviceSpace> x, View<T const, DeviceSpace> table, std::int64_t offset) {
  detail::check_position_table(x, table, offset, "add_position_table");
  std::int64_t bsz = x.size(0), t = x.size(1), c = x.size(2);
  if (bsz * t * c == 0) return;
  cuda_detail::add_position_table_kernel<T><<<cuda_detail::grid_for(bsz * t * c), cuda_detail::kThreads, 0,
                                              ctx.stream()>>>(x.data, table.data, offset, bsz * t, t, c);
  HSEQ_CUDA_LAUNCH_CHECK("add_position_table");
}

/// dtable[offset + t, :] += sum_b dy[b, t, :].
template <class T>
void position_table_backward(cuda::Context& ctx, View<T const, DeviceSpace> dy, View<T, DeviceSpace> dtable,
                             std::int64_t offset) {
  detail::check_position_table(dy, dtable, offset, "position_table_backward");
  std::int64_t bsz = dy.size(0), t = dy.size(1), c = dy.size(2);
  if (t * c == 0) return;
  cuda_detail::position_table_backward_kernel<T><<<cuda_detail::grid_for(t * c), cuda_detail::kThreads, 0,
                                                   ctx.stream()>>>(dy.data, dtable.data, offset, bsz, t, c);
  HSEQ_CUDA_LAUNCH_CHECK("position_table_backward");
}

/// x[b, t, :] += PE(offset + t).
template <class T>
void add_sinusoidal(cuda::Context& ctx, View<T, DeviceSpace> x, std::int64_t offset) {
  HSEQ_CHECK(x.rank() == 3, "add_sinusoidal: x " << x.shape << " must be [B, T, C]");
  std::int64_t bsz = x.size(0), t = x.size(1), c = x.size(2);
  if (bsz * t * c == 0) return;
  cuda_detail::add_sinusoidal_kernel<T><<<cuda_detail::grid_for(bsz * t * c), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data, offset, bsz * t, t, c);
  HSEQ_CUDA_LAUNCH_CHECK("add_sinusoidal");
}

namespace cuda_detail {
/// One block per row of buf [R, M + T] with Dr elements of dynamic shared memory.
template <class T, class K>
void launch_relative_rows(cuda::Context& ctx, K kernel, View<T, DeviceSpace> buf, std::int64_t m, std::int64_t t,
                          std::int64_t dr, char const* who) {
  detail::check_relative_rows(buf, m, t, dr, who);
  std::int64_t const rows = buf.size(0);
  if (rows == 0) return;
  HSEQ_CHECK(rows < (std::int64_t(1) << 31), who << ": " << rows << " rows exceed one grid");
  std::size_t const smem = relative_rows_smem<T>(kernel, dr, who);
  kernel<<<unsigned(rows), kThreads, smem, ctx.stream()>>>(buf.data, m, t, dr);
  HSEQ_CUDA_LAUNCH_CHECK(who);
}
}  // namespace cuda_detail

/// In place on each row of buf [R, M + T]: distance scores in columns [0, Dr) spread over the
/// keys (see the CPU overload in ops/position.hpp).
template <class T>
void spread_relative_rows(cuda::Context& ctx, View<T, DeviceSpace> buf, std::int64_t m, std::int64_t t,
                          std::int64_t dr) {
  cuda_detail::launch_relative_rows<T>(ctx, cuda_detail::spread_relative_rows_kernel<T>, buf, m, t, dr,
                                       "spread_relative_rows");
}

/// The adjoint of `spread_relative_rows`, in place on each row of g [R, M + T].
template <class T>
void gather_relative_rows(cuda::Context& ctx, View<T, DeviceSpace> g, std::int64_t m, std::int64_t t,
                          std::int64_t dr) {
  cuda_detail::launch_relative_rows<T>(ctx, cuda_detail::gather_relative_rows_kernel<T>, g, m, t, dr,
                                       "gather_relative_rows");
}

}  // namespace hseq::ops
