// SPDX-License-Identifier: MIT
/// @file
/// @brief Repeat upsampling: each short vector is repeated k times (u[p] = y[p / k]); over
/// data-dependent segments (hier/ragged_policy.hpp) u[t] = y[J(t)], the newest closed segment.
#pragma once

#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/resample_config.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/ops/embedding.hpp"
#include "hseq/ops/resample.hpp"

namespace hseq::hier {

template <Backend B, class T>
class RepeatUpsample {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Ids = View<std::int32_t const, Space>;
  using Config = ResampleConfig;
  struct Saved {};

  explicit RepeatUpsample(Config c) : cfg_(check_resample(c, "RepeatUpsample")) {}
  Config const& config() const { return cfg_; }
  template <class F>
  void visit_params(F&&, std::string const& = "") {}
  std::size_t forward_workspace(std::int64_t, std::int64_t) const { return 0; }
  std::size_t backward_workspace(std::int64_t, std::int64_t) const { return 0; }

  Saved forward(Ctx& ctx, CView y, CView /*res*/, MView u, Arena<Space>&) const {
    ops::repeat_rows<T>(ctx, y, u, cfg_.factor);
    return {};
  }
  void backward(Ctx& ctx, Saved const&, CView du, MView dy, MView /*dres*/, Arena<Space>&) const {
    ops::repeat_rows_backward<T>(ctx, du, dy, cfg_.factor);
  }

  // Cached generation: the state is the newest short vector.
  struct StepState {
    Tensor<T, B> last;  // [B, 1, d]
  };
  StepState make_step_state(std::int64_t batch, std::int64_t) const { return {Tensor<T, B>(Shape{batch, 1, cfg_.dim})}; }
  std::size_t step_workspace(std::int64_t, std::int64_t) const { return 0; }
  /// The short position j was completed with output y [B, 1, d].
  void step_short(Ctx& ctx, StepState& st, CView y, std::int64_t, Arena<Space>&) const { ops::copy<T>(ctx, y, st.last.view()); }
  /// u [B, 1, d] at level position p (which uses short position floor(p / k), the newest).
  void step_up(Ctx& ctx, StepState& st, CView, std::int64_t, MView u, Arena<Space>&) const {
    ops::copy<T>(ctx, st.last.cview(), u);
  }

  // Data-dependent segments (RaggedUpsample): up = the global rows b C + J(b, t), [B * L].
  std::size_t ragged_forward_workspace(std::int64_t, std::int64_t, std::int64_t) const { return 0; }
  std::size_t ragged_backward_workspace(std::int64_t, std::int64_t, std::int64_t) const { return 0; }
  /// u [B, L, d] = rows `up` of y [B, C, d].
  /// (The embedding ops fold the leading dimensions into rows.)
  Saved ragged_forward(Ctx& ctx, CView y, CView /*res*/, Ids up, MView u, Arena<Space>&) const {
    ops::embedding_forward<T>(ctx, y, up, u);
    return {};
  }
  /// dy [B, C, d] = the scatter-add of du [B, L, d] into rows `up` (overwrites dy; dres untouched).
  void ragged_backward(Ctx& ctx, Saved const&, Ids up, CView du, MView dy, MView /*dres*/, Arena<Space>&) const {
    ops::fill<T>(ctx, dy, T(0));
    ops::embedding_backward<T>(ctx, up, du, dy);
  }
  /// Cached generation, row `row`: its segment closed with summary y [1, 1, d].
  void ragged_step_short(Ctx& ctx, StepState& st, std::int64_t row, CView y, std::int64_t /*j*/,
                         Arena<Space>&) const {
    ops::copy<T>(ctx, y, MView(st.last.data() + row * cfg_.dim, Shape{1, 1, cfg_.dim}));
  }
  /// u [1, 1, d] at row `row`'s next position: its newest summary.
  void ragged_step_up(Ctx& ctx, StepState& st, std::int64_t row, CView, MView u, Arena<Space>&) const {
    ops::copy<T>(ctx, CView(st.last.data() + row * cfg_.dim, Shape{1, 1, cfg_.dim}), u);
  }

 private:
  Config cfg_;
};

/// Policy tag: repeat upsampling.
struct Repeat {
  static constexpr char const* kName = "repeat";
  static constexpr bool kUsesResidual = false;
  template <Backend B, class T>
  using Module = RepeatUpsample<B, T>;
};

}  // namespace hseq::hier
