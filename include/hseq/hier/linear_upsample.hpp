// SPDX-License-Identifier: MIT
/// @file
/// @brief Linear upsampling: Linear(d -> k d) on each short vector, the k d outputs read as k
/// consecutive full-rate vectors ([B, L / k, k d] viewed as [B, L, d]).
/// Over data-dependent segments (hier/ragged_policy.hpp) it is AU-Net's position-indexed unpooling
/// (the IndexedMatMul of hierarchical.py; spec segmentation.md §2.4): position t of segment
/// J = J(t) reads slice o = (t - e_J) mod k of segment J's projection, u_t = W_o y_J + b_o, so each
/// offset into a segment has its own matrix (k = the rule's factor for fixed:K, otherwise its
/// /MAXLEN or 16, AU-Net's count: models/hourglass.hpp). With fixed:K that is the numeric level's
/// mapping, position j K + o reading slice o of short position j.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/ops/mat.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/resample_config.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/embedding.hpp"

namespace hseq::hier {

template <Backend B, class T>
class LinearUpsample {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Ids = View<std::int32_t const, Space>;
  using Config = ResampleConfig;
  struct Saved {
    typename nn::Linear<B, T>::Saved proj;  // y
    MView projected;                        // over segments: [B * C, k d] y W^T + b (workspace)
    Ids rows;                               // over segments: [B * L] the gathered rows of it, as [B * C * k, d]
  };

  explicit LinearUpsample(Config c)
      : cfg_(check_resample(c, "LinearUpsample")), proj_({c.dim, c.factor * c.dim, true, c.init_std}) {}
  Config const& config() const { return cfg_; }
  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    proj_.visit_params(f, prefix + "proj.");
  }
  std::size_t forward_workspace(std::int64_t, std::int64_t) const { return 0; }
  std::size_t backward_workspace(std::int64_t, std::int64_t) const { return 0; }

  Saved forward(Ctx& ctx, CView y, CView /*res*/, MView u, Arena<Space>& ws) const {
    return {proj_.forward(ctx, y, grouped(u, y), ws), {}, {}};
  }
  void backward(Ctx& ctx, Saved const& s, CView du, MView dy, MView /*dres*/, Arena<Space>& ws) const {
    proj_.backward(ctx, s.proj, grouped(du, CView(dy)), dy, ws);
  }

  // Cached generation: the state is the newest short vector's k d projection (over segments: per
  // row, with the row's offset into its open segment).
  struct StepState {
    Tensor<T, B> last;                 // [B, 1, k d]
    std::vector<std::int64_t> offset;  // [B] segments only: positions since the row's newest emit
  };
  StepState make_step_state(std::int64_t batch, std::int64_t) const {
    return {Tensor<T, B>(Shape{batch, 1, cfg_.factor * cfg_.dim}), std::vector<std::int64_t>(std::size_t(batch), 0)};
  }
  std::size_t step_workspace(std::int64_t, std::int64_t) const { return 0; }
  void step_short(Ctx& ctx, StepState& st, CView y, std::int64_t, Arena<Space>& ws) const {
    proj_.forward(ctx, y, st.last.view(), ws);
  }
  /// u [B, 1, d] = slice p mod k of the newest projection.
  void step_up(Ctx& ctx, StepState& st, CView, std::int64_t p, MView u, Arena<Space>&) const {
    std::int64_t bsz = u.size(0), d = cfg_.dim, k = cfg_.factor;
    ops::copy_mat<T>(ctx, {st.last.data() + (p % k) * d, bsz, d, k * d}, ops::as_mat(u.reshape(Shape{bsz, d})));
  }

