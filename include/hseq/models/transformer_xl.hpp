// SPDX-License-Identifier: MIT
/// @file
/// @brief `TransformerXl`: the Transformer-XL language model (Dai et al. 2019): relative attention
/// over a per-layer memory of the previous segments' layer inputs, carried from one segment to the
/// next with a stop-gradient. Pre-LN blocks (`nn::RelativeBlock`), byte-level by default.
///
///   h_0 = E[ids]                                           [B, T, d]   (no absolute positions)
///   h_l = Block_l(h_{l-1}, mem_{l-1})                      [B, T, d]
///   logits = LN_f(h_L) W_out^T                             [B, T, V]   (W_out = E when tied)
///   mem_l' = the last min(mem_len, M + T) rows of [mem_l; h_l]   (l = 0..L-1, held fixed)
/// where mem_l [B, M, d] holds the inputs of block l at the M positions before the segment.
///
/// MEMORY, passed explicitly: a `Memory` (one per stream of batches: `make_memory(batch)`) is
/// bound with `bind_memory(&m)`; `forward` reads the bound memory and writes the updated one.
/// Without a bound memory (or after `reset_state`/`Memory::reset`, M = 0) a segment sees only
/// itself. The update is double-buffered: `forward` writes the new memory beside the one it read,
/// which `backward` still needs, and the next `forward` (or saving the memory) makes it current.
/// So training calls forward, backward, forward, backward... on one bound memory, and evaluation
/// binds its own memory, leaving the training stream's untouched. A `Memory` is a `StatefulPart`
/// (core/state.hpp): checkpoints save it (trainer state group "memory"), so a resumed run
/// continues the stream exactly. Its tensors are [B, mem_len, d] per layer; the first M rows of
/// each batch row's block, contiguous as [B, M, d], are the memory (M = `fill()`).
///
/// Training on consecutive segments (train/task.hpp `SequentialSegments`): the trainer calls
/// `reset_state` before a batch that does not continue the previous one.
///
/// Generation (`CachedModel`): the cache is a memory of `capacity` rows; `forward_step` feeds the
/// new tokens as a segment over it. The memory holds layer inputs, not keys and values, so every
/// step re-projects it: O(capacity d^2) per token and layer (Transformer-XL's own evaluation does
/// the same). Rows [pos, pos + n) equal a full forward over [0, pos + n), whatever mem_len is,
/// because the cache keeps every position up to its capacity.
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
#include "hseq/core/state.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/models/config_json.hpp"
#include "hseq/models/flops.hpp"
#include "hseq/nn/embedding.hpp"
#include "hseq/nn/lm_head.hpp"
#include "hseq/nn/relative_block.hpp"
#include "hseq/ops/mat.hpp"

namespace hseq::models {

template <Backend B, class T>
class TransformerXl {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Ids = View<std::int32_t const, Space>;
  using Block = nn::RelativeBlock<B, T>;
  using Head = nn::LmHead<B, T>;

  struct Config {
    std::int64_t vocab = 256;
    std::int64_t dim = 256, heads = 4, layers = 4;
    std::int64_t context = 256;   ///< longest segment (training length) and generation capacity
    std::int64_t mem_len = 256;   ///< rows of memory per layer (0: none)
    std::int64_t clamp_len = 0;   ///< relative distances past it use R[clamp_len] (0: no clamping)
    std::int64_t mlp_hidden = 0;  ///< 0 means 4 * dim
    bool tied = true;             ///< output projection shares the token embedding
    double eps = 1e-5;
    double init_std = 0.02;
    // Checkpoints store this JSON and compare it by value on load: a file format.
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(Config, vocab, dim, heads, layers, context, mem_len, clamp_len, mlp_hidden, tied,
                                   eps, init_std)
  };

