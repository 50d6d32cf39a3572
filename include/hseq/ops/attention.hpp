// SPDX-License-Identifier: MIT
/// @file
/// @brief Multi-head scaled dot-product attention core on the CPU: softmax(scale Q K^T + mask) V.
///
/// Layouts (heads are column blocks, so the projections need no transposes):
///   q     [B, Tq, H*dh]      query projections
///   kv    [B, Tk, 2*H*dh]    keys in columns [0, H*dh), values in [H*dh, 2*H*dh); the first
///                            `prefix` key rows are a memory, always visible
///   out   [B, Tq, H*dh]
///   stats                    what forward saves for backward, by memory space
///                            (`attention_stats_shape`): on the CPU the probabilities
///                            [B, H, Tq, Tk] (masked entries exactly zero); on the GPU the
///                            log-sum-exp [B, H, Tq] of a flash-style kernel that never stores
///                            the Tq x Tk scores (NaN with a score bias: the CUDA backward then
///                            recomputes the probabilities)
/// Query rows are processed in blocks; a block only multiplies against the keys some row of it can
/// see (`AttentionMask::visible` is non-decreasing), so causal attention costs about half of full.
///
/// Score modifiers and the key mass (`AttentionScores`, optional; all empty by default, and then the
/// results are bit-identical to a call without them). The logit of query i and visible key j of
/// batch b, head h is
///   l[b, h, i, j] = scale <q_i, k_j> + table[h, clamp(q_pos0 + i - j, 0, D - 1)] + dense[b, h, i, j]
/// where `table` [H, D] is a bias by head and relative distance (T5 / ALiBi style learned or fixed
/// relative biases), the distance delta = q_pos0 + i - j is the query's row minus the key's row in
/// the key coordinates (key row j includes the memory prefix; query row i sits at key row
/// q_pos0 + i, by default `prefix`, which is self-attention over [memory; x]), clamped into
/// [0, D): deltas past D - 1 share the last entry, negative deltas (future keys, only visible
/// without a causal mask) use entry 0. `dense` [B, H, Tq, Tk] is a precomputed bias per query and
/// key: the hook for Transformer-XL, whose position terms q_i R(i-j) + v R(i-j) (and u k_j) a
/// module computes from its own projections and passes in here, taking the gradient back from
/// `AttentionScoreGrads::dense` (= dL/dl, zero where masked). Masked keys stay masked: the biases
/// only move visible logits, so causality is unchanged. `key_mass` [B, H, Tk] receives, when given,
/// mass[b, h, j] = sum_i softmax weight of key j for query i (how much attention each key
/// receives, for "most-used" memory compression); it is an output only, with no gradient. The CUDA
/// overloads support all of them through a materialising path (ops/cuda/attention.cuh).
///
/// Attention dropout (`AttentionScores::dropout` = p > 0, with `dropout_key`): inverted dropout on
/// the probabilities between the softmax and P V,
///   out_i = sum_j P'[b, h, i, j] v_j,   P' = P * keep / (1 - p),
/// where keep[b, h, i, j] = ops::dropout_kept(dropout_key.sub(b), (h Tq + i) Tk + j, p): a pure
/// function of (b, h, i, j), the rule ops::dropout_forward applies to batch element b's [H, Tq, Tk]
/// probabilities, so the CUDA path (which drops them with that op) drops the same weights. The saved
/// probabilities (CPU `probs`) and the key mass stay undropped; backward regenerates the mask:
/// dV = P'^T dO, dP = (dO V^T) * keep / (1 - p), then the softmax backward with the undropped P.
/// On the CPU, forward takes one [64, Tk] block per thread for P' (a heap buffer, only when p > 0)
/// and backward reuses its dP scratch for it. The CUDA overloads run dropout on the materialising
/// path.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/ops/attention_mask.hpp"
#include "hseq/ops/dropout.hpp"
#include "hseq/ops/gemm.hpp"
#include "hseq/ops/softmax.hpp"