  // Data-dependent segments (RaggedUpsample): up = the global rows b C + J(b, t), [B * L]. The
  // projection runs once per segment, Y = y W^T + b [B * C, k d] viewed as [B * C * k, d] rows, and
  // position (b, t) gathers row up[b, t] k + o(b, t), o = its offset into its segment mod k (read
  // off `up`: the positions before it in its row with the same segment). Composed from the GEMM and
  // the embedding gather and scatter-add; the offsets are computed on the host.
  std::size_t ragged_forward_workspace(std::int64_t batch, std::int64_t len, std::int64_t c) const {
    return aligned_bytes<T>(batch * c * cfg_.factor * cfg_.dim) + aligned_bytes<std::int32_t>(batch * len);
  }
  std::size_t ragged_backward_workspace(std::int64_t batch, std::int64_t, std::int64_t c) const {
    return aligned_bytes<T>(batch * c * cfg_.factor * cfg_.dim);
  }
  /// u [B, L, d] from y [B, C, d]: u[b, t] = W_o y[b, J(b, t)] + b_o.
  Saved ragged_forward(Ctx& ctx, CView y, CView /*res*/, Ids up, MView u, Arena<Space>& ws) const {
    std::int64_t d = cfg_.dim, k = cfg_.factor;
    HSEQ_CHECK(y.rank() == 3 && u.rank() == 3 && y.size(2) == d && u.size(2) == d && u.size(0) == y.size(0) &&
                   up.numel() == u.size(0) * u.size(1),
               "LinearUpsample: y " << y.shape << ", u " << u.shape << " and " << up.numel() << " segment indices");
    std::int64_t bsz = y.size(0), c = y.size(1), len = u.size(1), n = bsz * c;
    thread_local std::vector<std::int32_t> host;
    host.resize(std::size_t(bsz * len));
    B::download(ctx, host.data(), up.data, host.size());
    for (std::int64_t b = 0; b < bsz; ++b) {
      std::int64_t off = 0, prev = -1;
      for (std::int64_t t = 0; t < len; ++t) {
        std::int32_t& r = host[std::size_t(b * len + t)];
        HSEQ_CHECK(r >= b * c && r < (b + 1) * c, "LinearUpsample: position " << t << " of row " << b
                                                                               << " reads segment row " << r);
        off = r == prev ? off + 1 : 0;
        prev = r;
        r = std::int32_t(std::int64_t(r) * k + off % k);  // (in place: prev keeps the segment row)
      }
    }
    Saved s;
    s.projected = ws.template take<T>(Shape{n, k * d}, "linear_up.projected");
    auto rows = ws.template take<std::int32_t>(Shape{bsz * len}, "linear_up.rows");
    B::upload(ctx, rows.data, host.data(), host.size());
    s.rows = Ids(rows);
    s.proj = proj_.forward(ctx, y.reshape(Shape{n, d}), s.projected, ws);
    ops::embedding_forward<T>(ctx, CView(s.projected).reshape(Shape{n * k, d}), s.rows, u);
    return s;
  }
  /// dy [B, C, d] (overwritten) and the parameters' gradients (accumulated) from du [B, L, d].
  void ragged_backward(Ctx& ctx, Saved const& s, Ids, CView du, MView dy, MView /*dres*/,
                       Arena<Space>& ws) const {
    std::int64_t d = cfg_.dim, k = cfg_.factor, n = dy.size(0) * dy.size(1);
    ArenaScope<Space> scope(ws);
    MView dproj = ws.template take<T>(Shape{n, k * d}, "linear_up.dprojected");
    ops::fill<T>(ctx, dproj, T(0));
    ops::embedding_backward<T>(ctx, s.rows, du, dproj.reshape(Shape{n * k, d}));
    proj_.backward(ctx, s.proj, CView(dproj), dy.reshape(Shape{n, d}), ws);
  }
  /// Cached generation, row `row`: its segment closed with summary y [1, 1, d].
  void ragged_step_short(Ctx& ctx, StepState& st, std::int64_t row, CView y, std::int64_t /*j*/,
                         Arena<Space>& ws) const {
    std::int64_t kd = cfg_.factor * cfg_.dim;
    proj_.forward(ctx, y.reshape(Shape{1, cfg_.dim}), MView(st.last.data() + row * kd, Shape{1, kd}), ws);
    st.offset[std::size_t(row)] = 0;
  }
  /// u [1, 1, d] at row `row`'s next position: the slice of its offset.
  void ragged_step_up(Ctx& ctx, StepState& st, std::int64_t row, CView, MView u, Arena<Space>&) const {
    std::int64_t d = cfg_.dim, k = cfg_.factor;
    std::int64_t o = st.offset[std::size_t(row)]++ % k;
    ops::copy<T>(ctx, CView(st.last.data() + row * k * d + o * d, Shape{1, 1, d}), u);
  }

 private:
  template <class U>
  View<U, Space> grouped(View<U, Space> u, CView y) const {
    HSEQ_CHECK(u.rank() == 3 && y.rank() == 3 && u.shape == (Shape{y.size(0), y.size(1) * cfg_.factor, cfg_.dim}),
               "LinearUpsample(k " << cfg_.factor << "): y " << y.shape << ", u " << u.shape);
    return u.reshape(Shape{y.size(0), y.size(1), cfg_.factor * cfg_.dim});
  }
  Config cfg_;
  nn::Linear<B, T> proj_;
};

/// Policy tag: linear upsampling.
struct LinearUp {
  static constexpr char const* kName = "linear";
  static constexpr bool kUsesResidual = false;
  template <Backend B, class T>
  using Module = LinearUpsample<B, T>;
};

}  // namespace hseq::hier
