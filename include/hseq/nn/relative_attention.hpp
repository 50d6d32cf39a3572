// SPDX-License-Identifier: MIT
/// @file
/// @brief `RelativeAttention`: Transformer-XL relative multi-head self-attention over a memory
/// (Dai et al. 2019, "Transformer-XL", section 3.3), composed from the attention core.
///
/// For a segment x [B, T, d] and a memory m [B, M, d] (M may be 0), h = [m; x] of L = M + T rows:
///   q = x Wq + bq                     [B, T, H dh]
///   [k v] = h Wkv + bkv               [B, L, 2 H dh]
///   R[δ] = sinusoid(δ s), δ = 0..Dr-1 [Dr, d]       (s = distance_scale; table layout below)
///   Rk = R Wr                         [Dr, H dh]    (Wr: no bias)
///   score(b, h, i, j) = ((q_i + u_h) . k_j + (q_i + v_h) . Rk[δ'(i, j), h]) / sqrt(dh)
///   y = softmax_j(score) v Wo + bo    causal: key j is visible to query i iff j <= M + i
/// where δ(i, j) = (M + i) - j is the distance from query i (key row M + i) to key j, and
/// δ' = min(δ, clamp_len) when clamp_len > 0 (else δ' = δ). Only Dr = min(L, clamp_len + 1) rows
/// of R (all L without clamping) can be indexed, so only those are built and projected.
///
/// Distance scale (`Config::distance_scale` = s, default 1): a sequence shortened by a cumulative
/// factor f (an Hourglass level, Nawrot et al. 2022, which use this attention in every stack)
/// has rows f full-rate tokens apart, so the distance δ between two of its rows is δ f tokens, and
/// with s = f the table row is the sinusoid of that token distance: R[δ] = sinusoid(δ f). Every
/// level then reads the one sinusoid of token distances instead of calling its neighbour "1 apart"
/// whether it is 1 or 16 tokens away. Clamping applies to δ (this sequence's rows): R[δ'] with
/// δ' = min(δ, clamp_len). s = 1 is Transformer-XL exactly (the same ops, bit for bit). s > 1
/// builds the sinusoids of positions 0..(Dr-1) s in a table [(Dr-1) s + 1, d] and copies every s-th
/// row (ops::copy_mat with a row stride). forward keeps that table with its saved buffers (O(Dr s d)
/// = about one [full-rate length, d] activation per layer, independent of the batch) rather than
/// releasing it, so that forward still carves only what it keeps and every plan built from
/// forward_workspace stays exact.
///
/// Sinusoid layout: the library's table (ops/position.hpp, `ops::add_sinusoidal`), interleaved:
/// R[δ, 2k] = sin(δ / 10000^(2k/d)), R[δ, 2k+1] = cos(same angle). Transformer-XL concatenates
/// [sin | cos] instead; that is a fixed permutation of R's columns, which the learned Wr absorbs,
/// so the model class is the same (to import Transformer-XL weights, permute r.weight's columns).
///
/// How it is computed (by direct indexing of distances, no pad-and-reshape shift):
///   - content term: the attention core (ops/attention.hpp) with query q + u, so it computes
///     (q + u) . k / sqrt(dh) itself; the memory is the core's key prefix (AttentionDims::prefix =
///     M) under the causal mask, which makes query i see keys j <= M + i;
///   - position term: P[b, h, i, δ] = (q_i + v_h) . Rk[δ, h] / sqrt(dh) by one GEMM per (b, h)
///     (strided-batched over the heads), then dense[b, h, i, j] = P[b, h, i, δ'(i, j)] for
///     visible j (0 for masked j), passed to the core as `AttentionScores::dense`. The core adds
///     `dense` to the already scaled logit, hence the 1/sqrt(dh) in P (folded into the GEMM's alpha).
///   - backward: the core returns dL/dlogits in `AttentionScoreGrads::dense`; dP is its
///     scatter-add along δ' (the same indexing), then d(q + v) = dP Rk / sqrt(dh),
///     dRk = dP^T (q + v) / sqrt(dh) summed over b and i, dWr through the r Linear with R as input;
///     du_h, dv_h are the sums over b and i of d(q + u), d(q + v); dq is their sum.
/// P lives in the first Dr columns of the dense buffer's rows and is spread over its row in place
/// (`ops::spread_relative_rows`); dP is gathered back the same way inside the dL/dlogits buffer
/// (`ops::gather_relative_rows`). That needs no buffer besides the ones the core needs anyway, so
/// forward carves only what it saves.
///
/// Cached generation (`forward_step`, self-attention without a memory): the keys/values of the
/// positions < pos are in a cache [B, capacity, 2 H dh] and Rk's rows δ < pos in a table
/// [capacity, H dh]; a step over [pos, pos + n) appends its keys/values and the Rk rows of the new
/// distances pos..pos+n-1 (n sinusoid rows and an [n, d] x [d, H dh] GEMM, O(n d^2), instead of
/// O((pos + n) d^2) to rebuild the table), then attends with the same dense bias as forward over
/// the Dr = pos + n (clamped) distances: O(B H n (pos + n) dh), like the content term. Rk depends on
/// Wr only, so the table rows stay valid as long as the parameters do, as the cached keys do.
///
/// Backends: every step is an op with a CPU and a CUDA implementation (gemm_strided_batched,
/// elementwise, add_sinusoidal, copy_mat, the relative-row spread/gather, the attention core).
///
/// Parameters: "q.", "kv.", "out." as nn::MultiHeadAttention, "r." (Linear d -> H dh, no bias),
/// "u" and "v" [H, dh] (the global content and position biases, zero at init as in
/// Transformer-XL; no weight decay, like the other biases).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/memory_space.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/attention.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/ops/attention.hpp"
#include "hseq/ops/attention_mask.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/gemm.hpp"
#include "hseq/ops/mat.hpp"
#include "hseq/ops/position.hpp"

