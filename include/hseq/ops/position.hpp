// SPDX-License-Identifier: MIT
/// @file
/// @brief Position encodings added to a [B, T, C] sequence (a learned table or sinusoids), and the
/// distance-indexed score rows of relative attention (spread over the keys, and the adjoint).
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

// ---------------------------------------------------------------------------------------------
// Relative positions (Transformer-XL): a row of scores indexed by distance, spread over the keys
// by direct indexing, and its adjoint.

namespace detail {
/// buf [rows, L] with rows a multiple of t, and 1 <= dr <= L = m + t.
template <class V>
void check_relative_rows(V const& buf, std::int64_t m, std::int64_t t, std::int64_t dr, char const* who) {
  HSEQ_CHECK(m >= 0 && t >= 1 && buf.rank() == 2 && buf.size(1) == m + t && buf.size(0) % t == 0,
             who << ": buffer " << buf.shape << " must be [rows, M + T] = [k * " << t << ", " << m + t
                 << "] (M = " << m << ", T = " << t << ")");
  HSEQ_CHECK(dr >= 1 && dr <= m + t, who << ": " << dr << " distance columns, expected 1.." << m + t);
}
}  // namespace detail

/// In place on each row r of buf [R, L] (L = M + T; the row's query is i = r % T and sees the
/// n = M + i + 1 keys j < n), which holds P[δ] for the distances δ = 0..Dr-1 in columns [0, Dr):
/// row[j] = P[min(n - 1 - j, Dr - 1)] for j < n (n - 1 - j is the distance from the query to key
/// j; Dr - 1 collects every longer distance, which is the clamp), row[j] = 0 for j >= n.
/// Used by nn::RelativeAttention to turn its distance scores into the attention core's dense bias.
template <class T>
void spread_relative_rows(cpu::Context&, View<T, HostSpace> buf, std::int64_t m, std::int64_t t, std::int64_t dr) {
  detail::check_relative_rows(buf, m, t, dr, "spread_relative_rows");
  std::int64_t const l = m + t, rows = buf.size(0);
  // With c = min(n, Dr) distances that occur unclamped: reverse [0, c) so that row[k] = P[c - 1 - k];
  // move it to [n - c, n), giving row[j] = P[n - 1 - j] there; the j < n - c (only when c = Dr)
  // have distances >= Dr, so they take P[Dr - 1], now at row[n - c].
#pragma omp parallel for schedule(static) if (rows * l > kParallelGrain)
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int64_t const n = m + r % t + 1, c = std::min(n, dr);
    T* row = buf.data + r * l;
    std::reverse(row, row + c);
    if (n > c) {
      std::copy_backward(row, row + c, row + n);
      T const far = row[n - c];
      std::fill(row, row + (n - c), far);
    }
    std::fill(row + n, row + l, T(0));
  }
}

/// The adjoint of `spread_relative_rows`, in place on each row of g [R, L] (zero at the masked
/// j >= n): row[δ] = sum of g[j] over the visible j with min(n - 1 - j, Dr - 1) = δ, for
/// δ = 0..Dr-1 (0 for distances that do not occur in the row, δ >= n); columns >= Dr are left
/// as they are (scratch).
template <class T>
void gather_relative_rows(cpu::Context&, View<T, HostSpace> g, std::int64_t m, std::int64_t t, std::int64_t dr) {
  detail::check_relative_rows(g, m, t, dr, "gather_relative_rows");
  std::int64_t const l = m + t, rows = g.size(0);
#pragma omp parallel for schedule(static) if (rows * l > kParallelGrain)
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int64_t const n = m + r % t + 1, c = std::min(n, dr);
    T* row = g.data + r * l;
    if (n > c) {
      // j = 0..n-c all have distance >= Dr - 1 (clamped): their sum is the gradient of P[Dr - 1].
      T far = T(0);
      for (std::int64_t j = 0; j <= n - c; ++j) far += row[j];
      row[n - c] = far;
      std::copy(row + (n - c), row + n, row);  // left shift: row[k] = g[n - c + k]
    }
    std::reverse(row, row + c);  // row[δ] = g[n - 1 - δ]
    std::fill(row + c, row + dr, T(0));
  }
}

}  // namespace hseq::ops

#if defined(__CUDACC__) && defined(HSEQ_ENABLE_CUDA)
#include "hseq/ops/cuda/position.cuh"
#endif
