// SPDX-License-Identifier: MIT
/// @file
/// @brief CUDA sequence resampling on [B, L, C]: shift right, average and max pooling, repetition, and
/// their gradients (one thread per output element; sums run in a fixed order).
#pragma once

#include "hseq/ops/cuda/launch.cuh"
#include "hseq/ops/resample.hpp"

namespace hseq::ops {

namespace cuda_detail {
#define HSEQ_GRID_STRIDE(e, n) \
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < (n); e += std::int64_t(gridDim.x) * blockDim.x)

/// y[b, t] = x[b, t - s] (or 0); with `backward`, dx[b, t] = dy[b, t + s] (or 0).
template <class T>
__global__ void shift_kernel(T const* x, T* y, std::int64_t n, std::int64_t l, std::int64_t c, std::int64_t s,
                             bool backward) {
  HSEQ_GRID_STRIDE(e, n) {
    std::int64_t r = e / c, t = r % l;
    if (!backward) y[e] = t >= s ? x[e - s * c] : T(0);
    else y[e] = t + s < l ? x[e + s * c] : T(0);
  }
}
/// y[b, i, j] = sum_{q<k} x[b, i k + q, j] * w (w = 1/k for the mean, 1 for the repeat gradient).
template <class T>
__global__ void pool_kernel(T const* x, T* y, std::int64_t n, std::int64_t c, std::int64_t k, T w) {
  HSEQ_GRID_STRIDE(e, n) {
    std::int64_t r = e / c, j = e % c;
    T const* src = x + r * k * c + j;
    T acc = T(0);
    for (std::int64_t q = 0; q < k; ++q) acc += src[q * c];
    y[e] = w == T(1) ? acc : acc * w;
  }
}
/// u[b, t, j] = y[b, t / k, j] * w.
template <class T>
__global__ void spread_kernel(T const* y, T* u, std::int64_t n, std::int64_t l, std::int64_t c, std::int64_t k, T w) {
  HSEQ_GRID_STRIDE(e, n) {
    std::int64_t r = e / c, j = e % c, b = r / l, t = r % l;
    T v = y[(b * (l / k) + t / k) * c + j];
    u[e] = w == T(1) ? v : v * w;
  }
}
/// y[b, i, j] = max_{q<k} x[b, i k + q, j] (the first of equal maxima), arg = its q.
template <class T>
__global__ void max_pool_kernel(T const* x, T* y, std::int32_t* arg, std::int64_t n, std::int64_t c, std::int64_t k) {
  HSEQ_GRID_STRIDE(e, n) {
    std::int64_t r = e / c, j = e % c;
    T const* src = x + r * k * c + j;
    T best = src[0];
    std::int32_t at = 0;
    for (std::int64_t q = 1; q < k; ++q)
      if (src[q * c] > best) best = src[q * c], at = std::int32_t(q);
    y[e] = best;
    arg[e] = at;
  }
}
/// dx[b, t, j] = dy[b, t / k, j] where arg says row t % k held the maximum, else 0.
template <class T>
__global__ void max_pool_backward_kernel(T const* dy, std::int32_t const* arg, T* dx, std::int64_t n, std::int64_t l,
                                         std::int64_t c, std::int64_t k) {
  HSEQ_GRID_STRIDE(e, n) {
    std::int64_t r = e / c, j = e % c, b = r / l, t = r % l, o = (b * (l / k) + t / k) * c + j;
    dx[e] = arg[o] == t % k ? dy[o] : T(0);
  }
}
#undef HSEQ_GRID_STRIDE

template <class K, class... A>
void launch_n(cuda::Context& ctx, std::int64_t n, char const* who, K kernel, A... args) {
  if (n == 0) return;
  kernel<<<grid_for(n), kThreads, 0, ctx.stream()>>>(args...);
  HSEQ_CUDA_LAUNCH_CHECK(who);
}
}  // namespace cuda_detail

template <class T>
void shift_right(cuda::Context& ctx, View<T const, DeviceSpace> x, View<T, DeviceSpace> y, std::int64_t s) {
  HSEQ_CHECK(x.rank() == 3 && y.shape == x.shape && s >= 0,
             "shift_right: x " << x.shape << ", y " << y.shape << ", shift " << s);
  cuda_detail::launch_n(ctx, x.numel(), "shift_right", cuda_detail::shift_kernel<T>, x.data, y.data, x.numel(), x.size(1),
                        x.size(2), s, false);
}

