// SPDX-License-Identifier: MIT
/// @file
/// @brief `TransformerBackbone`: HAED's low-rate model (spec models.md §2.3): a causal pre-LN
/// Transformer over the segment vectors, with learned segment positions and a final LayerNorm,
///
///   h = Blocks(e + P[0:N])        s = LN(h)                                  [B, N, d]
///
/// (the final LayerNorm because pre-LN residual streams grow with depth, and the decoder reads s
/// directly). Cached generation keeps every block's keys and values and runs one position per
/// completed segment. Reads PartConfig's dim, heads, layers, mlp_hidden, max_segments (the
/// position table's length), eps and init_std.
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
#include "hseq/nn/layer_norm.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/position_embedding.hpp"
#include "hseq/nn/transformer_block.hpp"

namespace hseq::hier {

template <Backend B, class T>
class TransformerBackboneModule {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Config = PartConfig;
  using Block = nn::TransformerBlock<B, T>;
  using Stack = nn::BlockStack<B, T, Block>;
  struct Saved {
    typename nn::PositionEmbedding<B, T>::Saved pos;
    MView x0;  // [B, N, d] e + P
    typename Stack::Saved blocks;
    typename nn::LayerNorm<B, T>::Saved ln;
  };
  /// Every block's key/value cache over segment positions.
  using StepState = typename Stack::Cache;

  explicit TransformerBackboneModule(Config c)
      : cfg_(check(c)),
        pos_({nn::PositionKind::kLearned, cfg_.max_segments, cfg_.dim, cfg_.init_std}),
        // GPT-2: residual-branch output projections start smaller, by 1/sqrt(2 * layers).
        blocks_({cfg_.layers, typename Block::Config{cfg_.dim, cfg_.heads, cfg_.mlp_hidden, nn::AttentionMask::causal(),
                                                     true, cfg_.eps, cfg_.init_std,
                                                     cfg_.init_std / std::sqrt(2.0 * double(cfg_.layers))}}),
        ln_({cfg_.dim, cfg_.eps}) {}
  Config const& config() const { return cfg_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    pos_.visit_params(f, prefix + "pos_emb.");
    blocks_.visit_params(f, prefix + "blocks.");
    ln_.visit_params(f, prefix + "ln_f.");
  }

  std::size_t forward_workspace(std::int64_t batch, std::int64_t n) const {
    return aligned_bytes<T>(batch * n * cfg_.dim) + blocks_.forward_workspace(batch, n) +
           ln_.forward_workspace(batch * n);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t n) const {
    return 2 * aligned_bytes<T>(batch * n * cfg_.dim) + blocks_.backward_workspace(batch, n);
  }

  /// s [B, N, d] from e [B, N, d]; N <= max_segments. Into the caller's `sv` (reuse one across
  /// steps: the block stack's vectors allocate only on the first call).
  void forward(Ctx& ctx, CView e, MView s, Saved& sv, Arena<Space>& ws) const {
    HSEQ_CHECK(e.rank() == 3 && e.size(2) == cfg_.dim && s.shape == e.shape,
               "TransformerBackbone(dim " << cfg_.dim << "): e " << e.shape << ", s " << s.shape);
    HSEQ_CHECK(e.size(1) <= cfg_.max_segments, "TransformerBackbone: " << e.size(1) << " segments exceed the "
                                                                       << cfg_.max_segments << " positions");
    sv.x0 = ws.template take<T>(e.shape, "tr_bb.x0");
    sv.pos = pos_.forward(ctx, e, sv.x0, 0, ws);               // x0 = e + P[0:N]    [B, N, d]
    CView h = blocks_.forward(ctx, sv.x0, sv.blocks, ws);      // h = Blocks(x0)     [B, N, d]
    sv.ln = ln_.forward(ctx, h, s, ws);                        // s = LN(h)          [B, N, d]
  }
  /// The same with a fresh Saved (allocates: for one-off calls and tests).
  Saved forward(Ctx& ctx, CView e, MView s, Arena<Space>& ws) const {
    Saved sv;
    forward(ctx, e, s, sv, ws);
    return sv;
  }

  /// de [B, N, d] (overwritten) from ds; parameter gradients accumulate.
  void backward(Ctx& ctx, Saved const& sv, CView ds, MView de, Arena<Space>& ws) const {
    HSEQ_CHECK(ds.shape == sv.x0.shape && de.shape == sv.x0.shape,
               "TransformerBackbone::backward: ds " << ds.shape << ", de " << de.shape << " for " << sv.x0.shape);
    ArenaScope<Space> scope(ws);
    MView a = ws.template take<T>(ds.shape, "tr_bb.da"), b = ws.template take<T>(ds.shape, "tr_bb.db");
    ln_.backward(ctx, sv.ln, ds, a, ws);           // a = dh
    blocks_.backward(ctx, sv.blocks, a, b, ws);    // a = dx0 (the views may swap)
    pos_.backward(ctx, sv.pos, a, de, ws);         // de = dx0; the table's gradient accumulates
  }

  StepState make_step_state(std::int64_t batch, std::int64_t capacity) const {
    HSEQ_CHECK(capacity <= cfg_.max_segments, "TransformerBackbone::make_step_state: " << capacity << " segments exceed the "
                                                                                      << cfg_.max_segments << " positions");
    return blocks_.make_cache(batch, capacity);
  }
  std::size_t step_workspace(std::int64_t batch, std::int64_t capacity) const {
    std::int64_t r = batch;
    return 2 * aligned_bytes<T>(r * cfg_.dim) +
           std::max(blocks_.step_workspace(batch, 1, capacity), ln_.forward_workspace(r));
  }

  /// Consumes segment j's vector e [B, 1, d] and writes s[j] [B, 1, d] (keys and values of
  /// segments < j come from the state; j = 0 overwrites them).
  void step(Ctx& ctx, StepState& st, CView e, std::int64_t j, MView s, Arena<Space>& ws) const {
    HSEQ_CHECK(e.rank() == 3 && e.size(1) == 1 && e.size(2) == cfg_.dim && s.shape == e.shape,
               "TransformerBackbone::step: e " << e.shape << ", s " << s.shape);
    ArenaScope<Space> scope(ws);
    MView a = ws.template take<T>(e.shape, "tr_bb_step.a"), b = ws.template take<T>(e.shape, "tr_bb_step.b");
    pos_.forward(ctx, e, a, j, ws);                  // e + P[j]
    blocks_.forward_step(ctx, a, b, st, j, ws);      // a = h_j
    ln_.forward(ctx, a, s, ws);                      // s_j = LN(h_j)
  }

 private:
  static Config check(Config c) {
    c = check_part(c, "TransformerBackbone");
    HSEQ_CHECK(c.heads > 0 && c.dim % c.heads == 0,
               "TransformerBackbone: heads " << c.heads << " do not divide the width " << c.dim);
    HSEQ_CHECK(c.max_segments > 0, "TransformerBackbone: max_segments must be positive, got " << c.max_segments);
    return c;
  }
  Config cfg_;
  nn::PositionEmbedding<B, T> pos_;
  Stack blocks_;
  nn::LayerNorm<B, T> ln_;
};

/// Policy tag: the causal Transformer backbone (HAED).
struct TransformerBackbone {
  static constexpr char const* kName = "transformer";
  template <Backend B, class T>
  using Module = TransformerBackboneModule<B, T>;
};

}  // namespace hseq::hier