namespace hseq::nn {

template <Backend B, class T>
class RelativeAttention {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;

  struct Config {
    std::int64_t dim = 0, heads = 1;
    bool bias = true;         ///< biases of the q, kv and out projections (r never has one)
    double init_std = 0.02;   ///< std of every projection weight
    std::int64_t clamp_len = 0;  ///< > 0: distances past clamp_len use R[clamp_len]; 0: no clamping
    double out_init_std = 0.0;   ///< std of the output projection; 0 means init_std
    /// s >= 1: R[δ] = sinusoid(δ s) (see the file comment). An integer, not a double: the scale is
    /// an Hourglass level's cumulative shortening factor (a product of integer factors), so δ s is
    /// an exact token distance and its sinusoid is the very row the full-rate table has for it,
    /// computed by the existing integer-position op (ops::add_sinusoidal on CPU and CUDA). A
    /// fractional scale has no user and would need a new kernel for fractional positions.
    std::int64_t distance_scale = 1;
  };
  /// Sizes of one call: segment x [B, T, dim], memory [B, M, dim] (M may be 0).
  struct Dims {
    std::int64_t batch = 0, t = 0, m = 0;
  };
  struct Saved {
    Dims dims;
    typename Linear<B, T>::Saved q_lin, kv_lin, mem_lin, r_lin, out_lin;
    MView qu;     // [B, T, H dh] q + u: the content query the core attends with
    MView qv;     // [B, T, H dh] q + v: the position query
    MView kv;     // [B, L, 2 H dh] keys and values of [memory; x], memory rows first
    MView kv_x;   // [B, T, 2 H dh] projection of x (only with a memory; else aliases kv)
    MView kv_m;   // [B, M, 2 H dh] projection of the memory
    MView r;      // [Dr, dim] sinusoids of the distances (0..Dr-1) s (the r Linear's saved input)
    MView r_all;  // [1, (Dr-1) s + 1, dim] sinusoids of the positions 0..(Dr-1) s (only when s > 1)
    MView rk;     // [Dr, H dh] R Wr
    MView dense;  // [B, H, T, L] position term of the logits, already divided by sqrt(dh)
    MView stats;  // what the attention core saves: ops::attention_stats_shape
    MView att;    // [B, T, H dh] attention output before the output projection
  };

  explicit RelativeAttention(Config c)
      : cfg_(check(c)),
        q_({c.dim, c.dim, c.bias, c.init_std}),
        kv_({c.dim, 2 * c.dim, c.bias, c.init_std}),
        r_({c.dim, c.dim, false, c.init_std}),
        out_({c.dim, c.dim, c.bias, c.out_init_std > 0 ? c.out_init_std : c.init_std}),
        u_(Shape{c.heads, c.dim / c.heads}, InitSpec::zeros(), false),
        v_(Shape{c.heads, c.dim / c.heads}, InitSpec::zeros(), false) {}
  Config const& config() const { return cfg_; }
  std::int64_t head_dim() const { return cfg_.dim / cfg_.heads; }
  /// Rows of the sinusoid table a call over L = M + T keys indexes: distances 0..L-1, clamped.
  std::int64_t distance_rows(Dims d) const {
    std::int64_t l = d.m + d.t;
    return cfg_.clamp_len > 0 ? std::min(l, cfg_.clamp_len + 1) : l;
  }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    q_.visit_params(f, prefix + "q.");
    kv_.visit_params(f, prefix + "kv.");
    out_.visit_params(f, prefix + "out.");
    r_.visit_params(f, prefix + "r.");
    f(prefix + "u", u_);
    f(prefix + "v", v_);
  }

