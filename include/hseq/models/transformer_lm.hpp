// SPDX-License-Identifier: MIT
/// @file
/// @brief `TransformerLm`: the decoder-only Transformer language model (GPT-2 layout, pre-LN) that
/// the hierarchical models are compared with. Byte-level by default (vocabulary 256).
///
///   x0 = E[ids] + P          h_l = Block_l(h_{l-1})        logits = LN_f(h_L) W_out^T
/// with W_out = E when the output is tied. Training minimises the mean next-token cross-entropy
/// over the positions whose target is >= 0.
#pragma once

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
#include "hseq/nn/embedding.hpp"
#include "hseq/nn/layer_norm.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/nn/position_embedding.hpp"
#include "hseq/nn/transformer_block.hpp"
#include "hseq/ops/cross_entropy.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/gemm.hpp"

namespace hseq::models {

template <Backend B, class T>
class TransformerLm {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Ids = View<std::int32_t const, Space>;
  using Block = nn::TransformerBlock<B, T>;

  struct Config {
    std::int64_t vocab = 256;
    std::int64_t dim = 256, heads = 4, layers = 6;
    std::int64_t context = 256;   ///< longest sequence (the learned position table's length)
    std::int64_t mlp_hidden = 0;  ///< 0 means 4 * dim
    nn::PositionKind position = nn::PositionKind::kLearned;
    bool tied = true;  ///< output projection shares the token embedding
    double eps = 1e-5;
    double init_std = 0.02;
  };

  /// What a training forward saved for backward; reuse one Trace across steps (no allocation
  /// after the first).
  struct Trace {
    std::int64_t batch = 0, t = 0, counted = 0;
    double loss = std::numeric_limits<double>::quiet_NaN();
    Ids ids, targets;
    typename nn::Embedding<B, T>::Saved emb;
    typename nn::PositionEmbedding<B, T>::Saved pos;
    std::vector<typename Block::Saved> blocks;
    std::vector<MView> hs;  // hs[0] = x0, hs[l + 1] = output of block l; each [B, T, dim]
    typename nn::LayerNorm<B, T>::Saved lnf;
    typename nn::Linear<B, T>::Saved head;
    MView hf;      // [B, T, dim]   LN_f output
    MView logits;  // [B, T, vocab] (overwritten by dlogits in backward)
    MView losses;  // [B * T]
  };

  /// Per-layer key/value caches for generation: layer l holds [B, T_max, 2 dim].
  struct KvCache {
    std::vector<Tensor<T, B>> layers;
    std::int64_t batch = 0, capacity = 0;
  };

  /// Names the model in checkpoints.
  static constexpr char const* kKind = "transformer_lm";

  explicit TransformerLm(Config c)
      : cfg_(check(c)),
        tok_({c.vocab, c.dim, c.init_std}),
        pos_({c.position, c.context, c.dim, c.init_std}),
        lnf_({c.dim, c.eps}),
        head_({c.dim, c.vocab, false, c.init_std}) {
    // GPT-2: residual-branch output projections start smaller, by 1/sqrt(2 * layers).
    double out_std = c.init_std / std::sqrt(2.0 * double(c.layers));
    blocks_.reserve(std::size_t(c.layers));
    for (std::int64_t l = 0; l < c.layers; ++l)
      blocks_.emplace_back(typename Block::Config{c.dim, c.heads, c.mlp_hidden, nn::AttentionMask::causal(), true,
                                                  c.eps, c.init_std, out_std});
  }
  TransformerLm(TransformerLm const&) = delete;
  TransformerLm& operator=(TransformerLm const&) = delete;

  Config const& config() const { return cfg_; }