namespace hseq::ops {

/// Shapes of one attention call.
struct AttentionDims {
  std::int64_t batch = 0, heads = 0, tq = 0, tk = 0, head_dim = 0, prefix = 0;
  /// Rows per batch element in the kv buffer (>= tk; 0 means tk). A key/value cache of capacity
  /// T_max holds the first tk rows of each [T_max, 2 H dh] block.
  std::int64_t kv_rows = 0;
  std::int64_t width() const { return heads * head_dim; }
  std::int64_t kv_stride_rows() const { return kv_rows > 0 ? kv_rows : tk; }
};

/// Optional score modifiers and outputs of an attention call (see the file comment). Every view may
/// be empty; an all-empty value leaves the attention exactly as without it.
template <class T, class Space>
struct AttentionScores {
  View<T const, Space> table{};  ///< [H, D] bias by head and clamped relative distance
  View<T const, Space> dense{};  ///< [B, H, Tq, Tk] precomputed bias per query and key
  std::int64_t q_pos0 = -1;      ///< key row of query row 0 for the distance; -1 means `prefix`
  View<T, Space> key_mass{};     ///< [B, H, Tk] out (forward): attention mass each key receives
  double dropout = 0;            ///< probability of dropping each attention weight (0: none), in [0, 1)
  DropoutKey dropout_key{};      ///< the mask's key (batch element b uses dropout_key.sub(b))
  bool has_bias() const { return !table.empty() || !dense.empty(); }
  bool drops() const { return dropout > 0; }
  bool any() const { return has_bias() || !key_mass.empty() || drops(); }
  std::int64_t origin(std::int64_t prefix) const { return q_pos0 >= 0 ? q_pos0 : prefix; }
};
/// Gradients of the score biases (attention_backward): `table` [H, D] is accumulated (+=, like a
/// parameter gradient), `dense` [B, H, Tq, Tk] overwritten with dL/dlogits (zero where masked).
template <class T, class Space>
struct AttentionScoreGrads {
  View<T, Space> table{};
  View<T, Space> dense{};
  bool any() const { return !table.empty() || !dense.empty(); }
};

/// Query rows per block in the CPU attention kernels.
inline constexpr std::int64_t kAttentionQueryBlock = 64;

namespace detail {

/// A grow-only buffer of at least n elements owned by the calling thread: the attention dropout's
/// per-thread [64, Tk] block. The OpenMP pool's threads persist, so after the first call of a given
/// size no call allocates (no allocation in the training loop).
template <class T>
T* thread_scratch(std::size_t n) {
  thread_local std::vector<T> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}
template <class T, class S1, class S2, class S3>
void check_attention(AttentionDims const& d, View<T const, S1> q, View<T const, S2> kv, View<T, S3> out,
                     char const* who) {
  HSEQ_CHECK(q.shape == (Shape{d.batch, d.tq, d.width()}), who << ": q " << q.shape << " is not [B, Tq, H*dh] = "
                                                                << Shape{d.batch, d.tq, d.width()});
  HSEQ_CHECK(kv.shape == (Shape{d.batch, d.kv_stride_rows(), 2 * d.width()}) && d.kv_stride_rows() >= d.tk,
             who << ": kv " << kv.shape << " is not [B, Tk, 2*H*dh] = " << Shape{d.batch, d.kv_stride_rows(), 2 * d.width()});
  HSEQ_CHECK(out.shape == q.shape, who << ": out " << out.shape << " differs from q " << q.shape);
  HSEQ_CHECK(0 <= d.prefix && d.prefix <= d.tk, who << ": prefix " << d.prefix << " outside [0, Tk = " << d.tk << "]");
}
template <class T, class S>
void check_scores(AttentionDims const& d, AttentionScores<T, S> const& sc, char const* who) {
  HSEQ_CHECK(sc.table.empty() || (sc.table.rank() == 2 && sc.table.size(0) == d.heads && sc.table.size(1) >= 1),
             who << ": score bias table " << sc.table.shape << " is not [H = " << d.heads << ", D >= 1]");
  HSEQ_CHECK(sc.dense.empty() || sc.dense.shape == (Shape{d.batch, d.heads, d.tq, d.tk}),
             who << ": dense score bias " << sc.dense.shape << " is not [B, H, Tq, Tk] = "
                 << Shape{d.batch, d.heads, d.tq, d.tk});
  HSEQ_CHECK(sc.key_mass.empty() || sc.key_mass.shape == (Shape{d.batch, d.heads, d.tk}),
             who << ": key mass " << sc.key_mass.shape << " is not [B, H, Tk] = " << Shape{d.batch, d.heads, d.tk});
  HSEQ_CHECK(sc.q_pos0 >= -1, who << ": q_pos0 " << sc.q_pos0 << " must be >= 0 (or -1: the prefix)");
  HSEQ_CHECK(sc.dropout >= 0.0 && sc.dropout < 1.0,
             who << ": attention dropout probability " << sc.dropout << " outside [0, 1)");
}
/// Index of weight (h, i, j) in batch element b's attention-dropout mask (see the file comment).
inline std::uint64_t attention_dropout_index(AttentionDims const& d, std::int64_t h, std::int64_t i, std::int64_t j) {
  return std::uint64_t((h * d.tq + i) * d.tk + j);
}
/// dst[r, j] = src[r, j] * keep(h, i0 + r, j) / (1 - p) for rows r < rows and keys j < kend
/// (strides ld_src, ld_dst): a block of P' (or of dP' from dP) on the CPU.
template <class T>
void attention_dropout_block(AttentionDims const& d, DropoutKey key, double p, std::int64_t h, std::int64_t i0,
                             std::int64_t rows, std::int64_t kend, T const* src, std::int64_t ld_src, T* dst,
                             std::int64_t ld_dst) {
  T const s = T(1.0 / (1.0 - p));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < kend; ++j)
      dst[r * ld_dst + j] =
          dropout_kept(key, attention_dropout_index(d, h, i0 + r, j), p) ? src[r * ld_src + j] * s : T(0);
}
template <class T, class S>
void check_score_grads(AttentionDims const& d, AttentionScores<T, S> const& sc, AttentionScoreGrads<T, S> const& g,
                       char const* who) {
  HSEQ_CHECK(g.table.empty() || (!sc.table.empty() && g.table.shape == sc.table.shape),
             who << ": score bias table gradient " << g.table.shape << " must match the table " << sc.table.shape);
  HSEQ_CHECK(g.dense.empty() || g.dense.shape == (Shape{d.batch, d.heads, d.tq, d.tk}),
             who << ": dense score bias gradient " << g.dense.shape << " is not [B, H, Tq, Tk] = "
                 << Shape{d.batch, d.heads, d.tq, d.tk});
}
/// Clamped relative distance index into a [H, D] table.
inline std::int64_t distance_index(std::int64_t q_row, std::int64_t k_row, std::int64_t dmax) {
  std::int64_t delta = q_row - k_row;
  return delta < 0 ? 0 : (delta >= dmax ? dmax - 1 : delta);
}
}  // namespace detail

