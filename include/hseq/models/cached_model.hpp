// SPDX-License-Identifier: MIT
/// @file
/// @brief `CachedModel`: a `Model` that generates incrementally from a cache.
///
/// Beyond `Model<M, B, T>`:
///   - `config().vocab` and `config().context` (the vocabulary and the longest sequence);
///   - `make_cache(batch, capacity)` returns the model's cache (`CacheOf<M>`: `TransformerLm`'s
///     `KvCache`, `Hourglass`'s `Cache`) for up to `capacity <= context` positions;
///     `reset_cache(cache)` forgets everything it holds (position 0 again);
///   - `step_workspace(batch, n, capacity)` bytes for `forward_step` of n new positions;
///   - `forward_step(ctx, ids [B, n], cache, pos, logits [B, n, vocab], ws)` writes the logits of the
///     n tokens at positions [pos, pos + n), where pos is the number of tokens the cache holds, and
///     extends the cache; they equal rows [pos, pos + n) of a full forward over [0, pos + n).
/// `generate` requires it (models/generate.hpp).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "hseq/core/backend.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/models/model.hpp"

namespace hseq::models {

/// The cache type of a cached model: what `make_cache` returns.
template <class M>
using CacheOf = decltype(std::declval<M const&>().make_cache(std::int64_t{}, std::int64_t{}));

// Staged: `make_cache` first, because the later requirements are stated on the cache it returns.
// clang-format 14 mangles concept definitions:
// clang-format off
template <class M, class B, class T>
concept CachedModel =
    Model<M, B, T> &&
    requires(M const& m, std::int64_t batch, std::int64_t capacity) {
      { m.config().vocab } -> std::convertible_to<std::int64_t>;
      { m.config().context } -> std::convertible_to<std::int64_t>;
      m.make_cache(batch, capacity);
    } &&
    std::movable<CacheOf<M>> &&
    requires(M const& m, CacheOf<M>& cache, typename B::Context& ctx, View<std::int32_t const, typename B::Space> ids,
             View<T, typename B::Space> logits, Arena<typename B::Space>& ws, std::int64_t batch, std::int64_t n,
             std::int64_t capacity, std::int64_t pos) {
      m.reset_cache(cache);
      { m.step_workspace(batch, n, capacity) } -> std::convertible_to<std::size_t>;
      m.forward_step(ctx, ids, cache, pos, logits, ws);
    };
// clang-format on

}  // namespace hseq::models
