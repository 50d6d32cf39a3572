// SPDX-License-Identifier: MIT
/// @file
/// @brief `TransformerDecoder`: HAED's byte decoder (spec models.md §2.3): a small causal pre-LN
/// Transformer run over each segment separately, with the segment's condition as a prefix
/// position and learned positions 0..K:
///
///   z_i = [c_i; x_{iK}; ...; x_{iK+K-1}] + P[0:K+1]          [B N, K + 1, d]
///   o_i = Blocks(z_i)                                         [B N, K + 1, d]
///   y_{iK+r} = o_i[r + 1]                                     [B, N K, d]
///
/// so row iK + r attends to c_i and bytes iK .. iK + r only. No final LayerNorm: the model's LM
/// head applies one. Cached generation keeps the segment's keys and values (K + 1 rows per
/// block); a new segment starts over at position 0. Reads PartConfig's dim, segment, heads, layers,
/// mlp_hidden, eps and init_std.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/part_config.hpp"
#include "hseq/nn/block_stack.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/position_embedding.hpp"
#include "hseq/nn/transformer_block.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/mat.hpp"

namespace hseq::hier {

template <Backend B, class T>
class TransformerDecoderModule {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Config = PartConfig;
  using Block = nn::TransformerBlock<B, T>;
  using Stack = nn::BlockStack<B, T, Block>;
  struct Saved {
    MView z;  // [B N, K + 1, d] condition and bytes, plus positions
    typename nn::PositionEmbedding<B, T>::Saved pos;
    typename Stack::Saved blocks;
    std::int64_t rows = 0;  // B N
  };
  /// Every block's key/value cache over the K + 1 positions of the current segment.
  using StepState = typename Stack::Cache;

  explicit TransformerDecoderModule(Config c)
      : cfg_(check(c)),
        pos_({nn::PositionKind::kLearned, cfg_.segment + 1, cfg_.dim, cfg_.init_std}),
        // GPT-2: residual-branch output projections start smaller, by 1/sqrt(2 * layers).
        blocks_({cfg_.layers, typename Block::Config{cfg_.dim, cfg_.heads, cfg_.mlp_hidden, nn::AttentionMask::causal(),
                                                     true, cfg_.eps, cfg_.init_std,
                                                     cfg_.init_std / std::sqrt(2.0 * double(cfg_.layers))}}) {}
  Config const& config() const { return cfg_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    pos_.visit_params(f, prefix + "pos_emb.");
    blocks_.visit_params(f, prefix + "blocks.");
  }

  std::size_t forward_workspace(std::int64_t batch, std::int64_t len) const {
    std::int64_t rows = batch * (len / cfg_.segment), k1 = cfg_.segment + 1;
    return aligned_bytes<T>(rows * k1 * cfg_.dim) + blocks_.forward_workspace(rows, k1);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t len) const {
    std::int64_t rows = batch * (len / cfg_.segment), k1 = cfg_.segment + 1;
    return 2 * aligned_bytes<T>(rows * k1 * cfg_.dim) + blocks_.backward_workspace(rows, k1);
  }

  /// y [B, N K, d] from the conditions cond [B, N, d] and the byte embeddings x [B, N K, d], into
  /// the caller's `s` (reuse one across steps: the block stack's vectors allocate only once).
  void forward(Ctx& ctx, CView cond, CView x, MView y, Saved& s, Arena<Space>& ws) const {
    std::int64_t k = cfg_.segment, d = cfg_.dim;
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == d && x.size(1) % k == 0,
               "TransformerDecoder(dim " << d << ", segment " << k << "): x " << x.shape << " is not [B, N " << k
                                         << ", " << d << "]");
    std::int64_t bsz = x.size(0), n = x.size(1) / k, rows = bsz * n;
    check_shape(cond, Shape{bsz, n, d}, "TransformerDecoder: cond");
    check_shape(y, x.shape, "TransformerDecoder: y");
    s.rows = rows;
    s.z = ws.template take<T>(Shape{rows, k + 1, d}, "tr_dec.z");
    // z_i = [c_i; x_{iK .. iK+K-1}] + P                                           [B N, K + 1, d]
    ops::copy_mat<T>(ctx, ops::as_mat(cond.reshape(Shape{rows, d})), {s.z.data, rows, d, (k + 1) * d});
    ops::copy_mat<T>(ctx, ops::as_mat(x.reshape(Shape{rows, k * d})), {s.z.data + d, rows, k * d, (k + 1) * d});
    s.pos = pos_.forward(ctx, s.z, s.z, 0, ws);
    CView o = blocks_.forward(ctx, s.z, s.blocks, ws);  // o_i = Blocks(z_i)       [B N, K + 1, d]
    // y_{iK+r} = o_i[r + 1]                                                        [B, N K, d]
    ops::copy_mat<T>(ctx, {o.data + d, rows, k * d, (k + 1) * d}, ops::as_mat(y.reshape(Shape{rows, k * d})));
  }
  /// The same with a fresh Saved (allocates: for one-off calls and tests).
  Saved forward(Ctx& ctx, CView cond, CView x, MView y, Arena<Space>& ws) const {
    Saved s;
    forward(ctx, cond, x, y, s, ws);
    return s;
  }