/// Scratch elements `attention_backward` needs (one dP block per thread).
inline std::int64_t attention_backward_scratch(AttentionDims const& d, int threads) {
  return std::int64_t(threads) * kAttentionQueryBlock * d.tk;
}
/// Scratch elements of the CPU `attention_backward` with the current OpenMP thread count.
inline std::int64_t attention_backward_scratch(HostSpace, AttentionDims const& d) {
  return attention_backward_scratch(d, hseq::detail::max_threads());
}
/// What the CPU `attention_forward` saves for backward: the probabilities [B, H, Tq, Tk].
inline Shape attention_stats_shape(HostSpace, AttentionDims const& d) { return Shape{d.batch, d.heads, d.tq, d.tk}; }

template <class T>
void attention_forward(cpu::Context& ctx, AttentionDims const& d, AttentionMask mask, T scale,
                       View<T const, HostSpace> q, View<T const, HostSpace> kv, View<T, HostSpace> out,
                       View<T, HostSpace> probs, AttentionScores<T, HostSpace> const& sc = {}) {
  detail::check_attention(d, q, kv, out, "attention_forward");
  detail::check_scores(d, sc, "attention_forward");
  bool const biased = sc.has_bias();
  std::int64_t const q0 = sc.origin(d.prefix), dmax = sc.table.empty() ? 1 : sc.table.size(1);
  HSEQ_CHECK(probs.shape == (Shape{d.batch, d.heads, d.tq, d.tk}),
             "attention_forward: probs " << probs.shape << " is not [B, H, Tq, Tk]");
  std::int64_t const w = d.width(), bh = d.batch * d.heads;
  bool const inv = ctx.batch_invariant();  // the blocks' shapes move with Tq and Tk
  // Attention dropout: P' of the current query block, one [64, Tk] block per thread (P itself
  // stays in `probs`, undropped, for backward).
  bool const drops = sc.drops();
#pragma omp parallel for schedule(dynamic, 1) if (bh > 1)
  for (std::int64_t p = 0; p < bh; ++p) {
    std::int64_t b = p / d.heads, h = p % d.heads;
    T const* qb = q.data + b * d.tq * w + h * d.head_dim;
    T const* kb = kv.data + b * d.kv_stride_rows() * 2 * w + h * d.head_dim;
    T const* vb = kb + w;
    T* ob = out.data + b * d.tq * w + h * d.head_dim;
    T* pb = probs.data + p * d.tq * d.tk;
    DropoutKey const dkey = drops ? sc.dropout_key.sub(std::uint64_t(b)) : DropoutKey{};
    T* dblk = drops ? detail::thread_scratch<T>(std::size_t(kAttentionQueryBlock * d.tk)) : nullptr;
    for (std::int64_t i0 = 0; i0 < d.tq; i0 += kAttentionQueryBlock) {
      std::int64_t i1 = std::min(d.tq, i0 + kAttentionQueryBlock), rows = i1 - i0;
      std::int64_t kend = mask.visible(i1 - 1, d.tk, d.prefix);
      T* pblk = pb + i0 * d.tk;
      if (kend > 0)  // raw scores of the visible key range: S = Q K^T
        detail::gemm_host<T>(Trans::kNo, {qb + i0 * w, rows, d.head_dim, w}, Trans::kYes, {kb, kend, d.head_dim, 2 * w},
                             {pblk, rows, kend, d.tk}, T(1), T(0), inv);
      for (std::int64_t i = i0; i < i1; ++i) {
        T* row = pb + i * d.tk;
        std::int64_t const vis = mask.visible(i, d.tk, d.prefix);
        if (!biased) {
          detail::softmax_row(row, row, vis, d.tk, scale);
          continue;
        }
        // l_j = scale s_j + table[h, clamp(q0 + i - j)] + dense[b, h, i, j], then softmax(l).
        T const* tb = sc.table.empty() ? nullptr : sc.table.data + h * dmax;
        T const* db = sc.dense.empty() ? nullptr : sc.dense.data + (p * d.tq + i) * d.tk;
        for (std::int64_t j = 0; j < vis; ++j) {
          T l = row[j] * scale;
          if (tb) l += tb[detail::distance_index(q0 + i, j, dmax)];
          if (db) l += db[j];
          row[j] = l;
        }
        detail::softmax_row(row, row, vis, d.tk, T(1));
      }
      Mat<T, HostSpace> oblk(ob + i0 * w, rows, d.head_dim, w);
      if (kend > 0 && drops) {  // out = P' V with P' = P * keep / (1 - p)
        detail::attention_dropout_block(d, dkey, sc.dropout, h, i0, rows, kend, pblk, d.tk, dblk, kend);
        detail::gemm_host<T>(Trans::kNo, {dblk, rows, kend, kend}, Trans::kNo, {vb, kend, d.head_dim, 2 * w}, oblk,
                             T(1), T(0), inv);
      } else if (kend > 0)
        detail::gemm_host<T>(Trans::kNo, {pblk, rows, kend, d.tk}, Trans::kNo, {vb, kend, d.head_dim, 2 * w}, oblk,
                             T(1), T(0), inv);
      else
        for (std::int64_t i = 0; i < rows; ++i) std::fill(oblk.data + i * w, oblk.data + i * w + d.head_dim, T(0));
    }
    if (!sc.key_mass.empty()) {  // mass[j] = sum_i P[i, j] (masked entries are exactly zero)
      T* mb = sc.key_mass.data + p * d.tk;
      std::fill(mb, mb + d.tk, T(0));
      for (std::int64_t i = 0; i < d.tq; ++i) {
        T const* row = pb + i * d.tk;
        std::int64_t const vis = mask.visible(i, d.tk, d.prefix);
        for (std::int64_t j = 0; j < vis; ++j) mb[j] += row[j];
      }
    }
  }
}

