// SPDX-License-Identifier: MIT
/// @file
/// @brief CUDA element-wise ops: Thrust for fills and transforms, grid-stride kernels for the
/// broadcasts, deterministic column sums for bias gradients, CUB device reductions (in double)
/// for sums, sums of squares and the finiteness check.
#pragma once

#include <cub/device/device_reduce.cuh>
#include <thrust/execution_policy.h>
#include <thrust/fill.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/transform.h>

#include <cmath>

#include "hseq/ops/cuda/launch.cuh"
#include "hseq/ops/elementwise.hpp"

namespace hseq::ops {

namespace cuda_detail {
/// Thrust's non-blocking policy on the context's stream.
inline auto policy(cuda::Context& ctx) { return thrust::cuda::par_nosync.on(ctx.stream()); }

template <class T>
struct Plus {
  __host__ __device__ T operator()(T a, T b) const { return a + b; }
};
template <class T>
struct Axpy {
  T alpha;
  __host__ __device__ T operator()(T x, T y) const { return y + alpha * x; }
};
template <class T>
struct Scale {
  T alpha;
  __host__ __device__ T operator()(T y) const { return y * alpha; }
};
template <class T>
struct Gelu {
  __host__ __device__ T operator()(T x) const { return detail::gelu(x); }
};
template <class T>
struct GeluGrad {
  __host__ __device__ T operator()(T x, T g) const { return g * detail::gelu_grad(x); }
};
template <class T>
struct ToDouble {
  __host__ __device__ double operator()(T x) const { return double(x); }
};
template <class T>
struct Square {
  __host__ __device__ double operator()(T x) const { return double(x) * double(x); }
};
template <class T>
struct NotFinite {
  __host__ __device__ int operator()(T x) const { return isfinite(x) ? 0 : 1; }
};

template <class T>
__global__ void add_bias_kernel(T* y, T const* bias, std::int64_t rows, std::int64_t cols) {
  std::int64_t n = rows * cols;
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += std::int64_t(gridDim.x) * blockDim.x)
    y[e] += bias[e % cols];
}

/// Sum of f(x[i]) over n elements in R, by cub::DeviceReduce (fixed tree: run-to-run identical).
template <class R, class It>
R device_reduce_sum(cuda::Context& ctx, It in, std::int64_t n) {
  std::size_t temp = 0;
  HSEQ_CUDA_CHECK(cub::DeviceReduce::Sum(nullptr, temp, in, static_cast<R*>(nullptr), n, ctx.stream()));
  ScratchPlan plan;
  std::size_t out_at = plan.add<R>(1), temp_at = 0;
  plan.add_bytes(temp, &temp_at);
  void* base = ctx.scratch(plan.total());
  HSEQ_CUDA_CHECK(cub::DeviceReduce::Sum(at<void>(base, temp_at), temp, in, at<R>(base, out_at), n, ctx.stream()));
  R result{};
  read_back(ctx, &result, at<R>(base, out_at), 1);
  return result;
}
}  // namespace cuda_detail

template <class T>
void fill(cuda::Context& ctx, View<T, DeviceSpace> y, T value) {
  if (y.numel()) thrust::fill(cuda_detail::policy(ctx), y.data, y.data + y.numel(), value);
}

/// y = x (same number of elements; shapes may differ).
template <class T>
void copy(cuda::Context& ctx, View<T const, DeviceSpace> x, View<T, DeviceSpace> y) {
  HSEQ_CHECK(x.numel() == y.numel(), "copy: source " << x.shape << " and destination " << y.shape << " differ in size");
  cuda::copy_bytes(ctx, y.data, x.data, std::size_t(x.numel()) * sizeof(T));
}

/// out = a + b. `out` may alias `a` or `b`.
template <class T>
void add(cuda::Context& ctx, View<T const, DeviceSpace> a, View<T const, DeviceSpace> b, View<T, DeviceSpace> out) {
  HSEQ_CHECK(a.shape == b.shape && a.shape == out.shape,
             "add: a " << a.shape << ", b " << b.shape << ", out " << out.shape << " must match");
  if (a.numel())
    thrust::transform(cuda_detail::policy(ctx), a.data, a.data + a.numel(), b.data, out.data, cuda_detail::Plus<T>{});
}

