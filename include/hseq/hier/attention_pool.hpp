// SPDX-License-Identifier: MIT
/// @file
/// @brief Attention-pooling shortening (trax `AttentionResampling`, downsampling):
///   h = LN(x)   q = LN(Query(h))   q1 = q + Attn(Q = q, K = V = h)   y = q1 + Mlp(LN(q1))
/// x is the full-rate sequence already shifted right by k - 1. Short query i may attend to shifted
/// positions p <= i k + k - 1 (original positions <= i k), the rate-aware mask rates(k, k-1, 1, 0).
/// With `Config::causal = false` every short query attends to all L positions of x (mask none),
/// for a bidirectional encoder; then x need not be shifted, and cached generation throws.
///
/// The query source `Query` is a shortening policy (hier/shorten_policy.hpp) applied to h: `AvgPool`
/// (trax's choice, the policy `AttentionPool`, kName "attention") or `LinearPool` (a learned
/// k d -> d projection of each window, `AttentionPoolLinear`, kName "attention_linear"). Either
/// reads only its own window of h, so the query adds nothing to what short position i sees. The
/// query module's parameters are named "query.*"; AvgPool has none, so the names (and checkpoints)
/// of `AttentionPool` are those it had before the query source was a parameter.
///
/// Over data-dependent segments (hier/ragged_policy.hpp; with a query source that has the ragged
/// form, AvgPool: the policy `AttentionPool`) segment j's query is the LN of the mean of h over its
/// positions (e_{j-1}, e_j], and it attends over those positions only: attention over the segment's
/// bytes (the pooling the segmentation spec lists as attention over (e_{j-1}, e_j]). It reads
/// positions <= e_j only, so the level stays causal. The visibility is an additive score bias built
/// on the host (hier/segment_bias.hpp) on the attention core's materialising path: composed from
/// verified ops, no kernel of its own. Cached generation keeps the keys/values of each row's open
/// segment and attends over them when the segment closes.
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
#include "hseq/hier/avg_pool.hpp"
#include "hseq/hier/linear_pool.hpp"
#include "hseq/hier/ragged_policy.hpp"
#include "hseq/hier/resample_config.hpp"
#include "hseq/hier/segment_bias.hpp"
#include "hseq/hier/shorten_policy.hpp"
#include "hseq/nn/attention.hpp"
#include "hseq/nn/layer_norm.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/ops/elementwise.hpp"

namespace hseq::hier {

template <Backend B, class T, ShortenPolicy<B, T> Query = AvgPool>
class AttentionPoolShorten {
  // The cached path feeds the query module LN(x), whose shift rows are LN(0), not the zero rows a
  // stateful step_input (attention pooling's own key/value cache) would assume: so no attention
  // resampling as the query source (nor would it make sense: q is the short sequence's seed).
  static_assert(!kAttentionResampling<Query>, "AttentionPoolShorten: the query source must not be attention pooling");

 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Ids = View<std::int32_t const, Space>;
  using Config = ResampleConfig;
  using Core = AttentionResampleCore<B, T>;
  using Attention = typename Core::Attention;
  using QueryModule = ShortenModule<Query, B, T>;
  struct Saved {
    typename nn::LayerNorm<B, T>::Saved ln_in, ln_q;
    typename QueryModule::Saved query;
    typename Core::Saved core;  // q1 = q + attention, LN(q1), the MLP
    MView h;     // [B, L, d]  LN(x)
    MView p;     // [B, Ls, d] Query(h)
    MView q;     // [B, Ls, d] LN(p)
    CView bias;  // over segments: [B, H, C, L] the attention's visibility (hier/segment_bias.hpp)
  };