  /// dcond [B, N, d] and dx [B, N K, d] (overwritten; dx may be empty) from dy; parameter gradients
  /// accumulate.
  void backward(Ctx& ctx, Saved const& s, CView dy, MView dcond, MView dx, Arena<Space>& ws) const {
    std::int64_t rows = s.rows, k = cfg_.segment, d = cfg_.dim;
    HSEQ_CHECK(dy.numel() == rows * k * d && dcond.numel() == rows * d,
               "TransformerDecoder::backward: dy " << dy.shape << ", dcond " << dcond.shape << " for " << rows
                                                   << " segments");
    ArenaScope<Space> scope(ws);
    MView a = ws.template take<T>(s.z.shape, "tr_dec.da"), b = ws.template take<T>(s.z.shape, "tr_dec.db");
    // The condition row's output is not used: its gradient is zero.
    ops::fill<T>(ctx, a, T(0));
    ops::copy_mat<T>(ctx, ops::as_mat(dy.reshape(Shape{rows, k * d})), {a.data + d, rows, k * d, (k + 1) * d});
    blocks_.backward(ctx, s.blocks, a, b, ws);  // a = dz (the views may swap)
    pos_.backward(ctx, s.pos, a, a, ws);        // the table's gradient accumulates
    ops::copy_mat<T>(ctx, {a.data, rows, d, (k + 1) * d}, ops::as_mat(dcond.reshape(Shape{rows, d})));
    if (!dx.empty())
      ops::copy_mat<T>(ctx, {a.data + d, rows, k * d, (k + 1) * d}, ops::as_mat(dx.reshape(Shape{rows, k * d})));
  }

  StepState make_step_state(std::int64_t batch) const { return blocks_.make_cache(batch, cfg_.segment + 1); }
  std::size_t step_workspace(std::int64_t batch) const {
    return 2 * aligned_bytes<T>(batch * cfg_.dim) + blocks_.step_workspace(batch, 1, cfg_.segment + 1);
  }

  /// Starts a segment: the condition cond [B, 1, d] at position 0.
  void step_begin(Ctx& ctx, StepState& st, CView cond, Arena<Space>& ws) const { run(ctx, st, cond, 0, {}, ws); }

  /// Byte r of the current segment, x [B, 1, d] at position r + 1 -> y [B, 1, d].
  void step(Ctx& ctx, StepState& st, CView x, std::int64_t r, MView y, Arena<Space>& ws) const {
    HSEQ_CHECK(r >= 0 && r < cfg_.segment, "TransformerDecoder::step: byte " << r << " of a segment of " << cfg_.segment);
    check_shape(y, x.shape, "TransformerDecoder::step: y");
    run(ctx, st, x, r + 1, y, ws);
  }

 private:
  static Config check(Config c) {
    c = check_part(c, "TransformerDecoder");
    HSEQ_CHECK(c.heads > 0 && c.dim % c.heads == 0,
               "TransformerDecoder: heads " << c.heads << " do not divide the width " << c.dim);
    return c;
  }
  /// One position q of the segment: in [B, 1, d] -> out (may be empty).
  void run(Ctx& ctx, StepState& st, CView in, std::int64_t q, MView out, Arena<Space>& ws) const {
    HSEQ_CHECK(in.rank() == 3 && in.size(1) == 1 && in.size(2) == cfg_.dim,
               "TransformerDecoder::step: input " << in.shape << " is not [B, 1, " << cfg_.dim << "]");
    ArenaScope<Space> scope(ws);
    MView a = ws.template take<T>(in.shape, "tr_dec_step.a"), b = ws.template take<T>(in.shape, "tr_dec_step.b");
    pos_.forward(ctx, in, a, q, ws);
    blocks_.forward_step(ctx, a, b, st, q, ws);
    if (!out.empty()) ops::copy<T>(ctx, CView(a), out);
  }

  Config cfg_;
  nn::PositionEmbedding<B, T> pos_;
  Stack blocks_;
};

/// Policy tag: the segment Transformer decoder (HAED).
struct TransformerDecoder {
  static constexpr char const* kName = "transformer";
  template <Backend B, class T>
  using Module = TransformerDecoderModule<B, T>;
};

}  // namespace hseq::hier
