// SPDX-License-Identifier: MIT
/// @file
/// @brief `MultiHeadAttention`: queries from one sequence, keys/values from another (or the same),
/// an optional key/value prefix (a memory), and a causal, unmasked or rate-aware mask.
///
/// Optional (`Config::rel_distance` = D > 0): a learned additive score bias per head and relative
/// distance, parameter `rel_bias` [H, D] (zeros at init), added to the logits as
/// rel_bias[h, clamp(i + Tm - j, 0, D - 1)] (query i sits at key row Tm + i of [memory; keys]; see
/// ops/attention.hpp for the convention). On CUDA both run on the attention core's materialising
/// path (ops/cuda/attention.cuh). `forward` can also return the attention mass each key received
/// ([B, H, Tm + Tk], no gradient).
///
/// Attention dropout (`Config::dropout` = p): with an active `DropoutStream` (nn/dropout.hpp) given
/// to `forward`, inverted dropout on the attention probabilities before they weight the values
/// (ops/attention.hpp: the mask of weight (b, h, i, j) is a pure function of its key
/// drop.key(kProbsSite) and (b, h, i, j); backward regenerates it). On CUDA that runs on the
/// materialising path. Inactive (the default) or p = 0: exactly the attention without dropout.
/// The cached paths (`forward_step`, `attend_cached`) never drop.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/dropout.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/ops/attention.hpp"
#include "hseq/ops/attention_mask.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/mat.hpp"

namespace hseq::nn {

using ops::AttentionMask;

/// out[b] = [a[b]; c[b]] along time: a [B, Ta, W], c [B, Tc, W] -> out [B, Ta + Tc, W] (a memory's
/// rows before a segment's; two strided copies, one launch each on the GPU).
template <class T, class Ctx, class S>
void concat_time(Ctx& ctx, View<T, S> a, View<T, S> c, View<T, S> out) {
  std::int64_t bsz = out.size(0), ta = a.size(1), tc = c.size(1), w = out.size(2), rows = ta + tc;
  ops::copy_mat<T>(ctx, ops::Mat<T const, S>(a.data, bsz, ta * w, ta * w), ops::Mat<T, S>(out.data, bsz, ta * w, rows * w));
  ops::copy_mat<T>(ctx, ops::Mat<T const, S>(c.data, bsz, tc * w, tc * w),
                   ops::Mat<T, S>(out.data + ta * w, bsz, tc * w, rows * w));
}
/// The inverse of concat_time: in [B, Ta + Tc, W] -> a [B, Ta, W], c [B, Tc, W].
template <class T, class Ctx, class S>
void split_time(Ctx& ctx, View<T, S> in, View<T, S> a, View<T, S> c) {
  std::int64_t bsz = in.size(0), ta = a.size(1), tc = c.size(1), w = in.size(2), rows = ta + tc;
  ops::copy_mat<T>(ctx, ops::Mat<T const, S>(in.data, bsz, ta * w, rows * w), ops::Mat<T, S>(a.data, bsz, ta * w, ta * w));
  ops::copy_mat<T>(ctx, ops::Mat<T const, S>(in.data + ta * w, bsz, tc * w, rows * w),
                   ops::Mat<T, S>(c.data, bsz, tc * w, tc * w));
}

template <Backend B, class T>
class MultiHeadAttention {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;

