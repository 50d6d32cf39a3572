// SPDX-License-Identifier: MIT
/// @file
/// @brief Attention upsampling (trax `AttentionResampling`, upsampling):
///   s = LN(y)   q = LN(Query(s)) + res   q1 = q + Attn(Q = q, K = V = s)   u = q1 + Mlp(LN(q1))
/// res is the level's full-rate input (before the shift). Full-rate query p may attend to short
/// positions j <= floor(p / k), the rate-aware mask rates(1, 0, k, 0). With `Config::causal = false`
/// every full-rate query attends to all L / k short positions of y (mask none), for a bidirectional
/// decoder of an autoencoder; cached generation then throws.
///
/// The query source `Query` is an upsampling policy (hier/upsample_policy.hpp) without a residual,
/// applied to s: `Repeat` (trax's choice, the policy `AttentionUp`, kName "attention") or `LinearUp`
/// (a learned d -> k d projection, so each of the k full-rate positions of a short one gets its own
/// query: `AttentionUpLinear`, kName "attention_linear"). Either reads only short floor(p / k) for
/// position p, so the query adds nothing to what p sees. The query module's parameters are named
/// "query.*"; Repeat has none, so the names (and checkpoints) of `AttentionUp` are unchanged.
///
/// Over data-dependent segments (hier/ragged_policy.hpp; with a query source that has the ragged
/// form: Repeat, and LinearUp's position-indexed queries) full-rate position t cross-attends to the
/// summaries of every segment closed at or before t, j <= J(t) (cross-attention unpooling; the
/// segment t closes is visible at t, as in the other unpoolings). The visibility is an additive
/// score bias built on the host (hier/segment_bias.hpp) on the attention core's materialising path:
/// composed from verified ops, no kernel of its own. Cached generation keeps each row's keys/values
/// of its closed segments.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/attention_resample_core.hpp"
#include "hseq/hier/linear_upsample.hpp"
#include "hseq/hier/ragged_policy.hpp"
#include "hseq/hier/repeat_upsample.hpp"
#include "hseq/hier/resample_config.hpp"
#include "hseq/hier/segment_bias.hpp"
#include "hseq/hier/upsample_policy.hpp"
#include "hseq/nn/attention.hpp"
#include "hseq/nn/layer_norm.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::hier {

template <Backend B, class T, UpsamplePolicy<B, T> Query = Repeat>
class AttentionUpsample {
  // The query source sees the short sequence only: the residual enters q once, after LN(Query(s)).
  static_assert(!Query::kUsesResidual, "AttentionUpsample: the query source must not read the residual");

 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Ids = View<std::int32_t const, Space>;
  using Config = ResampleConfig;
  using Core = AttentionResampleCore<B, T>;
  using Attention = typename Core::Attention;
  using QueryModule = UpsampleModule<Query, B, T>;
  struct Saved {
    typename nn::LayerNorm<B, T>::Saved ln_s, ln_u;
    typename QueryModule::Saved query;
    typename Core::Saved core;  // q1 = q + attention, LN(q1), the MLP
    MView s;     // [B, Ls, d] LN(y)
    MView r;     // [B, L, d]  Query(s)
    MView q;     // [B, L, d]  LN(r) + res
    CView bias;  // over segments: [B, H, L, C] the attention's visibility (hier/segment_bias.hpp)
  };

  explicit AttentionUpsample(Config c)
      : cfg_(check_resample(c, "AttentionUpsample")),
        ln_s_({c.dim, c.eps}),
        query_(c),
        ln_u_({c.dim, c.eps}),
        core_(c, c.causal ? nn::AttentionMask::rates(1, 0, c.factor, 0) : nn::AttentionMask::none()) {}
  Config const& config() const { return cfg_; }
  Attention const& attention() const { return core_.attention(); }
  QueryModule const& query() const { return query_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    ln_s_.visit_params(f, prefix + "ln_s.");
    query_.visit_params(f, prefix + "query.");  // none for Repeat: the names of AttentionUp stay
    ln_u_.visit_params(f, prefix + "ln_u.");
    core_.visit_params(f, prefix);  // attn.*, ln_ff.*, mlp.*
  }

  std::size_t forward_workspace(std::int64_t batch, std::int64_t len) const {
    std::int64_t ls = len / cfg_.factor;
    return queries_workspace(batch, len, ls) + query_.forward_workspace(batch, len) +
           core_.forward_workspace(batch, len, ls);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t len) const {
    std::int64_t ls = len / cfg_.factor;
    return gradients_workspace(batch, len, ls) +
           std::max(core_.backward_workspace(batch, len, ls), query_.backward_workspace(batch, len));
  }

