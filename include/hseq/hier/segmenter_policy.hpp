// SPDX-License-Identifier: MIT
/// @file
/// @brief `SegmenterPolicy`: how a byte sequence is cut into the segments a segment-level
/// hierarchical model (HRED, HAED) encodes one vector each for.
///
/// A segmenter is a tag type `S` with
///   - `S::kName`: its name in configurations and checkpoints (the "segment" key);
///   - `S::kSize`: the bytes per segment K (>= 1). Today every segmenter has fixed-size segments
///     known at compile time (`FixedChunks<K>`); a data-dependent segmenter (`Delimited`, segments
///     ended by a delimiter byte, spec models.md §1.2) will add a run-time boundary mask and
///     per-segment lengths (nn::Gru / nn::Lstm already take ragged lengths) and relax this member;
///   - `S::segments(t, who)`: the number of segments of a sequence of t bytes, throwing a clear
///     `hseq::Error` (prefixed with `who`) when t cannot be segmented.
#pragma once

#include <concepts>
#include <cstdint>

namespace hseq::hier {

// clang-format 14 mangles concept definitions:
// clang-format off
template <class S>
concept SegmenterPolicy =
    requires(std::int64_t t, char const* who) {
      { S::kName } -> std::convertible_to<char const*>;
      { S::kSize } -> std::convertible_to<std::int64_t>;
      { S::segments(t, who) } -> std::same_as<std::int64_t>;
    } &&
    (S::kSize >= 1);
// clang-format on

}  // namespace hseq::hier