  struct Config {
    std::int64_t dim = 0, heads = 1;
    AttentionMask mask = AttentionMask::causal();
    bool bias = true;
    double init_std = 0.02;
    double out_init_std = 0.0;  ///< std of the output projection; 0 means init_std
    std::int64_t rel_distance = 0;  ///< D > 0: learned score bias rel_bias [H, D] by relative distance
    double dropout = 0.0;  ///< attention-probability dropout rate in [0, 1) (applied with an active stream)
  };
  /// Dropout site of the probabilities: their mask key is drop.key(kProbsSite).
  static constexpr std::uint64_t kProbsSite = 0;
  /// Sizes of one call: queries [B, Tq, dim], keys/values [B, Tk, dim], memory [B, Tm, dim].
  struct Dims {
    std::int64_t batch = 0, tq = 0, tk = 0, tm = 0;
  };
  struct Saved {
    Dims dims;
    typename Linear<B, T>::Saved q_lin, kv_lin, mem_lin, out_lin;
    MView q;      // [B, Tq, dim]
    MView kv;     // [B, Tm + Tk, 2 dim]: memory rows first
    MView kv_x;   // [B, Tk, 2 dim] projection of x_kv (only with a memory; else aliases kv)
    MView kv_m;   // [B, Tm, 2 dim] projection of the memory
    MView stats;  // what the attention core saves: ops::attention_stats_shape (probabilities or LSE)
    MView att;    // [B, Tq, dim] attention output before the output projection
    DropoutStream drop;  // forward's stream: backward regenerates the dropout mask from it
    AttentionMask mask;  // the mask forward applied: cfg_.mask, or none under an explicit bias
    CView bias;          // forward_biased's additive score bias [B, H, Tq, Tk] (else empty)
  };

  explicit MultiHeadAttention(Config c)
      : cfg_(check(c)),
        q_({c.dim, c.dim, c.bias, c.init_std}),
        kv_({c.dim, 2 * c.dim, c.bias, c.init_std}),
        out_({c.dim, c.dim, c.bias, c.out_init_std > 0 ? c.out_init_std : c.init_std}) {
    if (c.rel_distance > 0) rel_ = Param<T, Space>(Shape{c.heads, c.rel_distance}, InitSpec::zeros(), false);
  }
  Config const& config() const { return cfg_; }
  std::int64_t head_dim() const { return cfg_.dim / cfg_.heads; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    q_.visit_params(f, prefix + "q.");
    kv_.visit_params(f, prefix + "kv.");
    out_.visit_params(f, prefix + "out.");
    if (cfg_.rel_distance > 0) f(prefix + "rel_bias", rel_);
  }

  std::size_t forward_workspace(Dims d) const {
    return measure_workspace<Space>([&](Arena<Space>& a) { carve(a, d); });
  }
  /// Peak scratch of `backward`. `shared_dx`: dxkv is the same buffer as dxq (self-attention), which
  /// needs one more [B, Tk, dim] buffer to sum the two paths.
  std::size_t backward_workspace(Dims d, bool shared_dx = true) const {
    std::int64_t w = cfg_.dim, tkk = d.tm + d.tk;
    std::size_t b = aligned_bytes<T>(d.batch * d.tq * w) * 2 + aligned_bytes<T>(d.batch * tkk * 2 * w) +
                    aligned_bytes<T>(ops::attention_backward_scratch(Space{}, dims_of(d)));
    if (d.tm > 0) b += aligned_bytes<T>(d.batch * d.tk * 2 * w) + aligned_bytes<T>(d.batch * d.tm * 2 * w);
    if (shared_dx) b += aligned_bytes<T>(d.batch * d.tk * w);
    return b;
  }

  /// Self-attention: y = Attn(x, x).
  Saved forward(Ctx& ctx, CView x, MView y, Arena<Space>& ws, DropoutStream drop = {}) const {
    return forward(ctx, x, x, CView{}, y, ws, MView{}, drop);
  }

  /// y[B, Tq, dim] = Wo · softmax(mask(Q K^T / sqrt(dh))) V with Q = Wq xq, [K V] = Wkv [mem; xkv].
  /// `mem` [B, Tm, dim] may be empty; its keys are visible to every query. `key_mass` [B, H, Tm + Tk]
  /// (optional output, no gradient): the attention probability each key received, summed over the
  /// queries (memory keys first; undropped probabilities). `drop`: the dropout stream (inactive:
  /// no dropout; see the file comment).
  Saved forward(Ctx& ctx, CView xq, CView xkv, CView mem, MView y, Arena<Space>& ws, MView key_mass = {},
                DropoutStream drop = {}) const {
    return run(ctx, xq, xkv, mem, y, ws, key_mass, drop, cfg_.mask, CView{});
  }

