// SPDX-License-Identifier: MIT
/// @file
/// @brief CUDA AdamW: one fused element-wise kernel (PyTorch `torch.optim.AdamW` semantics).
#pragma once

#include <cmath>

#include "hseq/ops/adamw.hpp"
#include "hseq/ops/cuda/launch.cuh"

namespace hseq::ops {

namespace cuda_detail {
template <class T>
__global__ void adamw_kernel(T* p, T const* g, T* m, T* v, std::int64_t n, T b1, T b2, T eps, T decay, T step_size,
                             T inv_sqrt_bc2) {
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    T gi = g[i];
    T mi = b1 * m[i] + (T(1) - b1) * gi;
    T vi = b2 * v[i] + (T(1) - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step_size * mi / (sqrt(vi) * inv_sqrt_bc2 + eps);
  }
}
}  // namespace cuda_detail

template <class T>
void adamw_update(cuda::Context& ctx, View<T, DeviceSpace> p, View<T const, DeviceSpace> g, View<T, DeviceSpace> m,
                  View<T, DeviceSpace> v, AdamWStep const& s) {
  HSEQ_CHECK(p.numel() == g.numel() && p.numel() == m.numel() && p.numel() == v.numel(),
             "adamw_update: param " << p.shape << ", grad " << g.shape << ", m " << m.shape << ", v " << v.shape
                                    << " differ in size");
  double const bc1 = 1.0 - std::pow(s.beta1, double(s.step)), bc2 = 1.0 - std::pow(s.beta2, double(s.step));
  std::int64_t n = p.numel();
  if (n == 0) return;
  cuda_detail::adamw_kernel<T><<<cuda_detail::grid_for(n), cuda_detail::kThreads, 0, ctx.stream()>>>(
      p.data, g.data, m.data, v.data, n, T(s.beta1), T(s.beta2), T(s.eps), T(1.0 - s.lr * s.weight_decay),
      T(s.lr / bc1), T(1.0 / std::sqrt(bc2)));
  HSEQ_CUDA_LAUNCH_CHECK("adamw_update");
}

}  // namespace hseq::ops
