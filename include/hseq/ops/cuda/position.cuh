// SPDX-License-Identifier: MIT
/// @file
/// @brief CUDA position encodings: learned table (add and its batch-summed gradient) and sinusoids.
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

}  // namespace hseq::ops
