// SPDX-License-Identifier: MIT
/// @file
/// @brief `DecoderPolicy`: a segment decoder at byte rate, conditioned on one vector per segment.
///
/// States the contract of HRED's and HAED's decoders (spec models.md §1, §2.3; `hier::RnnDecoder`,
/// `hier::TransformerDecoder`, used by `models::Hierarchical`), for fixed-size segments of k bytes;
/// HAT's character decoder (§6.2) has the same shape. Variable-length segments (a `hier::Delimited`
/// segmenter) need nothing more: the model runs the decoder over a padded grid of K = MaxLen cells
/// per segment whose padding cells come after the real ones, so causality keeps them out.
///
/// A decoder policy is a tag type `P` with `P::kName` and `P::Module<B, T>`
/// (`DecoderModule<P, B, T>`), a module (nn/module.hpp) built from its `Config` with
///   - `forward(ctx, cond [B, N, d], x [B, N k, d], y [B, N k, d], saved, ws)` into the caller's
///     `Saved& saved`, reused across steps (so training does not allocate): cond[i] conditions
///     segment i (the caller shifts it by one segment, so it summarises segments < i only); x holds
///     the segment's byte embeddings, unshifted (language-model framing: row p reads byte p and
///     predicts byte p + 1), and y row i k + r may depend on cond[i] and x rows i k .. i k + r only;
///   - `backward(ctx, saved, dy, dcond, dx, ws)` (dcond and dx overwritten),
///     `forward_workspace(batch, len)` / `backward_workspace(batch, len)` (len = N k);
///   - cached generation, byte by byte: `StepState make_step_state(batch)`,
///     `step_workspace(batch)` bytes, `step_begin(ctx, state, cond [B, 1, d], ws)` starts a segment
///     with its condition (the state forgets the previous segment), and
///     `step(ctx, state, x [B, 1, d], r, y [B, 1, d], ws)` consumes byte r (0, 1, ..., k - 1 in
///     order) of the segment and writes its output, equal to row i k + r of a full forward.
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

/// The module a decoder policy names for backend B and scalar T.
template <class P, class B, class T>
using DecoderModule = typename P::template Module<B, T>;

// Staged like ShortenPolicy: a later stage is only checked when the earlier ones hold.
// clang-format 14 mangles concept definitions:
// clang-format off
template <class P, class B, class T>
concept DecoderPolicy =
    Backend<B> &&
    requires {
      { P::kName } -> std::convertible_to<char const*>;
      typename DecoderModule<P, B, T>;
    } &&
    requires {
      typename DecoderModule<P, B, T>::Config;
      typename DecoderModule<P, B, T>::Saved;
      typename DecoderModule<P, B, T>::StepState;
    } &&
    std::constructible_from<DecoderModule<P, B, T>, typename DecoderModule<P, B, T>::Config> &&
    std::move_constructible<DecoderModule<P, B, T>> &&
    std::default_initializable<typename DecoderModule<P, B, T>::Saved> &&
    std::movable<typename DecoderModule<P, B, T>::Saved> &&
    std::movable<typename DecoderModule<P, B, T>::StepState> &&
    requires(DecoderModule<P, B, T>& mod, DecoderModule<P, B, T> const& m, typename B::Context& ctx,
             View<T const, typename B::Space> cond, View<T const, typename B::Space> x, View<T, typename B::Space> y,
             View<T const, typename B::Space> dy, View<T, typename B::Space> dcond, View<T, typename B::Space> dx,
             std::int64_t batch, std::int64_t len, Arena<typename B::Space>& ws,
             typename DecoderModule<P, B, T>::Saved const& saved, typename DecoderModule<P, B, T>::Saved& saved_mut,
             typename DecoderModule<P, B, T>::StepState& state,
             std::int64_t r,
             void (*visit)(std::string const&, nn::Param<T, typename B::Space>&), std::string const& prefix) {
      { m.config() } -> std::convertible_to<typename DecoderModule<P, B, T>::Config const&>;
      mod.visit_params(visit, prefix);
      { m.forward_workspace(batch, len) } -> std::convertible_to<std::size_t>;
      { m.backward_workspace(batch, len) } -> std::convertible_to<std::size_t>;
      m.forward(ctx, cond, x, y, saved_mut, ws);
      m.backward(ctx, saved, dy, dcond, dx, ws);
      { m.make_step_state(batch) } -> std::same_as<typename DecoderModule<P, B, T>::StepState>;
      { m.step_workspace(batch) } -> std::convertible_to<std::size_t>;
      m.step_begin(ctx, state, cond, ws);
      m.step(ctx, state, x, r, y, ws);
    };
// clang-format on

}  // namespace hseq::hier
