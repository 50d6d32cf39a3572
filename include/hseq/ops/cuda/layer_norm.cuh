// SPDX-License-Identifier: MIT
/// @file
/// @brief CUDA LayerNorm: one block per row with cub::BlockReduce for the row statistics;
/// parameter gradients by the deterministic two-phase column sum.
#pragma once

#include <cmath>

#include "hseq/ops/cuda/launch.cuh"
#include "hseq/ops/layer_norm.hpp"

namespace hseq::ops {

namespace cuda_detail {
inline constexpr int kRowThreads = 128;

template <class T>
__global__ void layer_norm_forward_kernel(T const* x, T const* gamma, T const* beta, T eps, T* y, T* mean, T* rstd,
                                          std::int64_t c) {
  std::int64_t i = blockIdx.x;
  T const* xr = x + i * c;
  T s = T(0);
  for (std::int64_t j = threadIdx.x; j < c; j += kRowThreads) s += xr[j];
  T m = block_sum_all<T, kRowThreads>(s) / T(c);
  T v = T(0);
  for (std::int64_t j = threadIdx.x; j < c; j += kRowThreads) v += (xr[j] - m) * (xr[j] - m);
  v = block_sum_all<T, kRowThreads>(v) / T(c);
  T r = T(1) / sqrt(v + eps);
  T* yr = y + i * c;
  for (std::int64_t j = threadIdx.x; j < c; j += kRowThreads) yr[j] = (xr[j] - m) * r * gamma[j] + beta[j];
  if (threadIdx.x == 0) {
    mean[i] = m;
    rstd[i] = r;
  }
}

template <class T>
__global__ void layer_norm_backward_dx_kernel(T const* x, T const* gamma, T const* mean, T const* rstd, T const* dy,
                                              T* dx, std::int64_t c) {
  std::int64_t i = blockIdx.x;
  T const* xr = x + i * c;
  T const* gr = dy + i * c;
  T m = mean[i], r = rstd[i];
  T sg = T(0), sgx = T(0);
  for (std::int64_t j = threadIdx.x; j < c; j += kRowThreads) {
    T g = gr[j] * gamma[j];
    sg += g;
    sgx += g * (xr[j] - m) * r;
  }
  sg = block_sum_all<T, kRowThreads>(sg) / T(c);
  sgx = block_sum_all<T, kRowThreads>(sgx) / T(c);
  T* dr = dx + i * c;
  for (std::int64_t j = threadIdx.x; j < c; j += kRowThreads) {
    T xhat = (xr[j] - m) * r;
    dr[j] = r * (gr[j] * gamma[j] - sg - xhat * sgx);
  }
}

template <class T>
struct LnGammaGrad {
  T const *x, *dy, *mean, *rstd;
  std::int64_t cols;
  __device__ T operator()(std::int64_t r, std::int64_t c) const {
    return dy[r * cols + c] * (x[r * cols + c] - mean[r]) * rstd[r];
  }
};
}  // namespace cuda_detail

/// y = (x - mean) * rstd * gamma + beta per row; saves mean[N] and rstd[N].
template <class T>
void layer_norm_forward(cuda::Context& ctx, View<T const, DeviceSpace> x, View<T const, DeviceSpace> gamma,
                        View<T const, DeviceSpace> beta, T eps, View<T, DeviceSpace> y, View<T, DeviceSpace> mean,
                        View<T, DeviceSpace> rstd) {
  std::int64_t n = x.rows(), c = x.cols();
  detail::check_layer_norm_forward(x, gamma, beta, y, mean, rstd);
  if (n == 0) return;
  HSEQ_CHECK(n <= 2147483647, "layer_norm_forward: " << n << " rows exceed one grid");
  cuda_detail::layer_norm_forward_kernel<T><<<unsigned(n), cuda_detail::kRowThreads, 0, ctx.stream()>>>(
      x.data, gamma.data, beta.data, eps, y.data, mean.data, rstd.data, c);
  HSEQ_CUDA_LAUNCH_CHECK("layer_norm_forward");
}

/// dx overwritten (skipped when empty); dgamma, dbeta accumulate.
template <class T>
void layer_norm_backward(cuda::Context& ctx, View<T const, DeviceSpace> x, View<T const, DeviceSpace> gamma,
                         View<T const, DeviceSpace> mean, View<T const, DeviceSpace> rstd, View<T const, DeviceSpace> dy,
                         View<T, DeviceSpace> dx, View<T, DeviceSpace> dgamma, View<T, DeviceSpace> dbeta) {
  std::int64_t n = x.rows(), c = x.cols();
  detail::check_layer_norm_backward(x, gamma, mean, rstd, dy, dx, dgamma, dbeta);
  if (n == 0) return;
  if (!dx.empty()) {
    cuda_detail::layer_norm_backward_dx_kernel<T><<<unsigned(n), cuda_detail::kRowThreads, 0, ctx.stream()>>>(
        x.data, gamma.data, mean.data, rstd.data, dy.data, dx.data, c);
    HSEQ_CUDA_LAUNCH_CHECK("layer_norm_backward");
  }
  cuda_detail::column_sum_accumulate<T>(ctx, cuda_detail::LnGammaGrad<T>{x.data, dy.data, mean.data, rstd.data, c}, n, c,
                                        dgamma.data, "layer_norm_backward (dgamma)");
  cuda_detail::column_sum_accumulate<T>(ctx, cuda_detail::RowValue<T>{dy.data, c}, n, c, dbeta.data,
                                        "layer_norm_backward (dbeta)");
}

}  // namespace hseq::ops
