// SPDX-License-Identifier: MIT
/// @file
/// @brief CUDA row softmax, plain and masked: one block per row, cub::BlockReduce for max and sum.
#pragma once

#include <cmath>

#include "hseq/ops/cuda/launch.cuh"
#include "hseq/ops/softmax.hpp"

namespace hseq::ops {

namespace cuda_detail {
inline constexpr int kSoftmaxThreads = 128;

/// Row i of [rows, tk]: y = softmax(scale * x[:visible]) padded with zeros.
template <class T>
__global__ void softmax_forward_kernel(T const* x, T* y, std::int64_t tq, std::int64_t tk, AttentionMask mask, T scale,
                                       std::int64_t prefix) {
  std::int64_t i = blockIdx.x;
  std::int64_t vis = mask.visible(i % tq, tk, prefix);
  T const* in = x + i * tk;
  T* out = y + i * tk;
  T mx = -INFINITY;
  for (std::int64_t j = threadIdx.x; j < vis; j += kSoftmaxThreads) mx = fmax(mx, in[j] * scale);
  mx = block_max_all<T, kSoftmaxThreads>(mx);
  T s = T(0);
  for (std::int64_t j = threadIdx.x; j < vis; j += kSoftmaxThreads) s += exp(in[j] * scale - mx);
  s = block_sum_all<T, kSoftmaxThreads>(s);
  T inv = T(1) / s;
  for (std::int64_t j = threadIdx.x; j < tk; j += kSoftmaxThreads)
    out[j] = j < vis ? exp(in[j] * scale - mx) * inv : T(0);
}

template <class T>
__global__ void softmax_backward_kernel(T const* y, T const* dy, T* dx, std::int64_t tq, std::int64_t tk,
                                        AttentionMask mask, T scale, std::int64_t prefix) {
  std::int64_t i = blockIdx.x;
  std::int64_t vis = mask.visible(i % tq, tk, prefix);
  T const* yr = y + i * tk;
  T const* dr = dy + i * tk;
  T dot = T(0);
  for (std::int64_t j = threadIdx.x; j < vis; j += kSoftmaxThreads) dot += yr[j] * dr[j];
  dot = block_sum_all<T, kSoftmaxThreads>(dot);
  T* out = dx + i * tk;
  for (std::int64_t j = threadIdx.x; j < tk; j += kSoftmaxThreads)
    out[j] = j < vis ? yr[j] * (dr[j] - dot) * scale : T(0);
}

template <class T>
void softmax_launch(cuda::Context& ctx, T const* x, T* y, std::int64_t rows, std::int64_t tq, std::int64_t tk,
                    AttentionMask mask, T scale, std::int64_t prefix) {
  if (rows == 0 || tk == 0) return;
  softmax_forward_kernel<T><<<unsigned(rows), kSoftmaxThreads, 0, ctx.stream()>>>(x, y, tq, tk, mask, scale, prefix);
  HSEQ_CUDA_LAUNCH_CHECK("softmax_forward");
}
}  // namespace cuda_detail

/// y = softmax(x) over the last dimension. `y` may alias `x`.
template <class T>
void softmax_forward(cuda::Context& ctx, View<T const, DeviceSpace> x, View<T, DeviceSpace> y) {
  HSEQ_CHECK(x.shape == y.shape, "softmax_forward: x " << x.shape << " and y " << y.shape << " differ");
  cuda_detail::softmax_launch<T>(ctx, x.data, y.data, x.rows(), 1, x.cols(), AttentionMask::none(), T(1), 0);
}

/// Masked, scaled softmax over scores x: [..., Tq, Tk]; masked entries of y are exactly zero.
template <class T>
void softmax_forward(cuda::Context& ctx, View<T const, DeviceSpace> x, View<T, DeviceSpace> y, AttentionMask mask,
                     T scale = T(1), std::int64_t prefix = 0) {
  HSEQ_CHECK(x.shape == y.shape && x.rank() >= 2,
             "softmax_forward (masked): x " << x.shape << " and y " << y.shape << " must match, rank >= 2");
  cuda_detail::softmax_launch<T>(ctx, x.data, y.data, x.rows(), x.size(-2), x.size(-1), mask, scale, prefix);
}

/// dx = scale * y * (dy - sum(y * dy)) per row over the visible entries (overwrites dx).
template <class T>
void softmax_backward(cuda::Context& ctx, View<T const, DeviceSpace> y, View<T const, DeviceSpace> dy,
                      View<T, DeviceSpace> dx, AttentionMask mask = AttentionMask::none(), T scale = T(1),
                      std::int64_t prefix = 0) {
  HSEQ_CHECK(y.shape == dy.shape && y.shape == dx.shape,
             "softmax_backward: y " << y.shape << ", dy " << dy.shape << ", dx " << dx.shape << " differ");
  std::int64_t tk = y.cols(), tq = y.rank() >= 2 ? y.size(-2) : 1, r = y.rows();
  if (r == 0 || tk == 0) return;
  cuda_detail::softmax_backward_kernel<T><<<unsigned(r), cuda_detail::kSoftmaxThreads, 0, ctx.stream()>>>(
      y.data, dy.data, dx.data, tq, tk, mask, scale, prefix);
  HSEQ_CUDA_LAUNCH_CHECK("softmax_backward");
}

}  // namespace hseq::ops
