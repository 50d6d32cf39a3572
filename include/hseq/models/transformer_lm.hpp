// SPDX-License-Identifier: MIT
/// @file
/// @brief `TransformerLm`: the decoder-only Transformer language model (GPT-2 layout, pre-LN) that
/// the hierarchical models are compared with. Byte-level by default (vocabulary 256).
///
///   x0 = E[ids] + P          h_l = Block_l(h_{l-1})        logits = LN_f(h_L) W_out^T
/// with W_out = E when the output is tied. Training minimises the mean next-token cross-entropy
/// over the positions whose target is >= 0. The block type is the last template parameter, the
/// backbone policy (`nn::ModelBackbonePolicy`, nn/block_stack.hpp), by default the pre-LN
/// `TransformerBlock`: `TransformerLm<B, T>` is today's model.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/models/config_json.hpp"
#include "hseq/models/flops.hpp"
#include "hseq/nn/block_stack.hpp"
#include "hseq/nn/embedding.hpp"
#include "hseq/nn/lm_head.hpp"
#include "hseq/nn/position_embedding.hpp"
#include "hseq/nn/transformer_block.hpp"

namespace hseq::models {

template <Backend B, class T, nn::ModelBackbonePolicy<B, T> BlockT = nn::TransformerBlock<B, T>>
class TransformerLm {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Ids = View<std::int32_t const, Space>;
  using Block = BlockT;
  using Stack = nn::BlockStack<B, T, Block>;
  using Head = nn::LmHead<B, T>;

  struct Config {
    std::int64_t vocab = 256;
    std::int64_t dim = 256, heads = 4, layers = 6;
    std::int64_t context = 256;   ///< longest sequence (the learned position table's length)
    std::int64_t mlp_hidden = 0;  ///< 0 means 4 * dim
    nn::PositionKind position = nn::PositionKind::kLearned;
    bool tied = true;  ///< output projection shares the token embedding
    double eps = 1e-5;
    double init_std = 0.02;
    // Checkpoints store this JSON and compare it by value on load: the keys and value formats
    // (position as its name) are a file format. Fields are read in this order.
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(Config, vocab, dim, heads, layers, context, mlp_hidden, position, tied, eps,
                                   init_std)
  };

  /// What a training forward saved for backward; reuse one Trace across steps (no allocation
  /// after the first).
  struct Trace {
    std::int64_t batch = 0, t = 0, counted = 0;
    double loss = std::numeric_limits<double>::quiet_NaN();
    Ids ids, targets;
    typename nn::Embedding<B, T>::Saved emb;
    typename nn::PositionEmbedding<B, T>::Saved pos;
    MView x0;  // [B, T, dim] embeddings, the stack's input
    typename Stack::Saved blocks;
    typename Head::Saved head;
    MView logits;  // [B, T, vocab] = head.logits (overwritten by dlogits in backward)
  };

  /// Per-layer key/value caches for generation: layer l holds [B, T_max, 2 dim].
  struct KvCache {
    typename Stack::Cache layers;
    std::int64_t batch = 0, capacity = 0;
  };

  /// Names the model in checkpoints.
  static constexpr char const* kKind = "transformer_lm";

  explicit TransformerLm(Config c)
      : cfg_(check(c)),
        tok_({c.vocab, c.dim, c.init_std}),
        pos_({c.position, c.context, c.dim, c.init_std}),
        // GPT-2: residual-branch output projections start smaller, by 1/sqrt(2 * layers).
        blocks_({c.layers, typename Block::Config(typename nn::TransformerBlock<B, T>::Config{
                               c.dim, c.heads, c.mlp_hidden, nn::AttentionMask::causal(), true, c.eps, c.init_std,
                               c.init_std / std::sqrt(2.0 * double(c.layers))})}),
        head_({c.dim, c.vocab, c.tied, c.eps, c.init_std}, c.tied ? &tok_.table() : nullptr) {}
  TransformerLm(TransformerLm const&) = delete;
  TransformerLm& operator=(TransformerLm const&) = delete;

