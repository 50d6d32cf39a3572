// SPDX-License-Identifier: MIT
/// @file
/// @brief `DecoderPolicy` (provisional): a chunk decoder conditioned on one vector per chunk.
///
/// PROVISIONAL: no model uses a decoder yet. This states the part of the contract that HRED's
/// decoder, HAED's chunk decoder and HAT's character decoder share (spec models.md §1, §2.3, §6.2),
/// for fixed-size chunks and teacher forcing; cached generation (decode a chunk token by token
/// from its condition) will extend it when the first of those models lands.
///
/// A decoder policy is a tag type `P` with `P::kName` and `P::Module<B, T>`
/// (`DecoderModule<P, B, T>`), a module (nn/module.hpp) built from its `Config` with
///   - `Saved forward(ctx, cond [B, N, d], x [B, N k, d], y [B, N k, d], ws)`: cond[i] conditions
///     chunk i (the caller shifts it by one chunk, so it summarises chunks < i only); x holds the
///     chunk's inputs already shifted right by one token, and y row i k + r may depend on cond[i]
///     and x rows i k .. i k + r only;
///   - `backward(ctx, saved, dy, dcond, dx, ws)` (dcond and dx overwritten),
///     `forward_workspace(batch, len)` / `backward_workspace(batch, len)` (len = N k).
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
    } &&
    std::constructible_from<DecoderModule<P, B, T>, typename DecoderModule<P, B, T>::Config> &&
    std::move_constructible<DecoderModule<P, B, T>> &&
    std::default_initializable<typename DecoderModule<P, B, T>::Saved> &&
    std::movable<typename DecoderModule<P, B, T>::Saved> &&
    requires(DecoderModule<P, B, T>& mod, DecoderModule<P, B, T> const& m, typename B::Context& ctx,
             View<T const, typename B::Space> cond, View<T const, typename B::Space> x, View<T, typename B::Space> y,
             View<T const, typename B::Space> dy, View<T, typename B::Space> dcond, View<T, typename B::Space> dx,
             std::int64_t batch, std::int64_t len, Arena<typename B::Space>& ws,
             typename DecoderModule<P, B, T>::Saved const& saved,
             void (*visit)(std::string const&, nn::Param<T, typename B::Space>&), std::string const& prefix) {
      { m.config() } -> std::convertible_to<typename DecoderModule<P, B, T>::Config const&>;
      mod.visit_params(visit, prefix);
      { m.forward_workspace(batch, len) } -> std::convertible_to<std::size_t>;
      { m.backward_workspace(batch, len) } -> std::convertible_to<std::size_t>;
      { m.forward(ctx, cond, x, y, ws) } -> std::same_as<typename DecoderModule<P, B, T>::Saved>;
      m.backward(ctx, saved, dy, dcond, dx, ws);
    };
// clang-format on

}  // namespace hseq::hier