  /// y: [B, Ls, d] short sequence, res: [B, Ls k, d] full-rate residual, u: [B, Ls k, d].
  Saved forward(Ctx& ctx, CView y, CView res, MView u, Arena<Space>& ws) const {
    HSEQ_CHECK(y.rank() == 3 && y.size(2) == cfg_.dim &&
                   res.shape == (Shape{y.size(0), y.size(1) * cfg_.factor, cfg_.dim}) && u.shape == res.shape,
               "AttentionUpsample(k " << cfg_.factor << "): y " << y.shape << ", res " << res.shape << ", u "
                                      << u.shape);
    return forward_with(ctx, y, res, u, CView{}, ws,
                        [&](CView sn, MView r) { return query_.forward(ctx, sn, res, r, ws); });
  }
  /// Overwrites dy [B, Ls, d] and dres [B, L, d].
  void backward(Ctx& ctx, Saved const& s, CView du, MView dy, MView dres, Arena<Space>& ws) const {
    backward_with(ctx, s, du, dy, dres, ws,
                  [&](CView dr, MView ds) { query_.backward(ctx, s.query, dr, ds, MView{}, ws); });
  }

  // Cached generation: the key/value cache of s = LN(y) at the short rate, and the query module's
  // state, which step_short feeds the newest s: Repeat keeps s, LinearUp its k d projection, whose
  // row p mod k is the query source at full-rate position p.
  // Over segments (Config::segments), row b's cache rows [0, count[b]) hold its closed segments.
  struct StepState {
    Tensor<T, B> cache;  // [B, capacity / k + 1, 2 d]; over segments [B, capacity + 1, 2 d]
    typename QueryModule::StepState query;
    std::vector<std::int64_t> count;  // [B] segments only: each row's closed segments
  };
  StepState make_step_state(std::int64_t batch, std::int64_t capacity) const {
    HSEQ_CHECK(cfg_.causal, "AttentionUpsample: cached generation needs causal = true (this one is bidirectional)");
    return {Tensor<T, B>(Shape{batch, short_capacity(capacity), 2 * cfg_.dim}),
            query_.make_step_state(batch, capacity), std::vector<std::int64_t>(std::size_t(batch), 0)};
  }
  std::size_t step_workspace(std::int64_t batch, std::int64_t capacity) const {
    std::int64_t d = cfg_.dim, cap_s = short_capacity(capacity);
    std::size_t shrt = aligned_bytes<T>(batch * d) + ln_s_.forward_workspace(batch) +
                       std::max(core_.append_workspace(batch, 1), query_.step_workspace(batch, capacity));
    std::size_t up = 2 * aligned_bytes<T>(batch * d) + ln_u_.forward_workspace(batch) +
                     std::max(core_.step_workspace(batch, cap_s), query_.step_workspace(batch, capacity));
    return std::max(shrt, up);
  }
  /// Short position j was completed with output y [B, 1, d].
  void step_short(Ctx& ctx, StepState& st, CView y, std::int64_t j, Arena<Space>& ws) const {
    HSEQ_CHECK(cfg_.causal, "AttentionUpsample::step_short: cached generation needs causal = true");
    ArenaScope<Space> scope(ws);
    MView s = ws.template take<T>(y.shape, "aup_step.s");  // [B, 1, d] LN(y_j)
    ln_s_.forward(ctx, y, s, ws);
    {
      ArenaScope<Space> attn_scope(ws);
      core_.append_kv(ctx, CView(s), st.cache.view(), j, ws);
    }
    query_.step_short(ctx, st.query, CView(s), j, ws);
  }
  /// u [B, 1, d] at level position p with residual res [B, 1, d].
  void step_up(Ctx& ctx, StepState& st, CView res, std::int64_t p, MView u, Arena<Space>& ws) const {
    HSEQ_CHECK(cfg_.causal, "AttentionUpsample::step_up: cached generation needs causal = true");
    up_cached(ctx, res, st.cache.view(), p / cfg_.factor + 1, u, ws,
              [&](MView r) { query_.step_up(ctx, st.query, res, p, r, ws); });
  }

