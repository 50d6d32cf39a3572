// SPDX-License-Identifier: MIT
/// @file
/// @brief Attention upsampling (trax `AttentionResampling`, upsampling):
///   s = LN(y)   q = LN(Repeat(s)) + res   q1 = q + Attn(Q = q, K = V = s)   u = q1 + Mlp(LN(q1))
/// res is the level's full-rate input (before the shift). Full-rate query p may attend to short
/// positions j <= floor(p / k), the rate-aware mask rates(1, 0, k, 0). With `Config::causal = false`
/// every full-rate query attends to all L / k short positions of y (mask none), for a bidirectional
/// decoder of an autoencoder; cached generation then throws.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/resample_config.hpp"
#include "hseq/nn/attention.hpp"
#include "hseq/nn/layer_norm.hpp"
#include "hseq/nn/mlp.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/resample.hpp"

namespace hseq::hier {

template <Backend B, class T>
class AttentionUpsample {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Config = ResampleConfig;
  using Attention = nn::MultiHeadAttention<B, T>;
  struct Saved {
    typename nn::LayerNorm<B, T>::Saved ln_s, ln_u, ln_ff;
    typename Attention::Saved attn;
    typename nn::Mlp<B, T>::Saved mlp;
    MView s;   // [B, Ls, d] LN(y)
    MView r;   // [B, L, d]  Repeat(s)
    MView q;   // [B, L, d]  LN(r) + res
    MView q1;  // [B, L, d]  q + attention
    MView g;   // [B, L, d]  LN(q1)
  };

  explicit AttentionUpsample(Config c)
      : cfg_(check_resample(c, "AttentionUpsample")),
        ln_s_({c.dim, c.eps}),
        ln_u_({c.dim, c.eps}),
        attn_({c.dim, c.heads, c.causal ? nn::AttentionMask::rates(1, 0, c.factor, 0) : nn::AttentionMask::none(), true,
               c.init_std}),
        ln_ff_({c.dim, c.eps}),
        mlp_({c.dim, c.mlp_hidden, true, c.init_std}) {}
  Config const& config() const { return cfg_; }
  Attention const& attention() const { return attn_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    ln_s_.visit_params(f, prefix + "ln_s.");
    ln_u_.visit_params(f, prefix + "ln_u.");
    attn_.visit_params(f, prefix + "attn.");
    ln_ff_.visit_params(f, prefix + "ln_ff.");
    mlp_.visit_params(f, prefix + "mlp.");
  }

  std::size_t forward_workspace(std::int64_t batch, std::int64_t len) const {
    std::int64_t ls = len / cfg_.factor, d = cfg_.dim;
    return aligned_bytes<T>(batch * ls * d) + 4 * aligned_bytes<T>(batch * len * d) +
           ln_s_.forward_workspace(batch * ls) + ln_u_.forward_workspace(batch * len) +
           attn_.forward_workspace({batch, len, ls, 0}) + ln_ff_.forward_workspace(batch * len) +
           mlp_.forward_workspace(batch * len);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t len) const {
    std::int64_t ls = len / cfg_.factor, d = cfg_.dim;
    return 3 * aligned_bytes<T>(batch * len * d) + 2 * aligned_bytes<T>(batch * ls * d) +
           std::max(mlp_.backward_workspace(batch * len), attn_.backward_workspace({batch, len, ls, 0}, false));
  }

  /// y: [B, Ls, d] short sequence, res: [B, Ls k, d] full-rate residual, u: [B, Ls k, d].
  Saved forward(Ctx& ctx, CView y, CView res, MView u, Arena<Space>& ws) const {
    HSEQ_CHECK(y.rank() == 3 && y.size(2) == cfg_.dim &&
                   res.shape == (Shape{y.size(0), y.size(1) * cfg_.factor, cfg_.dim}) && u.shape == res.shape,
               "AttentionUpsample(k " << cfg_.factor << "): y " << y.shape << ", res " << res.shape << ", u "
                                      << u.shape);
    Saved s;
    s.s = ws.template take<T>(y.shape, "aup.s");
    s.r = ws.template take<T>(res.shape, "aup.r");
    s.q = ws.template take<T>(res.shape, "aup.q");
    s.q1 = ws.template take<T>(res.shape, "aup.q1");
    s.g = ws.template take<T>(res.shape, "aup.g");
    s.ln_s = ln_s_.forward(ctx, y, s.s, ws);
    ops::repeat_rows<T>(ctx, s.s, s.r, cfg_.factor);
    s.ln_u = ln_u_.forward(ctx, s.r, s.q, ws);
    ops::axpy<T>(ctx, T(1), res, s.q);
    s.attn = attn_.forward(ctx, s.q, s.s, CView{}, s.q1, ws);
    ops::axpy<T>(ctx, T(1), s.q, s.q1);
    s.ln_ff = ln_ff_.forward(ctx, s.q1, s.g, ws);
    s.mlp = mlp_.forward(ctx, s.g, u, ws);
    ops::axpy<T>(ctx, T(1), s.q1, u);
    return s;
  }

