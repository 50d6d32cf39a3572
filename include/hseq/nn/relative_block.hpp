// SPDX-License-Identifier: MIT
/// @file
/// @brief `RelativeBlock`: the pre-LayerNorm Transformer block of Transformer-XL, whose attention is
/// `RelativeAttention` over a memory of earlier layer inputs.
///
///   x1 = x + RelAttn(LN1(x), LN1(mem))        y = x1 + Mlp(LN2(x1))
///
/// x [B, T, dim] is the segment's layer input and mem [B, M, dim] the memory: the same layer's
/// inputs at the M positions before the segment (M may be 0). LN1 is applied to the memory as to
/// the segment (what `LN1(cat([mem, x]))` of a pre-LN Transformer-XL computes). The memory is
/// held fixed (Transformer-XL's stop-gradient: `backward` returns no gradient for it), but LN1's
/// and the key/value projection's parameters do receive the gradient of the memory's path, as in
/// `ln(cat([mem.detach(), x]))`.
///
/// Without a memory the block is a causal self-attention block with relative positions; for that
/// use it also has a cached step (`forward_step`, no memory), which nn::RelativeCausalBlock
/// (relative_causal_block.hpp) wraps as a backbone policy of the models' block stacks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/layer_norm.hpp"
#include "hseq/nn/mlp.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/relative_attention.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::nn {

template <Backend B, class T>
class RelativeBlock {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Attention = RelativeAttention<B, T>;

  struct Config {
    std::int64_t dim = 0, heads = 1;
    std::int64_t mlp_hidden = 0;  ///< 0 means 4 * dim
    bool bias = true;
    double eps = 1e-5;
    double init_std = 0.02;
    double out_init_std = 0.0;   ///< std of the two residual-branch output projections; 0: init_std
    std::int64_t clamp_len = 0;  ///< RelativeAttention's distance clamp (0: none)
    std::int64_t distance_scale = 1;  ///< RelativeAttention's R[δ] = sinusoid(δ distance_scale)
  };
  struct Saved {
    typename LayerNorm<B, T>::Saved ln1, ln1m, ln2;
    typename Attention::Saved attn;
    typename Mlp<B, T>::Saved mlp;
    MView h1;  // [B, T, dim] LN1(x)
    MView hm;  // [B, M, dim] LN1(mem) (empty without a memory)
    MView x1;  // [B, T, dim] x + attention
    MView h2;  // [B, T, dim] LN2(x1)
  };

  explicit RelativeBlock(Config c)
      : cfg_(check(c)),
        ln1_({c.dim, c.eps}),
        attn_({c.dim, c.heads, c.bias, c.init_std, c.clamp_len, c.out_init_std, c.distance_scale}),
        ln2_({c.dim, c.eps}),
        mlp_({c.dim, c.mlp_hidden, c.bias, c.init_std, c.out_init_std}) {}
  Config const& config() const { return cfg_; }
  Attention const& attention() const { return attn_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    ln1_.visit_params(f, prefix + "ln1.");
    attn_.visit_params(f, prefix + "attn.");
    ln2_.visit_params(f, prefix + "ln2.");
    mlp_.visit_params(f, prefix + "mlp.");
  }

  /// Bytes `forward` carves for a segment [batch, t, dim] over a memory of m positions (all saved).
  std::size_t forward_workspace(std::int64_t batch, std::int64_t t, std::int64_t m) const {
    std::int64_t const n = batch * t, nm = batch * m;
    std::size_t mem = m > 0 ? aligned_bytes<T>(nm * cfg_.dim) + ln1_.forward_workspace(nm) : 0;
    return 3 * aligned_bytes<T>(n * cfg_.dim) + mem + ln1_.forward_workspace(n) + ln2_.forward_workspace(n) +
           attn_.forward_workspace({batch, t, m}) + mlp_.forward_workspace(n);
  }
  /// Peak scratch of `backward` (released on return).
  std::size_t backward_workspace(std::int64_t batch, std::int64_t t, std::int64_t m) const {
    std::int64_t const n = batch * t, nm = batch * m;
    std::size_t mem = m > 0 ? 2 * aligned_bytes<T>(nm * cfg_.dim) : 0;
    std::size_t inner = std::max(mlp_.backward_workspace(n), mem + attn_.backward_workspace({batch, t, m}));
    return 2 * aligned_bytes<T>(n * cfg_.dim) + inner;
  }

