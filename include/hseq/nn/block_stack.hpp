// SPDX-License-Identifier: MIT
/// @file
/// @brief `BlockStack`: `layers` blocks of one configuration applied in sequence to [B, T, C],
///   h_0 = x        h_{l+1} = Block_l(h_l)        y = h_layers
/// with forward, backward and cached (incremental) forward. The models' backbones (the
/// TransformerLm's layers, the Hourglass's full-rate and per-level stacks) are BlockStacks, so
/// the block type is one template parameter, the backbone policy (`nn::BackbonePolicy` states what
/// it must offer), today's pre-LN `TransformerBlock` by default.
///
/// Parameters are named "<l>.<block's names>" under the caller's prefix ("blocks.0.ln1.weight"),
/// which are the names the models have always used, so checkpoints stay loadable.
///
/// Dropout: `forward`'s trailing `DropoutStream drop` (nn/dropout.hpp) reaches block l as
/// drop.child(l), so every block draws its own masks, when the block takes a stream
/// (`BackboneWithDropout`: TransformerBlock, with its Config's rates); other blocks ignore it.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/backbone_policy.hpp"
#include "hseq/nn/dropout.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/transformer_block.hpp"

namespace hseq::nn {

/// A backbone policy the models can build (`models::TransformerLm`, `models::Hourglass`, whose
/// last template parameter it is): they describe every block by a `TransformerBlock::Config`
/// (width, heads, MLP width, causal mask, eps, initialisation, the GPT-2 residual-output std) and
/// make the block's own `Config` from it. That is a copy for `TransformerBlock` and for blocks that
/// reuse its Config; another block gives its Config a constructor from it (using what it needs).
// clang-format off
template <class Blk, class B, class T>
concept ModelBackbonePolicy =
    BackbonePolicy<Blk, B, T> &&
    std::constructible_from<typename Blk::Config, typename TransformerBlock<B, T>::Config const&>;

/// A backbone policy whose forward also takes a memory (empty here) and a dropout stream after the
/// workspace, `forward(ctx, x, y, ws, mem, drop)`, as TransformerBlock's does: BlockStack hands such
/// a block its dropout sub-stream. (An optional protocol: blocks without it run without dropout.)
template <class Blk, class B, class T>
concept BackboneWithDropout =
    BackbonePolicy<Blk, B, T> &&
    requires(Blk const& m, typename B::Context& ctx, View<T const, typename B::Space> x, View<T, typename B::Space> y,
             Arena<typename B::Space>& ws, DropoutStream drop) {
      { m.forward(ctx, x, y, ws, View<T const, typename B::Space>{}, drop) } -> std::same_as<typename Blk::Saved>;
    };
// clang-format on

template <Backend B, class T, class Block = TransformerBlock<B, T>>
  requires BackbonePolicy<Block, B, T>
class BlockStack {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using BlockType = Block;

  struct Config {
    std::int64_t layers = 0;        ///< may be 0: the stack is then the identity (no copy)
    typename Block::Config block{};  ///< every block's configuration
  };
  /// What forward saved; reuse one across steps (its vectors allocate only on the first call).
  struct Saved {
    std::vector<MView> outs;                    // outs[l]: output of block l, [B, T, C]
    std::vector<typename Block::Saved> blocks;  // per block
  };
  /// Per-block caches for incremental forward (for the default block: keys and values,
  /// [B, capacity, 2 C] each).
  using Cache = std::vector<Tensor<T, B>>;

  explicit BlockStack(Config c) : cfg_(c) {
    HSEQ_CHECK(c.layers >= 0, "BlockStack: layers must be >= 0, got " << c.layers);
    blocks_.reserve(std::size_t(c.layers));
    for (std::int64_t l = 0; l < c.layers; ++l) blocks_.emplace_back(c.block);
  }
  Config const& config() const { return cfg_; }
  std::int64_t size() const { return std::int64_t(blocks_.size()); }
  bool empty() const { return blocks_.empty(); }
  Block const& block(std::int64_t l) const { return blocks_.at(std::size_t(l)); }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    for (std::size_t l = 0; l < blocks_.size(); ++l) blocks_[l].visit_params(f, prefix + std::to_string(l) + ".");
  }

  /// Bytes forward carves for x: [batch, t, C]: each block's output plus its own plan.
  std::size_t forward_workspace(std::int64_t batch, std::int64_t t) const {
    std::size_t out = measure_workspace<Space>([&](Arena<Space>& a) { take_output(a, Shape{batch, t, cfg_.block.dim}); });
    std::size_t b = 0;
    for (auto const& blk : blocks_) b += out + blk.forward_workspace(batch, t);
    return b;
  }
  /// Peak scratch of backward: the largest block's (the stack itself carves nothing).
  std::size_t backward_workspace(std::int64_t batch, std::int64_t t) const {
    std::size_t inner = 0;
    for (auto const& blk : blocks_) inner = std::max(inner, blk.backward_workspace(batch, t));
    return inner;
  }
  /// Peak scratch of `forward_step` for n new positions after `cached` ones.
  std::size_t step_workspace(std::int64_t batch, std::int64_t n, std::int64_t cached) const {
    std::size_t inner = 0;
    for (auto const& blk : blocks_) inner = std::max(inner, blk.step_workspace(batch, n, cached));
    return inner;
  }

