// SPDX-License-Identifier: MIT
/// @file
/// @brief Inverted dropout whose mask is a pure function of (seed, stream, index) through Philox, so
/// backward regenerates it instead of storing it, and CPU and GPU drop the same elements.
#pragma once

#include <cstdint>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::ops {

/// Identifies one dropout mask: element i is kept iff philox_uniform(seed, stream, i) >= p.
struct DropoutKey {
  std::uint64_t seed = 0, stream = 0;
};

/// y = x * keep / (1 - p). p = 0 copies. `y` may alias `x`.
template <class T>
void dropout_forward(cpu::Context&, View<T const, HostSpace> x, View<T, HostSpace> y, double p, DropoutKey key) {
  HSEQ_CHECK(x.numel() == y.numel(), "dropout_forward: x " << x.shape << " and y " << y.shape << " differ in size");
  HSEQ_CHECK(p >= 0.0 && p < 1.0, "dropout_forward: probability " << p << " outside [0, 1)");
  std::int64_t n = x.numel();
  T const s = T(1.0 / (1.0 - p));
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (std::int64_t i = 0; i < n; ++i)
    y[i] = (p == 0.0 || philox_uniform(key.seed, key.stream, std::uint64_t(i)) >= p) ? x[i] * s : T(0);
}

/// dx = dy * keep / (1 - p) with the same key as forward (overwrites; `dx` may alias `dy`).
template <class T>
void dropout_backward(cpu::Context& ctx, View<T const, HostSpace> dy, View<T, HostSpace> dx, double p, DropoutKey key) {
  dropout_forward(ctx, dy, dx, p, key);
}

}  // namespace hseq::ops

#if defined(__CUDACC__) && defined(HSEQ_ENABLE_CUDA)
#include "hseq/ops/cuda/dropout.cuh"
#endif