  Config const& config() const { return cfg_; }

  /// The structure and hyper-parameters as JSON (stored in checkpoints, compared on load).
  std::string config_json() const { return nlohmann::json(cfg_).dump(); }
  /// Inverse of config_json (throws naming the field on a malformed document).
  static Config config_from_json(std::string const& text) {
    return parse_config_json<Config>(text, "TransformerLm");
  }
  static char const* position_name(nn::PositionKind k) { return nn::position_kind_name(k); }
  static nn::PositionKind position_from_name(std::string const& s) {
    return nn::position_kind_from_name(s, "TransformerLm");
  }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    tok_.visit_params(f, prefix + "tok_emb.");
    pos_.visit_params(f, prefix + "pos_emb.");
    blocks_.visit_params(f, prefix + "blocks.");
    head_.visit_params(f, prefix);  // ln_f., then head. when untied
  }

  // ------------------------------------------------------------------------------------------
  // Training

  std::size_t forward_workspace(std::int64_t batch, std::int64_t t) const {
    return aligned_bytes<T>(batch * t * cfg_.dim) /*x0*/ + blocks_.forward_workspace(batch, t) +
           head_.forward_workspace(batch, t);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t t) const {
    return 2 * aligned_bytes<T>(batch * t * cfg_.dim) +
           std::max(head_.backward_workspace(batch, t), blocks_.backward_workspace(batch, t));
  }

  /// Forward over ids [B, T]; with targets [B, T] (entries < 0 ignored) returns the mean
  /// cross-entropy in nats (NaN without targets). Logits land in `tr.logits` [B, T, vocab].
  double forward(Ctx& ctx, Ids ids, Ids targets, Arena<Space>& ws, Trace& tr) const {
    HSEQ_CHECK(ids.rank() == 2 && ids.size(0) > 0 && ids.size(1) > 0,
               "TransformerLm: ids " << ids.shape << " must be [B, T] with B, T >= 1");
    std::int64_t bsz = ids.size(0), t = ids.size(1), d = cfg_.dim;
    HSEQ_CHECK(t <= cfg_.context, "TransformerLm: sequence length " << t << " exceeds the context " << cfg_.context);
    HSEQ_CHECK(targets.empty() || targets.shape == ids.shape,
               "TransformerLm: targets " << targets.shape << " differ from ids " << ids.shape);
    tr.batch = bsz;
    tr.t = t;
    tr.ids = ids;
    tr.targets = targets;
    tr.counted = 0;
    tr.loss = std::numeric_limits<double>::quiet_NaN();
    // x0 = E[ids] + P[0:T]                                                    [B, T, d]
    tr.x0 = ws.template take<T>(Shape{bsz, t, d}, "lm.x0");
    tr.emb = tok_.forward(ctx, ids, tr.x0, ws);
    tr.pos = pos_.forward(ctx, tr.x0, tr.x0, 0, ws);
    CView h = blocks_.forward(ctx, tr.x0, tr.blocks, ws);  // h_L                [B, T, d]
    tr.head = head_.forward(ctx, h, targets, ws);          // LN_f, W_out, loss  [B, T, V]
    tr.logits = tr.head.logits;
    tr.counted = tr.head.counted;
    tr.loss = tr.head.loss;
    return tr.loss;
  }

  /// Gradients of the mean loss of the last forward, accumulated into the parameters' grads.
  /// Overwrites tr.logits with dlogits.
  void backward(Ctx& ctx, Trace& tr, Arena<Space>& ws) const {
    HSEQ_CHECK(!tr.targets.empty() && tr.counted > 0, "TransformerLm::backward: the forward had no targets");
    ArenaScope<Space> scope(ws);
    Shape hs{tr.batch, tr.t, cfg_.dim};
    MView da = ws.template take<T>(hs, "lm.da"), db = ws.template take<T>(hs, "lm.db");
    head_.backward(ctx, tr.head, db, da, ws);      // db = d h_L (da: scratch)
    blocks_.backward(ctx, tr.blocks, db, da, ws);  // db = d x0 (the views may swap)
    pos_.backward(ctx, tr.pos, db, db, ws);
    tok_.backward(ctx, tr.emb, db, ws);
  }

