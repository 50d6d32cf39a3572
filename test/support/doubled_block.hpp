// SPDX-License-Identifier: MIT
/// @file
/// @brief A second block type for the models' tests of their backbone-policy parameter.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/transformer_block.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::test {

/// The pre-LN TransformerBlock with its residual branch doubled:
///   y = x + 2 (Block(x) - x) = 2 Block(x) - x                    x, y: [B, t, dim]
/// It reuses the block's Config, parameters (same names) and key/value cache, so a model built on it
/// has exactly the default model's parameters but computes another function (which shows the
/// model runs the block type it is given); it is causal, and its cached step equals its forward.
template <Backend B, class T>
class DoubledBranchBlock {
 public:
  using Inner = nn::TransformerBlock<B, T>;
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Config = typename Inner::Config;
  using Saved = typename Inner::Saved;

  explicit DoubledBranchBlock(Config c) : inner_(c) {}
  Config const& config() const { return inner_.config(); }
  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    inner_.visit_params(f, prefix);
  }

  std::size_t forward_workspace(std::int64_t batch, std::int64_t t) const { return inner_.forward_workspace(batch, t); }
  /// The inner block's peak after 2 dy [B, t, dim].
  std::size_t backward_workspace(std::int64_t batch, std::int64_t t) const {
    return aligned_bytes<T>(batch * t * inner_.config().dim) + inner_.backward_workspace(batch, t);
  }
  std::size_t step_workspace(std::int64_t batch, std::int64_t n, std::int64_t cached) const {
    return inner_.step_workspace(batch, n, cached);
  }
  Shape cache_shape(std::int64_t batch, std::int64_t capacity) const { return inner_.cache_shape(batch, capacity); }

  Saved forward(Ctx& ctx, CView x, MView y, Arena<Space>& ws) const {
    Saved s = inner_.forward(ctx, x, y, ws);
    double_branch(ctx, x, y);
    return s;
  }
  /// dx = 2 J^T dy - dy; the inner parameters' gradients accumulate from 2 dy.
  void backward(Ctx& ctx, Saved const& s, CView dy, MView dx, Arena<Space>& ws) const {
    ArenaScope<Space> scope(ws);
    MView d2 = ws.template take<T>(dy.shape, "doubled.d2");
    ops::copy<T>(ctx, dy, d2);
    ops::scale<T>(ctx, d2, T(2));
    inner_.backward(ctx, s, d2, dx, ws);
    ops::axpy<T>(ctx, T(-1), dy, dx);
  }
  void forward_step(Ctx& ctx, CView x, MView cache, std::int64_t pos, MView y, Arena<Space>& ws) const {
    inner_.forward_step(ctx, x, cache, pos, y, ws);
    double_branch(ctx, x, y);
  }

 private:
  /// y = 2 y - x (y holds Block(x)).
  static void double_branch(Ctx& ctx, CView x, MView y) {
    ops::scale<T>(ctx, y, T(2));
    ops::axpy<T>(ctx, T(-1), x, y);
  }

  Inner inner_;
};

}  // namespace hseq::test