  /// The per-layer memory of one stream of batches (see the file comment).
  class Memory {
   public:
    Memory() = default;
    Memory(std::int64_t layers, std::int64_t batch, std::int64_t rows, std::int64_t dim)
        : batch_(batch), rows_(rows), dim_(dim) {
      for (std::int64_t l = 0; l < layers; ++l) {
        cur_.emplace_back(Shape{batch, std::max<std::int64_t>(rows, 1), dim});
        next_.emplace_back(Shape{batch, std::max<std::int64_t>(rows, 1), dim});
      }
    }
    std::int64_t batch() const { return batch_; }
    std::int64_t capacity() const { return rows_; }
    /// Rows the memory holds now (M), after any pending update.
    std::int64_t fill() const { return pending_ ? next_fill_ : fill_; }
    /// Forgets everything (M = 0).
    void reset() { fill_ = next_fill_ = 0, pending_ = false; }
    /// Layer l's memory [B, M, d] as the next forward reads it (the pending update made current).
    CView layer(std::int64_t l) {
      commit();
      return CView(cur_.at(std::size_t(l)).data(), Shape{batch_, fill_, dim_});
    }
    /// StatefulPart: "fill", then "layer<l>" [B, mem_len, d] for each layer (whole buffers).
    template <class F>
    void visit_state(F&& f) {
      commit();
      f(std::string("fill"), fill_);
      HSEQ_CHECK(fill_ >= 0 && fill_ <= rows_,
                 "TransformerXl::Memory: a fill of " << fill_ << " rows for a memory of " << rows_);
      for (std::size_t l = 0; l < cur_.size(); ++l) f("layer" + std::to_string(l), cur_[l].view());
    }

   private:
    friend class TransformerXl;
    void commit() {
      if (!pending_) return;
      std::swap(cur_, next_);
      fill_ = next_fill_;
      pending_ = false;
    }
    std::int64_t batch_ = 0, rows_ = 0, dim_ = 0;
    std::int64_t fill_ = 0, next_fill_ = 0;
    bool pending_ = false;
    std::vector<Tensor<T, B>> cur_, next_;
  };

  struct Trace {
    std::int64_t batch = 0, t = 0, m = 0, counted = 0;
    double loss = std::numeric_limits<double>::quiet_NaN();
    Ids ids, targets;
    typename nn::Embedding<B, T>::Saved emb;
    std::vector<MView> h;  // h[l] [B, T, d]: input of block l (h[L]: the last output)
    std::vector<typename Block::Saved> blocks;
    typename Head::Saved head;
    MView logits;  // [B, T, vocab] (overwritten by dlogits in backward)
  };
  /// Generation's cache: a memory of `capacity` rows, at most the context.
  struct Cache {
    Memory memory;
  };

  static constexpr char const* kKind = "transformer_xl";

  explicit TransformerXl(Config c)
      : cfg_(check(c)), tok_({c.vocab, c.dim, c.init_std}), head_({c.dim, c.vocab, c.tied, c.eps, c.init_std}, c.tied ? &tok_.table() : nullptr) {
    typename Block::Config bc{c.dim, c.heads, c.mlp_hidden, true, c.eps, c.init_std,
                              c.init_std / std::sqrt(2.0 * double(c.layers)), c.clamp_len};
    blocks_.reserve(std::size_t(c.layers));
    for (std::int64_t l = 0; l < c.layers; ++l) blocks_.emplace_back(bc);
  }
  TransformerXl(TransformerXl const&) = delete;
  TransformerXl& operator=(TransformerXl const&) = delete;

  Config const& config() const { return cfg_; }
  std::string config_json() const { return nlohmann::json(cfg_).dump(); }
  static Config config_from_json(std::string const& text) {
    return parse_config_json<Config>(text, "TransformerXl");
  }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    tok_.visit_params(f, prefix + "tok_emb.");
    for (std::size_t l = 0; l < blocks_.size(); ++l) blocks_[l].visit_params(f, prefix + "blocks." + std::to_string(l) + ".");
    head_.visit_params(f, prefix);  // ln_f., then head. when untied
  }

  // ------------------------------------------------------------------------------------------
  // Memory