  /// The structure and hyper-parameters as JSON (stored in checkpoints, compared on load).
  std::string config_json() const {
    nlohmann::json j{{"vocab", cfg_.vocab},
                     {"dim", cfg_.dim},
                     {"heads", cfg_.heads},
                     {"layers", cfg_.layers},
                     {"context", cfg_.context},
                     {"mlp_hidden", cfg_.mlp_hidden},
                     {"position", position_name(cfg_.position)},
                     {"tied", cfg_.tied},
                     {"eps", cfg_.eps},
                     {"init_std", cfg_.init_std}};
    return j.dump();
  }
  /// Inverse of config_json (throws naming the field on a malformed document).
  static Config config_from_json(std::string const& text) {
    Config c;
    try {
      auto j = nlohmann::json::parse(text);
      c.vocab = j.at("vocab").get<std::int64_t>();
      c.dim = j.at("dim").get<std::int64_t>();
      c.heads = j.at("heads").get<std::int64_t>();
      c.layers = j.at("layers").get<std::int64_t>();
      c.context = j.at("context").get<std::int64_t>();
      c.mlp_hidden = j.at("mlp_hidden").get<std::int64_t>();
      c.position = position_from_name(j.at("position").get<std::string>());
      c.tied = j.at("tied").get<bool>();
      c.eps = j.at("eps").get<double>();
      c.init_std = j.at("init_std").get<double>();
    } catch (nlohmann::json::exception const& e) {
      HSEQ_FAIL("TransformerLm: invalid config JSON '" << text << "': " << e.what());
    }
    return c;
  }
  static char const* position_name(nn::PositionKind k) {
    return k == nn::PositionKind::kLearned ? "learned" : k == nn::PositionKind::kSinusoidal ? "sinusoidal" : "none";
  }
  static nn::PositionKind position_from_name(std::string const& s) {
    if (s == "learned") return nn::PositionKind::kLearned;
    if (s == "sinusoidal") return nn::PositionKind::kSinusoidal;
    if (s == "none") return nn::PositionKind::kNone;
    HSEQ_FAIL("TransformerLm: unknown position encoding '" << s << "' (known: learned, sinusoidal, none)");
  }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    tok_.visit_params(f, prefix + "tok_emb.");
    pos_.visit_params(f, prefix + "pos_emb.");
    for (std::size_t l = 0; l < blocks_.size(); ++l) blocks_[l].visit_params(f, prefix + "blocks." + std::to_string(l) + ".");
    lnf_.visit_params(f, prefix + "ln_f.");
    if (!cfg_.tied) head_.visit_params(f, prefix + "head.");
  }

  // ------------------------------------------------------------------------------------------
  // Training

  std::size_t forward_workspace(std::int64_t batch, std::int64_t t) const {
    std::int64_t n = batch * t;
    std::size_t b = aligned_bytes<T>(n * cfg_.dim) * std::size_t(cfg_.layers + 2) +
                    aligned_bytes<T>(n * cfg_.vocab) + aligned_bytes<T>(n) + lnf_.forward_workspace(n);
    for (auto const& blk : blocks_) b += blk.forward_workspace(batch, t);
    return b;
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t t) const {
    std::size_t inner = 0;
    for (auto const& blk : blocks_) inner = std::max(inner, blk.backward_workspace(batch, t));
    return 2 * aligned_bytes<T>(batch * t * cfg_.dim) + inner;
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
    tr.blocks.resize(blocks_.size());
    tr.hs.resize(blocks_.size() + 1);
    for (auto& h : tr.hs) h = ws.template take<T>(Shape{bsz, t, d}, "lm.h");
    tr.hf = ws.template take<T>(Shape{bsz, t, d}, "lm.hf");
    tr.logits = ws.template take<T>(Shape{bsz, t, cfg_.vocab}, "lm.logits");
    tr.losses = ws.template take<T>(Shape{bsz * t}, "lm.losses");
    // x0 = E[ids] + P[0:T]                                                    [B, T, d]
    tr.emb = tok_.forward(ctx, ids, tr.hs[0], ws);
    tr.pos = pos_.forward(ctx, tr.hs[0], tr.hs[0], 0, ws);
    for (std::size_t l = 0; l < blocks_.size(); ++l) tr.blocks[l] = blocks_[l].forward(ctx, tr.hs[l], tr.hs[l + 1], ws);
    tr.lnf = lnf_.forward(ctx, tr.hs.back(), tr.hf, ws);
    project(ctx, tr.hf, tr.logits, &tr.head, ws);  // logits = hf W_out^T           [B, T, V]
    tr.counted = 0;
    tr.loss = std::numeric_limits<double>::quiet_NaN();
    if (!targets.empty()) {
      tr.counted = ops::cross_entropy_forward<T>(ctx, tr.logits, targets, tr.losses);
      HSEQ_CHECK(tr.counted > 0, "TransformerLm: every target is ignored (< 0); nothing to train on");
      tr.loss = ops::sum<T>(ctx, tr.losses) / double(tr.counted);
    }
    return tr.loss;
  }

