// SPDX-License-Identifier: MIT
/// @file
/// @brief `UpsamplePolicy`: what an upsampling policy must offer the Hourglass.
///
/// An upsampling policy is a tag type `U` naming a module template: `U::kName` (its name in
/// configurations and checkpoints), `U::kUsesResidual` (a constant: whether the module reads the
/// full-rate residual, so the Hourglass adds its gradient only then) and `U::Module<B, T>`
/// (`UpsampleModule<U, B, T>`), a module (nn/module.hpp) built from a `ResampleConfig` that brings
/// a short sequence back to the level's rate, k = `ResampleConfig::factor`:
///   - `Saved forward(ctx, y [B, L / k, d], res [B, L, d], u [B, L, d], ws)`: res is the level input
///     (before the shift); full-rate position p may use short positions j <= floor(p / k) only.
///   - `backward(ctx, saved, du, dy, dres, ws)` overwrites dy, and dres when kUsesResidual (leaves
///     it untouched otherwise); `forward_workspace(batch, L)` / `backward_workspace(batch, L)`.
///   - Cached generation (`Hourglass::forward_step`): `StepState make_step_state(batch, capacity)`,
///     `step_workspace(batch, capacity)` (capacity in full-rate positions); `step_short(ctx, state,
///     y [B, 1, d], j, ws)` when short position j is complete; `step_up(ctx, state, res [B, 1, d], p,
///     u [B, 1, d], ws)` for every full-rate position p, equal to row p of `forward`.
/// The concept checks the signatures; each policy's tests check the semantics.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "hseq/core/backend.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/resample_config.hpp"
#include "hseq/nn/parameter.hpp"

namespace hseq::hier {

/// The module an upsampling policy names for backend B and scalar T.
template <class U, class B, class T>
using UpsampleModule = typename U::template Module<B, T>;

// Staged like ShortenPolicy: a later stage is only checked when the earlier ones hold.
// clang-format 14 mangles concept definitions:
// clang-format off
template <class U, class B, class T>
concept UpsamplePolicy =
    Backend<B> &&
    requires {
      { U::kName } -> std::convertible_to<char const*>;
      { U::kUsesResidual } -> std::convertible_to<bool>;
      typename std::bool_constant<U::kUsesResidual>;  // a constant: the Hourglass branches on it
      typename UpsampleModule<U, B, T>;
    } &&
    requires {
      typename UpsampleModule<U, B, T>::Config;
      typename UpsampleModule<U, B, T>::Saved;
      typename UpsampleModule<U, B, T>::StepState;
    } &&
    std::constructible_from<UpsampleModule<U, B, T>, ResampleConfig> &&
    std::move_constructible<UpsampleModule<U, B, T>> &&
    std::default_initializable<typename UpsampleModule<U, B, T>::Saved> &&
    std::movable<typename UpsampleModule<U, B, T>::Saved> &&
    std::move_constructible<typename UpsampleModule<U, B, T>::StepState> &&
    requires(UpsampleModule<U, B, T>& mod, UpsampleModule<U, B, T> const& m, typename B::Context& ctx,
             View<T const, typename B::Space> y, View<T const, typename B::Space> res, View<T, typename B::Space> u,
             View<T const, typename B::Space> du, View<T, typename B::Space> dy, View<T, typename B::Space> dres,
             typename UpsampleModule<U, B, T>::StepState& state, std::int64_t batch, std::int64_t len,
             std::int64_t capacity, std::int64_t j, std::int64_t p, Arena<typename B::Space>& ws,
             typename UpsampleModule<U, B, T>::Saved const& saved,
             void (*visit)(std::string const&, nn::Param<T, typename B::Space>&), std::string const& prefix) {
      { m.config() } -> std::convertible_to<typename UpsampleModule<U, B, T>::Config const&>;
      mod.visit_params(visit, prefix);
      { m.forward_workspace(batch, len) } -> std::convertible_to<std::size_t>;
      { m.backward_workspace(batch, len) } -> std::convertible_to<std::size_t>;
      { m.forward(ctx, y, res, u, ws) } -> std::same_as<typename UpsampleModule<U, B, T>::Saved>;
      m.backward(ctx, saved, du, dy, dres, ws);
      { m.make_step_state(batch, capacity) } -> std::same_as<typename UpsampleModule<U, B, T>::StepState>;
      { m.step_workspace(batch, capacity) } -> std::convertible_to<std::size_t>;
      m.step_short(ctx, state, y, j, ws);
      m.step_up(ctx, state, res, p, u, ws);
    };
// clang-format on

}  // namespace hseq::hier
