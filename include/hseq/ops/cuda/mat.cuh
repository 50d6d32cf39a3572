// SPDX-License-Identifier: MIT
/// @file
/// @brief CUDA `copy_mat` (a 2D memcpy) and `add_mat` on strided device matrices.
#pragma once

#include "hseq/ops/cuda/launch.cuh"
#include "hseq/ops/mat.hpp"

namespace hseq::ops {

namespace cuda_detail {
template <class T>
__global__ void add_mat_kernel(T const* src, std::int64_t lds, T* dst, std::int64_t ldd, std::int64_t rows,
                               std::int64_t cols) {
  std::int64_t n = rows * cols;
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t i = e / cols, j = e % cols;
    dst[i * ldd + j] += src[i * lds + j];
  }
}
}  // namespace cuda_detail

/// dst = src over the [rows, cols] window (cudaMemcpy2DAsync on the context's stream).
template <class T>
void copy_mat(cuda::Context& ctx, Mat<T const, DeviceSpace> src, Mat<T, DeviceSpace> dst) {
  detail::check_same_dims(src, dst, "copy_mat");
  if (src.rows == 0 || src.cols == 0) return;
  HSEQ_CUDA_CHECK(cudaMemcpy2DAsync(dst.data, std::size_t(dst.ld) * sizeof(T), src.data, std::size_t(src.ld) * sizeof(T),
                                    std::size_t(src.cols) * sizeof(T), std::size_t(src.rows), cudaMemcpyDeviceToDevice,
                                    ctx.stream()));
}

/// dst += src.
template <class T>
void add_mat(cuda::Context& ctx, Mat<T const, DeviceSpace> src, Mat<T, DeviceSpace> dst) {
  detail::check_same_dims(src, dst, "add_mat");
  std::int64_t n = src.rows * src.cols;
  if (n == 0) return;
  cuda_detail::add_mat_kernel<T><<<cuda_detail::grid_for(n), cuda_detail::kThreads, 0, ctx.stream()>>>(
      src.data, src.ld, dst.data, dst.ld, src.rows, src.cols);
  HSEQ_CUDA_LAUNCH_CHECK("add_mat");
}

}  // namespace hseq::ops
