// SPDX-License-Identifier: MIT
/// @file
/// @brief `EncoderPolicy`: a segment encoder, one vector per segment of k inputs.
///
/// States the contract of HRED's sub-sequence encoder and HAED's chunk encoder (spec models.md §1,
/// §2.3; `hier::RnnEncoder`, `hier::MlpEncoder`, used by `models::Hierarchical`), for fixed-size
/// segments; HAT's character encoder (§6.2) has the same shape. Variable-length segments (a
/// `hier::Delimited` segmenter) need an encoder that also takes per-segment lengths over a padded
/// grid: `RaggedEncoderModule` (segmenter_policy.hpp; both encoders are). Cached generation needs nothing
/// more: a completed segment is encoded by `forward` over one segment (N = 1), its Saved discarded.
///
/// An encoder policy is a tag type `P` with `P::kName` and `P::Module<B, T>`
/// (`EncoderModule<P, B, T>`), a module (nn/module.hpp) built from its `Config` with
///   - `Saved forward(ctx, x [B, N k, d_in], e [B, N, d], ws)`: e[i] summarises chunk i, inputs
///     i k .. i k + k - 1. It may look at the whole chunk (also its later inputs): the models use
///     e[i] only for chunks after i, which is what keeps them causal;
///   - `backward(ctx, saved, de, dx, ws)` (dx overwritten), `forward_workspace(batch, len)` /
///     `backward_workspace(batch, len)` (len = N k).
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

/// The module an encoder policy names for backend B and scalar T.
template <class P, class B, class T>
using EncoderModule = typename P::template Module<B, T>;

// Staged like ShortenPolicy: a later stage is only checked when the earlier ones hold.
// clang-format 14 mangles concept definitions:
// clang-format off
template <class P, class B, class T>
concept EncoderPolicy =
    Backend<B> &&
    requires {
      { P::kName } -> std::convertible_to<char const*>;
      typename EncoderModule<P, B, T>;
    } &&
    requires {
      typename EncoderModule<P, B, T>::Config;
      typename EncoderModule<P, B, T>::Saved;
    } &&
    std::constructible_from<EncoderModule<P, B, T>, typename EncoderModule<P, B, T>::Config> &&
    std::move_constructible<EncoderModule<P, B, T>> &&
    std::default_initializable<typename EncoderModule<P, B, T>::Saved> &&
    std::movable<typename EncoderModule<P, B, T>::Saved> &&
    requires(EncoderModule<P, B, T>& mod, EncoderModule<P, B, T> const& m, typename B::Context& ctx,
             View<T const, typename B::Space> x, View<T, typename B::Space> e, View<T const, typename B::Space> de,
             View<T, typename B::Space> dx, std::int64_t batch, std::int64_t len, Arena<typename B::Space>& ws,
             typename EncoderModule<P, B, T>::Saved const& saved,
             void (*visit)(std::string const&, nn::Param<T, typename B::Space>&), std::string const& prefix) {
      { m.config() } -> std::convertible_to<typename EncoderModule<P, B, T>::Config const&>;
      mod.visit_params(visit, prefix);
      { m.forward_workspace(batch, len) } -> std::convertible_to<std::size_t>;
      { m.backward_workspace(batch, len) } -> std::convertible_to<std::size_t>;
      { m.forward(ctx, x, e, ws) } -> std::same_as<typename EncoderModule<P, B, T>::Saved>;
      m.backward(ctx, saved, de, dx, ws);
    };
// clang-format on

}  // namespace hseq::hier
