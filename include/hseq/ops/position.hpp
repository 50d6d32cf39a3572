// SPDX-License-Identifier: MIT
/// @file
/// @brief Position encodings added to a [B, T, C] sequence: a learned table or sinusoids.
#pragma once

#include <cmath>
#include <cstdint>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::ops {

namespace detail {
/// x (or dy) is [B, T, C] and rows [offset, offset + T) of table (or dtable) [T_max, C] exist.
template <class X, class Tb>
void check_position_table(X const& x, Tb const& table, std::int64_t offset, char const* who) {
  HSEQ_CHECK(x.rank() == 3 && table.rank() == 2 && x.size(2) == table.size(1),
             who << ": x " << x.shape << " must be [B, T, C] and table " << table.shape << " [T_max, C]");
  std::int64_t t = x.size(1);
  HSEQ_CHECK(offset >= 0 && offset + t <= table.size(0),
             who << ": positions [" << offset << ", " << offset + t << ") exceed the table's " << table.size(0)
                 << " positions (raise max_len)");
}
}  // namespace detail

/// x[b, t, :] += table[offset + t, :]. x: [B, T, C]; table: [T_max, C].
template <class T>
void add_position_table(cpu::Context&, View<T, HostSpace> x, View<T const, HostSpace> table, std::int64_t offset) {
  detail::check_position_table(x, table, offset, "add_position_table");
  std::int64_t bsz = x.size(0), t = x.size(1), c = x.size(2);
#pragma omp parallel for schedule(static) if (bsz * t * c > kParallelGrain)
  for (std::int64_t r = 0; r < bsz * t; ++r) {
    T const* p = table.data + (offset + r % t) * c;
    T* xr = x.data + r * c;
    for (std::int64_t j = 0; j < c; ++j) xr[j] += p[j];
  }
}

/// dtable[offset + t, :] += sum_b dy[b, t, :].
template <class T>
void position_table_backward(cpu::Context&, View<T const, HostSpace> dy, View<T, HostSpace> dtable,
                             std::int64_t offset) {
  detail::check_position_table(dy, dtable, offset, "position_table_backward");
  std::int64_t bsz = dy.size(0), t = dy.size(1), c = dy.size(2);
#pragma omp parallel for schedule(static) if (bsz * t * c > kParallelGrain)
  for (std::int64_t s = 0; s < t; ++s) {
    T* dst = dtable.data + (offset + s) * c;
    for (std::int64_t b = 0; b < bsz; ++b) {
      T const* src = dy.data + (b * t + s) * c;
      for (std::int64_t j = 0; j < c; ++j) dst[j] += src[j];
    }
  }
}

namespace detail {
/// Sinusoid of Vaswani et al.: PE(p, 2i) = sin(p / 10000^(2i/C)), PE(p, 2i+1) = cos(same angle).
template <class T>
HSEQ_HOST_DEVICE T sinusoid(std::int64_t pos, std::int64_t j, std::int64_t c) {
  double freq = std::exp(-std::log(10000.0) * double(j - (j & 1)) / double(c));
  double a = double(pos) * freq;
  return T((j & 1) ? std::cos(a) : std::sin(a));
}
}  // namespace detail

/// x[b, t, :] += PE(offset + t). x: [B, T, C]. Backward is the identity.
template <class T>
void add_sinusoidal(cpu::Context&, View<T, HostSpace> x, std::int64_t offset) {
  HSEQ_CHECK(x.rank() == 3, "add_sinusoidal: x " << x.shape << " must be [B, T, C]");
  std::int64_t bsz = x.size(0), t = x.size(1), c = x.size(2);
#pragma omp parallel for schedule(static) if (bsz * t * c > kParallelGrain)
  for (std::int64_t r = 0; r < bsz * t; ++r) {
    T* xr = x.data + r * c;
    for (std::int64_t j = 0; j < c; ++j) xr[j] += detail::sinusoid<T>(offset + r % t, j, c);
  }
}

}  // namespace hseq::ops

#if defined(__CUDACC__) && defined(HSEQ_ENABLE_CUDA)
#include "hseq/ops/cuda/position.cuh"
#endif
