// SPDX-License-Identifier: MIT
/// @file
/// @brief `SegmentBackbonePolicy`: the low-rate model of a segment-level hierarchical model (HRED's
/// context RNN, HAED's Transformer): a causal sequence model over one vector per segment.
/// (Not `nn::BackbonePolicy`, which is the block type of a Transformer stack.)
///
/// A backbone policy is a tag type `P` with `P::kName` and `P::Module<B, T>`
/// (`SegmentBackboneModule<P, B, T>`), a module (nn/module.hpp) built from its `Config` with
///   - `forward(ctx, e [B, N, d], s [B, N, d], saved, ws)` into the caller's `Saved& saved`, reused
///     across steps (so training does not allocate): s[j] may depend on e[0..j] only (causal);
///   - `backward(ctx, saved, ds, de, ws)` (de overwritten; parameter gradients accumulate),
///     `forward_workspace(batch, n)` / `backward_workspace(batch, n)` (n segments);
///   - cached generation, one segment at a time: `StepState make_step_state(batch, capacity)` for up
///     to `capacity` segments, `step_workspace(batch, capacity)` bytes, and
///     `step(ctx, state, e [B, 1, d], j, s [B, 1, d], ws)` consuming segment j (j = 0, 1, ... in
///     order; j = 0 starts afresh, whatever the state held) and writing s[j], equal to row j of a
///     full forward over segments 0..j.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>

#include "hseq/core/backend.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/parameter.hpp"

namespace hseq::hier {

/// The module a segment backbone policy names for backend B and scalar T.
template <class P, class B, class T>
using SegmentBackboneModule = typename P::template Module<B, T>;

// Staged like ShortenPolicy: a later stage is only checked when the earlier ones hold.
// clang-format 14 mangles concept definitions:
// clang-format off
template <class P, class B, class T>
concept SegmentBackbonePolicy =
    Backend<B> &&
    requires {
      { P::kName } -> std::convertible_to<char const*>;
      typename SegmentBackboneModule<P, B, T>;
    } &&
    requires {
      typename SegmentBackboneModule<P, B, T>::Config;
      typename SegmentBackboneModule<P, B, T>::Saved;
      typename SegmentBackboneModule<P, B, T>::StepState;
    } &&
    std::constructible_from<SegmentBackboneModule<P, B, T>, typename SegmentBackboneModule<P, B, T>::Config> &&
    std::move_constructible<SegmentBackboneModule<P, B, T>> &&
    std::default_initializable<typename SegmentBackboneModule<P, B, T>::Saved> &&
    std::movable<typename SegmentBackboneModule<P, B, T>::Saved> &&
    std::movable<typename SegmentBackboneModule<P, B, T>::StepState> &&
    requires(SegmentBackboneModule<P, B, T>& mod, SegmentBackboneModule<P, B, T> const& m, typename B::Context& ctx,
             View<T const, typename B::Space> e, View<T, typename B::Space> s, View<T const, typename B::Space> ds,
             View<T, typename B::Space> de, std::int64_t batch, std::int64_t n, std::int64_t j,
             Arena<typename B::Space>& ws, typename SegmentBackboneModule<P, B, T>::Saved const& saved,
             typename SegmentBackboneModule<P, B, T>::Saved& saved_mut,
             typename SegmentBackboneModule<P, B, T>::StepState& state,
             void (*visit)(std::string const&, nn::Param<T, typename B::Space>&), std::string const& prefix) {
      { m.config() } -> std::convertible_to<typename SegmentBackboneModule<P, B, T>::Config const&>;
      mod.visit_params(visit, prefix);
      { m.forward_workspace(batch, n) } -> std::convertible_to<std::size_t>;
      { m.backward_workspace(batch, n) } -> std::convertible_to<std::size_t>;
      m.forward(ctx, e, s, saved_mut, ws);
      m.backward(ctx, saved, ds, de, ws);
      { m.make_step_state(batch, n) } -> std::same_as<typename SegmentBackboneModule<P, B, T>::StepState>;
      { m.step_workspace(batch, n) } -> std::convertible_to<std::size_t>;
      m.step(ctx, state, e, j, s, ws);
    };
// clang-format on

}  // namespace hseq::hier
