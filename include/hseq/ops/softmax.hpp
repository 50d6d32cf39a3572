// SPDX-License-Identifier: MIT
/// @file
/// @brief Row softmax, plain and masked ([.., Tq, Tk] scores with an `AttentionMask`).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/ops/attention_mask.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::ops {

namespace detail {
/// out[0..n) = softmax(scale * in[0..visible)) padded with zeros; a row that sees nothing is all zero.
template <class T>
inline void softmax_row(T const* in, T* out, std::int64_t visible, std::int64_t n, T scale) {
  if (visible <= 0) {
    std::fill(out, out + n, T(0));
    return;
  }
  T mx = -std::numeric_limits<T>::infinity();
  for (std::int64_t j = 0; j < visible; ++j) mx = std::max(mx, in[j] * scale);
  T sum = 0;
  for (std::int64_t j = 0; j < visible; ++j) {
    out[j] = std::exp(in[j] * scale - mx);
    sum += out[j];
  }
  T inv = T(1) / sum;
  for (std::int64_t j = 0; j < visible; ++j) out[j] *= inv;
  std::fill(out + visible, out + n, T(0));
}
/// dx[j] = y[j] * (dy[j] - sum_k y[k] dy[k]) over the first `visible` entries, zero elsewhere.
template <class T>
inline void softmax_row_backward(T const* y, T const* dy, T* dx, std::int64_t visible, std::int64_t n) {
  T dot = 0;
  for (std::int64_t j = 0; j < visible; ++j) dot += y[j] * dy[j];
  for (std::int64_t j = 0; j < visible; ++j) dx[j] = y[j] * (dy[j] - dot);
  std::fill(dx + std::max<std::int64_t>(visible, 0), dx + n, T(0));
}
}  // namespace detail

/// y = softmax(x) over the last dimension. `y` may alias `x`.
template <class T>
void softmax_forward(cpu::Context&, View<T const, HostSpace> x, View<T, HostSpace> y) {
  HSEQ_CHECK(x.shape == y.shape, "softmax_forward: x " << x.shape << " and y " << y.shape << " differ");
  std::int64_t r = x.rows(), c = x.cols();
#pragma omp parallel for schedule(static) if (r * c > kParallelGrain)
  for (std::int64_t i = 0; i < r; ++i) detail::softmax_row(x.data + i * c, y.data + i * c, c, c, T(1));
}

/// Masked, scaled softmax over scores x: [..., Tq, Tk]; the first `prefix` keys are always visible.
/// Masked entries of y are exactly zero.
template <class T>
void softmax_forward(cpu::Context&, View<T const, HostSpace> x, View<T, HostSpace> y, AttentionMask mask,
                     T scale = T(1), std::int64_t prefix = 0) {
  HSEQ_CHECK(x.shape == y.shape && x.rank() >= 2,
             "softmax_forward (masked): x " << x.shape << " and y " << y.shape << " must match, rank >= 2");
  std::int64_t tk = x.size(-1), tq = x.size(-2), r = x.rows();
#pragma omp parallel for schedule(static) if (r * tk > kParallelGrain)
  for (std::int64_t i = 0; i < r; ++i)
    detail::softmax_row(x.data + i * tk, y.data + i * tk, mask.visible(i % tq, tk, prefix), tk, scale);
}

/// dx = y * (dy - sum(y * dy)) per row (overwrites dx). For a masked softmax pass the same mask.
template <class T>
void softmax_backward(cpu::Context&, View<T const, HostSpace> y, View<T const, HostSpace> dy, View<T, HostSpace> dx,
                      AttentionMask mask = AttentionMask::none(), T scale = T(1), std::int64_t prefix = 0) {
  HSEQ_CHECK(y.shape == dy.shape && y.shape == dx.shape,
             "softmax_backward: y " << y.shape << ", dy " << dy.shape << ", dx " << dx.shape << " differ");
  std::int64_t tk = y.cols(), tq = y.rank() >= 2 ? y.size(-2) : 1, r = y.rows();
#pragma omp parallel for schedule(static) if (r * tk > kParallelGrain)
  for (std::int64_t i = 0; i < r; ++i) {
    std::int64_t vis = mask.visible(i % tq, tk, prefix);
    detail::softmax_row_backward(y.data + i * tk, dy.data + i * tk, dx.data + i * tk, vis, tk);
    for (std::int64_t j = 0; j < vis; ++j) dx.data[i * tk + j] *= scale;
  }
}

}  // namespace hseq::ops

#if defined(__CUDACC__) && defined(HSEQ_ENABLE_CUDA)
#include "hseq/ops/cuda/softmax.cuh"
#endif