/// y += alpha * x.
template <class T>
void axpy(cuda::Context& ctx, T alpha, View<T const, DeviceSpace> x, View<T, DeviceSpace> y) {
  HSEQ_CHECK(x.numel() == y.numel(), "axpy: x " << x.shape << " and y " << y.shape << " differ in size");
  if (x.numel())
    thrust::transform(cuda_detail::policy(ctx), x.data, x.data + x.numel(), y.data, y.data, cuda_detail::Axpy<T>{alpha});
}

/// y *= alpha.
template <class T>
void scale(cuda::Context& ctx, View<T, DeviceSpace> y, T alpha) {
  if (y.numel())
    thrust::transform(cuda_detail::policy(ctx), y.data, y.data + y.numel(), y.data, cuda_detail::Scale<T>{alpha});
}

/// y[r, c] += bias[c].
template <class T>
void add_bias(cuda::Context& ctx, View<T, DeviceSpace> y, View<T const, DeviceSpace> bias) {
  std::int64_t c = y.cols(), r = y.rows();
  HSEQ_CHECK(bias.numel() == c, "add_bias: bias " << bias.shape << " does not match the last dimension of " << y.shape);
  if (r * c == 0) return;
  cuda_detail::add_bias_kernel<T><<<cuda_detail::grid_for(r * c), cuda_detail::kThreads, 0, ctx.stream()>>>(
      y.data, bias.data, r, c);
  HSEQ_CUDA_LAUNCH_CHECK("add_bias");
}

/// dbias[c] += sum over rows of dy[r, c] (deterministic two-phase column sum).
template <class T>
void bias_grad(cuda::Context& ctx, View<T const, DeviceSpace> dy, View<T, DeviceSpace> dbias) {
  std::int64_t c = dy.cols(), r = dy.rows();
  HSEQ_CHECK(dbias.numel() == c, "bias_grad: dbias " << dbias.shape << " does not match the last dimension of " << dy.shape);
  cuda_detail::column_sum_accumulate<T>(ctx, cuda_detail::RowValue<T>{dy.data, c}, r, c, dbias.data, "bias_grad");
}

/// y = gelu(x) (tanh approximation). `y` may alias `x`.
template <class T>
void gelu_forward(cuda::Context& ctx, View<T const, DeviceSpace> x, View<T, DeviceSpace> y) {
  HSEQ_CHECK(x.numel() == y.numel(), "gelu_forward: x " << x.shape << " and y " << y.shape << " differ in size");
  if (x.numel()) thrust::transform(cuda_detail::policy(ctx), x.data, x.data + x.numel(), y.data, cuda_detail::Gelu<T>{});
}

/// dx = dy * gelu'(x) (overwrites dx; `dx` may alias `dy`).
template <class T>
void gelu_backward(cuda::Context& ctx, View<T const, DeviceSpace> x, View<T const, DeviceSpace> dy,
                   View<T, DeviceSpace> dx) {
  HSEQ_CHECK(x.numel() == dy.numel() && x.numel() == dx.numel(),
             "gelu_backward: x " << x.shape << ", dy " << dy.shape << ", dx " << dx.shape << " differ in size");
  if (x.numel())
    thrust::transform(cuda_detail::policy(ctx), x.data, x.data + x.numel(), dy.data, dx.data, cuda_detail::GeluGrad<T>{});
}

/// Sum of squares in double (a fixed CUB reduction tree: bit-reproducible run to run). Synchronizes.
template <class T>
double sum_squares(cuda::Context& ctx, View<T const, DeviceSpace> x) {
  if (x.numel() == 0) return 0.0;
  return cuda_detail::device_reduce_sum<double>(ctx, thrust::make_transform_iterator(x.data, cuda_detail::Square<T>{}),
                                                x.numel());
}

/// Sum in double. Synchronizes.
template <class T>
double sum(cuda::Context& ctx, View<T const, DeviceSpace> x) {
  if (x.numel() == 0) return 0.0;
  return cuda_detail::device_reduce_sum<double>(ctx, thrust::make_transform_iterator(x.data, cuda_detail::ToDouble<T>{}),
                                                x.numel());
}

/// True when every element is finite. Synchronizes.
template <class T>
bool all_finite(cuda::Context& ctx, View<T const, DeviceSpace> x) {
  if (x.numel() == 0) return true;
  return cuda_detail::device_reduce_sum<int>(ctx, thrust::make_transform_iterator(x.data, cuda_detail::NotFinite<T>{}),
                                             x.numel()) == 0;
}

}  // namespace hseq::ops
