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

/// A 64-bit stream id derived from (stream, tag, i): two rounds of the splitmix64 finaliser, so
/// nearby inputs (layer 0, 1, 2, ...; step 7, 8) give unrelated outputs and a tag keeps the
/// derivations of different purposes (a layer's sub-stream, a site's key, a batch element's key)
/// apart. Pure and cheap: the modules derive their keys on the host at every call instead of
/// storing them.
inline std::uint64_t derive_stream(std::uint64_t stream, std::uint64_t tag, std::uint64_t i) {
  auto fmix = [](std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  return fmix(fmix(stream ^ (tag * 0x9E3779B97F4A7C15ull)) + i * 0xD1B54A32D192ED03ull + 1);
}

/// Identifies one dropout mask: element i is kept iff philox_uniform(seed, stream, i) >= p.
struct DropoutKey {
  std::uint64_t seed = 0, stream = 0;
  /// Tag of `sub`'s derivation.
  static constexpr std::uint64_t kSubTag = 0x5B;
  /// The key of part i of a larger mask (the attention core: one per batch element), a distinct
  /// stream of the same seed.
  DropoutKey sub(std::uint64_t i) const { return {seed, derive_stream(stream, kSubTag, i)}; }
};

/// Whether element `index` of mask `key` survives dropout with probability p (the rule
/// dropout_forward applies, for code that applies the mask to data it does not hold as one
/// buffer: the CPU attention core).
inline bool dropout_kept(DropoutKey key, std::uint64_t index, double p) {
  return p == 0.0 || philox_uniform(key.seed, key.stream, index) >= p;
}

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
