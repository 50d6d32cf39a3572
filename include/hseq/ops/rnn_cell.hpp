// SPDX-License-Identifier: MIT
/// @file
/// @brief GRU and LSTM cell element-wise math for one time step (PyTorch gate order and equations).
///
/// The recurrent modules do the matrix products (one GEMM for all input projections, one per step
/// for the hidden projection); these ops do the gate non-linearities. Inputs are `Mat`s so that a
/// time step of a batch-first [B, T, G] buffer (row stride T*G) is addressed without a copy.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/error.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/gemm.hpp"
#include "hseq/ops/mat.hpp"

namespace hseq::ops {

namespace detail {
template <class T>
HSEQ_HOST_DEVICE T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}
inline void check_cell(std::int64_t b, std::int64_t cols, std::int64_t want_b, std::int64_t want_cols, char const* who,
                       char const* what) {
  HSEQ_CHECK(b == want_b && cols == want_cols,
             who << ": " << what << " is [" << b << ", " << cols << "], expected [" << want_b << ", " << want_cols << "]");
}
}  // namespace detail

namespace detail {
/// The shape checks of the cell ops, shared by the CPU and CUDA overloads (h / dh give B and H).
template <class A, class C>
void check_gru_forward(A const& xp, A const& gh, A const& h_prev, C const& gates, std::int64_t bsz, std::int64_t hd) {
  detail::check_cell(xp.rows, xp.cols, bsz, 3 * hd, "gru_cell_forward", "xp");
  detail::check_cell(gh.rows, gh.cols, bsz, 3 * hd, "gru_cell_forward", "gh");
  detail::check_cell(h_prev.rows, h_prev.cols, bsz, hd, "gru_cell_forward", "h_prev");
  detail::check_cell(gates.rows, gates.cols, bsz, 4 * hd, "gru_cell_forward", "gates");
}
template <class A, class C>
void check_gru_backward(A const& h_prev, A const& gates, C const& dxp, C const& dgh, C const& dh_prev, std::int64_t bsz,
                        std::int64_t hd) {
  detail::check_cell(h_prev.rows, h_prev.cols, bsz, hd, "gru_cell_backward", "h_prev");
  detail::check_cell(gates.rows, gates.cols, bsz, 4 * hd, "gru_cell_backward", "gates");
  detail::check_cell(dxp.rows, dxp.cols, bsz, 3 * hd, "gru_cell_backward", "dxp");
  detail::check_cell(dgh.rows, dgh.cols, bsz, 3 * hd, "gru_cell_backward", "dgh");
  detail::check_cell(dh_prev.rows, dh_prev.cols, bsz, hd, "gru_cell_backward", "dh_prev");
}
template <class A, class C>
void check_lstm_forward(A const& xp, A const& gh, A const& c_prev, C const& acts, C const& c, std::int64_t bsz,
                        std::int64_t hd) {
  detail::check_cell(xp.rows, xp.cols, bsz, 4 * hd, "lstm_cell_forward", "xp");
  detail::check_cell(gh.rows, gh.cols, bsz, 4 * hd, "lstm_cell_forward", "gh");
  detail::check_cell(c_prev.rows, c_prev.cols, bsz, hd, "lstm_cell_forward", "c_prev");
  detail::check_cell(acts.rows, acts.cols, bsz, 4 * hd, "lstm_cell_forward", "acts");
  detail::check_cell(c.rows, c.cols, bsz, hd, "lstm_cell_forward", "c");
}
template <class A, class C>
void check_lstm_backward(A const& dc, A const& c_prev, A const& c, A const& acts, C const& dgates, C const& dc_prev,
                         std::int64_t bsz, std::int64_t hd) {
  detail::check_cell(dc.rows, dc.cols, bsz, hd, "lstm_cell_backward", "dc");
  detail::check_cell(c_prev.rows, c_prev.cols, bsz, hd, "lstm_cell_backward", "c_prev");
  detail::check_cell(c.rows, c.cols, bsz, hd, "lstm_cell_backward", "c");
  detail::check_cell(acts.rows, acts.cols, bsz, 4 * hd, "lstm_cell_backward", "acts");
  detail::check_cell(dgates.rows, dgates.cols, bsz, 4 * hd, "lstm_cell_backward", "dgates");
  detail::check_cell(dc_prev.rows, dc_prev.cols, bsz, hd, "lstm_cell_backward", "dc_prev");
}
}  // namespace detail