  // ------------------------------------------------------------------------------------------
  // Cached generation

  KvCache make_cache(std::int64_t batch, std::int64_t capacity) const {
    HSEQ_CHECK(batch > 0 && capacity > 0 && capacity <= cfg_.context,
               "TransformerLm::make_cache: batch " << batch << ", capacity " << capacity << " (context "
                                                   << cfg_.context << ")");
    KvCache c;
    c.batch = batch;
    c.capacity = capacity;
    c.layers = blocks_.make_cache(batch, capacity);
    return c;
  }

  /// Nothing to forget: rows are overwritten as positions are fed again.
  void reset_cache(KvCache&) const {}

  /// Scratch bytes of `forward_step` for n new positions after `cached` ones.
  std::size_t step_workspace(std::int64_t batch, std::int64_t n, std::int64_t cached) const {
    std::int64_t r = batch * n;
    return 2 * aligned_bytes<T>(r * cfg_.dim) +
           std::max(head_.predict_workspace(r), blocks_.step_workspace(batch, n, cached));
  }

  /// Logits [B, n, vocab] for the n new tokens ids [B, n] at positions [pos, pos + n), using and
  /// extending the cache. Equal to the rows [pos, pos + n) of a full forward over [0, pos + n).
  void forward_step(Ctx& ctx, Ids ids, KvCache& cache, std::int64_t pos, MView logits, Arena<Space>& ws) const {
    HSEQ_CHECK(ids.rank() == 2 && ids.size(0) == cache.batch,
               "TransformerLm::forward_step: ids " << ids.shape << " for a cache of batch " << cache.batch);
    std::int64_t bsz = ids.size(0), n = ids.size(1), d = cfg_.dim;
    HSEQ_CHECK(pos + n <= cache.capacity, "TransformerLm::forward_step: positions up to " << pos + n
                                                                                          << " exceed the cache capacity "
                                                                                          << cache.capacity);
    check_shape(logits, Shape{bsz, n, cfg_.vocab}, "TransformerLm::forward_step: logits");
    ArenaScope<Space> scope(ws);
    MView a = ws.template take<T>(Shape{bsz, n, d}, "lm_step.a"), b = ws.template take<T>(Shape{bsz, n, d}, "lm_step.b");
    tok_.forward(ctx, ids, a, ws);
    pos_.forward(ctx, a, a, pos, ws);
    blocks_.forward_step(ctx, a, b, cache.layers, pos, ws);  // a = h_L
    head_.predict(ctx, a, ops::as_mat(logits), ws);
  }

  // ------------------------------------------------------------------------------------------
  // Cost

  /// Model FLOPs per token of a training step at sequence length t (models/flops.hpp): every
  /// non-embedding parameter (blocks, ln_f, an untied head) at rate 1, attention 12 L d T (one
  /// causal self-attention per block, as in the default block).
  FlopCount flops(std::int64_t t) const {
    FlopCount f;
    f.add_embedding(tok_).add_embedding(pos_).add(blocks_, 1.0).add(head_, 1.0);
    double tt = double(t);
    return f.add_attention(double(cfg_.layers), double(cfg_.dim), tt, tt, tt);
  }

 private:
  static Config check(Config c) {
    HSEQ_CHECK(c.vocab > 0 && c.dim > 0 && c.heads > 0 && c.layers > 0 && c.context > 0,
               "TransformerLm: vocab " << c.vocab << ", dim " << c.dim << ", heads " << c.heads << ", layers "
                                       << c.layers << ", context " << c.context << " must all be positive");
    HSEQ_CHECK(c.dim % c.heads == 0, "TransformerLm: heads " << c.heads << " do not divide the width " << c.dim);
    return c;
  }
  Config cfg_;
  nn::Embedding<B, T> tok_;
  nn::PositionEmbedding<B, T> pos_;
  Stack blocks_;
  Head head_;
};

}  // namespace hseq::models
