// SPDX-License-Identifier: MIT
/// @file
/// @brief `EmaDechunk`: H-Net's de-chunking smoother (Hwang, Wang and Gu 2025, the dechunk layer of
/// hnet/modules/dc.py; spec segmentation.md §2.2) over a router level's segment outputs:
///
///   z̃_j = P_j z_j + (1 - P_j) z̃_{j-1}       z̃_{-1} = 0, per batch row      z, z̃: [B, C, d]
///
/// where P_j is the router's boundary probability at segment j's emit (p_{e_j}; p_0 = 1, so z̃_0 = z_0).
/// A confident boundary passes its segment through; a doubtful one blends it with what came
/// before. It gives the router a gradient that does not go through the straight-through estimator:
///   dL/dP_j = <g_j, z_j - z̃_{j-1}>,   g_j = dL/dz̃_j + (1 - P_{j+1}) g_{j+1}   (the total gradient of z̃_j)
///   dL/dz_j = P_j g_j
/// z̃_j reads z_{<=j} and P_{<=j}, so it is causal at the segment rate (segment j is used from e_j on).
///
/// Computation: the recurrence unrolled into a lower-triangular matrix per row,
///   z̃_b = M_b z_b,   M_b[j, i] = P_i prod_{m=i+1..j} (1 - P_m)   (i <= j),
/// built on the host in double and applied by one strided-batched GEMM; backward applies M_b^T
/// (dL/dz) and N_b^T with N_b[j, i] = prod_{m=i+1..j} (1 - P_m) (g), and takes the dot products of
/// dL/dP as strided-batched GEMMs: composed from verified ops, no new kernel. Padding segments (past
/// a row's count) get P = 1: they pass through and nothing real reads them.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/gemm.hpp"

namespace hseq::hier {

template <Backend B, class T>
class EmaDechunk {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;

  struct Config {
    std::int64_t dim = 0;
  };
  /// What backward reads, and host staging (kept for its capacity: no allocation once warm).
  struct Saved {
    CView z, zs;            // [B, C, d] the segment outputs and their smoothed values
    CView smooth;           // [B, C, C] M_b (workspace)
    std::vector<double> p;  // [B * C] P_j (1 on padding)
    std::vector<std::int32_t> count;  // [B] real segments per row
    std::vector<T> host, dots;        // staging: [B * C * C] M, then N; [2 * B * C] backward's dot products
  };
  /// Cached generation: each row's last z̃.
  struct StepState {
    Tensor<T, B> last;  // [B, 1, d]
  };

  explicit EmaDechunk(Config c) : cfg_(c) {
    HSEQ_CHECK(c.dim > 0, "EmaDechunk: the width " << c.dim << " must be positive");
  }
  Config const& config() const { return cfg_; }

  std::size_t forward_workspace(std::int64_t batch, std::int64_t c) const { return aligned_bytes<T>(batch * c * c); }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t c) const {
    return aligned_bytes<T>(batch * c * c) + aligned_bytes<T>(batch * c * cfg_.dim) + aligned_bytes<T>(2 * batch * c);
  }

  /// z̃ [B, C, d] from z [B, C, d] and P (host, [B * C]; row b's segments past count[b] are
  /// padding). s.smooth is carved from ws and must live until backward.
  void forward(Ctx& ctx, CView z, std::span<double const> p, std::span<std::int32_t const> count, MView zs, Saved& s,
               Arena<Space>& ws) const {
    std::int64_t d = cfg_.dim;
    HSEQ_CHECK(z.rank() == 3 && z.size(2) == d && zs.shape == z.shape,
               "EmaDechunk: z " << z.shape << ", z~ " << zs.shape << " must be [B, C, " << d << "]");
    std::int64_t bsz = z.size(0), c = z.size(1);
    HSEQ_CHECK(std::int64_t(p.size()) == bsz * c && std::int64_t(count.size()) == bsz,
               "EmaDechunk: " << p.size() << " probabilities and " << count.size() << " counts for z " << z.shape);
    s.z = z;
    s.zs = zs;
    s.p.assign(std::size_t(bsz * c), 1.0);
    s.count.assign(count.begin(), count.end());
    for (std::int64_t b = 0; b < bsz; ++b) {
      HSEQ_CHECK(count[std::size_t(b)] >= 0 && count[std::size_t(b)] <= c,
                 "EmaDechunk: row " << b << " has " << count[std::size_t(b)] << " segments of " << c);
      for (std::int64_t j = 0; j < count[std::size_t(b)]; ++j) {
        double pj = p[std::size_t(b * c + j)];
        HSEQ_CHECK(pj >= 0.0 && pj <= 1.0, "EmaDechunk: P " << pj << " of row " << b << " segment " << j
                                                            << " is not a probability");
        s.p[std::size_t(b * c + j)] = pj;
      }
    }
    build(s.p, bsz, c, true, s.host);
    MView m = ws.template take<T>(Shape{bsz, c, c}, "ema.smooth");
    B::upload(ctx, m.data, s.host.data(), s.host.size());
    s.smooth = m;
    ops::gemm_strided_batched<T>(ctx, bsz, ops::Trans::kNo, {m.data, c, c, c}, c * c, ops::Trans::kNo,
                                 {z.data, c, d, d}, c * d, {zs.data, c, d, d}, c * d);
  }

