// SPDX-License-Identifier: MIT
/// @file
/// @brief `CompressionPolicy`: the Compressive Transformer's memory compression f_c.
///
/// The oldest memories, evicted from the FIFO memory, become c times fewer compressed memories
/// (spec models.md §4.2). The policies are in hier/memory_compressors.hpp (`MeanPool<c>`,
/// `MaxPool<c>`, `Conv<c>`, `DilatedConv<c>`, `MostUsed<c>`, which add `kRate`, `kLearned` and
/// `kUsesUsage`) and models::CompressiveTransformer uses them; mean pooling is `AvgPool`'s
/// module and a convolution with kernel = stride = c is `LinearPool`'s, so those two tags satisfy
/// the concept as well.
///
/// A compression policy is a tag type `P` with `P::kName` and `P::Module<B, T>`
/// (`CompressionModule<P, B, T>`), a module (nn/module.hpp) built from its `Config` with
///   - `Saved forward(ctx, old [B, n, d], compressed [B, n / c, d], ws)`: compressed[i] may use
///     old rows i c .. i c + c - 1 (memories are all in the past: no causal constraint inside);
///   - `backward(ctx, saved, dcompressed, dold, ws)` (dold overwritten),
///     `forward_workspace(batch, n)` / `backward_workspace(batch, n)`.
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

/// The module a compression policy names for backend B and scalar T.
template <class P, class B, class T>
using CompressionModule = typename P::template Module<B, T>;

// Staged like ShortenPolicy: a later stage is only checked when the earlier ones hold.
// clang-format 14 mangles concept definitions:
// clang-format off
template <class P, class B, class T>
concept CompressionPolicy =
    Backend<B> &&
    requires {
      { P::kName } -> std::convertible_to<char const*>;
      typename CompressionModule<P, B, T>;
    } &&
    requires {
      typename CompressionModule<P, B, T>::Config;
      typename CompressionModule<P, B, T>::Saved;
    } &&
    std::constructible_from<CompressionModule<P, B, T>, typename CompressionModule<P, B, T>::Config> &&
    std::move_constructible<CompressionModule<P, B, T>> &&
    std::default_initializable<typename CompressionModule<P, B, T>::Saved> &&
    std::movable<typename CompressionModule<P, B, T>::Saved> &&
    requires(CompressionModule<P, B, T>& mod, CompressionModule<P, B, T> const& m, typename B::Context& ctx,
             View<T const, typename B::Space> old, View<T, typename B::Space> compressed,
             View<T const, typename B::Space> dcompressed, View<T, typename B::Space> dold, std::int64_t batch,
             std::int64_t n, Arena<typename B::Space>& ws, typename CompressionModule<P, B, T>::Saved const& saved,
             void (*visit)(std::string const&, nn::Param<T, typename B::Space>&), std::string const& prefix) {
      { m.config() } -> std::convertible_to<typename CompressionModule<P, B, T>::Config const&>;
      mod.visit_params(visit, prefix);
      { m.forward_workspace(batch, n) } -> std::convertible_to<std::size_t>;
      { m.backward_workspace(batch, n) } -> std::convertible_to<std::size_t>;
      { m.forward(ctx, old, compressed, ws) } -> std::same_as<typename CompressionModule<P, B, T>::Saved>;
      m.backward(ctx, saved, dcompressed, dold, ws);
    };
// clang-format on

}  // namespace hseq::hier