  /// Overwrites dy [B, Ls, d] and dres [B, L, d].
  void backward(Ctx& ctx, Saved const& s, CView du, MView dy, MView dres, Arena<Space>& ws) const {
    ArenaScope<Space> scope(ws);
    MView dq1 = ws.template take<T>(s.q.shape, "aup.dq1");
    MView dg = ws.template take<T>(s.q.shape, "aup.dg");
    MView dq = ws.template take<T>(s.q.shape, "aup.dq");
    MView ds = ws.template take<T>(s.s.shape, "aup.ds");
    MView ds2 = ws.template take<T>(s.s.shape, "aup.ds2");
    mlp_.backward(ctx, s.mlp, du, dg, ws);
    ln_ff_.backward(ctx, s.ln_ff, dg, dq1, ws);
    ops::axpy<T>(ctx, T(1), du, dq1);                       // dq1 = d(q1)
    attn_.backward(ctx, s.attn, dq1, dq, ds, MView{}, ws);  // query path, key/value path
    ops::axpy<T>(ctx, T(1), CView(dq1), dq);                // dq = d(q)
    ops::copy<T>(ctx, dq, dres);                            // q = LN(r) + res
    ln_u_.backward(ctx, s.ln_u, dq, dg, ws);                // dg = d(r)
    ops::repeat_rows_backward<T>(ctx, dg, ds2, cfg_.factor);
    ops::axpy<T>(ctx, T(1), CView(ds2), ds);                // ds = d(s)
    ln_s_.backward(ctx, s.ln_s, ds, dy, ws);
  }

  // Cached generation: the key/value cache of s = LN(y) at the short rate, and the newest s.
  struct StepState {
    Tensor<T, B> s_last;  // [B, 1, d]
    Tensor<T, B> cache;   // [B, capacity / k + 1, 2 d]
  };
  StepState make_step_state(std::int64_t batch, std::int64_t capacity) const {
    HSEQ_CHECK(cfg_.causal, "AttentionUpsample: cached generation needs causal = true (this one is bidirectional)");
    return {Tensor<T, B>(Shape{batch, 1, cfg_.dim}), Tensor<T, B>(Shape{batch, capacity / cfg_.factor + 1, 2 * cfg_.dim})};
  }
  std::size_t step_workspace(std::int64_t batch, std::int64_t capacity) const {
    std::int64_t d = cfg_.dim, cap_s = capacity / cfg_.factor + 1;
    std::size_t shrt = ln_s_.forward_workspace(batch) + attn_.cached_workspace(batch, 1, cap_s);
    std::size_t up = 4 * aligned_bytes<T>(batch * d) + ln_u_.forward_workspace(batch) + ln_ff_.forward_workspace(batch) +
                     std::max(attn_.cached_workspace(batch, 1, cap_s), mlp_.forward_workspace(batch));
    return std::max(shrt, up);
  }
  /// Short position j was completed with output y [B, 1, d].
  void step_short(Ctx& ctx, StepState& st, CView y, std::int64_t j, Arena<Space>& ws) const {
    HSEQ_CHECK(cfg_.causal, "AttentionUpsample::step_short: cached generation needs causal = true");
    ArenaScope<Space> scope(ws);
    ln_s_.forward(ctx, y, st.s_last.view(), ws);
    attn_.append_kv(ctx, st.s_last.cview(), st.cache.view(), j, ws);
  }
  /// u [B, 1, d] at level position p with residual res [B, 1, d].
  void step_up(Ctx& ctx, StepState& st, CView res, std::int64_t p, MView u, Arena<Space>& ws) const {
    HSEQ_CHECK(cfg_.causal, "AttentionUpsample::step_up: cached generation needs causal = true");
    ArenaScope<Space> scope(ws);
    Shape one = res.shape;
    MView q = ws.template take<T>(one, "aup_step.q"), q1 = ws.template take<T>(one, "aup_step.q1");
    MView g = ws.template take<T>(one, "aup_step.g");
    ln_u_.forward(ctx, st.s_last.cview(), q, ws);  // Repeat(s) at p is the newest s
    ops::axpy<T>(ctx, T(1), res, q);
    attn_.attend_cached(ctx, q, st.cache.view(), p / cfg_.factor + 1, q1, ws);
    ops::axpy<T>(ctx, T(1), CView(q), q1);
    ln_ff_.forward(ctx, q1, g, ws);
    {
      ArenaScope<Space> mlp_scope(ws);
      mlp_.forward(ctx, g, u, ws);
    }
    ops::axpy<T>(ctx, T(1), CView(q1), u);
  }

 private:
  Config cfg_;
  nn::LayerNorm<B, T> ln_s_, ln_u_;
  Attention attn_;
  nn::LayerNorm<B, T> ln_ff_;
  nn::Mlp<B, T> mlp_;
};

/// Policy tag: attention upsampling.
struct AttentionUp {
  static constexpr char const* kName = "attention";
  static constexpr bool kUsesResidual = true;
  template <Backend B, class T>
  using Module = AttentionUpsample<B, T>;
};

}  // namespace hseq::hier