  /// dz [B, C, d] (overwritten) and dp [B * C] (host, overwritten; 0 on padding) from dz̃.
  void backward(Ctx& ctx, Saved& s, CView dzs, MView dz, std::span<double> dp, Arena<Space>& ws) const {
    std::int64_t d = cfg_.dim, bsz = s.z.size(0), c = s.z.size(1), n = bsz * c;
    HSEQ_CHECK(dzs.shape == s.z.shape && dz.shape == s.z.shape && std::int64_t(dp.size()) == n,
               "EmaDechunk::backward: dz~ " << dzs.shape << ", dz " << dz.shape << " and " << dp.size()
                                            << " probability gradients for z " << s.z.shape);
    ArenaScope<Space> scope(ws);
    // dL/dz = M^T dz̃.
    ops::gemm_strided_batched<T>(ctx, bsz, ops::Trans::kYes, {s.smooth.data, c, c, c}, c * c, ops::Trans::kNo,
                                 {dzs.data, c, d, d}, c * d, {dz.data, c, d, d}, c * d);
    // g = N^T dz̃ (N without the P_i factor of M).
    build(s.p, bsz, c, false, s.host);
    MView nm = ws.template take<T>(Shape{bsz, c, c}, "ema.decay");
    B::upload(ctx, nm.data, s.host.data(), std::size_t(n * c));
    MView g = ws.template take<T>(Shape{bsz, c, d}, "ema.g");
    ops::gemm_strided_batched<T>(ctx, bsz, ops::Trans::kYes, {nm.data, c, c, c}, c * c, ops::Trans::kNo,
                                 {dzs.data, c, d, d}, c * d, {g.data, c, d, d}, c * d);
    // dots[0][r] = <g_r, z_r>, dots[1][r] = <g_r, z̃_{r-1}> over the flat rows r = b C + j (j = 0 is
    // paired with the previous row's last segment and ignored: z̃_{-1} = 0).
    MView dots = ws.template take<T>(Shape{2, n}, "ema.dots");
    ops::row_dots<T>(ctx, ops::Mat<T const, Space>(g.data, n, d), ops::Mat<T const, Space>(s.z.data, n, d),
                     ops::Mat<T, Space>(dots.data, n, 1));
    if (n > 1)
      ops::row_dots<T>(ctx, ops::Mat<T const, Space>(g.data + d, n - 1, d), ops::Mat<T const, Space>(s.zs.data, n - 1, d),
                       ops::Mat<T, Space>(dots.data + n + 1, n - 1, 1));
    s.dots.resize(std::size_t(2 * n));
    B::download(ctx, s.dots.data(), dots.data, std::size_t(n));
    if (n > 1) B::download(ctx, s.dots.data() + n + 1, dots.data + n + 1, std::size_t(n - 1));
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t j = 0; j < c; ++j) {
        std::size_t r = std::size_t(b * c + j);
        dp[r] = j >= s.count[std::size_t(b)] ? 0.0  // padding: P = 1 is fixed
                                             : double(s.dots[r]) - (j > 0 ? double(s.dots[std::size_t(n) + r]) : 0.0);
      }
  }

  // Cached generation.
  StepState make_step_state(std::int64_t batch) const { return {Tensor<T, B>(Shape{batch, 1, cfg_.dim})}; }
  /// Row `row` closes its segment j with output z [1, 1, d] and probability p: z̃ [1, 1, d] (j = 0
  /// starts the row afresh, so a reused state needs no reset).
  void step(Ctx& ctx, StepState& st, std::int64_t row, std::int64_t j, double p, CView z, MView zs) const {
    HSEQ_CHECK(p >= 0.0 && p <= 1.0, "EmaDechunk: P " << p << " of row " << row << " is not a probability");
    MView last(st.last.data() + row * cfg_.dim, Shape{1, 1, cfg_.dim});
    ops::copy<T>(ctx, z, zs);
    ops::scale<T>(ctx, zs, T(p));
    if (j > 0) ops::axpy<T>(ctx, T(1.0 - p), CView(last), zs);
    ops::copy<T>(ctx, CView(zs), last);
  }

 private:
  /// M_b (with_p) or N_b as [B, C, C] row-major into out, from P [B * C].
  static void build(std::vector<double> const& p, std::int64_t bsz, std::int64_t c, bool with_p, std::vector<T>& out) {
    out.assign(std::size_t(bsz * c * c), T(0));
    std::vector<double>& row = scratch(std::size_t(c));
    for (std::int64_t b = 0; b < bsz; ++b) {
      double const* pb = p.data() + b * c;
      for (std::int64_t j = 0; j < c; ++j) {  // row j from row j - 1: times (1 - P_j), then the diagonal
        for (std::int64_t i = 0; i < j; ++i) row[std::size_t(i)] *= 1.0 - pb[j];
        row[std::size_t(j)] = 1.0;
        T* o = out.data() + (b * c + j) * c;
        for (std::int64_t i = 0; i <= j; ++i) o[i] = T(with_p ? row[std::size_t(i)] * pb[i] : row[std::size_t(i)]);
      }
    }
  }
  static std::vector<double>& scratch(std::size_t n) {
    thread_local std::vector<double> v;
    v.resize(n);
    return v;
  }

  Config cfg_;
};

}  // namespace hseq::hier
