// SPDX-License-Identifier: MIT
/// @file
/// @brief `RaggedShorten` / `RaggedUpsample`: what a shortening or upsampling policy offers to
/// pool and unpool over data-dependent segments (issue 19; spec segmentation.md §1), the optional
/// second interface of the policies of shorten_policy.hpp and upsample_policy.hpp.
///
/// A rule level (hier::LevelSpec::rule) of row b closes segment j at position e_{b, j}
/// (hier::EmitLayout; e_0 = 0) and position t reads segment J(t) = max{j : e_j <= t} (inclusive:
/// the segment that t closes is already visible at t, so no shift is needed). The batch runs over
/// C = the batch's largest count segments; the padding segments of a row come after its real ones.
/// The Hourglass passes the layout as index rows in backend memory:
///   - pool [B * C]: the global row b L + e_{b, j} of the level input [B, L, d] closing segment
///     (b, j) (padding segments repeat a real row);
///   - up [B * L]: the global row b C + J(b, t) of the short sequence [B, C, d] position (b, t) reads.
/// Shortening, `ShortenModule<S, B, T>` m:
///   - `Saved ragged_forward(ctx, x [B, L, d], pool, y [B, C, d], ws)`: y[b, j] reads x rows of
///     segment (b, j) only (positions <= e_{b, j}): what keeps the level causal;
///   - `ragged_backward(ctx, saved, pool, dy, dx, ws)` overwrites dx; workspaces
///     `ragged_forward_workspace(batch, L, C)` / `ragged_backward_workspace(batch, L, C)`;
///   - cached generation, per row: `ragged_step_input(ctx, state, row, x [1, 1, d], pos, ws)` for
///     every input of row `row` (its position `pos` at the level), then `ragged_step_emit(ctx,
///     state, row, x [1, 1, d], y [1, 1, d], ws)` when that input closes the row's segment.
/// Upsampling, `UpsampleModule<U, B, T>` m:
///   - `Saved ragged_forward(ctx, y [B, C, d], res [B, L, d], up, u [B, L, d], ws)`: u[b, t] reads y
///     rows j <= J(b, t) only; `ragged_backward(ctx, saved, up, du, dy, dres, ws)` as `backward`;
///   - cached generation, per row: `ragged_step_short(ctx, state, row, y [1, 1, d], j, ws)` when row
///     `row` closes its segment j (summary y; j = 0 starts a sequence afresh), `ragged_step_up(ctx,
///     state, row, res [1, 1, d], u [1, 1, d], ws)` at each of its positions.
/// The policies without these (linear pooling, attention pooling with linear queries) refuse rule
/// levels when a model is built; `Select`, `AvgPool` (the segment mean), `AttentionPool` (attention
/// over the segment's bytes), `Repeat`, `LinearUp` (position-indexed unpooling) and the attention
/// upsamplings (cross-attention to the closed segments) have them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "hseq/core/backend.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/shorten_policy.hpp"
#include "hseq/hier/upsample_policy.hpp"

namespace hseq::hier {

// clang-format off
template <class S, class B, class T>
concept RaggedShorten =
    ShortenPolicy<S, B, T> &&
    requires(ShortenModule<S, B, T> const& m, typename B::Context& ctx, View<T const, typename B::Space> x,
             View<T, typename B::Space> y, View<T const, typename B::Space> dy, View<T, typename B::Space> dx,
             View<std::int32_t const, typename B::Space> pool, typename ShortenModule<S, B, T>::StepState& state,
             typename ShortenModule<S, B, T>::Saved const& saved, std::int64_t n, Arena<typename B::Space>& ws) {
      { m.ragged_forward_workspace(n, n, n) } -> std::convertible_to<std::size_t>;
      { m.ragged_backward_workspace(n, n, n) } -> std::convertible_to<std::size_t>;
      { m.ragged_forward(ctx, x, pool, y, ws) } -> std::same_as<typename ShortenModule<S, B, T>::Saved>;
      m.ragged_backward(ctx, saved, pool, dy, dx, ws);
      m.ragged_step_input(ctx, state, n, x, n, ws);
      m.ragged_step_emit(ctx, state, n, x, y, ws);
    };

template <class U, class B, class T>
concept RaggedUpsample =
    UpsamplePolicy<U, B, T> &&
    requires(UpsampleModule<U, B, T> const& m, typename B::Context& ctx, View<T const, typename B::Space> y,
             View<T const, typename B::Space> res, View<T, typename B::Space> u, View<T const, typename B::Space> du,
             View<T, typename B::Space> dy, View<T, typename B::Space> dres,
             View<std::int32_t const, typename B::Space> up, typename UpsampleModule<U, B, T>::StepState& state,
             typename UpsampleModule<U, B, T>::Saved const& saved, std::int64_t n, Arena<typename B::Space>& ws) {
      { m.ragged_forward_workspace(n, n, n) } -> std::convertible_to<std::size_t>;
      { m.ragged_backward_workspace(n, n, n) } -> std::convertible_to<std::size_t>;
      { m.ragged_forward(ctx, y, res, up, u, ws) } -> std::same_as<typename UpsampleModule<U, B, T>::Saved>;
      m.ragged_backward(ctx, saved, up, du, dy, dres, ws);
      m.ragged_step_short(ctx, state, n, y, n, ws);
      m.ragged_step_up(ctx, state, n, res, u, ws);
    };
// clang-format on

}  // namespace hseq::hier