/// GRU step. xp = x W_ih^T + b_ih, gh = h W_hh^T + b_hh (both [B, 3H], gate blocks r, z, n):
///   r = σ(xp_r + gh_r), z = σ(xp_z + gh_z), n = tanh(xp_n + r ⊙ gh_n), h = (1 - z) ⊙ n + z ⊙ h_prev.
/// Saves gates [B, 4H] = (r, z, n, gh_n) for backward.
template <class T>
void gru_cell_forward(cpu::Context&, Mat<T const, HostSpace> xp, Mat<T const, HostSpace> gh,
                      Mat<T const, HostSpace> h_prev, Mat<T, HostSpace> gates, Mat<T, HostSpace> h) {
  std::int64_t bsz = h.rows, hd = h.cols;
  detail::check_gru_forward(xp, gh, h_prev, gates, bsz, hd);
#pragma omp parallel for schedule(static) if (bsz * hd > kParallelGrain)
  for (std::int64_t b = 0; b < bsz; ++b) {
    T const* x = xp.data + b * xp.ld;
    T const* g = gh.data + b * gh.ld;
    T const* hp = h_prev.data + b * h_prev.ld;
    T* s = gates.data + b * gates.ld;
    T* ho = h.data + b * h.ld;
    for (std::int64_t j = 0; j < hd; ++j) {
      T r = detail::sigmoid(x[j] + g[j]);
      T z = detail::sigmoid(x[hd + j] + g[hd + j]);
      T n = std::tanh(x[2 * hd + j] + r * g[2 * hd + j]);
      s[j] = r;
      s[hd + j] = z;
      s[2 * hd + j] = n;
      s[3 * hd + j] = g[2 * hd + j];
      ho[j] = (T(1) - z) * n + z * hp[j];
    }
  }
}

/// GRU step backward. dh: gradient of the step's output state. Writes (overwrites) dxp and dgh
/// (gradients of the pre-activations xp and gh) and dh_prev = dh ⊙ z (the direct path; the caller
/// adds dgh W_hh).
template <class T>
void gru_cell_backward(cpu::Context&, Mat<T const, HostSpace> dh, Mat<T const, HostSpace> h_prev,
                       Mat<T const, HostSpace> gates, Mat<T, HostSpace> dxp, Mat<T, HostSpace> dgh,
                       Mat<T, HostSpace> dh_prev) {
  std::int64_t bsz = dh.rows, hd = dh.cols;
  detail::check_gru_backward(h_prev, gates, dxp, dgh, dh_prev, bsz, hd);
#pragma omp parallel for schedule(static) if (bsz * hd > kParallelGrain)
  for (std::int64_t b = 0; b < bsz; ++b) {
    T const* d = dh.data + b * dh.ld;
    T const* hp = h_prev.data + b * h_prev.ld;
    T const* s = gates.data + b * gates.ld;
    T* dx = dxp.data + b * dxp.ld;
    T* dg = dgh.data + b * dgh.ld;
    T* dhp = dh_prev.data + b * dh_prev.ld;
    for (std::int64_t j = 0; j < hd; ++j) {
      T r = s[j], z = s[hd + j], n = s[2 * hd + j], ghn = s[3 * hd + j];
      T dn = d[j] * (T(1) - z) * (T(1) - n * n);
      T dz = d[j] * (hp[j] - n) * z * (T(1) - z);
      T dr = dn * ghn * r * (T(1) - r);
      dx[j] = dr;
      dx[hd + j] = dz;
      dx[2 * hd + j] = dn;
      dg[j] = dr;
      dg[hd + j] = dz;
      dg[2 * hd + j] = dn * r;
      dhp[j] = d[j] * z;
    }
  }
}

/// LSTM step (gate blocks i, f, g, o): pre = xp + gh [B, 4H];
///   i = σ, f = σ, g = tanh, o = σ;  c = f ⊙ c_prev + i ⊙ g;  h = o ⊙ tanh(c).
/// Saves the activated gates acts [B, 4H]; c and h are written.
template <class T>
void lstm_cell_forward(cpu::Context&, Mat<T const, HostSpace> xp, Mat<T const, HostSpace> gh,
                       Mat<T const, HostSpace> c_prev, Mat<T, HostSpace> acts, Mat<T, HostSpace> c,
                       Mat<T, HostSpace> h) {
  std::int64_t bsz = h.rows, hd = h.cols;
  detail::check_lstm_forward(xp, gh, c_prev, acts, c, bsz, hd);
#pragma omp parallel for schedule(static) if (bsz * hd > kParallelGrain)
  for (std::int64_t b = 0; b < bsz; ++b) {
    T const* x = xp.data + b * xp.ld;
    T const* g = gh.data + b * gh.ld;
    T const* cp = c_prev.data + b * c_prev.ld;
    T* a = acts.data + b * acts.ld;
    T* co = c.data + b * c.ld;
    T* ho = h.data + b * h.ld;
    for (std::int64_t j = 0; j < hd; ++j) {
      T i = detail::sigmoid(x[j] + g[j]);
      T f = detail::sigmoid(x[hd + j] + g[hd + j]);
      T gg = std::tanh(x[2 * hd + j] + g[2 * hd + j]);
      T o = detail::sigmoid(x[3 * hd + j] + g[3 * hd + j]);
      T cn = f * cp[j] + i * gg;
      a[j] = i;
      a[hd + j] = f;
      a[2 * hd + j] = gg;
      a[3 * hd + j] = o;
      co[j] = cn;
      ho[j] = o * std::tanh(cn);
    }
  }
}

