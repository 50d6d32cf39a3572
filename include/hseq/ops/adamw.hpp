// SPDX-License-Identifier: MIT
/// @file
/// @brief The AdamW update (Loshchilov & Hutter; PyTorch `torch.optim.AdamW` semantics).
#pragma once

#include <cmath>
#include <cstdint>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::ops {

/// Hyper-parameters of one AdamW step; `step` counts from 1.
struct AdamWStep {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  std::int64_t step = 1;
};

/// p -= lr * wd * p (decoupled decay); m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
/// p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
template <class T>
void adamw_update(cpu::Context&, View<T, HostSpace> p, View<T const, HostSpace> g, View<T, HostSpace> m,
                  View<T, HostSpace> v, AdamWStep const& s) {
  HSEQ_CHECK(p.numel() == g.numel() && p.numel() == m.numel() && p.numel() == v.numel(),
             "adamw_update: param " << p.shape << ", grad " << g.shape << ", m " << m.shape << ", v " << v.shape
                                    << " differ in size");
  double const bc1 = 1.0 - std::pow(s.beta1, double(s.step)), bc2 = 1.0 - std::pow(s.beta2, double(s.step));
  T const lr = T(s.lr), b1 = T(s.beta1), b2 = T(s.beta2), eps = T(s.eps), decay = T(1.0 - s.lr * s.weight_decay);
  T const step_size = T(s.lr / bc1), inv_sqrt_bc2 = T(1.0 / std::sqrt(bc2));
  (void)lr;
  std::int64_t n = p.numel();
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (std::int64_t i = 0; i < n; ++i) {
    T gi = g[i];
    m[i] = b1 * m[i] + (T(1) - b1) * gi;
    v[i] = b2 * v[i] + (T(1) - b2) * gi * gi;
    p[i] = p[i] * decay - step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
  }
}

}  // namespace hseq::ops

#if defined(__CUDACC__) && defined(HSEQ_ENABLE_CUDA)
#include "hseq/ops/cuda/adamw.cuh"
#endif