  /// Runs the blocks in order on x [B, T, C]. Each block's output is carved from ws and kept for
  /// backward (x must stay unchanged until then). Returns the last output: a view into ws, or x
  /// itself when the stack is empty (so an empty stack costs no copy). `drop`: the dropout stream
  /// (block l gets drop.child(l); inactive, the default: no dropout).
  CView forward(Ctx& ctx, CView x, Saved& s, Arena<Space>& ws, DropoutStream drop = {}) const {
    HSEQ_CHECK(x.rank() == 3 && x.size(2) == cfg_.block.dim,
               "BlockStack(dim " << cfg_.block.dim << "): x " << x.shape << " (expected [B, T, dim])");
    s.outs.resize(blocks_.size());
    s.blocks.resize(blocks_.size());
    CView cur = x;
    for (std::size_t l = 0; l < blocks_.size(); ++l) {
      s.outs[l] = take_output(ws, x.shape);
      if constexpr (BackboneWithDropout<Block, B, T>)
        s.blocks[l] = blocks_[l].forward(ctx, cur, s.outs[l], ws, CView{}, drop.child(l));
      else
        s.blocks[l] = blocks_[l].forward(ctx, cur, s.outs[l], ws);
      cur = s.outs[l];
    }
    return cur;
  }

  /// Backward through the blocks in reverse; parameter gradients accumulate. On entry `d` holds
  /// the gradient of the output [B, T, C], on exit the gradient of x; `tmp` is a same-shape buffer
  /// it clobbers. The two views are swapped once per block instead of copying, which is why both
  /// are the caller's variables (after an odd number of blocks they point at each other's buffer).
  void backward(Ctx& ctx, Saved const& s, MView& d, MView& tmp, Arena<Space>& ws) const {
    HSEQ_CHECK(s.blocks.size() == blocks_.size(),
               "BlockStack::backward: the saved forward ran " << s.blocks.size() << " blocks, the stack has "
                                                              << blocks_.size());
    HSEQ_CHECK(d.shape == tmp.shape && (s.outs.empty() || d.shape == s.outs.back().shape),
               "BlockStack::backward: d " << d.shape << ", tmp " << tmp.shape << " for outputs "
                                          << (s.outs.empty() ? Shape{} : s.outs.back().shape));
    for (std::size_t l = blocks_.size(); l-- > 0;) {
      blocks_[l].backward(ctx, s.blocks[l], d, tmp, ws);
      std::swap(d, tmp);
    }
  }

  /// One cache per block, each of the block's `cache_shape(batch, capacity)`.
  Cache make_cache(std::int64_t batch, std::int64_t capacity) const {
    HSEQ_CHECK(batch > 0 && capacity > 0,
               "BlockStack::make_cache: batch " << batch << " and capacity " << capacity << " must be positive");
    Cache c;
    c.reserve(blocks_.size());
    for (auto const& blk : blocks_) c.emplace_back(blk.cache_shape(batch, capacity));
    return c;
  }

  /// Incremental forward of n new positions [pos, pos + n), reading and extending `cache`. On
  /// entry `x` holds the input [B, n, C], on exit the output; `tmp` (same shape) is clobbered.
  /// As in backward the views swap once per block. Scratch is released before returning.
  void forward_step(Ctx& ctx, MView& x, MView& tmp, Cache& cache, std::int64_t pos, Arena<Space>& ws) const {
    HSEQ_CHECK(cache.size() == blocks_.size(),
               "BlockStack::forward_step: a cache of " << cache.size() << " blocks for a stack of " << blocks_.size());
    HSEQ_CHECK(x.shape == tmp.shape, "BlockStack::forward_step: x " << x.shape << ", tmp " << tmp.shape);
    for (std::size_t l = 0; l < blocks_.size(); ++l) {
      blocks_[l].forward_step(ctx, x, cache[l].view(), pos, tmp, ws);
      std::swap(x, tmp);
    }
  }

  /// `forward_step` for batch row `row` of `cache` alone: x, tmp [1, n, C], positions [pos, pos + n)
  /// of that row (rows advance independently: the per-row generation of data-dependent levels).
  /// Needs blocks whose cache holds one row per batch row (`cache_shape(batch, capacity)` =
  /// [batch, capacity, ...]); blocks with shared rows (relative positions) are refused.
  void forward_step_row(Ctx& ctx, MView& x, MView& tmp, Cache& cache, std::int64_t row, std::int64_t pos,
                        Arena<Space>& ws) const {
    HSEQ_CHECK(cache.size() == blocks_.size(), "BlockStack::forward_step_row: a cache of " << cache.size()
                                                                                        << " blocks for a stack of "
                                                                                        << blocks_.size());
    HSEQ_CHECK(x.shape == tmp.shape && x.size(0) == 1,
               "BlockStack::forward_step_row: x " << x.shape << ", tmp " << tmp.shape << " must be one row");
    for (std::size_t l = 0; l < blocks_.size(); ++l) {
      Shape const& s = cache[l].shape();
      HSEQ_CHECK(s.rank() == 3 && blocks_[l].cache_shape(s[0], s[1]) == s && row >= 0 && row < s[0],
                 "BlockStack::forward_step_row: row " << row << " of a cache " << s
                                                      << " (the block's cache must hold one row per batch row)");
      MView one(cache[l].data() + row * s[1] * s[2], Shape{1, s[1], s[2]});
      blocks_[l].forward_step(ctx, x, one, pos, tmp, ws);
      std::swap(x, tmp);
    }
  }

 private:
  /// The one buffer the stack carves per block; forward and forward_workspace share it.
  static MView take_output(Arena<Space>& a, Shape s) { return a.template take<T>(s, "stack.out"); }

  Config cfg_;
  std::vector<Block> blocks_;
};

}  // namespace hseq::nn