  explicit AttentionPoolShorten(Config c)
      : cfg_(check_resample(c, "AttentionPoolShorten")),
        ln_in_({c.dim, c.eps}),
        query_(c),
        ln_q_({c.dim, c.eps}),
        core_(c, c.causal ? nn::AttentionMask::rates(c.factor, c.factor - 1, 1, 0) : nn::AttentionMask::none()) {}
  Config const& config() const { return cfg_; }
  Attention const& attention() const { return core_.attention(); }
  QueryModule const& query() const { return query_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    ln_in_.visit_params(f, prefix + "ln_in.");
    query_.visit_params(f, prefix + "query.");  // none for AvgPool: the names of AttentionPool stay
    ln_q_.visit_params(f, prefix + "ln_q.");
    core_.visit_params(f, prefix);  // attn.*, ln_ff.*, mlp.*
  }

  std::size_t forward_workspace(std::int64_t batch, std::int64_t len) const {
    std::int64_t ls = len / cfg_.factor;
    return queries_workspace(batch, len, ls) + query_.forward_workspace(batch, len) +
           core_.forward_workspace(batch, ls, len);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t len) const {
    std::int64_t ls = len / cfg_.factor;
    return gradients_workspace(batch, len, ls) +
           std::max(core_.backward_workspace(batch, ls, len), query_.backward_workspace(batch, len));
  }

  /// x: [B, L, d] (shifted), y: [B, L / k, d].
  Saved forward(Ctx& ctx, CView x, MView y, Arena<Space>& ws) const {
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == cfg_.dim && x.size(1) % cfg_.factor == 0 &&
                   y.shape == (Shape{x.size(0), x.size(1) / cfg_.factor, cfg_.dim}),
               "AttentionPoolShorten(k " << cfg_.factor << "): x " << x.shape << ", y " << y.shape);
    return forward_with(ctx, x, y, CView{}, ws, [&](CView h, MView p) { return query_.forward(ctx, h, p, ws); });
  }
  void backward(Ctx& ctx, Saved const& s, CView dy, MView dx, Arena<Space>& ws) const {
    backward_with(ctx, s, dy, dx, ws, [&](CView dp, MView dh) { query_.backward(ctx, s.query, dp, dh, ws); });
  }