  /// Attention under an explicit additive score bias instead of the configured mask, for visibility
  /// patterns no AttentionMask describes (the segments of data-dependent pooling and unpooling,
  /// hier/segment_bias.hpp): y = Wo · softmax(Q K^T / sqrt(dh) + bias) V with bias [B, H, Tq, Tk],
  /// 0 where query i may see key j and a large negative logit (hier::kMaskedLogit) where it may not;
  /// every query must see at least one key. The probabilities of hidden keys are exactly zero, so a
  /// hidden key's value cannot change y by a bit. Runs on the attention core's materialising path
  /// (ops/attention.hpp `AttentionScores::dense`), which the relative-position attention uses too.
  /// `bias` must stay valid until `backward`. Dropout, a memory and the relative-distance table are
  /// not offered here.
  Saved forward_biased(Ctx& ctx, CView xq, CView xkv, CView bias, MView y, Arena<Space>& ws) const {
    HSEQ_CHECK(cfg_.rel_distance == 0, "MultiHeadAttention::forward_biased: not with a relative-distance bias");
    HSEQ_CHECK(xq.rank() == 3 && xkv.rank() == 3 &&
                   bias.shape == (Shape{xq.size(0), cfg_.heads, xq.size(1), xkv.size(1)}),
               "MultiHeadAttention::forward_biased: bias " << bias.shape << " is not [B, H, Tq, Tk] for xq " << xq.shape
                                                           << ", xkv " << xkv.shape << ", " << cfg_.heads << " heads");
    return run(ctx, xq, xkv, CView{}, y, ws, MView{}, DropoutStream{}, AttentionMask::none(), bias);
  }

 private:
  Saved run(Ctx& ctx, CView xq, CView xkv, CView mem, MView y, Arena<Space>& ws, MView key_mass, DropoutStream drop,
            AttentionMask mask, CView bias) const {
    Dims d{xq.rank() == 3 ? xq.size(0) : 0, xq.rank() == 3 ? xq.size(1) : 0, xkv.rank() == 3 ? xkv.size(1) : 0,
           mem.empty() ? 0 : (mem.rank() == 3 ? mem.size(1) : -1)};
    std::int64_t w = cfg_.dim;
    HSEQ_CHECK(xq.rank() == 3 && xq.size(2) == w && xkv.rank() == 3 && xkv.size(0) == d.batch && xkv.size(2) == w &&
                   y.shape == xq.shape,
               "MultiHeadAttention(dim " << w << "): xq " << xq.shape << ", xkv " << xkv.shape << ", y " << y.shape
                                         << " (expected [B, Tq, dim], [B, Tk, dim], [B, Tq, dim])");
    HSEQ_CHECK(mem.empty() || (mem.rank() == 3 && mem.size(0) == d.batch && mem.size(2) == w),
               "MultiHeadAttention: memory " << mem.shape << " must be [" << d.batch << ", Tm, " << w << "]");
    Saved s = carve(ws, d);
    s.drop = drop;
    s.mask = mask;
    s.bias = bias;
    s.q_lin = q_.forward(ctx, xq, s.q, ws);
    s.kv_lin = kv_.forward(ctx, xkv, s.kv_x, ws);
    if (d.tm > 0) {
      s.mem_lin = kv_.forward(ctx, mem, s.kv_m, ws);
      concat_time<T>(ctx, s.kv_m, s.kv_x, s.kv);
    }
    auto sc = scores(drop);
    sc.key_mass = key_mass;
    sc.dense = bias;
    ops::attention_forward<T>(ctx, dims_of(d), mask, scale(), s.q, s.kv, s.att, s.stats, sc);
    s.out_lin = out_.forward(ctx, s.att, y, ws);
    return s;
  }

 public:

  /// Scratch bytes of `forward_step` for n new positions of a batch of `batch` with `cached`
  /// positions already in the cache.
  std::size_t step_workspace(std::int64_t batch, std::int64_t n, std::int64_t cached) const {
    std::int64_t w = cfg_.dim;
    ops::AttentionDims d{batch, cfg_.heads, n, cached + n, head_dim(), 0};
    return 2 * aligned_bytes<T>(batch * n * w) + aligned_bytes<T>(batch * n * 2 * w) +
           aligned_bytes<T>(ops::attention_stats_shape(Space{}, d).numel());
  }

  /// Incremental causal self-attention for generation. x: [B, n, dim] holds positions
  /// [pos, pos + n); cache: [B, T_max, 2 dim] holds the key/value projections of positions < pos
  /// and receives those of the new ones. y: [B, n, dim]. Equals the rows [pos, pos + n) of a full
  /// causal forward over positions [0, pos + n). Scratch is released before returning.
  void forward_step(Ctx& ctx, CView x, MView cache, std::int64_t pos, MView y, Arena<Space>& ws) const {
    std::int64_t w = cfg_.dim;
    HSEQ_CHECK(cfg_.mask.kind == AttentionMask::Kind::kCausal,
               "MultiHeadAttention::forward_step: cached generation needs a causal mask, this one is " << cfg_.mask);
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == w && y.shape == x.shape && cache.rank() == 3 &&
                   cache.size(0) == x.size(0) && cache.size(2) == 2 * w,
               "MultiHeadAttention::forward_step: x " << x.shape << ", y " << y.shape << ", cache " << cache.shape);
    std::int64_t bsz = x.size(0), n = x.size(1), cap = cache.size(1);
    HSEQ_CHECK(pos >= 0 && pos + n <= cap, "MultiHeadAttention::forward_step: positions [" << pos << ", " << pos + n
                                                                                           << ") exceed the cache of "
                                                                                           << cap << " positions");
    ArenaScope<Space> scope(ws);
    MView q = ws.template take<T>(Shape{bsz, n, w}, "attn_step.q");
    MView kvn = ws.template take<T>(Shape{bsz, n, 2 * w}, "attn_step.kv");
    ops::AttentionDims d{bsz, cfg_.heads, n, pos + n, head_dim(), 0, cap};
    MView stats = ws.template take<T>(ops::attention_stats_shape(Space{}, d), "attn_step.stats");
    MView att = ws.template take<T>(Shape{bsz, n, w}, "attn_step.att");
    q_.forward(ctx, x, q, ws);
    kv_.forward(ctx, x, kvn, ws);
    ops::copy_mat<T>(ctx, ops::Mat<T const, Space>(kvn.data, bsz, n * 2 * w, n * 2 * w),
                     ops::Mat<T, Space>(cache.data + pos * 2 * w, bsz, n * 2 * w, cap * 2 * w));
    auto sc = scores();
    sc.q_pos0 = pos;  // query row i is absolute position pos + i; the cache holds positions from 0
    ops::attention_forward<T>(ctx, d, AttentionMask::rates(1, pos, 1, 0), scale(), q, cache, att, stats, sc);
    out_.forward(ctx, att, y, ws);
  }