template <class T>
void shift_right_backward(cuda::Context& ctx, View<T const, DeviceSpace> dy, View<T, DeviceSpace> dx, std::int64_t s) {
  HSEQ_CHECK(dy.rank() == 3 && dx.shape == dy.shape && s >= 0,
             "shift_right_backward: dy " << dy.shape << ", dx " << dx.shape << ", shift " << s);
  cuda_detail::launch_n(ctx, dy.numel(), "shift_right_backward", cuda_detail::shift_kernel<T>, dy.data, dx.data,
                        dy.numel(), dy.size(1), dy.size(2), s, true);
}

template <class T>
void avg_pool(cuda::Context& ctx, View<T const, DeviceSpace> x, View<T, DeviceSpace> y, std::int64_t k) {
  HSEQ_CHECK(k >= 1 && x.rank() == 3 && x.size(1) % k == 0, "avg_pool: length of x " << x.shape
                                                                                      << " is not a multiple of " << k);
  detail::check_seq_pair(x, y, x.size(1), x.size(1) / k, "avg_pool");
  cuda_detail::launch_n(ctx, y.numel(), "avg_pool", cuda_detail::pool_kernel<T>, x.data, y.data, y.numel(), y.size(2), k,
                        T(1) / T(k));
}

template <class T>
void avg_pool_backward(cuda::Context& ctx, View<T const, DeviceSpace> dy, View<T, DeviceSpace> dx, std::int64_t k) {
  detail::check_seq_pair(dx, dy, dy.size(1) * k, dy.size(1), "avg_pool_backward");
  cuda_detail::launch_n(ctx, dx.numel(), "avg_pool_backward", cuda_detail::spread_kernel<T>, dy.data, dx.data,
                        dx.numel(), dx.size(1), dx.size(2), k, T(1) / T(k));
}

template <class T>
void repeat_rows(cuda::Context& ctx, View<T const, DeviceSpace> y, View<T, DeviceSpace> u, std::int64_t k) {
  HSEQ_CHECK(k >= 1, "repeat_rows: factor " << k);
  detail::check_seq_pair(u, y, y.size(1) * k, y.size(1), "repeat_rows");
  cuda_detail::launch_n(ctx, u.numel(), "repeat_rows", cuda_detail::spread_kernel<T>, y.data, u.data, u.numel(),
                        u.size(1), u.size(2), k, T(1));
}

template <class T>
void repeat_rows_backward(cuda::Context& ctx, View<T const, DeviceSpace> du, View<T, DeviceSpace> dy, std::int64_t k) {
  HSEQ_CHECK(k >= 1, "repeat_rows_backward: factor " << k);
  detail::check_seq_pair(du, dy, dy.size(1) * k, dy.size(1), "repeat_rows_backward");
  cuda_detail::launch_n(ctx, dy.numel(), "repeat_rows_backward", cuda_detail::pool_kernel<T>, du.data, dy.data,
                        dy.numel(), dy.size(2), k, T(1));
}

template <class T>
void max_pool(cuda::Context& ctx, View<T const, DeviceSpace> x, View<T, DeviceSpace> y,
              View<std::int32_t, DeviceSpace> arg, std::int64_t k) {
  HSEQ_CHECK(k >= 1 && x.rank() == 3 && x.size(1) % k == 0, "max_pool: length of x " << x.shape
                                                                                      << " is not a multiple of " << k);
  detail::check_seq_pair(x, y, x.size(1), x.size(1) / k, "max_pool");
  HSEQ_CHECK(arg.shape == y.shape, "max_pool: arg " << arg.shape << " is not shaped like y " << y.shape);
  cuda_detail::launch_n(ctx, y.numel(), "max_pool", cuda_detail::max_pool_kernel<T>, x.data, y.data, arg.data, y.numel(),
                        y.size(2), k);
}

template <class T>
void max_pool_backward(cuda::Context& ctx, View<T const, DeviceSpace> dy, View<std::int32_t const, DeviceSpace> arg,
                       View<T, DeviceSpace> dx, std::int64_t k) {
  detail::check_seq_pair(dx, dy, dy.size(1) * k, dy.size(1), "max_pool_backward");
  HSEQ_CHECK(arg.shape == dy.shape, "max_pool_backward: arg " << arg.shape << " is not shaped like dy " << dy.shape);
  cuda_detail::launch_n(ctx, dx.numel(), "max_pool_backward", cuda_detail::max_pool_backward_kernel<T>, dy.data,
                        arg.data, dx.data, dx.numel(), dx.size(1), dx.size(2), k);
}

}  // namespace hseq::ops