  /// y = block(x, mem); x, y [B, T, dim]; mem [B, M, dim] or empty. x and mem must stay unchanged
  /// until backward. `key_mass` [B, H, M + T], when given, receives the attention mass of each key
  /// (RelativeAttention::forward).
  Saved forward(Ctx& ctx, CView x, CView mem, MView y, Arena<Space>& ws, MView key_mass = {}) const {
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == cfg_.dim && y.shape == x.shape,
               "RelativeBlock(dim " << cfg_.dim << "): x " << x.shape << ", y " << y.shape
                                    << " (expected [B, T, dim])");
    HSEQ_CHECK(mem.empty() || (mem.rank() == 3 && mem.size(0) == x.size(0) && mem.size(2) == cfg_.dim),
               "RelativeBlock: memory " << mem.shape << " must be [" << x.size(0) << ", M, " << cfg_.dim << "]");
    Saved s;
    s.h1 = ws.template take<T>(x.shape, "relblock.h1");
    s.x1 = ws.template take<T>(x.shape, "relblock.x1");
    s.h2 = ws.template take<T>(x.shape, "relblock.h2");
    s.ln1 = ln1_.forward(ctx, x, s.h1, ws);
    if (!mem.empty()) {
      s.hm = ws.template take<T>(mem.shape, "relblock.hm");
      s.ln1m = ln1_.forward(ctx, mem, s.hm, ws);
    }
    s.attn = attn_.forward(ctx, s.h1, CView(s.hm), s.x1, ws, key_mass);
    ops::axpy<T>(ctx, T(1), x, s.x1);  // x1 = x + attention
    s.ln2 = ln2_.forward(ctx, s.x1, s.h2, ws);
    s.mlp = mlp_.forward(ctx, s.h2, y, ws);
    ops::axpy<T>(ctx, T(1), CView(s.x1), y);  // y = x1 + mlp
    return s;
  }

  /// dx (overwritten) from dy; parameter gradients accumulate (the memory's path included). The
  /// memory gets no gradient (Transformer-XL's stop-gradient) unless `dmem` [B, M, dim] is given:
  /// then it is overwritten with dL/dmem (the Compressive Transformer's BPTT into the compressor).
  void backward(Ctx& ctx, Saved const& s, CView dy, MView dx, Arena<Space>& ws, MView dmem = {}) const {
    HSEQ_CHECK(dy.shape == s.h1.shape && dx.shape == s.h1.shape,
               "RelativeBlock::backward: dy " << dy.shape << ", dx " << dx.shape << ", expected " << s.h1.shape);
    ArenaScope<Space> scope(ws);
    MView dh = ws.template take<T>(dy.shape, "relblock.dh");
    MView dx1 = ws.template take<T>(dy.shape, "relblock.dx1");
    mlp_.backward(ctx, s.mlp, dy, dh, ws);   // dh = d LN2-out
    ln2_.backward(ctx, s.ln2, dh, dx1, ws);  // dx1 = LN2 path
    ops::axpy<T>(ctx, T(1), dy, dx1);        // + residual
    if (s.hm.empty()) {
      attn_.backward(ctx, s.attn, dx1, dh, MView{}, ws);  // dh = d LN1-out
    } else {
      ArenaScope<Space> mem_scope(ws);
      MView dhm = ws.template take<T>(s.hm.shape, "relblock.dhm");
      MView dm = ws.template take<T>(s.hm.shape, "relblock.dmem");  // LN1's dx of the memory
      attn_.backward(ctx, s.attn, dx1, dh, dhm, ws);
      ln1_.backward(ctx, s.ln1m, dhm, dm, ws);  // LN1's parameters, through the memory's path
      if (!dmem.empty()) {
        HSEQ_CHECK(dmem.shape == s.hm.shape,
                   "RelativeBlock::backward: dmem " << dmem.shape << ", expected " << s.hm.shape);
        ops::copy<T>(ctx, CView(dm), dmem);
      }
    }
    ln1_.backward(ctx, s.ln1, dh, dx, ws);   // dx = LN1 path
    ops::axpy<T>(ctx, T(1), CView(dx1), dx);  // + residual
  }

  // ------------------------------------------------------------------------------------------
  // Cached generation without a memory (RelativeAttention::forward_step).

  /// Scratch bytes of `forward_step` for n new positions after `cached` ones (released on return).
  std::size_t step_workspace(std::int64_t batch, std::int64_t n, std::int64_t cached) const {
    std::int64_t const r = batch * n;
    return 3 * aligned_bytes<T>(r * cfg_.dim) + ln1_.forward_workspace(r) +
           std::max(attn_.step_workspace(batch, n, cached), ln2_.forward_workspace(r) + mlp_.forward_workspace(r));
  }

  /// Incremental forward of x [B, n, dim] at positions [pos, pos + n) into y [B, n, dim], equal to
  /// those rows of `forward` without a memory over [0, pos + n). kv_cache [B, capacity, 2 dim] and
  /// rk_cache [capacity, dim] are this block's attention caches (RelativeAttention::forward_step),
  /// holding what the steps from position 0 wrote. Scratch is released before returning.
  void forward_step(Ctx& ctx, CView x, MView kv_cache, MView rk_cache, std::int64_t pos, MView y,
                    Arena<Space>& ws) const {
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == cfg_.dim && y.shape == x.shape,
               "RelativeBlock::forward_step: x " << x.shape << ", y " << y.shape << " (expected [B, n, " << cfg_.dim
                                                 << "])");
    ArenaScope<Space> scope(ws);
    MView h1 = ws.template take<T>(x.shape, "relblock_step.h1");
    MView x1 = ws.template take<T>(x.shape, "relblock_step.x1");
    MView h2 = ws.template take<T>(x.shape, "relblock_step.h2");
    ln1_.forward(ctx, x, h1, ws);
    attn_.forward_step(ctx, CView(h1), kv_cache, rk_cache, pos, x1, ws);
    ops::axpy<T>(ctx, T(1), x, x1);  // x1 = x + attention
    ln2_.forward(ctx, CView(x1), h2, ws);
    {
      ArenaScope<Space> mlp_scope(ws);
      mlp_.forward(ctx, CView(h2), y, ws);
    }
    ops::axpy<T>(ctx, T(1), CView(x1), y);  // y = x1 + mlp
  }

  // ------------------------------------------------------------------------------------------
  // The attention-reconstruction loss of the Compressive Transformer: this block's content
  // attention (RelativeAttention::content_forward) of the segment's LN1(x) over LN1(rows), every
  // parameter held fixed; the gradient goes to the rows only.

  struct ContentSaved {
    typename LayerNorm<B, T>::Saved ln;
    MView hk;  // [B, n, dim] LN1(rows)
    typename Attention::ContentSaved attn;
  };
  std::size_t content_workspace(std::int64_t batch, std::int64_t t, std::int64_t n) const {
    return aligned_bytes<T>(batch * n * cfg_.dim) + ln1_.forward_workspace(batch * n) +
           attn_.content_workspace(batch, t, n);
  }
  std::size_t content_backward_workspace(std::int64_t batch, std::int64_t t, std::int64_t n) const {
    return aligned_bytes<T>(batch * n * cfg_.dim) +
           std::max(attn_.content_backward_workspace(batch, t, n), ln1_.input_backward_workspace());
  }
  /// y [B, T, dim]: the content attention of the saved forward's LN1(x) (s.h1) over LN1(rows)
  /// [B, n, dim]. rows must stay unchanged until content_backward.
  ContentSaved content_forward(Ctx& ctx, Saved const& s, CView rows, MView y, Arena<Space>& ws) const {
    ContentSaved c;
    c.hk = ws.template take<T>(rows.shape, "relblock.content_hk");
    c.ln = ln1_.forward(ctx, rows, c.hk, ws);
    c.attn = attn_.content_forward(ctx, CView(s.h1), CView(c.hk), y, ws);
    return c;
  }
  /// drows (overwritten) from dy of content_forward's y; no parameter gradient.
  void content_backward(Ctx& ctx, ContentSaved const& c, CView y, CView dy, MView drows, Arena<Space>& ws) const {
    ArenaScope<Space> scope(ws);
    MView dhk = ws.template take<T>(c.hk.shape, "relblock.content_dhk");
    attn_.content_backward_keys(ctx, c.attn, y, dy, dhk, ws);
    ln1_.backward_input(ctx, c.ln, CView(dhk), drows, ws);
  }

 private:
  static Config check(Config c) {
    HSEQ_CHECK(c.dim > 0 && c.heads > 0 && c.dim % c.heads == 0,
               "RelativeBlock: dim " << c.dim << " and heads " << c.heads
                                     << " must be positive, the heads dividing the width");
    return c;
  }
  Config cfg_;
  LayerNorm<B, T> ln1_;
  Attention attn_;
  LayerNorm<B, T> ln2_;
  Mlp<B, T> mlp_;
};

}  // namespace hseq::nn