  /// Writes the key/value projections of x [B, n, dim] into cache rows [pos, pos + n) (for cached
  /// cross-attention, e.g. the hierarchical models' resampling attentions).
  void append_kv(Ctx& ctx, CView x, MView cache, std::int64_t pos, Arena<Space>& ws) const {
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == cfg_.dim && cache.rank() == 3 && cache.size(0) == x.size(0) &&
                   cache.size(2) == 2 * cfg_.dim && pos >= 0 && pos + x.size(1) <= cache.size(1),
               "MultiHeadAttention::append_kv: x " << x.shape << " at row " << pos << " of cache " << cache.shape);
    ArenaScope<Space> scope(ws);
    std::int64_t bsz = x.size(0), n = x.size(1);
    MView kvn = ws.template take<T>(Shape{bsz, n, 2 * cfg_.dim}, "attn_kv.new");
    kv_.forward(ctx, x, kvn, ws);
    std::int64_t w2 = 2 * cfg_.dim, cap = cache.size(1);
    ops::copy_mat<T>(ctx, ops::Mat<T const, Space>(kvn.data, bsz, n * w2, n * w2),
                     ops::Mat<T, Space>(cache.data + pos * w2, bsz, n * w2, cap * w2));
  }
  /// Scratch bytes of `append_kv` / `attend_cached` for n rows (queries) against tk cached keys.
  std::size_t cached_workspace(std::int64_t batch, std::int64_t n, std::int64_t tk) const {
    std::int64_t w = cfg_.dim;
    ops::AttentionDims d{batch, cfg_.heads, n, tk, head_dim(), 0};
    return std::max(aligned_bytes<T>(batch * n * 2 * w),
                    2 * aligned_bytes<T>(batch * n * w) + aligned_bytes<T>(ops::attention_stats_shape(Space{}, d).numel()));
  }
  /// y [B, n, dim] = attention of the queries xq [B, n, dim] over the first tk cache rows, all of
  /// them visible (the cache holds exactly what these queries may see).
  void attend_cached(Ctx& ctx, CView xq, MView cache, std::int64_t tk, MView y, Arena<Space>& ws) const {
    HSEQ_CHECK(cfg_.rel_distance == 0,
               "MultiHeadAttention::attend_cached: the relative-distance bias is not defined for cached cross-attention");
    HSEQ_CHECK(xq.rank() == 3 && xq.size(2) == cfg_.dim && y.shape == xq.shape && cache.rank() == 3 &&
                   cache.size(0) == xq.size(0) && cache.size(2) == 2 * cfg_.dim && tk >= 1 && tk <= cache.size(1),
               "MultiHeadAttention::attend_cached: xq " << xq.shape << ", y " << y.shape << ", " << tk
                                                        << " keys of cache " << cache.shape);
    ArenaScope<Space> scope(ws);
    std::int64_t bsz = xq.size(0), n = xq.size(1);
    MView q = ws.template take<T>(Shape{bsz, n, cfg_.dim}, "attn_cached.q");
    ops::AttentionDims d{bsz, cfg_.heads, n, tk, head_dim(), 0, cache.size(1)};
    MView stats = ws.template take<T>(ops::attention_stats_shape(Space{}, d), "attn_cached.stats");
    MView att = ws.template take<T>(Shape{bsz, n, cfg_.dim}, "attn_cached.att");
    q_.forward(ctx, xq, q, ws);
    ops::attention_forward<T>(ctx, d, AttentionMask::none(), scale(), q, cache, att, stats);
    out_.forward(ctx, att, y, ws);
  }

  /// Self-attention backward: dx = d/dx of both the query and the key/value paths.
  void backward(Ctx& ctx, Saved const& s, CView dy, MView dx, Arena<Space>& ws) const {
    backward(ctx, s, dy, dx, dx, MView{}, ws);
  }

  /// Overwrites dxq, dxkv and dmem (each may be empty: not needed). When dxkv is the same buffer
  /// as dxq (self-attention), the two paths are summed into it.
  void backward(Ctx& ctx, Saved const& s, CView dy, MView dxq, MView dxkv, MView dmem, Arena<Space>& ws) const {
    Dims const& d = s.dims;
    std::int64_t w = cfg_.dim;
    HSEQ_CHECK(dy.shape == (Shape{d.batch, d.tq, w}), "MultiHeadAttention::backward: dy " << dy.shape << ", expected "
                                                                                          << Shape{d.batch, d.tq, w});
    ArenaScope<Space> scope(ws);
    MView datt = ws.template take<T>(Shape{d.batch, d.tq, w}, "attn.datt");
    MView dq = ws.template take<T>(Shape{d.batch, d.tq, w}, "attn.dq");
    MView dkv = ws.template take<T>(Shape{d.batch, d.tm + d.tk, 2 * w}, "attn.dkv");
    MView scratch = ws.template take<T>(
        Shape{ops::attention_backward_scratch(Space{}, dims_of(d))}, "attn.scratch");
    out_.backward(ctx, s.out_lin, dy, datt, ws);
    ops::AttentionScoreGrads<T, Space> dsc;
    if (cfg_.rel_distance > 0 && !rel_.frozen) dsc.table = rel_.grad;  // empty: no table gradient
    auto sc = scores(s.drop);
    sc.dense = s.bias;
    ops::attention_backward<T>(ctx, dims_of(d), s.mask, scale(), s.q, s.kv, s.att, s.stats, datt, dq, dkv, scratch, sc,
                               dsc);
    q_.backward(ctx, s.q_lin, dq, dxq, ws);
    MView dkv_x = dkv, dkv_m;
    if (d.tm > 0) {
      dkv_x = ws.template take<T>(Shape{d.batch, d.tk, 2 * w}, "attn.dkv_x");
      dkv_m = ws.template take<T>(Shape{d.batch, d.tm, 2 * w}, "attn.dkv_m");
      split_time<T>(ctx, dkv, dkv_m, dkv_x);
      kv_.backward(ctx, s.mem_lin, dkv_m, dmem, ws);
    }
    if (!dxkv.empty() && dxkv.data == dxq.data) {
      MView tmp = ws.template take<T>(dxkv.shape, "attn.dxkv");
      kv_.backward(ctx, s.kv_lin, dkv_x, tmp, ws);
      ops::axpy<T>(ctx, T(1), tmp, dxkv);
    } else {
      kv_.backward(ctx, s.kv_lin, dkv_x, dxkv, ws);
    }
  }

 private:
  static Config check(Config c) {
    HSEQ_CHECK(c.dim > 0 && c.heads > 0, "MultiHeadAttention: dim " << c.dim << " and heads " << c.heads
                                                                     << " must be positive");
    HSEQ_CHECK(c.rel_distance >= 0, "MultiHeadAttention: rel_distance " << c.rel_distance << " must be >= 0");
    checked_dropout_rate(c.dropout, "MultiHeadAttention: dropout");
    HSEQ_CHECK(c.dim % c.heads == 0,
               "MultiHeadAttention: heads " << c.heads << " do not divide the width " << c.dim);
    return c;
  }
  T scale() const { return T(1.0 / std::sqrt(double(head_dim()))); }
  /// The score modifiers of this module: the relative-distance table when configured, and the
  /// probability dropout when `drop` is active and the rate positive; else none.
  ops::AttentionScores<T, Space> scores(DropoutStream drop = {}) const {
    ops::AttentionScores<T, Space> sc;
    if (cfg_.rel_distance > 0) sc.table = rel_.value;
    if (drop.rate(cfg_.dropout) > 0) {
      sc.dropout = cfg_.dropout;
      sc.dropout_key = drop.key(kProbsSite);
    }
    return sc;
  }
  ops::AttentionDims dims_of(Dims d) const {
    return {d.batch, cfg_.heads, d.tq, d.tm + d.tk, head_dim(), d.tm};
  }
  Saved carve(Arena<Space>& a, Dims d) const {
    std::int64_t w = cfg_.dim;
    Saved s;
    s.dims = d;
    s.q = a.template take<T>(Shape{d.batch, d.tq, w}, "attn.q");
    s.kv = a.template take<T>(Shape{d.batch, d.tm + d.tk, 2 * w}, "attn.kv");
    if (d.tm > 0) {
      s.kv_x = a.template take<T>(Shape{d.batch, d.tk, 2 * w}, "attn.kv_x");
      s.kv_m = a.template take<T>(Shape{d.batch, d.tm, 2 * w}, "attn.kv_m");
    } else {
      s.kv_x = s.kv;
    }
    s.stats = a.template take<T>(ops::attention_stats_shape(Space{}, dims_of(d)), "attn.stats");
    s.att = a.template take<T>(Shape{d.batch, d.tq, w}, "attn.att");
    return s;
  }
  Config cfg_;
  Linear<B, T> q_, kv_, out_;
  Param<T, Space> rel_;  ///< [H, D] relative-distance score bias (only with rel_distance > 0)
};

}  // namespace hseq::nn
