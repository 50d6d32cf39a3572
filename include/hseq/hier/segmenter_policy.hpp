// SPDX-License-Identifier: MIT
/// @file
/// @brief `SegmenterPolicy`: how a byte sequence is cut into the segments a segment-level
/// hierarchical model (HRED, HAED) encodes one vector each for. Two kinds:
///
/// A *fixed* segmenter (`FixedSegmenter`, e.g. `FixedChunks<K>`) is a tag type `S` with
///   - `S::kName`: its name in configurations and checkpoints (the "segment" key);
///   - `S::kSize`: the bytes per segment K (>= 1), known at compile time;
///   - `S::segments(t, who)`: the number of segments of a sequence of t bytes, throwing a clear
///     `hseq::Error` (prefixed with `who`) when t cannot be segmented.
/// Segment i is bytes i K .. i K + K - 1: the layout is the identity, no gather is needed.
///
/// A *variable* (data-dependent) segmenter (`VariableSegmenter`, e.g. `Delimited<MaxLen>`, segments
/// ended by a delimiter, spec models.md §1.2) is an object built from its run-time configuration (a
/// delimiter string) with
///   - `S::kName`, and `S::kSize`: the most bytes a segment can hold (MaxLen, the padded grid's
///     width), and `S::kVariable == true`;
///   - `s.name()`: its name in configurations (may depend on the configuration: "line", "turn");
///   - `s.delimiter()`: the configuration string;
///   - `s.ends(seg)`: whether a segment whose bytes so far are `seg` ends after its last byte (a
///     function of the segment's own bytes, so the layout is causal: a boundary after byte p
///     depends on bytes <= p only, and cached generation decides it byte by byte);
///   - `s.max_segments(t)`: the most segments t bytes can hold (workspace plans use it);
///   - `s.layout(ids, batch, t, out)`: the `SegmentLayout` of a batch of host ids [B, t].
///
/// `SegmentLayout` (below) is what a model needs to run its parts over variable segments: it
/// gathers the byte rows [B, T, C] into a padded grid [B, S, L, C] (S = the batch's largest segment
/// count, L = kSize), whose padding rows are zero, runs the parts over the grid (the encoder
/// with `SegmentLengths`, see `RaggedEncoderModule`), and gathers the decoder's grid back to
/// [B, T, C]. Both gathers are row lookups (ops::embedding_forward), whose adjoints are lookups
/// with the other index (each byte has exactly one grid cell), so every backend runs them.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "hseq/core/backend.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/core/workspace.hpp"

namespace hseq::hier {

/// Where the segments of a batch of B rows of t bytes lie, for a padded grid [B, S, L] (host
/// memory; a variable segmenter's `layout` fills it). Sized for the worst case on first use
/// (`reserve`), so later batches do not allocate.
struct SegmentLayout {
  std::int64_t batch = 0, t = 0;
  std::int64_t width = 0;     ///< L: grid cells per segment (the segmenter's kSize)
  std::int64_t segments = 0;  ///< S: the largest segment count of any row (the grid's segments per row)
  std::vector<std::int32_t> count;      ///< [B] segments of each row (>= 1)
  std::vector<std::int32_t> start;      ///< [B, S] first byte of segment i of row b (t for padding segments)
  std::vector<std::int32_t> length;     ///< [B, S] its bytes, 1..L (0 for padding segments past count[b])
  std::vector<std::int32_t> grid_src;   ///< [B, S, L] the byte row b t + p of each grid cell, or B t (a zero row)
  std::vector<std::int32_t> byte_cell;  ///< [B, t] the grid cell (b S + i) L + r of byte p (each byte has one)
  std::vector<std::int32_t> last_cell;  ///< [B, S] the cell of each segment's last byte ((b S + i) L for padding)

  /// Capacity for `batch` rows of `t` bytes in at most `max_segments` segments each.
  void reserve(std::int64_t batch_, std::int64_t t_, std::int64_t max_segments, std::int64_t width_) {
    std::size_t bs = std::size_t(batch_ * max_segments);
    count.reserve(std::size_t(batch_));
    start.reserve(bs);
    length.reserve(bs);
    last_cell.reserve(bs);
    grid_src.reserve(bs * std::size_t(width_));
    byte_cell.reserve(std::size_t(batch_ * t_));
  }
};

/// The segments' lengths as a ragged-aware encoder reads them: N = B S padded segments of L grid
/// rows each (segment i's rows i L .. i L + L - 1 of x; rows past its length are zero).
template <class Space>
struct SegmentLengths {
  std::span<std::int32_t const> host;       ///< [B S] bytes of each segment (0: a padding segment)
  View<std::int32_t const, Space> last;     ///< [B S] the row i L + len_i - 1 of its last byte (i L for len 0)
};

// clang-format 14 mangles concept definitions:
// clang-format off
/// Common to both kinds: a name and the grid width kSize >= 1.
template <class S>
concept SegmenterBase =
    requires {
      { S::kName } -> std::convertible_to<char const*>;
      { S::kSize } -> std::convertible_to<std::int64_t>;
    } &&
    (S::kSize >= 1);

/// Whether S declares itself variable (`static constexpr bool kVariable = true`).
template <class S>
concept DeclaresVariable = requires { requires bool(S::kVariable); };

template <class S>
concept FixedSegmenter =
    SegmenterBase<S> && !DeclaresVariable<S> &&
    requires(std::int64_t t, char const* who) {
      { S::segments(t, who) } -> std::same_as<std::int64_t>;
    };

template <class S>
concept VariableSegmenter =
    SegmenterBase<S> && DeclaresVariable<S> && std::constructible_from<S, std::string> && std::copy_constructible<S> &&
    requires(S const& s, std::span<std::int32_t const> ids, std::int64_t t, SegmentLayout& out) {
      { s.name() } -> std::convertible_to<char const*>;
      { s.delimiter() } -> std::convertible_to<std::string const&>;
      { s.ends(ids) } -> std::same_as<bool>;
      { s.max_segments(t) } -> std::same_as<std::int64_t>;
      s.layout(ids, t, t, out);
    };

/// A segmenter of either kind.
template <class S>
concept SegmenterPolicy = FixedSegmenter<S> || VariableSegmenter<S>;

/// An encoder module that also runs over a padded grid of variable segments:
/// `forward(ctx, x [B, S L, d], SegmentLengths, e [B, S, d], ws)` (e_i from the real rows of
/// segment i only; padding rows of x are zero) and the usual `backward` on its Saved.
template <class M, class B, class T>
concept RaggedEncoderModule =
    requires(M const& m, typename B::Context& ctx, View<T const, typename B::Space> x, View<T, typename B::Space> e,
             SegmentLengths<typename B::Space> lengths, Arena<typename B::Space>& ws) {
      { m.forward(ctx, x, lengths, e, ws) } -> std::same_as<typename M::Saved>;
    };
// clang-format on

}  // namespace hseq::hier