  /// A memory of mem_len rows per layer for batches of `batch` rows.
  Memory make_memory(std::int64_t batch) const { return make_memory(batch, cfg_.mem_len); }
  /// A memory of `rows` rows per layer (evaluation with a longer memory than in training).
  Memory make_memory(std::int64_t batch, std::int64_t rows) const {
    HSEQ_CHECK(batch > 0 && rows >= 0, "TransformerXl::make_memory: batch " << batch << ", rows " << rows);
    return Memory(cfg_.layers, batch, rows, cfg_.dim);
  }
  /// The memory `forward` reads and updates (nullptr: none).
  void bind_memory(Memory* m) {
    HSEQ_CHECK(m == nullptr || std::int64_t(m->cur_.size()) == cfg_.layers,
               "TransformerXl::bind_memory: a memory of " << m->cur_.size() << " layers for a model of " << cfg_.layers);
    mem_ = m;
  }
  Memory* bound_memory() const { return mem_; }
  /// The trainer's hook before a batch that does not continue the previous one: forget the bound memory.
  void reset_state(Ctx&) {
    if (mem_) mem_->reset();
  }

  // ------------------------------------------------------------------------------------------
  // Training

  std::size_t forward_workspace(std::int64_t batch, std::int64_t t) const { return forward_workspace(batch, t, cfg_.mem_len); }
  /// The forward's plan over a memory of `rows` rows (a memory of another length than mem_len).
  std::size_t forward_workspace(std::int64_t batch, std::int64_t t, std::int64_t rows) const {
    std::size_t b = std::size_t(cfg_.layers + 1) * aligned_bytes<T>(batch * t * cfg_.dim) + head_.forward_workspace(batch, t);
    for (auto const& blk : blocks_) b += blk.forward_workspace(batch, t, rows);
    return b;
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t t) const {
    std::size_t inner = head_.backward_workspace(batch, t);
    for (auto const& blk : blocks_) inner = std::max(inner, blk.backward_workspace(batch, t, cfg_.mem_len));
    return 2 * aligned_bytes<T>(batch * t * cfg_.dim) + inner;
  }

  /// Forward over the segment ids [B, T] and the bound memory (if any), which it then updates;
  /// with targets [B, T] (entries < 0 ignored) returns the mean cross-entropy in nats (NaN without).
  double forward(Ctx& ctx, Ids ids, Ids targets, Arena<Space>& ws, Trace& tr) const {
    HSEQ_CHECK(ids.rank() == 2 && ids.size(0) > 0 && ids.size(1) > 0,
               "TransformerXl: ids " << ids.shape << " must be [B, T] with B, T >= 1");
    std::int64_t const bsz = ids.size(0), t = ids.size(1), d = cfg_.dim;
    HSEQ_CHECK(t <= cfg_.context, "TransformerXl: segment length " << t << " exceeds the context " << cfg_.context);
    HSEQ_CHECK(targets.empty() || targets.shape == ids.shape,
               "TransformerXl: targets " << targets.shape << " differ from ids " << ids.shape);
    HSEQ_CHECK(mem_ == nullptr || mem_->batch() == bsz,
               "TransformerXl: the bound memory is for batches of " << mem_->batch() << " rows, ids " << ids.shape);
    tr.batch = bsz, tr.t = t, tr.ids = ids, tr.targets = targets, tr.counted = 0;
    tr.loss = std::numeric_limits<double>::quiet_NaN();
    tr.h.resize(blocks_.size() + 1);
    tr.blocks.resize(blocks_.size());
    tr.m = mem_ ? mem_->fill() : 0;
    for (auto& h : tr.h) h = ws.template take<T>(Shape{bsz, t, d}, "xl.h");
    tr.emb = tok_.forward(ctx, ids, tr.h[0], ws);  // h_0 = E[ids]
    if (mem_) mem_->commit();
    for (std::size_t l = 0; l < blocks_.size(); ++l) {
      CView mem = mem_ ? mem_->layer(std::int64_t(l)) : CView{};  // [B, M, d]
      tr.blocks[l] = blocks_[l].forward(ctx, tr.h[l], mem.numel() > 0 ? mem : CView{}, tr.h[l + 1], ws);
      if (mem_) update_layer(ctx, *mem_, l, tr.h[l], t);
    }
    if (mem_) finish_update(*mem_, t);
    tr.head = head_.forward(ctx, tr.h.back(), targets, ws);
    tr.logits = tr.head.logits;
    tr.counted = tr.head.counted;
    tr.loss = tr.head.loss;
    return tr.loss;
  }

