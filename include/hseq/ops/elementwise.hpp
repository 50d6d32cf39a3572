// SPDX-License-Identifier: MIT
/// @file
/// @brief Element-wise CPU ops: fill, copy, add, scale, bias broadcast and its gradient, GELU.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <Eigen/Core>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor_view.hpp"

namespace hseq::ops {

/// Element count above which CPU loops fork OpenMP threads (below it, forking costs more than it saves).
inline constexpr std::int64_t kParallelGrain = 1 << 14;

template <class T>
void fill(cpu::Context&, View<T, HostSpace> y, T value) {
  std::int64_t n = y.numel();
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (std::int64_t i = 0; i < n; ++i) y[i] = value;
}

/// y = x (same number of elements; shapes may differ).
template <class T>
void copy(cpu::Context&, View<T const, HostSpace> x, View<T, HostSpace> y) {
  HSEQ_CHECK(x.numel() == y.numel(), "copy: source " << x.shape << " and destination " << y.shape << " differ in size");
  std::int64_t n = x.numel();
  if (n) std::copy(x.data, x.data + n, y.data);
}

/// out = a + b (element-wise, same shapes). `out` may alias `a` or `b`.
template <class T>
void add(cpu::Context&, View<T const, HostSpace> a, View<T const, HostSpace> b, View<T, HostSpace> out) {
  HSEQ_CHECK(a.shape == b.shape && a.shape == out.shape,
             "add: a " << a.shape << ", b " << b.shape << ", out " << out.shape << " must match");
  std::int64_t n = a.numel();
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (std::int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

/// y += alpha * x.
template <class T>
void axpy(cpu::Context&, T alpha, View<T const, HostSpace> x, View<T, HostSpace> y) {
  HSEQ_CHECK(x.numel() == y.numel(), "axpy: x " << x.shape << " and y " << y.shape << " differ in size");
  std::int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (std::int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

/// y *= alpha.
template <class T>
void scale(cpu::Context&, View<T, HostSpace> y, T alpha) {
  std::int64_t n = y.numel();
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (std::int64_t i = 0; i < n; ++i) y[i] *= alpha;
}

/// y[r, c] += bias[c] for every row r of y viewed as [rows, C].
template <class T>
void add_bias(cpu::Context&, View<T, HostSpace> y, View<T const, HostSpace> bias) {
  std::int64_t c = y.cols(), r = y.rows();
  HSEQ_CHECK(bias.numel() == c, "add_bias: bias " << bias.shape << " does not match the last dimension of " << y.shape);
#pragma omp parallel for schedule(static) if (r * c > kParallelGrain)
  for (std::int64_t i = 0; i < r; ++i) {
    T* row = y.data + i * c;
    for (std::int64_t j = 0; j < c; ++j) row[j] += bias[j];
  }
}

/// dbias[c] += sum over rows of dy[r, c]. Threads own disjoint column ranges: no races, no partials.
template <class T>
void bias_grad(cpu::Context&, View<T const, HostSpace> dy, View<T, HostSpace> dbias) {
  std::int64_t c = dy.cols(), r = dy.rows();
  HSEQ_CHECK(dbias.numel() == c, "bias_grad: dbias " << dbias.shape << " does not match the last dimension of " << dy.shape);
  constexpr std::int64_t kBlock = 64;
  std::int64_t blocks = (c + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (r * c > kParallelGrain)
  for (std::int64_t blk = 0; blk < blocks; ++blk) {
    std::int64_t c0 = blk * kBlock, c1 = std::min(c, c0 + kBlock);
    T acc[kBlock] = {};
    for (std::int64_t i = 0; i < r; ++i) {
      T const* row = dy.data + i * c;
      for (std::int64_t j = c0; j < c1; ++j) acc[j - c0] += row[j];
    }
    for (std::int64_t j = c0; j < c1; ++j) dbias[j] += acc[j - c0];
  }
}

namespace detail {
/// GELU, tanh approximation (GPT-2; PyTorch `GELU(approximate="tanh")`):
/// gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
template <class T>
HSEQ_HOST_DEVICE T gelu(T x) {
  T const k0 = T(0.7978845608028654), k1 = T(0.044715);
  return T(0.5) * x * (T(1) + std::tanh(k0 * (x + k1 * x * x * x)));
}
/// d gelu / dx.
template <class T>
HSEQ_HOST_DEVICE T gelu_grad(T x) {
  T const k0 = T(0.7978845608028654), k1 = T(0.044715);
  T u = k0 * (x + k1 * x * x * x);
  T th = std::tanh(u);
  T du = k0 * (T(1) + T(3) * k1 * x * x);
  return T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * du;
}
}  // namespace detail

namespace detail {
/// Applies f(x_chunk, y_chunk) to Eigen arrays over chunks of `kChunk` elements, in parallel.
/// Eigen vectorises tanh for float (a rational approximation, a few ulps), which is what makes
/// GELU cheap next to the GEMMs; double falls back to std::tanh element by element.
template <class T, class F>
void chunked_arrays(std::int64_t n, F&& f) {
  constexpr std::int64_t kChunk = 2048;
  std::int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (std::int64_t c = 0; c < chunks; ++c) {
    std::int64_t b = c * kChunk, len = std::min(kChunk, n - b);
    f(b, len);
  }
}
template <class T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1> const>;
}  // namespace detail

/// y = gelu(x). `y` may alias `x`.
template <class T>
void gelu_forward(cpu::Context&, View<T const, HostSpace> x, View<T, HostSpace> y) {
  HSEQ_CHECK(x.numel() == y.numel(), "gelu_forward: x " << x.shape << " and y " << y.shape << " differ in size");
  T const k0 = T(0.7978845608028654), k1 = T(0.044715);
  detail::chunked_arrays<T>(x.numel(), [&](std::int64_t b, std::int64_t len) {
    detail::ConstArrayMap<T> xs(x.data + b, len);
    detail::ArrayMap<T> ys(y.data + b, len);
    ys = T(0.5) * xs * (T(1) + (k0 * (xs + k1 * xs.cube())).tanh());
  });
}

/// dx = dy * gelu'(x) (overwrites dx; `dx` may alias `dy`).
template <class T>
void gelu_backward(cpu::Context&, View<T const, HostSpace> x, View<T const, HostSpace> dy, View<T, HostSpace> dx) {
  HSEQ_CHECK(x.numel() == dy.numel() && x.numel() == dx.numel(),
             "gelu_backward: x " << x.shape << ", dy " << dy.shape << ", dx " << dx.shape << " differ in size");
  T const k0 = T(0.7978845608028654), k1 = T(0.044715);
  detail::chunked_arrays<T>(x.numel(), [&](std::int64_t b, std::int64_t len) {
    detail::ConstArrayMap<T> xs(x.data + b, len), g(dy.data + b, len);
    detail::ArrayMap<T> out(dx.data + b, len);
    auto th = (k0 * (xs + k1 * xs.cube())).tanh().eval();
    out = g * (T(0.5) * (T(1) + th) + T(0.5) * xs * (T(1) - th.square()) * k0 * (T(1) + T(3) * k1 * xs.square()));
  });
}

namespace detail {
/// sum_i f(i) over [0, n) in double, bit-reproducible: the range is cut into fixed blocks (the cut
/// does not depend on the thread count), blocks are summed in parallel, then added in order.
/// OpenMP's `reduction` clause combines partials in thread-arrival order, which is not.
template <class F>
double deterministic_sum(std::int64_t n, F&& f) {
  constexpr std::int64_t kBlocks = 64;
  double partial[kBlocks] = {};
  std::int64_t per = (n + kBlocks - 1) / kBlocks;
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (std::int64_t b = 0; b < kBlocks; ++b) {
    double s = 0;
    for (std::int64_t i = b * per, e = std::min(n, (b + 1) * per); i < e; ++i) s += f(i);
    partial[b] = s;
  }
  double total = 0;
  for (double p : partial) total += p;
  return total;
}
}  // namespace detail

/// Sum of squares of all elements, accumulated in double, bit-reproducible (for global-norm clipping).
template <class T>
double sum_squares(cpu::Context&, View<T const, HostSpace> x) {
  return detail::deterministic_sum(x.numel(), [&](std::int64_t i) { return double(x[i]) * double(x[i]); });
}

/// Sum of all elements, accumulated in double, bit-reproducible.
template <class T>
double sum(cpu::Context&, View<T const, HostSpace> x) {
  return detail::deterministic_sum(x.numel(), [&](std::int64_t i) { return double(x[i]); });
}

/// True when every element is finite.
template <class T>
bool all_finite(cpu::Context&, View<T const, HostSpace> x) {
  std::int64_t n = x.numel();
  int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n > kParallelGrain)
  for (std::int64_t i = 0; i < n; ++i) bad |= !std::isfinite(x[i]);
  return bad == 0;
}

}  // namespace hseq::ops

#if defined(__CUDACC__) && defined(HSEQ_ENABLE_CUDA)
#include "hseq/ops/cuda/elementwise.cuh"
#endif