  // Data-dependent segments (RaggedUpsample, with a query source that has them): up = the global
  // rows b C + J(b, t), [B * L] (see the file comment).
  std::size_t ragged_forward_workspace(std::int64_t batch, std::int64_t len, std::int64_t c) const
    requires RaggedUpsample<Query, B, T>
  {
    return aligned_bytes<T>(batch * cfg_.heads * len * c) + queries_workspace(batch, len, c) +
           query_.ragged_forward_workspace(batch, len, c) + core_.forward_workspace(batch, len, c);
  }
  std::size_t ragged_backward_workspace(std::int64_t batch, std::int64_t len, std::int64_t c) const
    requires RaggedUpsample<Query, B, T>
  {
    return gradients_workspace(batch, len, c) +
           std::max(core_.backward_workspace(batch, len, c), query_.ragged_backward_workspace(batch, len, c));
  }
  /// y [B, C, d] segment summaries, res [B, L, d] the level input, u [B, L, d].
  Saved ragged_forward(Ctx& ctx, CView y, CView res, Ids up, MView u, Arena<Space>& ws) const
    requires RaggedUpsample<Query, B, T>
  {
    HSEQ_CHECK(y.rank() == 3 && y.size(2) == cfg_.dim && res.rank() == 3 && res.size(0) == y.size(0) &&
                   res.size(2) == cfg_.dim && u.shape == res.shape && up.numel() == res.size(0) * res.size(1),
               "AttentionUpsample: y " << y.shape << ", res " << res.shape << ", u " << u.shape << " and "
                                       << up.numel() << " segment indices");
    std::int64_t bsz = y.size(0), c = y.size(1), len = res.size(1);
    thread_local std::vector<std::int32_t> rows;
    thread_local std::vector<T> bias;
    rows.resize(std::size_t(bsz * len));
    B::download(ctx, rows.data(), up.data, rows.size());
    unpool_segment_bias<T>(rows.data(), bsz, len, c, cfg_.heads, bias);
    MView bv = ws.template take<T>(Shape{bsz, cfg_.heads, len, c}, "aup.segment_bias");
    B::upload(ctx, bv.data, bias.data(), bias.size());
    return forward_with(ctx, y, res, u, CView(bv), ws,
                        [&](CView sn, MView r) { return query_.ragged_forward(ctx, sn, res, up, r, ws); });
  }
  /// Overwrites dy [B, C, d] and dres [B, L, d]; the parameters' gradients are accumulated.
  void ragged_backward(Ctx& ctx, Saved const& s, Ids up, CView du, MView dy, MView dres, Arena<Space>& ws) const
    requires RaggedUpsample<Query, B, T>
  {
    backward_with(ctx, s, du, dy, dres, ws,
                  [&](CView dr, MView ds) { query_.ragged_backward(ctx, s.query, up, dr, ds, MView{}, ws); });
  }
  /// Cached generation, row `row`: its segment j closed with summary y [1, 1, d] (j = 0 starts the
  /// row afresh).
  void ragged_step_short(Ctx& ctx, StepState& st, std::int64_t row, CView y, std::int64_t j, Arena<Space>& ws) const
    requires RaggedUpsample<Query, B, T>
  {
    std::size_t r = std::size_t(row);
    HSEQ_CHECK(j == (j == 0 ? 0 : st.count[r]) && j < st.cache.shape()[1],
               "AttentionUpsample: row " << row << " closes segment " << j << " after " << st.count[r]
                                         << " (cache of " << st.cache.shape()[1] << " segments)");
    ArenaScope<Space> scope(ws);
    MView s = ws.template take<T>(y.shape, "aup_step.s");  // [1, 1, d] LN(y_j)
    ln_s_.forward(ctx, y, s, ws);
    {
      ArenaScope<Space> attn_scope(ws);
      core_.append_kv(ctx, CView(s), row_cache(st, row), j, ws);
    }
    st.count[r] = j + 1;
    query_.ragged_step_short(ctx, st.query, row, CView(s), j, ws);
  }
  /// u [1, 1, d] at row `row`'s next position, with residual res [1, 1, d].
  void ragged_step_up(Ctx& ctx, StepState& st, std::int64_t row, CView res, MView u, Arena<Space>& ws) const
    requires RaggedUpsample<Query, B, T>
  {
    std::size_t r = std::size_t(row);
    HSEQ_CHECK(st.count[r] > 0, "AttentionUpsample: row " << row << " has no closed segment to attend to");
    up_cached(ctx, res, row_cache(st, row), st.count[r], u, ws,
              [&](MView rq) { query_.ragged_step_up(ctx, st.query, row, res, rq, ws); });
  }