  /// Gradients of the mean loss of the last forward (the memory held fixed), accumulated.
  void backward(Ctx& ctx, Trace& tr, Arena<Space>& ws) const {
    HSEQ_CHECK(!tr.targets.empty() && tr.counted > 0, "TransformerXl::backward: the forward had no targets");
    ArenaScope<Space> scope(ws);
    Shape hs{tr.batch, tr.t, cfg_.dim};
    MView da = ws.template take<T>(hs, "xl.da"), db = ws.template take<T>(hs, "xl.db");
    head_.backward(ctx, tr.head, db, da, ws);  // db = d h_L
    for (std::size_t l = blocks_.size(); l-- > 0;) {
      blocks_[l].backward(ctx, tr.blocks[l], db, da, ws);  // da = d h_l
      std::swap(da, db);
    }
    tok_.backward(ctx, tr.emb, db, ws);
  }

  // ------------------------------------------------------------------------------------------
  // Cached generation

  Cache make_cache(std::int64_t batch, std::int64_t capacity) const {
    HSEQ_CHECK(batch > 0 && capacity > 0 && capacity <= cfg_.context,
               "TransformerXl::make_cache: batch " << batch << ", capacity " << capacity << " (context "
                                                   << cfg_.context << ")");
    return Cache{make_memory(batch, capacity)};
  }
  void reset_cache(Cache& c) const { c.memory.reset(); }
  std::size_t step_workspace(std::int64_t batch, std::int64_t n, std::int64_t capacity) const {
    std::size_t inner = head_.predict_workspace(batch * n);
    for (auto const& blk : blocks_) inner = std::max(inner, blk.forward_workspace(batch, n, capacity));
    return 2 * aligned_bytes<T>(batch * n * cfg_.dim) + inner;
  }
  /// Logits [B, n, vocab] of the n tokens ids [B, n] at positions [pos, pos + n), pos being the
  /// number of tokens the cache holds; the cache then holds them too.
  void forward_step(Ctx& ctx, Ids ids, Cache& cache, std::int64_t pos, MView logits, Arena<Space>& ws) const {
    Memory& m = cache.memory;
    std::int64_t const bsz = ids.size(0), n = ids.size(1), d = cfg_.dim;
    HSEQ_CHECK(ids.rank() == 2 && bsz == m.batch(), "TransformerXl::forward_step: ids " << ids.shape << " for a cache of batch " << m.batch());
    HSEQ_CHECK(pos == m.fill() && pos + n <= m.capacity(),
               "TransformerXl::forward_step: positions [" << pos << ", " << pos + n << ") after the " << m.fill()
                                                           << " the cache holds (capacity " << m.capacity() << ")");
    check_shape(logits, Shape{bsz, n, cfg_.vocab}, "TransformerXl::forward_step: logits");
    ArenaScope<Space> scope(ws);
    MView a = ws.template take<T>(Shape{bsz, n, d}, "xl_step.a"), b = ws.template take<T>(Shape{bsz, n, d}, "xl_step.b");
    tok_.forward(ctx, ids, a, ws);
    m.commit();
    for (std::size_t l = 0; l < blocks_.size(); ++l) {
      ArenaScope<Space> block_scope(ws);
      CView mem = m.layer(std::int64_t(l));
      blocks_[l].forward(ctx, a, mem.numel() > 0 ? mem : CView{}, b, ws);
      update_layer(ctx, m, l, a, n);  // a = block l's input
      std::swap(a, b);
    }
    finish_update(m, n);
    head_.predict(ctx, a, ops::as_mat(logits), ws);
  }

