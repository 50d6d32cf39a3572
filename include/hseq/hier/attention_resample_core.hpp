// SPDX-License-Identifier: MIT
/// @file
/// @brief `AttentionResampleCore`: what attention pooling and attention upsampling share once their
/// queries are formed (trax `AttentionResampling`):
///   q1 = q + Attn(Q = q, K = V = kv)    out = q1 + Mlp(LN(q1))
/// q [B, Tq, d] are the queries (the pooled or upsampled sequence), kv [B, Tk, d] the sequence at the
/// other rate. The attention takes its configured mask, or an explicit additive score bias
/// [B, H, Tq, Tk] (data-dependent segments, hier/segment_bias.hpp). Parameters "attn.*", "ln_ff.*",
/// "mlp.*" (the names the two modules have always given them).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/resample_config.hpp"
#include "hseq/nn/attention.hpp"
#include "hseq/nn/layer_norm.hpp"
#include "hseq/nn/mlp.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::hier {

template <Backend B, class T>
class AttentionResampleCore {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Attention = nn::MultiHeadAttention<B, T>;
  struct Saved {
    typename Attention::Saved attn;
    typename nn::LayerNorm<B, T>::Saved ln_ff;
    typename nn::Mlp<B, T>::Saved mlp;
    MView q1;  // [B, Tq, d] q + attention
    MView g;   // [B, Tq, d] LN(q1)
  };

  AttentionResampleCore(ResampleConfig const& c, nn::AttentionMask mask)
      : attn_({c.dim, c.heads, mask, true, c.init_std}),
        ln_ff_({c.dim, c.eps}),
        mlp_({c.dim, c.mlp_hidden, true, c.init_std}) {}
  Attention const& attention() const { return attn_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    attn_.visit_params(f, prefix + "attn.");
    ln_ff_.visit_params(f, prefix + "ln_ff.");
    mlp_.visit_params(f, prefix + "mlp.");
  }

  std::size_t forward_workspace(std::int64_t batch, std::int64_t tq, std::int64_t tk) const {
    std::int64_t d = attn_.config().dim;
    return 2 * aligned_bytes<T>(batch * tq * d) + attn_.forward_workspace({batch, tq, tk, 0}) +
           ln_ff_.forward_workspace(batch * tq) + mlp_.forward_workspace(batch * tq);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t tq, std::int64_t tk) const {
    std::int64_t d = attn_.config().dim;
    return 2 * aligned_bytes<T>(batch * tq * d) +
           std::max(mlp_.backward_workspace(batch * tq), attn_.backward_workspace({batch, tq, tk, 0}, false));
  }

  /// out [B, Tq, d] from q [B, Tq, d] and kv [B, Tk, d]; `bias` empty: the configured mask, else the
  /// additive score bias [B, H, Tq, Tk] (valid until `backward`).
  Saved forward(Ctx& ctx, CView q, CView kv, CView bias, MView out, Arena<Space>& ws) const {
    Saved s;
    s.q1 = ws.template take<T>(q.shape, "ares.q1");
    s.g = ws.template take<T>(q.shape, "ares.g");
    s.attn = bias.empty() ? attn_.forward(ctx, q, kv, CView{}, s.q1, ws)
                          : attn_.forward_biased(ctx, q, kv, bias, s.q1, ws);
    ops::axpy<T>(ctx, T(1), q, s.q1);
    s.ln_ff = ln_ff_.forward(ctx, s.q1, s.g, ws);
    s.mlp = mlp_.forward(ctx, s.g, out, ws);
    ops::axpy<T>(ctx, T(1), CView(s.q1), out);
    return s;
  }
  /// Overwrites dq [B, Tq, d] (both paths of q) and dkv [B, Tk, d]; accumulates the parameters'
  /// gradients.
  void backward(Ctx& ctx, Saved const& s, CView dout, MView dq, MView dkv, Arena<Space>& ws) const {
    ArenaScope<Space> scope(ws);
    MView dq1 = ws.template take<T>(s.q1.shape, "ares.dq1");
    MView dg = ws.template take<T>(s.q1.shape, "ares.dg");
    mlp_.backward(ctx, s.mlp, dout, dg, ws);
    ln_ff_.backward(ctx, s.ln_ff, dg, dq1, ws);
    ops::axpy<T>(ctx, T(1), dout, dq1);                      // d(q1)
    attn_.backward(ctx, s.attn, dq1, dq, dkv, MView{}, ws);  // query path, key/value path
    ops::axpy<T>(ctx, T(1), CView(dq1), dq);                 // d(q): the residual too
  }

  // Cached generation: the caller keeps a key/value cache [B, rows, 2 d] (append_kv) and queries
  // its first tk rows, all visible.
  std::size_t step_workspace(std::int64_t batch, std::int64_t tk) const {
    std::int64_t d = attn_.config().dim;
    // q1, g and LN's saved statistics stay while the MLP runs (the attention's scratch is released).
    return 2 * aligned_bytes<T>(batch * d) + ln_ff_.forward_workspace(batch) +
           std::max(attn_.cached_workspace(batch, 1, tk), mlp_.forward_workspace(batch));
  }
  /// Scratch of append_kv for n rows of a batch of `batch`.
  std::size_t append_workspace(std::int64_t batch, std::int64_t n) const { return attn_.cached_workspace(batch, n, n); }
  /// Writes the key/value projections of kv [B, n, d] into cache rows [pos, pos + n).
  void append_kv(Ctx& ctx, CView kv, MView cache, std::int64_t pos, Arena<Space>& ws) const {
    attn_.append_kv(ctx, kv, cache, pos, ws);
  }
  /// out [B, 1, d] for the query q [B, 1, d] over the first tk rows of cache.
  void forward_cached(Ctx& ctx, CView q, MView cache, std::int64_t tk, MView out, Arena<Space>& ws) const {
    ArenaScope<Space> scope(ws);
    MView q1 = ws.template take<T>(q.shape, "ares_step.q1"), g = ws.template take<T>(q.shape, "ares_step.g");
    attn_.attend_cached(ctx, q, cache, tk, q1, ws);
    ops::axpy<T>(ctx, T(1), q, q1);
    ln_ff_.forward(ctx, q1, g, ws);
    {
      ArenaScope<Space> mlp_scope(ws);
      mlp_.forward(ctx, g, out, ws);
    }
    ops::axpy<T>(ctx, T(1), CView(q1), out);
  }

 private:
  Attention attn_;
  nn::LayerNorm<B, T> ln_ff_;
  nn::Mlp<B, T> mlp_;
};

}  // namespace hseq::hier
