// SPDX-License-Identifier: MIT
/// @file
/// @brief `ShortenPolicy`: what a shortening policy must offer the Hourglass.
///
/// A shortening policy is a tag type `S` naming a module template, so that one policy serves every
/// backend and scalar type: `S::kName` (its name in configurations and checkpoints) and
/// `S::Module<B, T>` (`ShortenModule<S, B, T>`), a module (nn/module.hpp) built from a
/// `ResampleConfig` that shortens a level's input by k = `ResampleConfig::factor`:
///   - `Saved forward(ctx, x [B, L, d], y [B, L / k, d], ws)`: x is the level input already shifted
///     right by k - 1, so short position j may use x rows <= j k + k - 1 (original positions <= j k)
///     and no later ones; that is what keeps every Hourglass causal.
///   - `backward(ctx, saved, dy, dx, ws)` overwrites dx and accumulates parameter gradients;
///     `forward_workspace(batch, L)` / `backward_workspace(batch, L)` are the bytes they carve.
///   - Cached generation (`Hourglass::forward_step`): `StepState make_step_state(batch, capacity)`
///     and `step_workspace(batch, capacity)` (capacity in level inputs); `step_input(ctx, state,
///     x [B, 1, d], p, ws)` sees every shifted level input p; `step_pool(ctx, state,
///     window [B, k, d], p, y [B, 1, d], ws)` writes short position p / k once its window (the shifted
///     inputs p - k + 1 .. p) is complete, equal to row p / k of `forward`.
/// The concept checks the signatures (a policy missing one fails with a concept error naming it);
/// the tests of each policy check the semantics (gradients, causality, cached = full forward).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>

#include "hseq/core/backend.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/resample_config.hpp"
#include "hseq/nn/parameter.hpp"

namespace hseq::hier {

/// The module a shortening policy names for backend B and scalar T.
template <class S, class B, class T>
using ShortenModule = typename S::template Module<B, T>;

// The requirements are split in stages joined by &&: a stage is only checked when the ones before
// it hold, so a policy without `Module` (or a module without `Saved`) gets one error naming that,
// not a cascade from the later stages that mention it.
// clang-format 14 mangles concept definitions:
// clang-format off
template <class S, class B, class T>
concept ShortenPolicy =
    Backend<B> &&
    requires {
      { S::kName } -> std::convertible_to<char const*>;
      typename ShortenModule<S, B, T>;
    } &&
    requires {
      typename ShortenModule<S, B, T>::Config;
      typename ShortenModule<S, B, T>::Saved;
      typename ShortenModule<S, B, T>::StepState;
    } &&
    // Built from the level's ResampleConfig and moved into its level; traces hold Saved
    // (default-constructed, then assigned); caches hold StepState (moved into them).
    std::constructible_from<ShortenModule<S, B, T>, ResampleConfig> &&
    std::move_constructible<ShortenModule<S, B, T>> &&
    std::default_initializable<typename ShortenModule<S, B, T>::Saved> &&
    std::movable<typename ShortenModule<S, B, T>::Saved> &&
    std::move_constructible<typename ShortenModule<S, B, T>::StepState> &&
    requires(ShortenModule<S, B, T>& mod, ShortenModule<S, B, T> const& m, typename B::Context& ctx,
             View<T const, typename B::Space> x, View<T, typename B::Space> y, View<T const, typename B::Space> dy,
             View<T, typename B::Space> dx, View<T const, typename B::Space> window,
             typename ShortenModule<S, B, T>::StepState& state, std::int64_t batch, std::int64_t len,
             std::int64_t capacity, std::int64_t p, Arena<typename B::Space>& ws,
             typename ShortenModule<S, B, T>::Saved const& saved,
             void (*visit)(std::string const&, nn::Param<T, typename B::Space>&), std::string const& prefix) {
      { m.config() } -> std::convertible_to<typename ShortenModule<S, B, T>::Config const&>;
      mod.visit_params(visit, prefix);
      { m.forward_workspace(batch, len) } -> std::convertible_to<std::size_t>;
      { m.backward_workspace(batch, len) } -> std::convertible_to<std::size_t>;
      { m.forward(ctx, x, y, ws) } -> std::same_as<typename ShortenModule<S, B, T>::Saved>;
      m.backward(ctx, saved, dy, dx, ws);
      { m.make_step_state(batch, capacity) } -> std::same_as<typename ShortenModule<S, B, T>::StepState>;
      { m.step_workspace(batch, capacity) } -> std::convertible_to<std::size_t>;
      m.step_input(ctx, state, x, p, ws);
      m.step_pool(ctx, state, window, p, y, ws);
    };
// clang-format on

}  // namespace hseq::hier
