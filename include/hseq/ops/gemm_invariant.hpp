// SPDX-License-Identifier: MIT
/// @file
/// @brief A batch-invariant CPU GEMM: each element of C is one fused multiply-add chain over k in
/// order, so its bits do not depend on the product's shape, the element's position or the threads.
///
/// Why: optimized BLAS kernels round an output row differently depending on which register tile
/// covers it. OpenBLAS's Haswell/Zen sgemm computes the rows of a full 12- or 4-row panel and those
/// of a 1-3 row tail with different instruction sequences, and its thread split moves with the row
/// count. A row of C = A B then changes in its last bits when only the *number* of rows changes.
/// Models whose shapes depend on the data (a delimiter segmenter's segment count, a rule router's
/// chunk count) change their GEMM shapes when a later token changes, and so move earlier logits by
/// an ulp with no information flowing back. With `cpu::Context::set_batch_invariant(true)` every
/// CPU GEMM runs here instead: the causality tests of those models check bit-identity with it, and a
/// user gets logits that do not depend on the batch or the sequence they were computed in.
///
/// The kernel: op(B) is packed per kNr-column panel (zero-padded), a register tile of kMr rows x kNr
/// columns accumulates `acc = fma(a[i, p], b[p, j], acc)` for p = 0, 1, ..., k-1, and
/// C = alpha * acc + beta * C. Rows past m and columns past n in a tile compute on zeros and are not
/// stored, so a tail tile runs the same instructions as a full one. It runs at about half the BLAS
/// rate (BM_gemm_invariant against BM_gemm, bench/results/gemm_invariant/); it is a mode for
/// reproducibility, not for speed.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "hseq/core/memory_space.hpp"
#include "hseq/ops/mat.hpp"

namespace hseq::ops::detail {

/// C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C (beta == 0: C is not read), batch-invariant
/// (see the file comment). ta / tb: whether A / B are used transposed.
template <class T>
void gemm_invariant_host(bool ta, Mat<T const, HostSpace> a, bool tb, Mat<T const, HostSpace> b,
                         Mat<T, HostSpace> c, T alpha, T beta) {
  constexpr std::int64_t kMr = 6;                   // rows of a register tile
  constexpr std::int64_t kNr = 64 / sizeof(T);      // columns: 16 floats / 8 doubles (2 AVX2 registers)
  constexpr std::int64_t kRowsPerTask = 16 * kMr;   // rows sharing one packed panel
  std::int64_t const m = c.rows, n = c.cols, k = ta ? a.rows : a.cols;
  if (m == 0 || n == 0) return;
  std::int64_t const col_tiles = (n + kNr - 1) / kNr, row_tasks = (m + kRowsPerTask - 1) / kRowsPerTask;
  std::int64_t const tasks = col_tiles * row_tasks;
  // Threads only change which task runs where, never an element's arithmetic.
#pragma omp parallel if (tasks > 1 && m * n * k >= (std::int64_t(1) << 18))
  {
    // Grow-only packing buffers per thread: they allocate on the first (largest) product, not per call.
    thread_local std::vector<T> panel, rows;
    if (panel.size() < std::size_t(k * kNr)) panel.resize(std::size_t(k * kNr));
    if (rows.size() < std::size_t(k * kMr)) rows.resize(std::size_t(k * kMr));
#pragma omp for schedule(static)
    for (std::int64_t task = 0; task < tasks; ++task) {
      std::int64_t const j0 = (task % col_tiles) * kNr, nb = std::min(kNr, n - j0);
      std::int64_t const i_begin = (task / col_tiles) * kRowsPerTask, i_end = std::min(m, i_begin + kRowsPerTask);
      T* pp = panel.data();
      for (std::int64_t p = 0; p < k; ++p)  // panel[p, j] = op(B)[p, j0 + j], zero past n
        for (std::int64_t j = 0; j < kNr; ++j)
          pp[p * kNr + j] = j < nb ? (tb ? b.data[(j0 + j) * b.ld + p] : b.data[p * b.ld + j0 + j]) : T(0);
      for (std::int64_t i0 = i_begin; i0 < i_end; i0 += kMr) {
        std::int64_t const mr = std::min(kMr, i_end - i0);
        T* ap = rows.data();  // ap[p, r] = op(A)[i0 + r, p], zero past m
        for (std::int64_t p = 0; p < k; ++p)
          for (std::int64_t r = 0; r < kMr; ++r)
            ap[p * kMr + r] = r < mr ? (ta ? a.data[p * a.ld + i0 + r] : a.data[(i0 + r) * a.ld + p]) : T(0);
        T acc[kMr][kNr] = {};
        for (std::int64_t p = 0; p < k; ++p) {
          T const* bp = pp + p * kNr;
          T const* av = ap + p * kMr;
          for (std::int64_t r = 0; r < kMr; ++r) {
#pragma omp simd
            for (std::int64_t j = 0; j < kNr; ++j) acc[r][j] = std::fma(av[r], bp[j], acc[r][j]);
          }
        }
        for (std::int64_t r = 0; r < mr; ++r) {
          T* cr = c.data + (i0 + r) * c.ld + j0;
          for (std::int64_t j = 0; j < nb; ++j) cr[j] = beta == T(0) ? alpha * acc[r][j] : alpha * acc[r][j] + beta * cr[j];
        }
      }
    }
  }
}

}  // namespace hseq::ops::detail