/// Gradients of the attention core. dq and dkv are overwritten. `out` is forward's output (the
/// GPU kernel needs it for rowsum(dO * O); the CPU one reads the saved probabilities instead).
/// `scratch` holds at least `attention_backward_scratch(HostSpace{}, d)` elements.
template <class T>
void attention_backward(cpu::Context& ctx, AttentionDims const& d, AttentionMask mask, T scale,
                        View<T const, HostSpace> q, View<T const, HostSpace> kv, View<T const, HostSpace> out,
                        View<T const, HostSpace> probs, View<T const, HostSpace> dout, View<T, HostSpace> dq, View<T, HostSpace> dkv,
                        View<T, HostSpace> scratch, AttentionScores<T, HostSpace> const& sc = {},
                        AttentionScoreGrads<T, HostSpace> const& dsc = {}) {
  detail::check_attention(d, q, kv, dq, "attention_backward");
  detail::check_scores(d, sc, "attention_backward");
  detail::check_score_grads(d, sc, dsc, "attention_backward");
  HSEQ_CHECK(out.empty() || out.shape == q.shape, "attention_backward: out " << out.shape << " differs from q " << q.shape);
  HSEQ_CHECK(probs.shape == (Shape{d.batch, d.heads, d.tq, d.tk}),
             "attention_backward: probs " << probs.shape << " is not [B, H, Tq, Tk]");
  HSEQ_CHECK(dout.shape == q.shape && dkv.shape == kv.shape,
             "attention_backward: dout " << dout.shape << " / dkv " << dkv.shape << " must match q " << q.shape
                                         << " / kv " << kv.shape);
  int const threads = hseq::detail::max_threads();
  HSEQ_CHECK(scratch.numel() >= attention_backward_scratch(d, threads),
             "attention_backward: scratch of " << scratch.numel() << " elements, need "
                                               << attention_backward_scratch(d, threads) << " for " << threads
                                               << " threads (was the workspace planned with fewer threads?)");
  std::int64_t const w = d.width(), bh = d.batch * d.heads;
  std::int64_t const q0 = sc.origin(d.prefix), dmax = sc.table.empty() ? 1 : sc.table.size(1);
  bool const drops = sc.drops();
  bool const inv = ctx.batch_invariant();
  auto one = [&](std::int64_t p) {
    std::int64_t b = p / d.heads, h = p % d.heads;
    T const* qb = q.data + b * d.tq * w + h * d.head_dim;
    T const* kb = kv.data + b * d.kv_stride_rows() * 2 * w + h * d.head_dim;
    T const* vb = kb + w;
    T const* dob = dout.data + b * d.tq * w + h * d.head_dim;
    T* dqb = dq.data + b * d.tq * w + h * d.head_dim;
    T* dkb = dkv.data + b * d.kv_stride_rows() * 2 * w + h * d.head_dim;
    T* dvb = dkb + w;
    T const* pb = probs.data + p * d.tq * d.tk;
    T* ds = scratch.data + hseq::detail::thread_id() * kAttentionQueryBlock * d.tk;
    DropoutKey const dkey = drops ? sc.dropout_key.sub(std::uint64_t(b)) : DropoutKey{};
    for (std::int64_t j = 0; j < d.tk; ++j) {
      std::fill(dkb + j * 2 * w, dkb + j * 2 * w + d.head_dim, T(0));
      std::fill(dvb + j * 2 * w, dvb + j * 2 * w + d.head_dim, T(0));
    }
    for (std::int64_t i0 = 0; i0 < d.tq; i0 += kAttentionQueryBlock) {
      std::int64_t i1 = std::min(d.tq, i0 + kAttentionQueryBlock), rows = i1 - i0;
      std::int64_t kend = mask.visible(i1 - 1, d.tk, d.prefix);
      Mat<T, HostSpace> dqblk(dqb + i0 * w, rows, d.head_dim, w);
      if (!dsc.dense.empty())
        for (std::int64_t i = i0; i < i1; ++i)  // masked logits get no gradient
          std::fill(dsc.dense.data + (p * d.tq + i) * d.tk, dsc.dense.data + (p * d.tq + i + 1) * d.tk, T(0));
      if (kend == 0) {
        for (std::int64_t i = 0; i < rows; ++i) std::fill(dqblk.data + i * w, dqblk.data + i * w + d.head_dim, T(0));
        continue;
      }
      Mat<T const, HostSpace> pblk(pb + i0 * d.tk, rows, kend, d.tk);
      Mat<T const, HostSpace> doblk(dob + i0 * w, rows, d.head_dim, w);
      if (drops) {
        // With attention dropout the dP block first holds P' for dV += P'^T dO, then dP' = dO V^T,
        // then dP = dP' * keep / (1 - p) (the same mask, regenerated).
        detail::attention_dropout_block(d, dkey, sc.dropout, h, i0, rows, kend, pblk.data, d.tk, ds, kend);
        detail::gemm_host<T>(Trans::kYes, {ds, rows, kend, kend}, Trans::kNo, doblk, {dvb, kend, d.head_dim, 2 * w},
                             T(1), T(1), inv);
        detail::gemm_host<T>(Trans::kNo, doblk, Trans::kYes, {vb, kend, d.head_dim, 2 * w}, {ds, rows, kend, kend},
                             T(1), T(0), inv);
        detail::attention_dropout_block(d, dkey, sc.dropout, h, i0, rows, kend, ds, kend, ds, kend);
      } else {
        // dP = dO V^T   [rows, kend]
        detail::gemm_host<T>(Trans::kNo, doblk, Trans::kYes, {vb, kend, d.head_dim, 2 * w}, {ds, rows, kend, kend},
                             T(1), T(0), inv);
        // dV += P^T dO  [kend, dh]
        detail::gemm_host<T>(Trans::kYes, pblk, Trans::kNo, doblk, {dvb, kend, d.head_dim, 2 * w}, T(1), T(1), inv);
      }
      // dS = scale * P (dP - rowsum(P dP))
      for (std::int64_t i = 0; i < rows; ++i) {
        std::int64_t vis = mask.visible(i0 + i, d.tk, d.prefix);
        T* dsr = ds + i * kend;
        detail::softmax_row_backward(pb + (i0 + i) * d.tk, dsr, dsr, vis, kend);  // dL/dlogits
        if (!dsc.dense.empty()) std::copy(dsr, dsr + vis, dsc.dense.data + (p * d.tq + i0 + i) * d.tk);
        if (!dsc.table.empty()) {
          T* gt = dsc.table.data + h * dmax;
          for (std::int64_t j = 0; j < vis; ++j) gt[detail::distance_index(q0 + i0 + i, j, dmax)] += dsr[j];
        }
        for (std::int64_t j = 0; j < vis; ++j) dsr[j] *= scale;
      }
      Mat<T const, HostSpace> dsblk(ds, rows, kend, kend);
      // dQ = dS K  [rows, dh];  dK += dS^T Q  [kend, dh]
      detail::gemm_host<T>(Trans::kNo, dsblk, Trans::kNo, {kb, kend, d.head_dim, 2 * w}, dqblk, T(1), T(0), inv);
      detail::gemm_host<T>(Trans::kYes, dsblk, Trans::kNo, {qb + i0 * w, rows, d.head_dim, w},
                           {dkb, kend, d.head_dim, 2 * w}, T(1), T(1), inv);
    }
  };
  if (dsc.table.empty()) {
#pragma omp parallel for schedule(dynamic, 1) if (bh > 1)
    for (std::int64_t p = 0; p < bh; ++p) one(p);
  } else {  // the table gradient of head h sums over the batch: one thread per head, no races
#pragma omp parallel for schedule(dynamic, 1) if (d.heads > 1)
    for (std::int64_t h = 0; h < d.heads; ++h)
      for (std::int64_t b = 0; b < d.batch; ++b) one(b * d.heads + h);
  }
}

}  // namespace hseq::ops

#if defined(__CUDACC__) && defined(HSEQ_ENABLE_CUDA)
#include "hseq/ops/cuda/attention.cuh"
#endif