  /// Bytes `forward` carves (all of it is kept until backward; forward has no other scratch).
  std::size_t forward_workspace(Dims d) const {
    return measure_workspace<Space>([&](Arena<Space>& a) { carve(a, d); });
  }
  /// Peak scratch of `backward` (carved after forward's saved buffers, released on return).
  std::size_t backward_workspace(Dims d) const {
    return measure_workspace<Space>([&](Arena<Space>& a) { carve_grads(a, d); });
  }

  /// Without a memory: y = RelAttn(x).
  Saved forward(Ctx& ctx, CView x, MView y, Arena<Space>& ws) const { return forward(ctx, x, CView{}, y, ws); }

  /// y [B, T, dim] = relative attention of the segment x [B, T, dim] over [mem; x]; `mem`
  /// [B, M, dim] may be empty (M = 0). x and mem must stay unchanged until backward. `key_mass`
  /// [B, H, M + T], when given, receives the attention mass each key gets (summed over the
  /// queries; the attention core's `AttentionScores::key_mass`), for "most-used" compression.
  Saved forward(Ctx& ctx, CView x, CView mem, MView y, Arena<Space>& ws, MView key_mass = {}) const {
    std::int64_t const w = cfg_.dim;
    HSEQ_CHECK(x.rank() == 3 && x.size(0) >= 1 && x.size(1) >= 1 && x.size(2) == w && y.shape == x.shape,
               "RelativeAttention(dim " << w << "): x " << x.shape << ", y " << y.shape
                                        << " (expected [B, T, dim] with B, T >= 1, and y like x)");
    HSEQ_CHECK(mem.empty() || (mem.rank() == 3 && mem.size(0) == x.size(0) && mem.size(2) == w),
               "RelativeAttention: memory " << mem.shape << " must be [" << x.size(0) << ", M, " << w
                                            << "] (batch and width of x " << x.shape << ")");
    Dims const d{x.size(0), x.size(1), mem.empty() ? 0 : mem.size(1)};
    std::int64_t const dr = distance_rows(d);
    Saved s = carve(ws, d);
    // Content query q + u and position query q + v, both from one projection.
    s.q_lin = q_.forward(ctx, x, s.qu, ws);
    ops::copy<T>(ctx, s.qu, s.qv);
    ops::add_bias<T>(ctx, s.qu, flat(u_.value));
    ops::add_bias<T>(ctx, s.qv, flat(v_.value));
    // Keys and values of [memory; x], memory rows first (the core's prefix).
    s.kv_lin = kv_.forward(ctx, x, s.kv_x, ws);
    if (d.m > 0) {
      s.mem_lin = kv_.forward(ctx, mem, s.kv_m, ws);
      concat_time<T>(ctx, s.kv_m, s.kv_x, s.kv);
    }
    // R [Dr, dim]: the sinusoid of each (scaled) distance; Rk = R Wr.
    distance_sinusoids(ctx, s.r, 0, s.r_all);
    s.r_lin = r_.forward(ctx, s.r, s.rk, ws);
    position_bias(ctx, d, CView(s.qv), CView(s.rk), dr, s.dense);
    ops::AttentionScores<T, Space> sc;
    sc.dense = s.dense;
    sc.key_mass = key_mass;
    ops::attention_forward<T>(ctx, core_dims(d), ops::AttentionMask::causal(), scale(), s.qu, s.kv, s.att, s.stats, sc);
    s.out_lin = out_.forward(ctx, s.att, y, ws);
    return s;
  }

