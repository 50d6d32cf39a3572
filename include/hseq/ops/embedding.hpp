// SPDX-License-Identifier: MIT
/// @file
/// @brief Embedding gather (forward) and scatter-add (backward).
#pragma once

#include <algorithm>
#include <cstdint>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::ops {

/// out[n, :] = table[ids[n], :]. table: [V, C]; ids: N ints; out: [N, C] (any rank, rows folded).
template <class T>
void embedding_forward(cpu::Context&, View<T const, HostSpace> table, View<std::int32_t const, HostSpace> ids,
                       View<T, HostSpace> out) {
  std::int64_t v = table.rows(), c = table.cols(), n = ids.numel();
  HSEQ_CHECK(out.rows() == n && out.cols() == c,
             "embedding_forward: out " << out.shape << " must be [" << n << ", " << c << "] for ids " << ids.shape
                                       << " and table " << table.shape);
  for (std::int64_t i = 0; i < n; ++i)
    HSEQ_CHECK(ids[i] >= 0 && ids[i] < v,
               "embedding_forward: id " << ids[i] << " at position " << i << " outside the table of " << v << " rows");
#pragma omp parallel for schedule(static) if (n * c > kParallelGrain)
  for (std::int64_t i = 0; i < n; ++i) std::copy_n(table.data + std::int64_t(ids[i]) * c, c, out.data + i * c);
}

/// dtable[ids[n], :] += dout[n, :]. Threads own disjoint column blocks, so repeated ids never race
/// and the summation order is fixed (deterministic).
template <class T>
void embedding_backward(cpu::Context&, View<std::int32_t const, HostSpace> ids, View<T const, HostSpace> dout,
                        View<T, HostSpace> dtable) {
  std::int64_t c = dtable.cols(), n = ids.numel(), v = dtable.rows();
  HSEQ_CHECK(dout.rows() == n && dout.cols() == c,
             "embedding_backward: dout " << dout.shape << " must be [" << n << ", " << c << "]");
  constexpr std::int64_t kBlock = 64;
  std::int64_t blocks = (c + kBlock - 1) / kBlock;
  for (std::int64_t i = 0; i < n; ++i)
    HSEQ_CHECK(ids[i] >= 0 && ids[i] < v,
               "embedding_backward: id " << ids[i] << " at position " << i << " outside the table of " << v << " rows");
#pragma omp parallel for schedule(static) if (n * c > kParallelGrain)
  for (std::int64_t blk = 0; blk < blocks; ++blk) {
    std::int64_t c0 = blk * kBlock, c1 = std::min(c, c0 + kBlock);
    for (std::int64_t i = 0; i < n; ++i) {
      T* dst = dtable.data + std::int64_t(ids[i]) * c;
      T const* src = dout.data + i * c;
      for (std::int64_t j = c0; j < c1; ++j) dst[j] += src[j];
    }
  }
}

}  // namespace hseq::ops

#if defined(__CUDACC__) && defined(HSEQ_ENABLE_CUDA)
#include "hseq/ops/cuda/embedding.cuh"
#endif
