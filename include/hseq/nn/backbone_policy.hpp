// SPDX-License-Identifier: MIT
/// @file
/// @brief `BackbonePolicy`: a block type that a stack of blocks (the models' backbones) can use.
///
/// The backbone policy of a model is its block type `Blk` (today `TransformerBlock<B, T>`; later
/// recurrent or relative-attention blocks), a module (nn/module.hpp) mapping [B, t, dim] to
/// [B, t, dim] at one rate:
///   - `explicit Blk(Config)` with `Config::dim`; `config()`; `visit_params(f, prefix)`;
///   - `Saved forward(ctx, x, y, ws)`, `backward(ctx, saved, dy, dx, ws)` (dx overwritten,
///     parameter gradients accumulated), `forward_workspace(batch, t)` / `backward_workspace(batch, t)`;
///   - incremental forward for cached generation: `cache_shape(batch, capacity)` is the shape of the
///     block's cache tensor (the stack allocates one per block), `forward_step(ctx, x [B, n, dim],
///     cache, pos, y [B, n, dim], ws)` computes positions [pos, pos + n) from the cache and extends
///     it, equal to those rows of `forward` over [0, pos + n); `step_workspace(batch, n, cached)`.
/// Causality: y row p may depend on x rows <= p only (the models' causality tests check it).
/// Optional trait: `static constexpr bool kRelativePositions = true` for a block whose attention
/// encodes positions (read by `kBlockRelativePositions<Blk>` below).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>

#include "hseq/core/backend.hpp"
#include "hseq/core/shape.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/parameter.hpp"

namespace hseq::nn {

// Staged: the member types first, so a block without `Saved` gets one error naming it instead of
// a cascade from the requirements that use it.
// clang-format 14 mangles concept definitions:
// clang-format off
template <class Blk, class B, class T>
concept BackbonePolicy =
    Backend<B> &&
    requires {
      typename Blk::Config;
      typename Blk::Saved;
    } &&
    std::constructible_from<Blk, typename Blk::Config> &&
    std::move_constructible<Blk> &&
    std::default_initializable<typename Blk::Saved> &&
    std::movable<typename Blk::Saved> &&
    requires(Blk& mod, Blk const& m, typename Blk::Config const& cfg, typename B::Context& ctx,
             View<T const, typename B::Space> x, View<T, typename B::Space> y, View<T const, typename B::Space> dy,
             View<T, typename B::Space> dx, View<T, typename B::Space> cache, Arena<typename B::Space>& ws,
             typename Blk::Saved const& saved, std::int64_t batch, std::int64_t t, std::int64_t n,
             std::int64_t capacity, std::int64_t pos, void (*visit)(std::string const&, Param<T, typename B::Space>&),
             std::string const& prefix) {
      { cfg.dim } -> std::convertible_to<std::int64_t>;
      { m.config() } -> std::convertible_to<typename Blk::Config const&>;
      mod.visit_params(visit, prefix);
      { m.forward_workspace(batch, t) } -> std::convertible_to<std::size_t>;
      { m.backward_workspace(batch, t) } -> std::convertible_to<std::size_t>;
      { m.forward(ctx, x, y, ws) } -> std::same_as<typename Blk::Saved>;
      m.backward(ctx, saved, dy, dx, ws);
      { m.cache_shape(batch, capacity) } -> std::convertible_to<Shape>;
      { m.step_workspace(batch, n, capacity) } -> std::convertible_to<std::size_t>;
      m.forward_step(ctx, x, cache, pos, y, ws);
    };
// clang-format on

/// Whether a block encodes positions itself (`Blk::kRelativePositions` true: relative attention,
/// e.g. nn::RelativeCausalBlock), so that a model built on it adds no absolute position table to
/// its inputs. False for a block without the member (TransformerBlock).
template <class Blk>
inline constexpr bool kBlockRelativePositions = requires { requires bool(Blk::kRelativePositions); };

}  // namespace hseq::nn