  /// Gradients of the mean loss of the last forward, accumulated into the parameters' grads.
  /// Overwrites tr.logits with dlogits.
  void backward(Ctx& ctx, Trace& tr, Arena<Space>& ws) const {
    HSEQ_CHECK(!tr.targets.empty() && tr.counted > 0, "TransformerLm::backward: the forward had no targets");
    ArenaScope<Space> scope(ws);
    Shape hs{tr.batch, tr.t, cfg_.dim};
    MView da = ws.template take<T>(hs, "lm.da"), db = ws.template take<T>(hs, "lm.db");
    ops::cross_entropy_backward<T>(ctx, tr.logits, tr.targets, T(1.0 / double(tr.counted)), tr.logits);
    project_backward(ctx, tr, tr.logits, da, ws);  // da = d hf
    lnf_.backward(ctx, tr.lnf, da, db, ws);        // db = d h_L
    for (std::size_t l = blocks_.size(); l-- > 0;) {
      blocks_[l].backward(ctx, tr.blocks[l], db, da, ws);
      std::swap(da, db);
    }
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
    for (std::int64_t l = 0; l < cfg_.layers; ++l) c.layers.emplace_back(Shape{batch, capacity, 2 * cfg_.dim});
    return c;
  }

  /// Nothing to forget: rows are overwritten as positions are fed again.
  void reset_cache(KvCache&) const {}

  /// Scratch bytes of `forward_step` for n new positions after `cached` ones.
  std::size_t step_workspace(std::int64_t batch, std::int64_t n, std::int64_t cached) const {
    std::int64_t r = batch * n;
    std::size_t inner = lnf_.forward_workspace(r) + aligned_bytes<T>(r * cfg_.dim);
    for (auto const& blk : blocks_) inner = std::max(inner, blk.step_workspace(batch, n, cached));
    return 2 * aligned_bytes<T>(r * cfg_.dim) + inner;
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
    for (std::size_t l = 0; l < blocks_.size(); ++l) {
      blocks_[l].forward_step(ctx, a, cache.layers[l].view(), pos, b, ws);
      std::swap(a, b);
    }
    ArenaScope<Space> tail(ws);
    MView hf = ws.template take<T>(Shape{bsz, n, d}, "lm_step.hf");
    lnf_.forward(ctx, a, hf, ws);
    project(ctx, hf, logits, nullptr, ws);
  }

 private:
  static Config check(Config c) {
    HSEQ_CHECK(c.vocab > 0 && c.dim > 0 && c.heads > 0 && c.layers > 0 && c.context > 0,
               "TransformerLm: vocab " << c.vocab << ", dim " << c.dim << ", heads " << c.heads << ", layers "
                                       << c.layers << ", context " << c.context << " must all be positive");
    HSEQ_CHECK(c.dim % c.heads == 0, "TransformerLm: heads " << c.heads << " do not divide the width " << c.dim);
    return c;
  }
  /// logits = h W_out^T.
  void project(Ctx& ctx, CView h, MView logits, typename nn::Linear<B, T>::Saved* saved, Arena<Space>& ws) const {
    if (cfg_.tied) {
      ops::gemm<T>(ctx, ops::Trans::kNo, ops::as_mat(h), ops::Trans::kYes, ops::as_mat(CView(tok_.table().value)),
                   ops::as_mat(logits));
    } else {
      auto s = head_.forward(ctx, h, logits, ws);
      if (saved) *saved = s;
    }
  }
  void project_backward(Ctx& ctx, Trace& tr, CView dlogits, MView dh, Arena<Space>& ws) const {
    if (cfg_.tied) {
      ops::gemm<T>(ctx, ops::Trans::kYes, ops::as_mat(dlogits), ops::Trans::kNo, ops::as_mat(CView(tr.hf)),
                   ops::as_mat(tok_.table().grad), T(1), T(1));
      ops::gemm<T>(ctx, ops::Trans::kNo, ops::as_mat(dlogits), ops::Trans::kNo, ops::as_mat(CView(tok_.table().value)),
                   ops::as_mat(dh));
    } else {
      head_.backward(ctx, tr.head, dlogits, dh, ws);
    }
  }

  Config cfg_;
  nn::Embedding<B, T> tok_;
  nn::PositionEmbedding<B, T> pos_;
  std::vector<Block> blocks_;
  nn::LayerNorm<B, T> lnf_;
  nn::Linear<B, T> head_;
};

}  // namespace hseq::models
