// SPDX-License-Identifier: MIT
/// @file
/// @brief Sequence resampling on [B, L, C] tensors: shift right, average and max pooling, repetition.
/// The building blocks of the hierarchical models' shortening and upsampling.
#pragma once

#include <algorithm>
#include <cstdint>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::ops {

namespace detail {
template <class A, class Bv>
void check_seq_pair(A const& x, Bv const& y, std::int64_t x_len, std::int64_t y_len, char const* who) {
  HSEQ_CHECK(x.rank() == 3 && y.rank() == 3 && x.size(0) == y.size(0) && x.size(2) == y.size(2) &&
                 x.size(1) == x_len && y.size(1) == y_len,
             who << ": x " << x.shape << " and y " << y.shape << " (expected [B, " << x_len << ", C] and [B, "
                 << y_len << ", C])");
}
}  // namespace detail

/// y[b, t] = x[b, t - s] for t >= s, 0 otherwise (x, y: [B, L, C]; y must not alias x).
template <class T>
void shift_right(cpu::Context&, View<T const, HostSpace> x, View<T, HostSpace> y, std::int64_t s) {
  HSEQ_CHECK(x.rank() == 3 && y.shape == x.shape && s >= 0,
             "shift_right: x " << x.shape << ", y " << y.shape << ", shift " << s);
  std::int64_t bsz = x.size(0), l = x.size(1), c = x.size(2);
#pragma omp parallel for schedule(static) if (bsz * l * c > kParallelGrain)
  for (std::int64_t r = 0; r < bsz * l; ++r) {
    std::int64_t t = r % l;
    T* dst = y.data + r * c;
    if (t >= s) std::copy_n(x.data + (r - s) * c, c, dst);
    else std::fill_n(dst, c, T(0));
  }
}

/// dx[b, t] = dy[b, t + s] for t + s < L, 0 otherwise (overwrites).
template <class T>
void shift_right_backward(cpu::Context&, View<T const, HostSpace> dy, View<T, HostSpace> dx, std::int64_t s) {
  HSEQ_CHECK(dy.rank() == 3 && dx.shape == dy.shape && s >= 0,
             "shift_right_backward: dy " << dy.shape << ", dx " << dx.shape << ", shift " << s);
  std::int64_t bsz = dy.size(0), l = dy.size(1), c = dy.size(2);
#pragma omp parallel for schedule(static) if (bsz * l * c > kParallelGrain)
  for (std::int64_t r = 0; r < bsz * l; ++r) {
    std::int64_t t = r % l;
    T* dst = dx.data + r * c;
    if (t + s < l) std::copy_n(dy.data + (r + s) * c, c, dst);
    else std::fill_n(dst, c, T(0));
  }
}

/// y[b, i] = mean_{r < k} x[b, i k + r]; x: [B, L, C], y: [B, L / k, C].
template <class T>
void avg_pool(cpu::Context&, View<T const, HostSpace> x, View<T, HostSpace> y, std::int64_t k) {
  HSEQ_CHECK(k >= 1 && x.rank() == 3 && x.size(1) % k == 0, "avg_pool: length of x " << x.shape
                                                                                      << " is not a multiple of " << k);
  detail::check_seq_pair(x, y, x.size(1), x.size(1) / k, "avg_pool");
  std::int64_t bsz = y.size(0), ls = y.size(1), c = y.size(2);
  T const inv = T(1) / T(k);
#pragma omp parallel for schedule(static) if (bsz * ls * k * c > kParallelGrain)
  for (std::int64_t r = 0; r < bsz * ls; ++r) {
    T* dst = y.data + r * c;
    T const* src = x.data + r * k * c;
    std::fill_n(dst, c, T(0));
    for (std::int64_t q = 0; q < k; ++q)
      for (std::int64_t j = 0; j < c; ++j) dst[j] += src[q * c + j];
    for (std::int64_t j = 0; j < c; ++j) dst[j] *= inv;
  }
}

/// dx[b, t] = dy[b, t / k] / k (overwrites).
template <class T>
void avg_pool_backward(cpu::Context&, View<T const, HostSpace> dy, View<T, HostSpace> dx, std::int64_t k) {
  detail::check_seq_pair(dx, dy, dy.size(1) * k, dy.size(1), "avg_pool_backward");
  std::int64_t bsz = dx.size(0), l = dx.size(1), c = dx.size(2);
  T const inv = T(1) / T(k);
#pragma omp parallel for schedule(static) if (bsz * l * c > kParallelGrain)
  for (std::int64_t r = 0; r < bsz * l; ++r) {
    std::int64_t b = r / l, t = r % l;
    T const* src = dy.data + (b * (l / k) + t / k) * c;
    T* dst = dx.data + r * c;
    for (std::int64_t j = 0; j < c; ++j) dst[j] = src[j] * inv;
  }
}

