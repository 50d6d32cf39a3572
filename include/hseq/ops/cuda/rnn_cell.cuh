// SPDX-License-Identifier: MIT
/// @file
/// @brief CUDA GRU and LSTM cell non-linearities for one time step (the same equations as the CPU
/// ops in rnn_cell.hpp, one thread per (batch row, hidden unit)).
#pragma once

#include <cmath>

#include "hseq/ops/cuda/launch.cuh"
#include "hseq/ops/rnn_cell.hpp"

namespace hseq::ops {

namespace cuda_detail {
template <class T>
struct DMat {  // a Mat's device-side essentials
  T* data;
  std::int64_t ld;
  __device__ T& operator()(std::int64_t i, std::int64_t j) const { return data[i * ld + j]; }
};
template <class T, class S>
DMat<T> dm(Mat<T, S> m) {
  return {m.data, m.ld};
}

template <class T>
__global__ void gru_forward_kernel(DMat<T const> xp, DMat<T const> gh, DMat<T const> hp, DMat<T> s, DMat<T> ho,
                                   std::int64_t bsz, std::int64_t hd) {
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < bsz * hd;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t b = e / hd, j = e % hd;
    T r = detail::sigmoid(xp(b, j) + gh(b, j));
    T z = detail::sigmoid(xp(b, hd + j) + gh(b, hd + j));
    T n = tanh(xp(b, 2 * hd + j) + r * gh(b, 2 * hd + j));
    s(b, j) = r;
    s(b, hd + j) = z;
    s(b, 2 * hd + j) = n;
    s(b, 3 * hd + j) = gh(b, 2 * hd + j);
    ho(b, j) = (T(1) - z) * n + z * hp(b, j);
  }
}
template <class T>
__global__ void gru_backward_kernel(DMat<T const> dh, DMat<T const> hp, DMat<T const> s, DMat<T> dx, DMat<T> dg,
                                    DMat<T> dhp, std::int64_t bsz, std::int64_t hd) {
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < bsz * hd;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t b = e / hd, j = e % hd;
    T r = s(b, j), z = s(b, hd + j), n = s(b, 2 * hd + j), ghn = s(b, 3 * hd + j);
    T d = dh(b, j);
    T dn = d * (T(1) - z) * (T(1) - n * n);
    T dz = d * (hp(b, j) - n) * z * (T(1) - z);
    T dr = dn * ghn * r * (T(1) - r);
    dx(b, j) = dr;
    dx(b, hd + j) = dz;
    dx(b, 2 * hd + j) = dn;
    dg(b, j) = dr;
    dg(b, hd + j) = dz;
    dg(b, 2 * hd + j) = dn * r;
    dhp(b, j) = d * z;
  }
}
template <class T>
__global__ void lstm_forward_kernel(DMat<T const> xp, DMat<T const> gh, DMat<T const> cp, DMat<T> a, DMat<T> co,
                                    DMat<T> ho, std::int64_t bsz, std::int64_t hd) {
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < bsz * hd;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t b = e / hd, j = e % hd;
    T i = detail::sigmoid(xp(b, j) + gh(b, j));
    T f = detail::sigmoid(xp(b, hd + j) + gh(b, hd + j));
    T gg = tanh(xp(b, 2 * hd + j) + gh(b, 2 * hd + j));
    T o = detail::sigmoid(xp(b, 3 * hd + j) + gh(b, 3 * hd + j));
    T cn = f * cp(b, j) + i * gg;
    a(b, j) = i;
    a(b, hd + j) = f;
    a(b, 2 * hd + j) = gg;
    a(b, 3 * hd + j) = o;
    co(b, j) = cn;
    ho(b, j) = o * tanh(cn);
  }
}
template <class T>
__global__ void lstm_backward_kernel(DMat<T const> dh, DMat<T const> dc, DMat<T const> cp, DMat<T const> c,
                                     DMat<T const> a, DMat<T> dg, DMat<T> dcp, std::int64_t bsz, std::int64_t hd) {
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < bsz * hd;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t b = e / hd, j = e % hd;
    T i = a(b, j), f = a(b, hd + j), g = a(b, 2 * hd + j), o = a(b, 3 * hd + j);
    T tc = tanh(c(b, j));
    T dct = dc(b, j) + dh(b, j) * o * (T(1) - tc * tc);
    dg(b, j) = dct * g * i * (T(1) - i);
    dg(b, hd + j) = dct * cp(b, j) * f * (T(1) - f);
    dg(b, 2 * hd + j) = dct * i * (T(1) - g * g);
    dg(b, 3 * hd + j) = dh(b, j) * tc * o * (T(1) - o);
    dcp(b, j) = dct * f;
  }
}
}  // namespace cuda_detail

