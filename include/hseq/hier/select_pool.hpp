// SPDX-License-Identifier: MIT
/// @file
/// @brief Select pooling: short position j is the level input at the position that closes segment
/// j (H-Net, AU-Net and SpaceByte all pool this way). With a fixed factor k the closing position
/// is j k (the last row of the shifted window: x_shifted[j k + k - 1] = x[j k]); over data-dependent
/// segments (hier/ragged_policy.hpp) it is the emit e_j, a row gather.
#pragma once

#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/resample_config.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/embedding.hpp"
#include "hseq/ops/mat.hpp"

namespace hseq::hier {

template <Backend B, class T>
class SelectShorten {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Ids = View<std::int32_t const, Space>;
  using Config = ResampleConfig;
  struct Saved {};

  explicit SelectShorten(Config c) : cfg_(check_resample(c, "SelectShorten")) {}
  Config const& config() const { return cfg_; }
  template <class F>
  void visit_params(F&&, std::string const& = "") {}
  std::size_t forward_workspace(std::int64_t, std::int64_t) const { return 0; }
  std::size_t backward_workspace(std::int64_t, std::int64_t) const { return 0; }

  /// y[b, j] = x[b, j k + k - 1]: x [B, L, d] shifted by k - 1, y [B, L / k, d].
  Saved forward(Ctx& ctx, CView x, MView y, Arena<Space>&) const {
    std::int64_t k = cfg_.factor, d = x.size(2), rows = y.size(0) * y.size(1);
    HSEQ_CHECK(x.rank() == 3 && y.rank() == 3 && x.size(0) == y.size(0) && x.size(1) == y.size(1) * k &&
                   y.size(2) == d,
               "SelectShorten: x " << x.shape << " and y " << y.shape << " for factor " << k);
    ops::copy_mat<T>(ctx, {x.data + (k - 1) * d, rows, d, k * d}, {y.data, rows, d, d});
    return {};
  }
  void backward(Ctx& ctx, Saved const&, CView dy, MView dx, Arena<Space>&) const {
    std::int64_t k = cfg_.factor, d = dx.size(2), rows = dy.size(0) * dy.size(1);
    ops::fill<T>(ctx, dx, T(0));
    ops::copy_mat<T>(ctx, {dy.data, rows, d, d}, {dx.data + (k - 1) * d, rows, d, k * d});
  }

  // Cached generation: no state; the window's last row is the short position.
  struct StepState {};
  StepState make_step_state(std::int64_t, std::int64_t) const { return {}; }
  std::size_t step_workspace(std::int64_t, std::int64_t) const { return 0; }
  void step_input(Ctx&, StepState&, CView, std::int64_t, Arena<Space>&) const {}
  /// y [B, 1, d] = the last row of the completed window [B, k, d].
  void step_pool(Ctx& ctx, StepState&, CView window, std::int64_t, MView y, Arena<Space>&) const {
    std::int64_t k = window.size(1), d = window.size(2), b = window.size(0);
    ops::copy_mat<T>(ctx, {window.data + (k - 1) * d, b, d, k * d}, {y.data, b, d, d});
  }

  // Data-dependent segments (RaggedShorten): pool = the global rows b L + e_{b, j}, [B * C].
  std::size_t ragged_forward_workspace(std::int64_t, std::int64_t, std::int64_t) const { return 0; }
  std::size_t ragged_backward_workspace(std::int64_t, std::int64_t, std::int64_t) const { return 0; }
  /// y [B, C, d] = rows `pool` of x [B, L, d].
  /// (The embedding ops fold the leading dimensions into rows.)
  Saved ragged_forward(Ctx& ctx, CView x, Ids pool, MView y, Arena<Space>&) const {
    ops::embedding_forward<T>(ctx, x, pool, y);
    return {};
  }
  /// dx [B, L, d] = the scatter-add of dy [B, C, d] into rows `pool` (overwrites dx).
  void ragged_backward(Ctx& ctx, Saved const&, Ids pool, CView dy, MView dx, Arena<Space>&) const {
    ops::fill<T>(ctx, dx, T(0));
    ops::embedding_backward<T>(ctx, pool, dy, dx);
  }
  /// Cached generation: every input of row `row` (no state: the closing input is the summary).
  void ragged_step_input(Ctx&, StepState&, std::int64_t /*row*/, CView, std::int64_t /*pos*/, Arena<Space>&) const {}
  /// Cached generation: row `row`'s input x [1, 1, d] closes its segment; y [1, 1, d] is its summary.
  void ragged_step_emit(Ctx& ctx, StepState&, std::int64_t /*row*/, CView x, MView y, Arena<Space>&) const {
    ops::copy<T>(ctx, x, y);
  }

 private:
  Config cfg_;
};

/// Policy tag: select pooling (the segment's closing position).
struct Select {
  static constexpr char const* kName = "select";
  template <Backend B, class T>
  using Module = SelectShorten<B, T>;
};

}  // namespace hseq::hier