/// LSTM step backward. dh: gradient of h; dc: gradient reaching c from the future (the next step's
/// dc_prev, or the final cell-state gradient). Writes dgates [B, 4H] (gradient of the
/// pre-activations, shared by xp and gh) and dc_prev. dh_prev is the caller's dgates W_hh.
template <class T>
void lstm_cell_backward(cpu::Context&, Mat<T const, HostSpace> dh, Mat<T const, HostSpace> dc,
                        Mat<T const, HostSpace> c_prev, Mat<T const, HostSpace> c, Mat<T const, HostSpace> acts,
                        Mat<T, HostSpace> dgates, Mat<T, HostSpace> dc_prev) {
  std::int64_t bsz = dh.rows, hd = dh.cols;
  detail::check_lstm_backward(dc, c_prev, c, acts, dgates, dc_prev, bsz, hd);
#pragma omp parallel for schedule(static) if (bsz * hd > kParallelGrain)
  for (std::int64_t b = 0; b < bsz; ++b) {
    T const* dhr = dh.data + b * dh.ld;
    T const* dcr = dc.data + b * dc.ld;
    T const* cp = c_prev.data + b * c_prev.ld;
    T const* cr = c.data + b * c.ld;
    T const* a = acts.data + b * acts.ld;
    T* dg = dgates.data + b * dgates.ld;
    T* dcp = dc_prev.data + b * dc_prev.ld;
    for (std::int64_t j = 0; j < hd; ++j) {
      T i = a[j], f = a[hd + j], g = a[2 * hd + j], o = a[3 * hd + j];
      T tc = std::tanh(cr[j]);
      T dct = dcr[j] + dhr[j] * o * (T(1) - tc * tc);
      dg[j] = dct * g * i * (T(1) - i);
      dg[hd + j] = dct * cp[j] * f * (T(1) - f);
      dg[2 * hd + j] = dct * i * (T(1) - g * g);
      dg[3 * hd + j] = dhr[j] * tc * o * (T(1) - o);
      dcp[j] = dct * f;
    }
  }
}

// ---- Ragged batches: per-sequence lengths ----
// The recurrent modules take optional lengths [B] (int32, host memory): sequence b has len[b] valid
// steps; for t >= len[b] its state is carried unchanged and its output rows are zero, so padding
// never reaches a state, an output or a gradient. These helpers compose the copy / fill ops of each
// backend (one row per call), so they serve the CPU and the CUDA modules alike.

/// Throws unless lengths is empty (every sequence has all t steps) or has bsz entries in [0, t].
inline void check_lengths(std::span<std::int32_t const> lengths, std::int64_t bsz, std::int64_t t, char const* who) {
  if (lengths.empty()) return;
  HSEQ_CHECK(std::int64_t(lengths.size()) == bsz,
             who << ": " << lengths.size() << " sequence lengths for a batch of " << bsz);
  for (std::size_t b = 0; b < lengths.size(); ++b)
    HSEQ_CHECK(lengths[b] >= 0 && lengths[b] <= t,
               who << ": length " << lengths[b] << " of sequence " << b << " outside [0, T = " << t << "]");
}
/// Whether any sequence has finished before step `step` (some len[b] <= step).
inline bool any_finished(std::span<std::int32_t const> lengths, std::int64_t step) {
  for (std::int32_t l : lengths)
    if (step >= l) return true;
  return false;
}
/// dst[b] = src[b] for every row b whose sequence has finished (step >= len[b]).
template <class T, class Ctx, class Space>
void copy_finished_rows(Ctx& ctx, std::span<std::int32_t const> lengths, std::int64_t step, Mat<T const, Space> src,
                        Mat<T, Space> dst) {
  for (std::size_t b = 0; b < lengths.size(); ++b)
    if (step >= lengths[b])
      copy_mat<T>(ctx, Mat<T const, Space>(src.data + std::int64_t(b) * src.ld, 1, src.cols, src.ld),
                  Mat<T, Space>(dst.data + std::int64_t(b) * dst.ld, 1, dst.cols, dst.ld));
}
/// m[b] = 0 for every row b whose sequence has finished (step >= len[b]).
template <class T, class Ctx, class Space>
void zero_finished_rows(Ctx& ctx, std::span<std::int32_t const> lengths, std::int64_t step, Mat<T, Space> m) {
  for (std::size_t b = 0; b < lengths.size(); ++b)
    if (step >= lengths[b]) fill<T>(ctx, View<T, Space>(m.data + std::int64_t(b) * m.ld, Shape{m.cols}), T(0));
}

}  // namespace hseq::ops

#if defined(__CUDACC__) && defined(HSEQ_ENABLE_CUDA)
#include "hseq/ops/cuda/rnn_cell.cuh"
#endif