  // ------------------------------------------------------------------------------------------
  // Cost

  /// Model FLOPs per token of a training step at segment length t with a full memory (M =
  /// mem_len): every non-embedding parameter at rate 1, except LN1 and the key/value projection,
  /// which also run over the M memory rows (rate 1 + M / t; the relative-position projection r,
  /// applied once per batch to M + t distance rows, is counted at rate 1 too); attention of t
  /// queries over M + t keys.
  FlopCount flops(std::int64_t t) const {
    FlopCount f;
    double const tt = double(t), mm = double(cfg_.mem_len);
    f.add_embedding(tok_).add(head_, 1.0);
    for (auto const& blk : blocks_)
      f.add(blk, [&](std::string const& name) {
        return name.rfind("ln1.", 0) == 0 || name.rfind("attn.kv.", 0) == 0 ? 1.0 + mm / tt : 1.0;
      });
    return f.add_attention(double(cfg_.layers), double(cfg_.dim), tt, mm + tt, tt);
  }

 private:
  /// Writes next_l = the last min(capacity, M + t) rows of [mem_l; h_l] (h_l [B, t, d]: block l's
  /// input) beside the current memory, which stays as it is (backward reads it); `finish_update`
  /// then marks the new memory pending, to be made current by the next read.
  void update_layer(Ctx& ctx, Memory& m, std::size_t l, CView h, std::int64_t t) const {
    std::int64_t const cap = m.capacity(), bsz = m.batch(), d = cfg_.dim, old = m.fill_;
    std::int64_t const keep = std::min(old, std::max<std::int64_t>(cap - t, 0)), take = std::min(t, cap),
                       fill = keep + take;
    if (cap == 0) return;
    T const* src = m.cur_[l].data();
    T* dst = m.next_[l].data();
    // [B, keep, d] from the old memory's last rows, then [B, take, d] from h_l's last rows, into
    // the [B, fill, d] layout of the new memory.
    if (keep > 0)
      ops::copy_mat<T>(ctx, ops::Mat<T const, Space>(src + (old - keep) * d, bsz, keep * d, old * d),
                       ops::Mat<T, Space>(dst, bsz, keep * d, fill * d));
    ops::copy_mat<T>(ctx, ops::Mat<T const, Space>(h.data + (t - take) * d, bsz, take * d, t * d),
                     ops::Mat<T, Space>(dst + keep * d, bsz, take * d, fill * d));
  }
  static void finish_update(Memory& m, std::int64_t t) {
    std::int64_t const cap = m.capacity(), keep = std::min(m.fill_, std::max<std::int64_t>(cap - t, 0));
    m.next_fill_ = keep + std::min(t, cap);
    m.pending_ = cap > 0;
  }
  static Config check(Config c) {
    HSEQ_CHECK(c.vocab > 0 && c.dim > 0 && c.heads > 0 && c.layers > 0 && c.context > 0,
               "TransformerXl: vocab " << c.vocab << ", dim " << c.dim << ", heads " << c.heads << ", layers "
                                       << c.layers << ", context " << c.context << " must all be positive");
    HSEQ_CHECK(c.dim % c.heads == 0, "TransformerXl: heads " << c.heads << " do not divide the width " << c.dim);
    HSEQ_CHECK(c.mem_len >= 0 && c.clamp_len >= 0,
               "TransformerXl: mem_len " << c.mem_len << " and clamp_len " << c.clamp_len << " must be >= 0");
    return c;
  }

  Config cfg_;
  nn::Embedding<B, T> tok_;
  std::vector<Block> blocks_;
  Head head_;
  Memory* mem_ = nullptr;
};

}  // namespace hseq::models
