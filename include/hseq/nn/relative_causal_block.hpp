// SPDX-License-Identifier: MIT
/// @file
/// @brief `RelativeCausalBlock`: the pre-LN causal self-attention block with Transformer-XL
/// relative positions, as a backbone policy of the models' block stacks (nn::ModelBackbonePolicy):
///
///   x1 = x + RelAttn(LN1(x))        y = x1 + Mlp(LN2(x1))        x, y [B, T, dim]
///
/// RelAttn is nn::RelativeAttention without a memory (causal: row i sees rows j <= i, with the
/// position term of the distance i - j), so the block needs no absolute position table
/// (`kRelativePositions`). It is an nn::RelativeBlock used without a memory: the same parameters
/// ("ln1.", "attn." with "attn.r.weight", "attn.u", "attn.v", "ln2.", "mlp."), forward and backward;
/// this class adds what a BlockStack and the models ask of a block: the TransformerBlock-shaped
/// signatures, a Config made from a TransformerBlock's, and one cache tensor per block.
///
/// `Config::distance_scale` s: the position table is R[δ] = sinusoid(δ s). A model that runs the
/// block on a sequence shortened by a cumulative factor f (an Hourglass level, Nawrot et al. 2022)
/// sets s = f, so that the rows i, j of the short sequence, (i - j) f tokens apart, get the sinusoid
/// of (i - j) f (RelativeAttention's file comment).
///
/// Cache (`cache_shape(batch, capacity)` = [batch + 1, capacity, 2 dim]), per block:
///   - slices [0, batch): the keys and values [batch, capacity, 2 dim] of the positions stepped so
///     far (the attention core's key/value layout);
///   - slice batch, its first capacity * dim elements: the table Rk [capacity, dim], row δ = R[δ] Wr,
///     written as the steps reach distance δ (one row per new position, extended instead of rebuilt:
///     O(n dim^2) per step of n positions). The rest of that slice (capacity * dim) is unused: the
///     price of one tensor per block with the key/value part in the core's layout.
/// Rows < pos of both are what the steps from position 0 wrote; a step over [pos, pos + n) writes
/// rows [pos, pos + n). Generation restarts at position 0, so parameters changed between
/// generations are picked up (Rk, like the keys, is rewritten from row 0).
#pragma once

#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/relative_block.hpp"
#include "hseq/nn/transformer_block.hpp"

namespace hseq::nn {

template <Backend B, class T>
class RelativeCausalBlock {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Inner = RelativeBlock<B, T>;

  /// The block encodes positions itself: a model on it adds no absolute position table
  /// (nn::kBlockRelativePositions).
  static constexpr bool kRelativePositions = true;

  struct Config {
    std::int64_t dim = 0, heads = 1;
    std::int64_t mlp_hidden = 0;  ///< 0 means 4 * dim
    bool bias = true;             ///< biases of the q, kv, out and MLP projections (r never has one)
    double eps = 1e-5;
    double init_std = 0.02;
    double out_init_std = 0.0;        ///< std of the two residual-branch output projections; 0: init_std
    std::int64_t distance_scale = 1;  ///< R[δ] = sinusoid(δ distance_scale); an Hourglass level's factor
    std::int64_t clamp_len = 0;       ///< distances past clamp_len (in rows) use R[clamp_len]; 0: none

    Config() = default;
    /// From the TransformerBlock description the models give every block (nn::ModelBackbonePolicy):
    /// dim, heads, mlp_hidden, bias, eps, init_std, out_init_std; distance_scale 1, no clamping.
    /// The mask must be causal: the block is causal by construction.
    explicit Config(typename TransformerBlock<B, T>::Config const& c)
        : dim(c.dim),
          heads(c.heads),
          mlp_hidden(c.mlp_hidden),
          bias(c.bias),
          eps(c.eps),
          init_std(c.init_std),
          out_init_std(c.out_init_std) {
      HSEQ_CHECK(c.mask.kind == AttentionMask::Kind::kCausal,
                 "RelativeCausalBlock: the block is causal self-attention; a TransformerBlock configuration with mask "
                     << c.mask << " cannot describe it");
    }
  };
  using Saved = typename Inner::Saved;

  explicit RelativeCausalBlock(Config c)
      : cfg_(c),
        inner_(
            {c.dim, c.heads, c.mlp_hidden, c.bias, c.eps, c.init_std, c.out_init_std, c.clamp_len, c.distance_scale}) {}
  Config const& config() const { return cfg_; }
  Inner const& inner() const { return inner_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    inner_.visit_params(f, prefix);
  }

  std::size_t forward_workspace(std::int64_t batch, std::int64_t t) const {
    return inner_.forward_workspace(batch, t, 0);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t t) const {
    return inner_.backward_workspace(batch, t, 0);
  }
  /// y = block(x); x, y [B, T, dim]. x must stay unchanged until backward.
  Saved forward(Ctx& ctx, CView x, MView y, Arena<Space>& ws) const { return inner_.forward(ctx, x, CView{}, y, ws); }
  /// dx (overwritten) from dy; parameter gradients accumulate.
  void backward(Ctx& ctx, Saved const& s, CView dy, MView dx, Arena<Space>& ws) const {
    inner_.backward(ctx, s, dy, dx, ws);
  }

  /// The block's cache for `capacity` positions (layout in the file comment).
  Shape cache_shape(std::int64_t batch, std::int64_t capacity) const {
    return Shape{batch + 1, capacity, 2 * cfg_.dim};
  }
  std::size_t step_workspace(std::int64_t batch, std::int64_t n, std::int64_t cached) const {
    return inner_.step_workspace(batch, n, cached);
  }
  /// Positions [pos, pos + n) of x [B, n, dim] into y [B, n, dim], reading and extending `cache`
  /// (cache_shape(B, capacity)); equal to those rows of `forward` over [0, pos + n).
  void forward_step(Ctx& ctx, CView x, MView cache, std::int64_t pos, MView y, Arena<Space>& ws) const {
    HSEQ_CHECK(x.rank() == 3 && cache.rank() == 3 && cache.size(0) == x.size(0) + 1 && cache.size(2) == 2 * cfg_.dim,
               "RelativeCausalBlock::forward_step: x " << x.shape << ", cache " << cache.shape
                                                       << " (expected [B, n, dim] and [B + 1, capacity, 2 dim] = "
                                                       << "cache_shape(B, capacity))");
    std::int64_t const bsz = x.size(0), cap = cache.size(1);
    MView kv(cache.data, Shape{bsz, cap, 2 * cfg_.dim});
    MView rk(cache.data + bsz * cap * 2 * cfg_.dim, Shape{cap, cfg_.dim});
    inner_.forward_step(ctx, x, kv, rk, pos, y, ws);
  }

 private:
  Config cfg_;
  Inner inner_;
};

}  // namespace hseq::nn
