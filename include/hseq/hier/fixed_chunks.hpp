// SPDX-License-Identifier: MIT
/// @file
/// @brief `FixedChunks<K>`: the segmenter of fixed-size segments of K bytes (compile-time K):
/// segment i is bytes i K .. i K + K - 1, and a sequence must be a whole number of segments.
/// Its name is "fixed" followed by K ("fixed4"), so a checkpoint records the segment size too.
/// A `FixedSegmenter` (hier/segmenter_policy.hpp): its layout is the identity, so the model runs its
/// parts on the byte rows directly, with no gather (`Delimited` is the variable kind).
#pragma once

#include <array>
#include <cstdint>

#include "hseq/core/error.hpp"
#include "hseq/hier/segmenter_policy.hpp"

namespace hseq::hier {

namespace detail {
/// "fixed<K>" as a NUL-terminated constant.
template <std::int64_t K>
constexpr std::array<char, 32> fixed_chunks_name() {
  std::array<char, 32> s{'f', 'i', 'x', 'e', 'd'};
  char digits[24] = {};
  int n = 0;
  for (std::int64_t k = K; k > 0; k /= 10) digits[n++] = char('0' + k % 10);
  for (int i = 0; i < n; ++i) s[std::size_t(5 + i)] = digits[n - 1 - i];
  return s;
}
}  // namespace detail

template <std::int64_t K>
struct FixedChunks {
  static_assert(K >= 1, "FixedChunks<K>: the segment size K must be at least 1");
  static constexpr std::int64_t kSize = K;
  static constexpr std::array<char, 32> kNameStorage = detail::fixed_chunks_name<K>();
  static constexpr char const* kName = kNameStorage.data();

  /// t / K; throws unless t is a positive multiple of K.
  static std::int64_t segments(std::int64_t t, char const* who) {
    HSEQ_CHECK(t > 0 && t % K == 0, who << ": sequence length " << t << " is not a positive multiple of the segment size "
                                        << K << " (segmenter " << kName << ")");
    return t / K;
  }
};

}  // namespace hseq::hier