  /// Overwrites dx [B, T, dim] and dmem [B, M, dim] (either may be empty: not needed); parameter
  /// gradients accumulate (frozen ones are skipped).
  void backward(Ctx& ctx, Saved const& s, CView dy, MView dx, MView dmem, Arena<Space>& ws) const {
    Dims const& d = s.dims;
    std::int64_t const w = cfg_.dim, l = d.m + d.t, hd = head_dim(), dr = distance_rows(d);
    HSEQ_CHECK(dy.shape == (Shape{d.batch, d.t, w}),
               "RelativeAttention::backward: dy " << dy.shape << ", expected " << Shape{d.batch, d.t, w});
    HSEQ_CHECK(dx.empty() || dx.shape == (Shape{d.batch, d.t, w}),
               "RelativeAttention::backward: dx " << dx.shape << ", expected " << Shape{d.batch, d.t, w});
    HSEQ_CHECK(dmem.empty() || dmem.shape == (Shape{d.batch, d.m, w}),
               "RelativeAttention::backward: dmem " << dmem.shape << ", expected " << Shape{d.batch, d.m, w});
    ArenaScope<Space> scope(ws);
    Grads g = carve_grads(ws, d);
    out_.backward(ctx, s.out_lin, dy, g.datt, ws);
    ops::AttentionScores<T, Space> sc;
    sc.dense = s.dense;
    ops::AttentionScoreGrads<T, Space> dsc;
    dsc.dense = g.dlogits;
    ops::attention_backward<T>(ctx, core_dims(d), ops::AttentionMask::causal(), scale(), s.qu, s.kv, s.att, s.stats,
                               g.datt, g.dqu, g.dkv, g.scratch, sc, dsc);
    // dP[b, h, i, δ'] = sum of dL/dlogits[b, h, i, j] over j with δ'(i, j) = δ'
    ops::gather_relative_rows<T>(ctx, rows_of(d, g.dlogits), d.m, d.t, dr);
    // d(q + v) = dP Rk / sqrt(dh) per (b, h) [T, dh];  dRk = sum_b dP^T (q + v) / sqrt(dh) [Dr, dh].
    for (std::int64_t b = 0; b < d.batch; ++b) {
      ops::Mat<T const, Space> dp(g.dlogits.data + b * cfg_.heads * d.t * l, d.t, dr, l);
      ops::gemm_strided_batched<T>(ctx, cfg_.heads, ops::Trans::kNo, dp, d.t * l, ops::Trans::kNo,
                                   ops::Mat<T const, Space>(s.rk.data, dr, hd, w), hd,
                                   ops::Mat<T, Space>(g.dqv.data + b * d.t * w, d.t, hd, w), hd, scale(), T(0));
      ops::gemm_strided_batched<T>(ctx, cfg_.heads, ops::Trans::kYes, dp, d.t * l, ops::Trans::kNo,
                                   ops::Mat<T const, Space>(s.qv.data + b * d.t * w, d.t, hd, w), hd,
                                   ops::Mat<T, Space>(g.drk.data, dr, hd, w), hd, scale(), b == 0 ? T(0) : T(1));
    }
    r_.backward(ctx, s.r_lin, g.drk, MView{}, ws);  // dWr += dRk^T R; R is a constant
    if (!u_.frozen) ops::bias_grad<T>(ctx, g.dqu, flat(u_.grad));
    if (!v_.frozen) ops::bias_grad<T>(ctx, g.dqv, flat(v_.grad));
    ops::axpy<T>(ctx, T(1), g.dqv, g.dqu);  // dq = d(q + u) + d(q + v)
    q_.backward(ctx, s.q_lin, g.dqu, dx, ws);
    MView dkv_x = g.dkv;
    if (d.m > 0) {
      dkv_x = g.dkv_x;
      split_time<T>(ctx, g.dkv, g.dkv_m, g.dkv_x);
      kv_.backward(ctx, s.mem_lin, g.dkv_m, dmem, ws);
    }
    // x feeds both the query and the key/value projections: sum the two paths into dx.
    kv_.backward(ctx, s.kv_lin, dkv_x, dx.empty() ? MView{} : g.dx_kv, ws);
    if (!dx.empty()) ops::axpy<T>(ctx, T(1), g.dx_kv, dx);
  }

  // ------------------------------------------------------------------------------------------
  // Cached generation (self-attention without a memory; see the file comment).

  /// Scratch bytes of `forward_step` for n new positions after `cached` ones (released on return).
  /// Non-decreasing in `cached`, so the plan for a cache's capacity covers every step into it.
  std::size_t step_workspace(std::int64_t batch, std::int64_t n, std::int64_t cached) const {
    Dims const d{batch, n, cached};
    return measure_workspace<Space>([&](Arena<Space>& a) { carve_step(a, d); });
  }