  // Cached generation. The state is the key/value cache of LN(shifted input): row q holds shifted
  // position q (level input q - k + 1; rows < k - 1 are the zero vectors of the shift), and the
  // query module's own state (empty for AvgPool and LinearPool), which sees LN(x).
  // Over segments, row b's cache rows [0, count[b]) hold its open segment's positions.
  struct StepState {
    Tensor<T, B> cache;  // [B, capacity + k - 1, 2 d]
    typename QueryModule::StepState query;
    std::vector<std::int64_t> count;  // [B] segments only: positions in each row's open segment
  };
  StepState make_step_state(std::int64_t batch, std::int64_t capacity) const {
    HSEQ_CHECK(cfg_.causal, "AttentionPoolShorten: cached generation needs causal = true (this one is bidirectional)");
    return {Tensor<T, B>(Shape{batch, capacity + cfg_.factor - 1, 2 * cfg_.dim}),
            query_.make_step_state(batch, capacity), std::vector<std::int64_t>(std::size_t(batch), 0)};
  }
  std::size_t step_workspace(std::int64_t batch, std::int64_t capacity) const {
    std::int64_t k = cfg_.factor, d = cfg_.dim;
    std::size_t input = aligned_bytes<T>(batch * std::max<std::int64_t>(k - 1, 1) * d) * 2 +
                        ln_in_.forward_workspace(batch * k) +
                        std::max(core_.append_workspace(batch, k), query_.step_workspace(batch, capacity));
    std::size_t pool = aligned_bytes<T>(batch * k * d) + 2 * aligned_bytes<T>(batch * d) +
                       ln_in_.forward_workspace(batch * k) + ln_q_.forward_workspace(batch) +
                       std::max(core_.step_workspace(batch, capacity + k), query_.step_workspace(batch, capacity));
    // Over segments (one row at a time): LN(x), the pooled query and LN of it.
    std::size_t ragged = 3 * aligned_bytes<T>(d) + ln_in_.forward_workspace(1) + ln_q_.forward_workspace(1) +
                         std::max({core_.step_workspace(1, capacity + k), query_.step_workspace(batch, capacity)});
    return std::max({input, pool, ragged});
  }
  /// Level input x_p [B, 1, d] at level position p: appends shifted position p + k - 1.
  void step_input(Ctx& ctx, StepState& st, CView x, std::int64_t p, Arena<Space>& ws) const {
    HSEQ_CHECK(cfg_.causal, "AttentionPoolShorten::step_input: cached generation needs causal = true");
    ArenaScope<Space> scope(ws);
    std::int64_t bsz = x.size(0), k = cfg_.factor, d = cfg_.dim;
    if (p == 0 && k > 1) {  // the k - 1 zero vectors the shift prepends
      MView z = ws.template take<T>(Shape{bsz, k - 1, d}, "apool_step.zeros");
      MView hz = ws.template take<T>(Shape{bsz, k - 1, d}, "apool_step.hz");
      ops::fill<T>(ctx, z, T(0));
      ln_in_.forward(ctx, z, hz, ws);
      core_.append_kv(ctx, hz, st.cache.view(), 0, ws);
    }
    MView h = ws.template take<T>(x.shape, "apool_step.h");
    ln_in_.forward(ctx, x, h, ws);
    core_.append_kv(ctx, h, st.cache.view(), p + k - 1, ws);
    query_.step_input(ctx, st.query, h, p, ws);
  }
  /// y [B, 1, d] for the short position completed at level position p (p % k == 0) from its window
  /// [B, k, d] of shifted inputs.
  void step_pool(Ctx& ctx, StepState& st, CView window, std::int64_t p, MView y, Arena<Space>& ws) const {
    HSEQ_CHECK(cfg_.causal, "AttentionPoolShorten::step_pool: cached generation needs causal = true");
    ArenaScope<Space> scope(ws);
    std::int64_t bsz = window.size(0), d = cfg_.dim;
    Shape one{bsz, 1, d};
    MView h = ws.template take<T>(window.shape, "apool_step.hw");
    MView pooled = ws.template take<T>(one, "apool_step.p"), q = ws.template take<T>(one, "apool_step.q");
    ln_in_.forward(ctx, window, h, ws);
    {
      ArenaScope<Space> query_scope(ws);
      query_.step_pool(ctx, st.query, h, p, pooled, ws);  // [B, k, d] -> [B, 1, d]
    }
    ln_q_.forward(ctx, pooled, q, ws);
    core_.forward_cached(ctx, q, st.cache.view(), p + cfg_.factor, y, ws);
  }

