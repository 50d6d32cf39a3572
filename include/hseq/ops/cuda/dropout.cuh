// SPDX-License-Identifier: MIT
/// @file
/// @brief CUDA inverted dropout: the same Philox function of (seed, stream, index) as the CPU, so
/// both backends drop the same elements and backward regenerates the mask.
#pragma once

#include "hseq/core/rng.hpp"
#include "hseq/ops/cuda/launch.cuh"
#include "hseq/ops/dropout.hpp"

namespace hseq::ops {

namespace cuda_detail {
template <class T>
__global__ void dropout_kernel(T const* x, T* y, std::int64_t n, double p, T s, std::uint64_t seed,
                               std::uint64_t stream) {
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x)
    y[i] = (p == 0.0 || philox_uniform(seed, stream, std::uint64_t(i)) >= p) ? x[i] * s : T(0);
}
}  // namespace cuda_detail

/// y = x * keep / (1 - p). `y` may alias `x`.
template <class T>
void dropout_forward(cuda::Context& ctx, View<T const, DeviceSpace> x, View<T, DeviceSpace> y, double p, DropoutKey key) {
  HSEQ_CHECK(x.numel() == y.numel(), "dropout_forward: x " << x.shape << " and y " << y.shape << " differ in size");
  HSEQ_CHECK(p >= 0.0 && p < 1.0, "dropout_forward: probability " << p << " outside [0, 1)");
  std::int64_t n = x.numel();
  if (n == 0) return;
  cuda_detail::dropout_kernel<T><<<cuda_detail::grid_for(n), cuda_detail::kThreads, 0, ctx.stream()>>>(
      x.data, y.data, n, p, T(1.0 / (1.0 - p)), key.seed, key.stream);
  HSEQ_CUDA_LAUNCH_CHECK("dropout_forward");
}

/// dx = dy * keep / (1 - p) with forward's key.
template <class T>
void dropout_backward(cuda::Context& ctx, View<T const, DeviceSpace> dy, View<T, DeviceSpace> dx, double p,
                      DropoutKey key) {
  dropout_forward(ctx, dy, dx, p, key);
}

}  // namespace hseq::ops