  /// Incremental causal self-attention: x [B, n, dim] holds positions [pos, pos + n); kv_cache
  /// [B, capacity, 2 H dh] holds the key/value projections of the positions < pos and rk_cache
  /// [capacity, H dh] the rows δ < pos of Rk = R Wr (both as earlier steps from position 0 left
  /// them); the step writes the new positions' keys/values into kv_cache rows [pos, pos + n) and
  /// the new distances' Rk rows (δ in [pos, pos + n), up to clamp_len) into rk_cache. y [B, n, dim]
  /// equals the rows [pos, pos + n) of `forward` (no memory) over positions [0, pos + n).
  void forward_step(Ctx& ctx, CView x, MView kv_cache, MView rk_cache, std::int64_t pos, MView y,
                    Arena<Space>& ws) const {
    std::int64_t const w = cfg_.dim;
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == w && y.shape == x.shape && kv_cache.rank() == 3 &&
                   kv_cache.size(0) == x.size(0) && kv_cache.size(2) == 2 * w &&
                   rk_cache.shape == (Shape{kv_cache.size(1), w}),
               "RelativeAttention::forward_step: x " << x.shape << ", y " << y.shape << ", key/value cache "
                   << kv_cache.shape << ", Rk cache " << rk_cache.shape
                   << " (expected [B, n, dim], [B, capacity, 2 dim], [capacity, dim])");
    std::int64_t const bsz = x.size(0), n = x.size(1), cap = kv_cache.size(1);
    HSEQ_CHECK(pos >= 0 && pos + n <= cap, "RelativeAttention::forward_step: positions [" << pos << ", " << pos + n
                                                                                          << ") exceed the cache of "
                                                                                          << cap << " positions");
    ArenaScope<Space> scope(ws);
    Dims const d{bsz, n, pos};  // the cached positions play the memory's part: M = pos, L = pos + n
    std::int64_t const dr = distance_rows(d), fresh = new_distance_rows(d);
    StepBufs sb = carve_step(ws, d);
    // The Rk rows of the distances this step adds: δ in [pos, pos + fresh).
    if (fresh > 0) {
      MView r(sb.r.data, Shape{fresh, w});
      MView all = sb.r_all.empty() ? MView{} : MView(sb.r_all.data, Shape{1, (fresh - 1) * cfg_.distance_scale + 1, w});
      distance_sinusoids(ctx, r, pos, all);
      r_.forward(ctx, CView(r), MView(rk_cache.data + pos * w, Shape{fresh, w}), ws);
    }
    q_.forward(ctx, x, sb.qu, ws);
    ops::copy<T>(ctx, sb.qu, sb.qv);
    ops::add_bias<T>(ctx, sb.qu, flat(u_.value));
    ops::add_bias<T>(ctx, sb.qv, flat(v_.value));
    kv_.forward(ctx, x, sb.kv, ws);
    ops::copy_mat<T>(ctx, ops::Mat<T const, Space>(sb.kv.data, bsz, n * 2 * w, n * 2 * w),
                     ops::Mat<T, Space>(kv_cache.data + pos * 2 * w, bsz, n * 2 * w, cap * 2 * w));
    position_bias(ctx, d, CView(sb.qv), CView(rk_cache), dr, sb.dense);
    ops::AttentionScores<T, Space> sc;
    sc.dense = sb.dense;
    ops::AttentionDims dims = core_dims(d);
    dims.kv_rows = cap;
    ops::attention_forward<T>(ctx, dims, ops::AttentionMask::causal(), scale(), CView(sb.qu), CView(kv_cache), sb.att,
                              sb.stats, sc);
    out_.forward(ctx, sb.att, y, ws);
  }

  // ------------------------------------------------------------------------------------------
  // Content attention with this layer's projections held fixed (the Compressive Transformer's
  // attention-reconstruction loss): softmax((hq Wq + bq) (hk Wk + bk)^T / sqrt(dh)) (hk Wv + bv),
  // every query over every key (no mask: the keys are all in the past), no u, v or positions; the
  // output is the heads' concatenation before the output projection.

  struct ContentSaved {
    ops::AttentionDims dims;
    MView q, kv, stats;  // [B, T, H dh], [B, n, 2 H dh], the core's saved statistics
  };
  std::size_t content_workspace(std::int64_t batch, std::int64_t t, std::int64_t n) const {
    ops::AttentionDims const dims{batch, cfg_.heads, t, n, head_dim(), 0};
    return aligned_bytes<T>(batch * t * cfg_.dim) + aligned_bytes<T>(batch * n * 2 * cfg_.dim) +
           aligned_bytes<T>(ops::attention_stats_shape(Space{}, dims).numel());
  }
  std::size_t content_backward_workspace(std::int64_t batch, std::int64_t t, std::int64_t n) const {
    ops::AttentionDims const dims{batch, cfg_.heads, t, n, head_dim(), 0};
    return aligned_bytes<T>(batch * t * cfg_.dim) + aligned_bytes<T>(batch * n * 2 * cfg_.dim) +
           aligned_bytes<T>(ops::attention_backward_scratch(Space{}, dims));
  }
  /// y [B, T, H dh] = content attention of hq [B, T, dim] over hk [B, n, dim] (see above).
  ContentSaved content_forward(Ctx& ctx, CView hq, CView hk, MView y, Arena<Space>& ws) const {
    HSEQ_CHECK(hq.rank() == 3 && hk.rank() == 3 && hq.size(0) == hk.size(0) && hq.size(2) == cfg_.dim &&
                   hk.size(2) == cfg_.dim && y.shape == hq.shape,
               "RelativeAttention::content_forward: hq " << hq.shape << ", hk " << hk.shape << ", y " << y.shape);
    ContentSaved s;
    s.dims = {hq.size(0), cfg_.heads, hq.size(1), hk.size(1), head_dim(), 0};
    s.q = ws.template take<T>(hq.shape, "relattn.content_q");
    s.kv = ws.template take<T>(Shape{hk.size(0), hk.size(1), 2 * cfg_.dim}, "relattn.content_kv");
    s.stats = ws.template take<T>(ops::attention_stats_shape(Space{}, s.dims), "relattn.content_stats");
    q_.forward(ctx, hq, s.q, ws);
    kv_.forward(ctx, hk, s.kv, ws);
    ops::attention_forward<T>(ctx, s.dims, ops::AttentionMask::none(), scale(), CView(s.q), CView(s.kv), y, s.stats);
    return s;
  }
  /// dhk [B, n, dim] (overwritten) from dy [B, T, H dh] of `content_forward`'s output y; no
  /// parameter gradient (they are held fixed) and none for the queries.
  void content_backward_keys(Ctx& ctx, ContentSaved const& s, CView y, CView dy, MView dhk, Arena<Space>& ws) const {
    ArenaScope<Space> scope(ws);
    MView dq = ws.template take<T>(s.q.shape, "relattn.content_dq");
    MView dkv = ws.template take<T>(s.kv.shape, "relattn.content_dkv");
    MView scratch =
        ws.template take<T>(Shape{ops::attention_backward_scratch(Space{}, s.dims)}, "relattn.content_scratch");
    ops::attention_backward<T>(ctx, s.dims, ops::AttentionMask::none(), scale(), CView(s.q), CView(s.kv), y,
                               CView(s.stats), dy, dq, dkv, scratch);
    // dhk = dkv Wkv (the key/value projection's input gradient, its parameters untouched).
    ops::gemm<T>(ctx, ops::Trans::kNo, ops::as_mat(CView(dkv)), ops::Trans::kNo,
                 ops::as_mat(CView(kv_.weight().value)), ops::as_mat(dhk));
  }

 private:
  /// forward_step's scratch (Dims: t = n new positions, m = pos cached ones).
  struct StepBufs {
    MView qu, qv;   // [B, n, H dh] q + u, q + v
    MView kv;       // [B, n, 2 H dh] the new positions' keys and values
    MView r;        // [k, dim]: the sinusoids of the fresh <= k new distances in its first rows
    MView r_all;    // [1, (k-1) s + 1, dim]: their positions' sinusoids (s > 1 only)
    MView dense;    // [B, H, n, pos + n] position term of the logits
    MView stats;    // the attention core's statistics
    MView att;      // [B, n, H dh]
  };
  /// backward's scratch, all carved up front (so the plan is exactly the use).
  struct Grads {
    MView datt;     // [B, T, H dh] d(attention output)
    MView dqu;      // [B, T, H dh] d(q + u) from the core, then dq
    MView dqv;      // [B, T, H dh] d(q + v)
    MView dkv;      // [B, L, 2 H dh]
    MView scratch;  // the core's backward scratch
    MView dlogits;  // [B, H, T, L] dL/dlogits from the core, then dP in columns [0, Dr) of each row
    MView drk;      // [Dr, H dh]
    MView dkv_x, dkv_m;  // [B, T, 2 H dh], [B, M, 2 H dh] (only with a memory)
    MView dx_kv;    // [B, T, dim] the key/value path's part of dx
  };

  static Config check(Config c) {
    HSEQ_CHECK(c.dim > 0 && c.heads > 0,
               "RelativeAttention: dim " << c.dim << " and heads " << c.heads << " must be positive");
    HSEQ_CHECK(c.dim % c.heads == 0, "RelativeAttention: heads " << c.heads << " do not divide the width " << c.dim);
    HSEQ_CHECK(c.clamp_len >= 0, "RelativeAttention: clamp_len " << c.clamp_len << " must be >= 0 (0: no clamping)");
    HSEQ_CHECK(c.distance_scale >= 1,
               "RelativeAttention: distance_scale " << c.distance_scale << " must be >= 1 (1: distances in rows)");
    return c;
  }
  T scale() const { return T(1.0 / std::sqrt(double(head_dim()))); }

  /// Rk rows a step adds: the distances in [pos, pos + n) below the clamp (Dims as in forward_step).
  std::int64_t new_distance_rows(Dims d) const { return std::max<std::int64_t>(0, distance_rows(d) - d.m); }
  /// Their largest count over all positions (at pos = 0): what forward_step carves for them
  /// whatever the position, so that its scratch never shrinks as the position grows.
  std::int64_t max_new_distance_rows(std::int64_t n) const {
    return cfg_.clamp_len > 0 ? std::min(n, cfg_.clamp_len + 1) : n;
  }
  /// The table `distance_sinusoids` fills for k rows: the positions of k distances s apart,
  /// [1, (k-1) s + 1, dim]; empty when s = 1 (or k = 0), which needs none.
  MView take_sinusoid_table(Arena<Space>& a, std::int64_t k) const {
    if (cfg_.distance_scale == 1 || k == 0) return MView{};
    return a.template take<T>(Shape{1, (k - 1) * cfg_.distance_scale + 1, cfg_.dim}, "relattn.r_all");
  }
  /// r [k, dim] = the sinusoids of the distances first..first+k-1 times s: row i = sinusoid((first + i) s).
  /// With s = 1, add_sinusoidal writes r directly (as it always has: s = 1 is bit-identical to the
  /// unscaled layer); with s > 1 it fills the positions first s .. (first + k - 1) s of `all`
  /// (take_sinusoid_table(k)) and every s-th row is copied out (add_sinusoidal adds: zero first).
  void distance_sinusoids(Ctx& ctx, MView r, std::int64_t first, MView all) const {
    std::int64_t const k = r.size(0), w = cfg_.dim, sc = cfg_.distance_scale;
    if (sc == 1) {
      ops::fill<T>(ctx, r, T(0));
      ops::add_sinusoidal<T>(ctx, MView(r.data, Shape{1, k, w}), first);
      return;
    }
    ops::fill<T>(ctx, all, T(0));
    ops::add_sinusoidal<T>(ctx, all, first * sc);
    ops::copy_mat<T>(ctx, ops::Mat<T const, Space>(all.data, k, w, sc * w), ops::Mat<T, Space>(r.data, k, w, w));
  }
  /// The dense position bias: P[b, h, i, δ] = (q_i + v_h) . Rk[δ, h] / sqrt(dh) for δ < Dr into
  /// columns [0, Dr) of dense's rows ([B, H, T, L], row stride L), one GEMM per (b, h) batched over
  /// the heads, then spread over the keys: dense[b, h, i, j] = P[b, h, i, δ'(i, j)] (0 if masked).
  /// qv [B, T, H dh]; rk: at least Dr rows of H dh.
  void position_bias(Ctx& ctx, Dims d, CView qv, CView rk, std::int64_t dr, MView dense) const {
    std::int64_t const w = cfg_.dim, l = d.m + d.t, hd = head_dim();
    for (std::int64_t b = 0; b < d.batch; ++b)
      ops::gemm_strided_batched<T>(ctx, cfg_.heads, ops::Trans::kNo,
                                   ops::Mat<T const, Space>(qv.data + b * d.t * w, d.t, hd, w), hd, ops::Trans::kYes,
                                   ops::Mat<T const, Space>(rk.data, dr, hd, w), hd,
                                   ops::Mat<T, Space>(dense.data + b * cfg_.heads * d.t * l, d.t, dr, l), d.t * l,
                                   scale(), T(0));
    ops::spread_relative_rows<T>(ctx, rows_of(d, dense), d.m, d.t, dr);
  }
  /// u or v [H, dh] as the bias vector [H dh] of the heads' column blocks.
  template <class U>
  static View<U, Space> flat(View<U, Space> p) {
    return View<U, Space>(p.data, Shape{p.numel()});
  }
  ops::AttentionDims core_dims(Dims d) const { return {d.batch, cfg_.heads, d.t, d.m + d.t, head_dim(), d.m}; }

  Saved carve(Arena<Space>& a, Dims d) const {
    std::int64_t const w = cfg_.dim, l = d.m + d.t;
    Saved s;
    s.dims = d;
    s.qu = a.template take<T>(Shape{d.batch, d.t, w}, "relattn.qu");
    s.qv = a.template take<T>(Shape{d.batch, d.t, w}, "relattn.qv");
    s.kv = a.template take<T>(Shape{d.batch, l, 2 * w}, "relattn.kv");
    if (d.m > 0) {
      s.kv_x = a.template take<T>(Shape{d.batch, d.t, 2 * w}, "relattn.kv_x");
      s.kv_m = a.template take<T>(Shape{d.batch, d.m, 2 * w}, "relattn.kv_m");
    } else {
      s.kv_x = s.kv;
    }
    s.r = a.template take<T>(Shape{distance_rows(d), w}, "relattn.r");
    s.rk = a.template take<T>(Shape{distance_rows(d), w}, "relattn.rk");
    s.r_all = take_sinusoid_table(a, distance_rows(d));
    s.dense = a.template take<T>(Shape{d.batch, cfg_.heads, d.t, l}, "relattn.dense");
    s.stats = a.template take<T>(ops::attention_stats_shape(Space{}, core_dims(d)), "relattn.stats");
    s.att = a.template take<T>(Shape{d.batch, d.t, w}, "relattn.att");
    return s;
  }
  StepBufs carve_step(Arena<Space>& a, Dims d) const {
    std::int64_t const w = cfg_.dim, l = d.m + d.t;
    StepBufs s;
    s.qu = a.template take<T>(Shape{d.batch, d.t, w}, "relattn_step.qu");
    s.qv = a.template take<T>(Shape{d.batch, d.t, w}, "relattn_step.qv");
    s.kv = a.template take<T>(Shape{d.batch, d.t, 2 * w}, "relattn_step.kv");
    std::int64_t const k = max_new_distance_rows(d.t);
    s.r = a.template take<T>(Shape{k, w}, "relattn_step.r");
    s.r_all = take_sinusoid_table(a, k);
    s.dense = a.template take<T>(Shape{d.batch, cfg_.heads, d.t, l}, "relattn_step.dense");
    s.stats = a.template take<T>(ops::attention_stats_shape(Space{}, core_dims(d)), "relattn_step.stats");
    s.att = a.template take<T>(Shape{d.batch, d.t, w}, "relattn_step.att");
    return s;
  }
  Grads carve_grads(Arena<Space>& a, Dims d) const {
    std::int64_t const w = cfg_.dim, l = d.m + d.t;
    Grads g;
    g.datt = a.template take<T>(Shape{d.batch, d.t, w}, "relattn.datt");
    g.dqu = a.template take<T>(Shape{d.batch, d.t, w}, "relattn.dqu");
    g.dqv = a.template take<T>(Shape{d.batch, d.t, w}, "relattn.dqv");
    g.dkv = a.template take<T>(Shape{d.batch, l, 2 * w}, "relattn.dkv");
    g.scratch = a.template take<T>(Shape{ops::attention_backward_scratch(Space{}, core_dims(d))}, "relattn.scratch");
    g.dlogits = a.template take<T>(Shape{d.batch, cfg_.heads, d.t, l}, "relattn.dlogits");
    g.drk = a.template take<T>(Shape{distance_rows(d), w}, "relattn.drk");
    if (d.m > 0) {
      g.dkv_x = a.template take<T>(Shape{d.batch, d.t, 2 * w}, "relattn.dkv_x");
      g.dkv_m = a.template take<T>(Shape{d.batch, d.m, 2 * w}, "relattn.dkv_m");
    }
    g.dx_kv = a.template take<T>(Shape{d.batch, d.t, w}, "relattn.dx_kv");
    return g;
  }

  /// buf [B, H, T, L] as the [B H T, L] rows of ops::spread_relative_rows / gather_relative_rows.
  MView rows_of(Dims d, MView buf) const { return MView(buf.data, Shape{d.batch * cfg_.heads * d.t, d.m + d.t}); }

  Config cfg_;
  Linear<B, T> q_, kv_, r_, out_;
  Param<T, Space> u_, v_;  ///< [H, dh] global content / position query biases
};

}  // namespace hseq::nn