  // Data-dependent segments (RaggedShorten, with a query source that has them): pool = the global
  // rows b L + e_{b, j}, [B * C] (see the file comment).
  std::size_t ragged_forward_workspace(std::int64_t batch, std::int64_t len, std::int64_t c) const
    requires RaggedShorten<Query, B, T>
  {
    return aligned_bytes<T>(batch * cfg_.heads * c * len) + queries_workspace(batch, len, c) +
           query_.ragged_forward_workspace(batch, len, c) + core_.forward_workspace(batch, c, len);
  }
  std::size_t ragged_backward_workspace(std::int64_t batch, std::int64_t len, std::int64_t c) const
    requires RaggedShorten<Query, B, T>
  {
    return gradients_workspace(batch, len, c) +
           std::max(core_.backward_workspace(batch, c, len), query_.ragged_backward_workspace(batch, len, c));
  }
  /// x [B, L, d] (the level input, unshifted), y [B, C, d]: segment j of row b pooled over x[b,
  /// e_{j-1} + 1 .. e_j].
  Saved ragged_forward(Ctx& ctx, CView x, Ids pool, MView y, Arena<Space>& ws) const
    requires RaggedShorten<Query, B, T>
  {
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == cfg_.dim && y.rank() == 3 && y.size(0) == x.size(0) &&
                   y.size(2) == cfg_.dim && pool.numel() == y.size(0) * y.size(1),
               "AttentionPoolShorten: x " << x.shape << ", y " << y.shape << " and " << pool.numel()
                                          << " segment ends");
    std::int64_t bsz = x.size(0), len = x.size(1), c = y.size(1);
    thread_local std::vector<std::int32_t> ends;
    thread_local std::vector<T> bias;
    ends.resize(std::size_t(bsz * c));
    B::download(ctx, ends.data(), pool.data, ends.size());
    pool_segment_bias<T>(ends.data(), bsz, c, len, cfg_.heads, bias);
    MView bv = ws.template take<T>(Shape{bsz, cfg_.heads, c, len}, "apool.segment_bias");
    B::upload(ctx, bv.data, bias.data(), bias.size());
    return forward_with(ctx, x, y, CView(bv), ws,
                        [&](CView h, MView p) { return query_.ragged_forward(ctx, h, pool, p, ws); });
  }
  /// Overwrites dx [B, L, d]; the parameters' gradients are accumulated.
  void ragged_backward(Ctx& ctx, Saved const& s, Ids pool, CView dy, MView dx, Arena<Space>& ws) const
    requires RaggedShorten<Query, B, T>
  {
    backward_with(ctx, s, dy, dx, ws,
                  [&](CView dp, MView dh) { query_.ragged_backward(ctx, s.query, pool, dp, dh, ws); });
  }
  /// Cached generation, per row: input x [1, 1, d] at the row's level position `pos` joins its open
  /// segment (position 0 starts afresh).
  void ragged_step_input(Ctx& ctx, StepState& st, std::int64_t row, CView x, std::int64_t pos,
                         Arena<Space>& ws) const
    requires RaggedShorten<Query, B, T>
  {
    ArenaScope<Space> scope(ws);
    std::size_t r = std::size_t(row);
    if (pos == 0) st.count[r] = 0;
    HSEQ_CHECK(st.count[r] < st.cache.shape()[1], "AttentionPoolShorten: row " << row << "'s open segment outgrew the "
                                                                               << st.cache.shape()[1]
                                                                               << " positions of its cache");
    MView h = ws.template take<T>(x.shape, "apool_step.h");
    ln_in_.forward(ctx, x, h, ws);
    core_.append_kv(ctx, CView(h), row_cache(st, row), st.count[r]++, ws);
    query_.ragged_step_input(ctx, st.query, row, CView(h), pos, ws);
  }
  /// The row's input x [1, 1, d] (already given to ragged_step_input) closes its segment: y [1, 1, d].
  void ragged_step_emit(Ctx& ctx, StepState& st, std::int64_t row, CView x, MView y, Arena<Space>& ws) const
    requires RaggedShorten<Query, B, T>
  {
    ArenaScope<Space> scope(ws);
    std::size_t r = std::size_t(row);
    HSEQ_CHECK(st.count[r] > 0, "AttentionPoolShorten: row " << row << " closes a segment without an input");
    Shape one = x.shape;
    MView h = ws.template take<T>(one, "apool_step.h"), pooled = ws.template take<T>(one, "apool_step.p");
    MView q = ws.template take<T>(one, "apool_step.q");
    ln_in_.forward(ctx, x, h, ws);
    {
      ArenaScope<Space> query_scope(ws);
      query_.ragged_step_emit(ctx, st.query, row, CView(h), pooled, ws);
    }
    ln_q_.forward(ctx, pooled, q, ws);
    core_.forward_cached(ctx, q, row_cache(st, row), st.count[r], y, ws);
    st.count[r] = 0;
  }

 private:
  /// h = LN(x), p = Query(h) (`query_fwd(h, p)`, numeric or over segments), q = LN(p), then the core
  /// over (q, h) with the configured mask (`bias` empty) or the score bias.
  template <class QueryFwd>
  Saved forward_with(Ctx& ctx, CView x, MView y, CView bias, Arena<Space>& ws, QueryFwd&& query_fwd) const {
    Saved s;
    s.bias = bias;
    s.h = ws.template take<T>(x.shape, "apool.h");
    s.p = ws.template take<T>(y.shape, "apool.p");
    s.q = ws.template take<T>(y.shape, "apool.q");
    s.ln_in = ln_in_.forward(ctx, x, s.h, ws);
    s.query = query_fwd(CView(s.h), s.p);
    s.ln_q = ln_q_.forward(ctx, s.p, s.q, ws);
    s.core = core_.forward(ctx, s.q, s.h, bias, y, ws);
    return s;
  }
  /// backward with the query module's own backward `query_back(dp, dh)` (numeric or over segments).
  template <class QueryBack>
  void backward_with(Ctx& ctx, Saved const& s, CView dy, MView dx, Arena<Space>& ws, QueryBack&& query_back) const {
    ArenaScope<Space> scope(ws);
    MView dq = ws.template take<T>(s.q.shape, "apool.dq");
    MView dp = ws.template take<T>(s.q.shape, "apool.dp");
    MView dh = ws.template take<T>(s.h.shape, "apool.dh");
    MView dh2 = ws.template take<T>(s.h.shape, "apool.dh2");
    core_.backward(ctx, s.core, dy, dq, dh, ws);  // dq = d(q); dh: the key/value path
    ln_q_.backward(ctx, s.ln_q, dq, dp, ws);      // dp = d(p)
    query_back(CView(dp), dh2);                   // overwrites dh2: the query path
    ops::axpy<T>(ctx, T(1), CView(dh2), dh);      // dh = d(h)
    ln_in_.backward(ctx, s.ln_in, dh, dx, ws);
  }
  /// forward's own buffers (h, p, q) and its LayerNorms' scratch, for ls short positions.
  std::size_t queries_workspace(std::int64_t batch, std::int64_t len, std::int64_t ls) const {
    std::int64_t d = cfg_.dim;
    return aligned_bytes<T>(batch * len * d) + 2 * aligned_bytes<T>(batch * ls * d) +
           ln_in_.forward_workspace(batch * len) + ln_q_.forward_workspace(batch * ls);
  }
  /// backward's own buffers (dq, dp, dh, dh2).
  std::size_t gradients_workspace(std::int64_t batch, std::int64_t len, std::int64_t ls) const {
    std::int64_t d = cfg_.dim;
    return 2 * aligned_bytes<T>(batch * ls * d) + 2 * aligned_bytes<T>(batch * len * d);
  }
  /// Row `row` of the key/value cache, [1, rows, 2 d].
  static MView row_cache(StepState& st, std::int64_t row) {
    std::int64_t rows = st.cache.shape()[1], w2 = st.cache.shape()[2];
    return MView(st.cache.data() + row * rows * w2, Shape{1, rows, w2});
  }
  Config cfg_;
  nn::LayerNorm<B, T> ln_in_;
  QueryModule query_;
  nn::LayerNorm<B, T> ln_q_;
  Core core_;
};

/// Policy tag: attention pooling with the query source `Query` (a shortening policy). Its name is
/// "attention" for the AvgPool query (trax's, the one the name always meant) and "attention_" +
/// Query::kName otherwise ("attention_linear").
template <class Query>
struct AttentionPoolWith {
  static constexpr char const* kName = detail::attention_name<Query, AvgPool>();
  static constexpr bool kAttention = true;  // hier::kAttentionResampling: the Hourglass's flops() asks
  template <Backend B, class T>
  using Module = AttentionPoolShorten<B, T, Query>;
};
/// Policy tag: attention pooling, queries from average pooling (kName "attention").
using AttentionPool = AttentionPoolWith<AvgPool>;
/// Policy tag: attention pooling, queries from a learned linear pooling (kName "attention_linear").
using AttentionPoolLinear = AttentionPoolWith<LinearPool>;

}  // namespace hseq::hier
