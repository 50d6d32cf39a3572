// SPDX-License-Identifier: MIT
/// @file
/// @brief Average-pooling shortening: y[i] = mean of x[i k .. i k + k - 1] (window = stride = k).
/// Over data-dependent segments (hier/ragged_policy.hpp) it is the segment mean (Dynamic Token
/// Pooling's pooling): y[b, j] = mean of x[b, e_{j-1} + 1 .. e_j], the positions segment j closes
/// (e_{-1} = -1), so it reads positions <= e_j only. With fixed:K boundaries this differs from the
/// numeric level at j = 0 only: the numeric level averages the shift's k - 1 zeros with x_0.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/resample_config.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/gemm.hpp"
#include "hseq/ops/resample.hpp"

namespace hseq::hier {

template <Backend B, class T>
class AvgPoolShorten {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Ids = View<std::int32_t const, Space>;
  using Config = ResampleConfig;
  struct Saved {
    CView weights;  // over segments: [B, C, L] the pooling matrix (1 / n_j on segment j's positions)
  };

  explicit AvgPoolShorten(Config c) : cfg_(check_resample(c, "AvgPoolShorten")) {}
  Config const& config() const { return cfg_; }
  template <class F>
  void visit_params(F&&, std::string const& = "") {}
  std::size_t forward_workspace(std::int64_t, std::int64_t) const { return 0; }
  std::size_t backward_workspace(std::int64_t, std::int64_t) const { return 0; }

  Saved forward(Ctx& ctx, CView x, MView y, Arena<Space>&) const {
    ops::avg_pool<T>(ctx, x, y, cfg_.factor);
    return {};
  }
  void backward(Ctx& ctx, Saved const&, CView dy, MView dx, Arena<Space>&) const {
    ops::avg_pool_backward<T>(ctx, dy, dx, cfg_.factor);
  }

  // Cached generation (see Hourglass::forward_step): the window is the shifted block; over
  // segments, each row's running sum since its last emit.
  struct StepState {
    Tensor<T, B> sum;                 // [B, 1, d] (segments only)
    std::vector<std::int64_t> count;  // [B] positions in each row's open segment
  };
  StepState make_step_state(std::int64_t batch, std::int64_t) const {
    return {Tensor<T, B>(Shape{batch, 1, cfg_.dim}), std::vector<std::int64_t>(std::size_t(batch), 0)};
  }
  std::size_t step_workspace(std::int64_t, std::int64_t) const { return 0; }
  void step_input(Ctx&, StepState&, CView, std::int64_t, Arena<Space>&) const {}
  /// y [B, 1, d] from the completed window [B, k, d] (the k shifted inputs of one short position).
  void step_pool(Ctx& ctx, StepState&, CView window, std::int64_t, MView y, Arena<Space>&) const {
    ops::avg_pool<T>(ctx, window, y, cfg_.factor);
  }

