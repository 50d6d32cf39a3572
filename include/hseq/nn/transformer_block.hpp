// SPDX-License-Identifier: MIT
/// @file
/// @brief `TransformerBlock`: the pre-LayerNorm block (GPT-2 style).
///   x1 = x + Attn(LN1(x), mem)        y = x1 + Mlp(LN2(x1))
///
/// Dropout (nn/dropout.hpp), applied only with an active `DropoutStream` given to `forward`:
///   x1 = x + drop_r(Attn(LN1(x), mem))        y = x1 + drop_r(Mlp(LN2(x1)))
/// with `Config::resid_dropout` on both residual branches (after the output projections, before the
/// adds), `attn_dropout` on the attention probabilities (MultiHeadAttention's `dropout`) and
/// `ff_dropout` on the MLP's hidden activation (Mlp's `dropout`). The attention gets
/// drop.child(kAttnChild), the MLP drop.child(kMlpChild); the residual masks are drop.key(kResidAttnSite)
/// and drop.key(kResidMlpSite). Inactive (the default, and `forward_step` always) or all rates 0:
/// exactly the block without dropout. Backward regenerates every mask; it needs no extra workspace.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/attention.hpp"
#include "hseq/nn/dropout.hpp"
#include "hseq/nn/layer_norm.hpp"
#include "hseq/nn/mlp.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/ops/dropout.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::nn {

template <Backend B, class T>
class TransformerBlock {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Attention = MultiHeadAttention<B, T>;

  struct Config {
    std::int64_t dim = 0, heads = 1;
    std::int64_t mlp_hidden = 0;  ///< 0 means 4 * dim
    AttentionMask mask = AttentionMask::causal();
    bool bias = true;
    double eps = 1e-5;
    double init_std = 0.02;
    double out_init_std = 0.0;  ///< std of the two residual-branch output projections; 0: init_std
    // Dropout rates in [0, 1), applied only with an active DropoutStream (see the file comment).
    double attn_dropout = 0.0;   ///< attention probabilities
    double resid_dropout = 0.0;  ///< both residual branches (attention and MLP outputs)
    double ff_dropout = 0.0;     ///< the MLP's hidden activation
  };
  /// Sub-streams of the attention and the MLP, and the keys of the two residual masks.
  static constexpr std::uint64_t kAttnChild = 0, kMlpChild = 1, kResidAttnSite = 0, kResidMlpSite = 1;
  struct Saved {
    typename LayerNorm<B, T>::Saved ln1, ln2;
    typename Attention::Saved attn;
    typename Mlp<B, T>::Saved mlp;
    MView h1;  // [B, T, dim] LN1(x)
    MView x1;  // [B, T, dim] x + attention
    MView h2;  // [B, T, dim] LN2(x1)
    DropoutStream drop;  // forward's stream: backward regenerates the residual masks from it
  };

  explicit TransformerBlock(Config c)
      : cfg_(check(c)),
        ln1_({c.dim, c.eps}),
        attn_({.dim = c.dim,
               .heads = c.heads,
               .mask = c.mask,
               .bias = c.bias,
               .init_std = c.init_std,
               .out_init_std = c.out_init_std,
               .dropout = c.attn_dropout}),
        ln2_({c.dim, c.eps}),
        mlp_({.dim = c.dim,
              .hidden = c.mlp_hidden,
              .bias = c.bias,
              .init_std = c.init_std,
              .out_init_std = c.out_init_std,
              .dropout = c.ff_dropout}) {}
  Config const& config() const { return cfg_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    ln1_.visit_params(f, prefix + "ln1.");
    attn_.visit_params(f, prefix + "attn.");
    ln2_.visit_params(f, prefix + "ln2.");
    mlp_.visit_params(f, prefix + "mlp.");
  }

  /// Bytes forward carves for x: [batch, t, dim] with a memory of tm positions.
  std::size_t forward_workspace(std::int64_t batch, std::int64_t t, std::int64_t tm = 0) const {
    std::int64_t n = batch * t;
    return 3 * aligned_bytes<T>(n * cfg_.dim) + ln1_.forward_workspace(n) + ln2_.forward_workspace(n) +
           attn_.forward_workspace({batch, t, t, tm}) + mlp_.forward_workspace(n);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t t, std::int64_t tm = 0) const {
    std::int64_t n = batch * t;
    std::size_t inner = std::max(mlp_.backward_workspace(n), attn_.backward_workspace({batch, t, t, tm}));
    return 2 * aligned_bytes<T>(n * cfg_.dim) + inner;
  }

