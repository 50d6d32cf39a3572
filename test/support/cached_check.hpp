// SPDX-License-Identifier: MIT
/// @file
/// @brief Cached generation against the full forward, shared by the CPU model tests.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"

namespace hseq::test {

/// Feeds positions [0, len) of `ids` [B, t] to `m.forward_step` over `cache` (from position 0):
/// `prefill` positions in the first call, then one at a time, with scratch from `ws`; each call's
/// arena peak must stay within `plan(n, pos)`. Returns the largest |difference| between the step
/// logits and the rows of `full` [B, t, V], the full forward's logits over the same ids.
template <class M, class Cache, class Plan>
double cached_vs_full_worst(cpu::Context& ctx, M const& m, Cache& cache, Tensor<std::int32_t, cpu> const& ids,
                            View<double const, HostSpace> full, std::int64_t len, std::int64_t prefill,
                            Workspace<cpu>& ws, Plan plan) {
  std::int64_t const bsz = ids.shape()[0], t = ids.shape()[1], v = full.size(2);
  double worst = 0;
  std::int64_t pos = 0;
  while (pos < len) {
    std::int64_t n = std::min(pos == 0 ? prefill : std::int64_t(1), len - pos);
    Tensor<std::int32_t, cpu> chunk(Shape{bsz, n});
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t i = 0; i < n; ++i) chunk.data()[b * n + i] = ids.data()[b * t + pos + i];
    Tensor<double, cpu> logits(Shape{bsz, n, v});
    auto sa = ws.arena();
    m.forward_step(ctx, chunk.cview(), cache, pos, logits.view(), sa);
    CHECK(sa.high_water() <= plan(n, pos));
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t c = 0; c < v; ++c)
          worst = std::max(worst, std::abs(full[(b * t + pos + i) * v + c] - logits.data()[(b * n + i) * v + c]));
    pos += n;
  }
  return worst;
}

}  // namespace hseq::test