/// Max pooling (the Compressive Transformer's max compression): y[b, i, j] = max_{q<k} x[b, i k + q, j],
/// arg[b, i, j] = the q of the maximum (the first of equal maxima); x: [B, L, C], y, arg: [B, L / k, C].
template <class T>
void max_pool(cpu::Context&, View<T const, HostSpace> x, View<T, HostSpace> y, View<std::int32_t, HostSpace> arg,
              std::int64_t k) {
  HSEQ_CHECK(k >= 1 && x.rank() == 3 && x.size(1) % k == 0, "max_pool: length of x " << x.shape
                                                                                      << " is not a multiple of " << k);
  detail::check_seq_pair(x, y, x.size(1), x.size(1) / k, "max_pool");
  HSEQ_CHECK(arg.shape == y.shape, "max_pool: arg " << arg.shape << " is not shaped like y " << y.shape);
  std::int64_t bsz = y.size(0), ls = y.size(1), c = y.size(2);
#pragma omp parallel for schedule(static) if (bsz * ls * k * c > kParallelGrain)
  for (std::int64_t r = 0; r < bsz * ls; ++r) {
    T const* src = x.data + r * k * c;
    for (std::int64_t j = 0; j < c; ++j) {
      T best = src[j];
      std::int32_t at = 0;
      for (std::int64_t q = 1; q < k; ++q)
        if (src[q * c + j] > best) best = src[q * c + j], at = std::int32_t(q);
      y.data[r * c + j] = best;
      arg.data[r * c + j] = at;
    }
  }
}

/// dx[b, i k + q, j] = dy[b, i, j] where q = arg[b, i, j], else 0 (overwrites).
template <class T>
void max_pool_backward(cpu::Context&, View<T const, HostSpace> dy, View<std::int32_t const, HostSpace> arg,
                       View<T, HostSpace> dx, std::int64_t k) {
  detail::check_seq_pair(dx, dy, dy.size(1) * k, dy.size(1), "max_pool_backward");
  HSEQ_CHECK(arg.shape == dy.shape, "max_pool_backward: arg " << arg.shape << " is not shaped like dy " << dy.shape);
  std::int64_t bsz = dx.size(0), l = dx.size(1), c = dx.size(2);
#pragma omp parallel for schedule(static) if (bsz * l * c > kParallelGrain)
  for (std::int64_t r = 0; r < bsz * l; ++r) {
    std::int64_t b = r / l, t = r % l, o = (b * (l / k) + t / k) * c;
    for (std::int64_t j = 0; j < c; ++j) dx.data[r * c + j] = arg.data[o + j] == t % k ? dy.data[o + j] : T(0);
  }
}

/// u[b, t] = y[b, t / k]; y: [B, Ls, C], u: [B, Ls k, C].
template <class T>
void repeat_rows(cpu::Context&, View<T const, HostSpace> y, View<T, HostSpace> u, std::int64_t k) {
  HSEQ_CHECK(k >= 1, "repeat_rows: factor " << k);
  detail::check_seq_pair(u, y, y.size(1) * k, y.size(1), "repeat_rows");
  std::int64_t bsz = u.size(0), l = u.size(1), c = u.size(2);
#pragma omp parallel for schedule(static) if (bsz * l * c > kParallelGrain)
  for (std::int64_t r = 0; r < bsz * l; ++r) {
    std::int64_t b = r / l, t = r % l;
    std::copy_n(y.data + (b * (l / k) + t / k) * c, c, u.data + r * c);
  }
}

/// dy[b, i] = sum_{r < k} du[b, i k + r] (overwrites).
template <class T>
void repeat_rows_backward(cpu::Context&, View<T const, HostSpace> du, View<T, HostSpace> dy, std::int64_t k) {
  HSEQ_CHECK(k >= 1, "repeat_rows_backward: factor " << k);
  detail::check_seq_pair(du, dy, dy.size(1) * k, dy.size(1), "repeat_rows_backward");
  std::int64_t bsz = dy.size(0), ls = dy.size(1), c = dy.size(2);
#pragma omp parallel for schedule(static) if (bsz * ls * k * c > kParallelGrain)
  for (std::int64_t r = 0; r < bsz * ls; ++r) {
    T* dst = dy.data + r * c;
    T const* src = du.data + r * k * c;
    std::fill_n(dst, c, T(0));
    for (std::int64_t q = 0; q < k; ++q)
      for (std::int64_t j = 0; j < c; ++j) dst[j] += src[q * c + j];
  }
}

}  // namespace hseq::ops

#if defined(__CUDACC__) && defined(HSEQ_ENABLE_CUDA)
#include "hseq/ops/cuda/resample.cuh"
#endif