  /// y = block(x); x, y: [B, T, dim]; mem: [B, Tm, dim] or empty (keys/values prefix for attention).
  /// `drop`: the dropout stream (inactive, the default: no dropout).
  Saved forward(Ctx& ctx, CView x, MView y, Arena<Space>& ws, CView mem = {}, DropoutStream drop = {}) const {
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == cfg_.dim && y.shape == x.shape,
               "TransformerBlock(dim " << cfg_.dim << "): x " << x.shape << ", y " << y.shape
                                       << " (expected [B, T, dim])");
    Saved s;
    s.drop = drop;
    s.h1 = ws.template take<T>(x.shape, "block.h1");
    s.x1 = ws.template take<T>(x.shape, "block.x1");
    s.h2 = ws.template take<T>(x.shape, "block.h2");
    double const pr = drop.rate(cfg_.resid_dropout);
    s.ln1 = ln1_.forward(ctx, x, s.h1, ws);
    s.attn = attn_.forward(ctx, s.h1, s.h1, mem, s.x1, ws, MView{}, drop.child(kAttnChild));
    if (pr > 0) ops::dropout_forward<T>(ctx, s.x1, s.x1, pr, drop.key(kResidAttnSite));
    ops::axpy<T>(ctx, T(1), x, s.x1);  // x1 = x + attn
    s.ln2 = ln2_.forward(ctx, s.x1, s.h2, ws);
    s.mlp = mlp_.forward(ctx, s.h2, y, ws, drop.child(kMlpChild));
    if (pr > 0) ops::dropout_forward<T>(ctx, y, y, pr, drop.key(kResidMlpSite));
    ops::axpy<T>(ctx, T(1), s.x1, y);  // y = x1 + mlp
    return s;
  }

  /// Scratch bytes of `forward_step` (see MultiHeadAttention::step_workspace).
  std::size_t step_workspace(std::int64_t batch, std::int64_t n, std::int64_t cached) const {
    std::int64_t r = batch * n;
    return 3 * aligned_bytes<T>(r * cfg_.dim) + ln1_.forward_workspace(r) +
           std::max(attn_.step_workspace(batch, n, cached), ln2_.forward_workspace(r) + mlp_.forward_workspace(r));
  }

  /// Shape of the key/value cache `forward_step` reads and extends: [batch, capacity, 2 dim].
  Shape cache_shape(std::int64_t batch, std::int64_t capacity) const { return Shape{batch, capacity, 2 * cfg_.dim}; }

  /// Incremental forward for cached generation: x, y: [B, n, dim] at positions [pos, pos + n);
  /// cache: this block's [B, T_max, 2 dim] key/value cache. Scratch is released before returning.
  void forward_step(Ctx& ctx, CView x, MView cache, std::int64_t pos, MView y, Arena<Space>& ws) const {
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == cfg_.dim && y.shape == x.shape,
               "TransformerBlock::forward_step: x " << x.shape << ", y " << y.shape);
    ArenaScope<Space> scope(ws);
    MView h1 = ws.template take<T>(x.shape, "block_step.h1");
    MView x1 = ws.template take<T>(x.shape, "block_step.x1");
    MView h2 = ws.template take<T>(x.shape, "block_step.h2");
    ln1_.forward(ctx, x, h1, ws);
    attn_.forward_step(ctx, h1, cache, pos, x1, ws);
    ops::axpy<T>(ctx, T(1), x, x1);
    ln2_.forward(ctx, x1, h2, ws);
    {
      ArenaScope<Space> mlp_scope(ws);
      mlp_.forward(ctx, h2, y, ws);
    }
    ops::axpy<T>(ctx, T(1), x1, y);
  }

  /// dx (overwritten) from dy; parameter gradients accumulate. dmem: gradient of the memory (may be empty).
  void backward(Ctx& ctx, Saved const& s, CView dy, MView dx, Arena<Space>& ws, MView dmem = {}) const {
    HSEQ_CHECK(dy.shape == s.h1.shape && dx.shape == s.h1.shape,
               "TransformerBlock::backward: dy " << dy.shape << ", dx " << dx.shape << ", expected " << s.h1.shape);
    ArenaScope<Space> scope(ws);
    MView dh = ws.template take<T>(dy.shape, "block.dh");
    MView dx1 = ws.template take<T>(dy.shape, "block.dx1");
    double const pr = s.drop.rate(cfg_.resid_dropout);
    if (pr > 0) {  // the MLP branch's gradient through its residual mask, staged in dx1 (free until LN2)
      ops::dropout_backward<T>(ctx, dy, dx1, pr, s.drop.key(kResidMlpSite));
      mlp_.backward(ctx, s.mlp, dx1, dh, ws);        // dh = d LN2-out
    } else {
      mlp_.backward(ctx, s.mlp, dy, dh, ws);         // dh = d LN2-out
    }
    ln2_.backward(ctx, s.ln2, dh, dx1, ws);          // dx1 = LN2 path
    ops::axpy<T>(ctx, T(1), dy, dx1);                // + residual
    if (pr > 0) {  // the attention branch's, staged in dx (free until LN1 overwrites it)
      ops::dropout_backward<T>(ctx, dx1, dx, pr, s.drop.key(kResidAttnSite));
      attn_.backward(ctx, s.attn, dx, dh, dh, dmem, ws);  // dh = d LN1-out (query and key/value paths)
    } else {
      attn_.backward(ctx, s.attn, dx1, dh, dh, dmem, ws);  // dh = d LN1-out (query and key/value paths)
    }
    ln1_.backward(ctx, s.ln1, dh, dx, ws);           // dx = LN1 path
    ops::axpy<T>(ctx, T(1), CView(dx1), dx);         // + residual
  }

 private:
  static Config check(Config c) {
    checked_dropout_rate(c.resid_dropout, "TransformerBlock: resid_dropout");
    checked_dropout_rate(c.attn_dropout, "TransformerBlock: attn_dropout");
    checked_dropout_rate(c.ff_dropout, "TransformerBlock: ff_dropout");
    return c;
  }
  Config cfg_;
  LayerNorm<B, T> ln1_;
  Attention attn_;
  LayerNorm<B, T> ln2_;
  Mlp<B, T> mlp_;
};

}  // namespace hseq::nn