 private:
  /// s = LN(y), r = Query(s) (`query_fwd(s, r)`, numeric or over segments), q = LN(r) + res, then
  /// the core over (q, s) with the configured mask (`bias` empty) or the score bias.
  template <class QueryFwd>
  Saved forward_with(Ctx& ctx, CView y, CView res, MView u, CView bias, Arena<Space>& ws, QueryFwd&& query_fwd) const {
    Saved s;
    s.bias = bias;
    s.s = ws.template take<T>(y.shape, "aup.s");
    s.r = ws.template take<T>(res.shape, "aup.r");
    s.q = ws.template take<T>(res.shape, "aup.q");
    s.ln_s = ln_s_.forward(ctx, y, s.s, ws);
    s.query = query_fwd(CView(s.s), s.r);  // res unread (no kUsesResidual)
    s.ln_u = ln_u_.forward(ctx, s.r, s.q, ws);
    ops::axpy<T>(ctx, T(1), res, s.q);
    s.core = core_.forward(ctx, s.q, s.s, bias, u, ws);
    return s;
  }
  /// backward with the query module's own backward `query_back(dr, ds)` (numeric or over segments).
  template <class QueryBack>
  void backward_with(Ctx& ctx, Saved const& s, CView du, MView dy, MView dres, Arena<Space>& ws,
                     QueryBack&& query_back) const {
    ArenaScope<Space> scope(ws);
    MView dq = ws.template take<T>(s.q.shape, "aup.dq");
    MView dr = ws.template take<T>(s.q.shape, "aup.dr");
    MView ds = ws.template take<T>(s.s.shape, "aup.ds");
    MView ds2 = ws.template take<T>(s.s.shape, "aup.ds2");
    core_.backward(ctx, s.core, du, dq, ds, ws);  // dq = d(q); ds: the key/value path
    ops::copy<T>(ctx, dq, dres);                  // q = LN(r) + res
    ln_u_.backward(ctx, s.ln_u, dq, dr, ws);      // dr = d(r)
    query_back(CView(dr), ds2);                   // overwrites ds2; no residual gradient
    ops::axpy<T>(ctx, T(1), CView(ds2), ds);      // ds = d(s)
    ln_s_.backward(ctx, s.ln_s, ds, dy, ws);
  }
  /// One cached position: r = the query source's row (`query_step(r)`), q = LN(r) + res, then the
  /// core over the first tk rows of `cache`.
  template <class QueryStep>
  void up_cached(Ctx& ctx, CView res, MView cache, std::int64_t tk, MView u, Arena<Space>& ws,
                 QueryStep&& query_step) const {
    ArenaScope<Space> scope(ws);
    MView q = ws.template take<T>(res.shape, "aup_step.q");
    {
      ArenaScope<Space> query_scope(ws);
      MView r = ws.template take<T>(res.shape, "aup_step.r");  // the query source's row
      query_step(r);
      ln_u_.forward(ctx, CView(r), q, ws);
    }
    ops::axpy<T>(ctx, T(1), res, q);
    core_.forward_cached(ctx, q, cache, tk, u, ws);
  }
  /// forward's own buffers (s, r, q) and its LayerNorms' scratch, for ls short positions.
  std::size_t queries_workspace(std::int64_t batch, std::int64_t len, std::int64_t ls) const {
    std::int64_t d = cfg_.dim;
    return aligned_bytes<T>(batch * ls * d) + 2 * aligned_bytes<T>(batch * len * d) +
           ln_s_.forward_workspace(batch * ls) + ln_u_.forward_workspace(batch * len);
  }
  /// backward's own buffers (dq, dr, ds, ds2).
  std::size_t gradients_workspace(std::int64_t batch, std::int64_t len, std::int64_t ls) const {
    std::int64_t d = cfg_.dim;
    return 2 * aligned_bytes<T>(batch * len * d) + 2 * aligned_bytes<T>(batch * ls * d);
  }
  /// Short positions the cache holds for `capacity` inputs: capacity / k + 1, or over segments one
  /// per input (+ 1).
  std::int64_t short_capacity(std::int64_t capacity) const {
    return cfg_.segments ? capacity + 1 : capacity / cfg_.factor + 1;
  }
  /// Row `row` of the key/value cache, [1, rows, 2 d].
  static MView row_cache(StepState& st, std::int64_t row) {
    std::int64_t rows = st.cache.shape()[1], w2 = st.cache.shape()[2];
    return MView(st.cache.data() + row * rows * w2, Shape{1, rows, w2});
  }
  Config cfg_;
  nn::LayerNorm<B, T> ln_s_;
  QueryModule query_;
  nn::LayerNorm<B, T> ln_u_;
  Core core_;
};

/// Policy tag: attention upsampling with the query source `Query` (an upsampling policy without a
/// residual). Its name is "attention" for the Repeat query (trax's, the one the name always meant)
/// and "attention_" + Query::kName otherwise ("attention_linear").
template <class Query>
struct AttentionUpWith {
  static constexpr char const* kName = detail::attention_name<Query, Repeat>();
  static constexpr bool kUsesResidual = true;
  static constexpr bool kAttention = true;  // hier::kAttentionResampling: the Hourglass's flops() asks
  template <Backend B, class T>
  using Module = AttentionUpsample<B, T, Query>;
};
/// Policy tag: attention upsampling, queries from repetition (kName "attention").
using AttentionUp = AttentionUpWith<Repeat>;
/// Policy tag: attention upsampling, queries from a learned linear upsampling (kName
/// "attention_linear").
using AttentionUpLinear = AttentionUpWith<LinearUp>;

}  // namespace hseq::hier
