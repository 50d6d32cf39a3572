// SPDX-License-Identifier: MIT
/// @file
/// @brief LayerNorm over the last dimension (PyTorch `F.layer_norm`, biased variance).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::ops {

namespace detail {
/// The shape checks of layer_norm_forward / _backward, shared by the CPU and CUDA overloads.
template <class X, class G, class Y, class S>
void check_layer_norm_forward(X const& x, G const& gamma, G const& beta, Y const& y, S const& mean, S const& rstd) {
  std::int64_t n = x.rows(), c = x.cols();
  HSEQ_CHECK(y.shape == x.shape, "layer_norm_forward: x " << x.shape << " and y " << y.shape << " differ");
  HSEQ_CHECK(gamma.numel() == c && beta.numel() == c,
             "layer_norm_forward: gamma " << gamma.shape << " / beta " << beta.shape << " must have " << c << " elements");
  HSEQ_CHECK(mean.numel() == n && rstd.numel() == n,
             "layer_norm_forward: mean " << mean.shape << " / rstd " << rstd.shape << " must have " << n << " elements");
}
template <class X, class G, class S, class D>
void check_layer_norm_backward(X const& x, G const& gamma, S const& mean, S const& rstd, X const& dy, D const& dx,
                               D const& dgamma, D const& dbeta) {
  std::int64_t n = x.rows(), c = x.cols();
  HSEQ_CHECK(dy.shape == x.shape && (dx.empty() || dx.shape == x.shape),
             "layer_norm_backward: x " << x.shape << ", dy " << dy.shape << ", dx " << dx.shape << " differ");
  HSEQ_CHECK(gamma.numel() == c && mean.numel() == n && rstd.numel() == n,
             "layer_norm_backward: gamma " << gamma.shape << ", mean " << mean.shape << ", rstd " << rstd.shape
                                           << " for x " << x.shape);
  HSEQ_CHECK(dgamma.numel() == c && dbeta.numel() == c,
             "layer_norm_backward: dgamma " << dgamma.shape << " / dbeta " << dbeta.shape << " must have " << c << " elements");
}
}  // namespace detail

/// y = (x - mean) * rstd * gamma + beta per row; saves mean[N] and rstd[N] for backward.
/// x, y: [N, C] (any rank, rows folded).
template <class T>
void layer_norm_forward(cpu::Context&, View<T const, HostSpace> x, View<T const, HostSpace> gamma,
                        View<T const, HostSpace> beta, T eps, View<T, HostSpace> y, View<T, HostSpace> mean,
                        View<T, HostSpace> rstd) {
  std::int64_t n = x.rows(), c = x.cols();
  detail::check_layer_norm_forward(x, gamma, beta, y, mean, rstd);
#pragma omp parallel for schedule(static) if (n * c > kParallelGrain)
  for (std::int64_t i = 0; i < n; ++i) {
    T const* xr = x.data + i * c;
    T* yr = y.data + i * c;
    T m = 0;
    for (std::int64_t j = 0; j < c; ++j) m += xr[j];
    m /= T(c);
    T v = 0;
    for (std::int64_t j = 0; j < c; ++j) v += (xr[j] - m) * (xr[j] - m);
    v /= T(c);
    T r = T(1) / std::sqrt(v + eps);
    for (std::int64_t j = 0; j < c; ++j) yr[j] = (xr[j] - m) * r * gamma[j] + beta[j];
    mean[i] = m;
    rstd[i] = r;
  }
}

/// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma (overwrites dx);
/// dgamma += sum_rows(dy * xhat), dbeta += sum_rows(dy) (accumulate).
template <class T>
void layer_norm_backward(cpu::Context& ctx, View<T const, HostSpace> x, View<T const, HostSpace> gamma,
                         View<T const, HostSpace> mean, View<T const, HostSpace> rstd, View<T const, HostSpace> dy,
                         View<T, HostSpace> dx, View<T, HostSpace> dgamma, View<T, HostSpace> dbeta) {
  std::int64_t n = x.rows(), c = x.cols();
  detail::check_layer_norm_backward(x, gamma, mean, rstd, dy, dx, dgamma, dbeta);
  if (!dx.empty()) {
#pragma omp parallel for schedule(static) if (n * c > kParallelGrain)
    for (std::int64_t i = 0; i < n; ++i) {
      T const* xr = x.data + i * c;
      T const* gr = dy.data + i * c;
      T m = mean[i], r = rstd[i];
      T sg = 0, sgx = 0;
      for (std::int64_t j = 0; j < c; ++j) {
        T g = gr[j] * gamma[j];
        sg += g;
        sgx += g * (xr[j] - m) * r;
      }
      sg /= T(c);
      sgx /= T(c);
      T* dr = dx.data + i * c;
      for (std::int64_t j = 0; j < c; ++j) {
        T xhat = (xr[j] - m) * r;
        dr[j] = r * (gr[j] * gamma[j] - sg - xhat * sgx);
      }
    }
  }
  // Parameter gradients: threads own disjoint column blocks (no races, deterministic order).
  constexpr std::int64_t kBlock = 64;
  std::int64_t blocks = (c + kBlock - 1) / kBlock;
  (void)ctx;
#pragma omp parallel for schedule(static) if (n * c > kParallelGrain)
  for (std::int64_t blk = 0; blk < blocks; ++blk) {
    std::int64_t c0 = blk * kBlock, c1 = std::min(c, c0 + kBlock);
    T ag[kBlock] = {}, ab[kBlock] = {};
    for (std::int64_t i = 0; i < n; ++i) {
      T const* xr = x.data + i * c;
      T const* gr = dy.data + i * c;
      T m = mean[i], r = rstd[i];
      for (std::int64_t j = c0; j < c1; ++j) {
        ag[j - c0] += gr[j] * (xr[j] - m) * r;
        ab[j - c0] += gr[j];
      }
    }
    for (std::int64_t j = c0; j < c1; ++j) {
      dgamma[j] += ag[j - c0];
      dbeta[j] += ab[j - c0];
    }
  }
}

}  // namespace hseq::ops

#if defined(__CUDACC__) && defined(HSEQ_ENABLE_CUDA)
#include "hseq/ops/cuda/layer_norm.cuh"
#endif