template <class T>
void gru_cell_forward(cuda::Context& ctx, Mat<T const, DeviceSpace> xp, Mat<T const, DeviceSpace> gh,
                      Mat<T const, DeviceSpace> h_prev, Mat<T, DeviceSpace> gates, Mat<T, DeviceSpace> h) {
  std::int64_t bsz = h.rows, hd = h.cols;
  detail::check_gru_forward(xp, gh, h_prev, gates, bsz, hd);
  if (bsz * hd == 0) return;
  using namespace cuda_detail;
  gru_forward_kernel<T><<<grid_for(bsz * hd), kThreads, 0, ctx.stream()>>>(dm(xp), dm(gh), dm(h_prev), dm(gates), dm(h),
                                                                            bsz, hd);
  HSEQ_CUDA_LAUNCH_CHECK("gru_cell_forward");
}

template <class T>
void gru_cell_backward(cuda::Context& ctx, Mat<T const, DeviceSpace> dh, Mat<T const, DeviceSpace> h_prev,
                       Mat<T const, DeviceSpace> gates, Mat<T, DeviceSpace> dxp, Mat<T, DeviceSpace> dgh,
                       Mat<T, DeviceSpace> dh_prev) {
  std::int64_t bsz = dh.rows, hd = dh.cols;
  detail::check_gru_backward(h_prev, gates, dxp, dgh, dh_prev, bsz, hd);
  if (bsz * hd == 0) return;
  using namespace cuda_detail;
  gru_backward_kernel<T><<<grid_for(bsz * hd), kThreads, 0, ctx.stream()>>>(dm(dh), dm(h_prev), dm(gates), dm(dxp),
                                                                             dm(dgh), dm(dh_prev), bsz, hd);
  HSEQ_CUDA_LAUNCH_CHECK("gru_cell_backward");
}

template <class T>
void lstm_cell_forward(cuda::Context& ctx, Mat<T const, DeviceSpace> xp, Mat<T const, DeviceSpace> gh,
                       Mat<T const, DeviceSpace> c_prev, Mat<T, DeviceSpace> acts, Mat<T, DeviceSpace> c,
                       Mat<T, DeviceSpace> h) {
  std::int64_t bsz = h.rows, hd = h.cols;
  detail::check_lstm_forward(xp, gh, c_prev, acts, c, bsz, hd);
  if (bsz * hd == 0) return;
  using namespace cuda_detail;
  lstm_forward_kernel<T><<<grid_for(bsz * hd), kThreads, 0, ctx.stream()>>>(dm(xp), dm(gh), dm(c_prev), dm(acts), dm(c),
                                                                             dm(h), bsz, hd);
  HSEQ_CUDA_LAUNCH_CHECK("lstm_cell_forward");
}

template <class T>
void lstm_cell_backward(cuda::Context& ctx, Mat<T const, DeviceSpace> dh, Mat<T const, DeviceSpace> dc,
                        Mat<T const, DeviceSpace> c_prev, Mat<T const, DeviceSpace> c, Mat<T const, DeviceSpace> acts,
                        Mat<T, DeviceSpace> dgates, Mat<T, DeviceSpace> dc_prev) {
  std::int64_t bsz = dh.rows, hd = dh.cols;
  detail::check_lstm_backward(dc, c_prev, c, acts, dgates, dc_prev, bsz, hd);
  if (bsz * hd == 0) return;
  using namespace cuda_detail;
  lstm_backward_kernel<T><<<grid_for(bsz * hd), kThreads, 0, ctx.stream()>>>(dm(dh), dm(dc), dm(c_prev), dm(c), dm(acts),
                                                                              dm(dgates), dm(dc_prev), bsz, hd);
  HSEQ_CUDA_LAUNCH_CHECK("lstm_cell_backward");
}

}  // namespace hseq::ops