  // Data-dependent segments (RaggedShorten): pool = the global rows b L + e_{b, j}, [B * C]. The
  // mean is a batched GEMM y_b = W_b x_b with W_b [C, L] built on the host from the emits (a
  // padding segment, which repeats its row's last emit, gets a zero row): composed from the
  // verified strided-batched GEMM, no new kernel. The host copy of the indices and the matrix are
  // staged in per-thread buffers that keep their capacity (no allocation once warm).
  std::size_t ragged_forward_workspace(std::int64_t batch, std::int64_t len, std::int64_t c) const {
    return aligned_bytes<T>(batch * c * len);
  }
  std::size_t ragged_backward_workspace(std::int64_t, std::int64_t, std::int64_t) const { return 0; }
  /// y [B, C, d] = the mean of x [B, L, d] over each segment's positions.
  Saved ragged_forward(Ctx& ctx, CView x, Ids pool, MView y, Arena<Space>& ws) const {
    std::int64_t bsz = x.size(0), len = x.size(1), d = x.size(2), c = y.size(1);
    HSEQ_CHECK(x.rank() == 3 && y.rank() == 3 && y.size(0) == bsz && y.size(2) == d && pool.numel() == bsz * c,
               "AvgPoolShorten: x " << x.shape << ", y " << y.shape << " and " << pool.numel() << " segment ends");
    thread_local std::vector<std::int32_t> ends;
    thread_local std::vector<T> w;
    ends.resize(std::size_t(bsz * c));
    B::download(ctx, ends.data(), pool.data, ends.size());
    w.assign(std::size_t(bsz * c * len), T(0));
    for (std::int64_t b = 0; b < bsz; ++b) {
      std::int64_t prev = -1;
      for (std::int64_t j = 0; j < c; ++j) {
        std::int64_t e = ends[std::size_t(b * c + j)] - b * len;
        HSEQ_CHECK(e >= 0 && e < len, "AvgPoolShorten: segment end " << ends[std::size_t(b * c + j)] << " of row " << b
                                                                      << " is outside its " << len << " positions");
        if (e <= prev) continue;  // a padding segment: no positions
        T const inv = T(1) / T(e - prev);
        for (std::int64_t t = prev + 1; t <= e; ++t) w[std::size_t((b * c + j) * len + t)] = inv;
        prev = e;
      }
    }
    MView wm = ws.template take<T>(Shape{bsz, c, len}, "avg.segment_weights");
    B::upload(ctx, wm.data, w.data(), w.size());
    ops::gemm_strided_batched<T>(ctx, bsz, ops::Trans::kNo, {wm.data, c, len, len}, c * len, ops::Trans::kNo,
                                 {x.data, len, d, d}, len * d, {y.data, c, d, d}, c * d);
    return {CView(wm)};
  }
  /// dx [B, L, d] = W_b^T dy_b (overwrites dx).
  void ragged_backward(Ctx& ctx, Saved const& s, Ids, CView dy, MView dx, Arena<Space>&) const {
    std::int64_t bsz = dx.size(0), len = dx.size(1), d = dx.size(2), c = dy.size(1);
    HSEQ_CHECK(s.weights.shape == Shape({bsz, c, len}), "AvgPoolShorten::ragged_backward: weights "
                                                            << s.weights.shape << " for dy " << dy.shape << ", dx "
                                                            << dx.shape);
    ops::gemm_strided_batched<T>(ctx, bsz, ops::Trans::kYes, {s.weights.data, c, len, len}, c * len, ops::Trans::kNo,
                                 {dy.data, c, d, d}, c * d, {dx.data, len, d, d}, len * d);
  }
  /// Cached generation, per row: input x [1, 1, d] at the row's position `pos` of the level joins
  /// its open segment (position 0 starts afresh, so a reused cache needs no reset).
  void ragged_step_input(Ctx& ctx, StepState& st, std::int64_t row, CView x, std::int64_t pos, Arena<Space>&) const {
    std::size_t r = std::size_t(row);
    MView sum(st.sum.data() + row * cfg_.dim, Shape{1, 1, cfg_.dim});
    if (pos == 0) st.count[r] = 0;
    if (st.count[r] == 0) ops::copy<T>(ctx, x, sum);
    else ops::axpy<T>(ctx, T(1), x, sum);
    ++st.count[r];
  }
  /// The row's input (already added by ragged_step_input) closes its segment: y = the mean.
  void ragged_step_emit(Ctx& ctx, StepState& st, std::int64_t row, CView, MView y, Arena<Space>&) const {
    std::size_t r = std::size_t(row);
    HSEQ_CHECK(st.count[r] > 0, "AvgPoolShorten: row " << row << " closes a segment without an input");
    ops::copy<T>(ctx, CView(st.sum.data() + row * cfg_.dim, Shape{1, 1, cfg_.dim}), y);
    ops::scale<T>(ctx, y, T(1) / T(st.count[r]));
    st.count[r] = 0;
  }

 private:
  Config cfg_;
};

/// Policy tag: average pooling.
struct AvgPool {
  static constexpr char const* kName = "avg";
  template <Backend B, class T>
  using Module = AvgPoolShorten<B, T>;
};

}  // namespace hseq::hier
