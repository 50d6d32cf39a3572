// SPDX-License-Identifier: MIT
/// @file
/// @brief The additive score biases of attention over data-dependent segments
/// (hier/ragged_policy.hpp), built on the host from the segment index rows the Hourglass passes:
///   - `pool_segment_bias`: pooling query (b, j) sees the positions of its own segment,
///     (e_{b, j-1}, e_{b, j}] (e_{-1} = -1): attention over the segment's bytes. A segment ending
///     where the previous one did (the second and later padding segments of a row; the first
///     covers the row's open tail) sees its end position only, so its row stays finite; nothing
///     reads a padding segment.
///   - `unpool_segment_bias`: full-rate query (b, t) sees the short positions j <= J(b, t), every
///     segment closed at or before t (the newest included: its summary is usable from its emit on).
/// The result is [B, H, Tq, Tk] (one copy per head, the layout of ops::AttentionScores::dense):
/// 0 where visible, kMaskedLogit where not. kMaskedLogit is finite, so no inf - inf or 0 * inf can
/// arise on either backend, and large enough that exp(kMaskedLogit - max) is exactly 0 in float and
/// double: a hidden key's probability is exactly zero.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "hseq/core/error.hpp"

namespace hseq::hier {

/// The logit of a hidden key (see the file comment).
inline constexpr double kMaskedLogit = -1e30;

namespace detail {
/// out [B, H, rows, cols] = kMaskedLogit, then `fill(b, block)` opens row b's visible entries in its
/// first head's block [rows, cols], which the other heads copy.
template <class T, class Fill>
void segment_bias(std::int64_t bsz, std::int64_t heads, std::int64_t rows, std::int64_t cols, std::vector<T>& out,
                  Fill&& fill) {
  out.assign(std::size_t(bsz * heads * rows * cols), T(kMaskedLogit));
  for (std::int64_t b = 0; b < bsz; ++b) {
    T* head0 = out.data() + b * heads * rows * cols;
    fill(b, head0);
    for (std::int64_t h = 1; h < heads; ++h) std::copy(head0, head0 + rows * cols, head0 + h * rows * cols);
  }
}
}  // namespace detail

/// out [B, H, C, L] for the segment ends `ends` [B * C] (global rows b L + e_{b, j}).
template <class T>
void pool_segment_bias(std::int32_t const* ends, std::int64_t bsz, std::int64_t c, std::int64_t len,
                       std::int64_t heads, std::vector<T>& out) {
  detail::segment_bias<T>(bsz, heads, c, len, out, [&](std::int64_t b, T* block) {
    std::int64_t prev = -1;
    for (std::int64_t j = 0; j < c; ++j) {
      std::int64_t e = ends[b * c + j] - b * len;
      HSEQ_CHECK(e >= 0 && e < len, "pool_segment_bias: segment end " << ends[b * c + j] << " of row " << b
                                                                       << " is outside its " << len << " positions");
      HSEQ_CHECK(e >= prev, "pool_segment_bias: segment " << j << " of row " << b << " ends at " << e
                                                          << ", before the previous one (" << prev << ")");
      T* row = block + j * len;
      if (e == prev) row[e] = T(0);  // a padding segment: its end alone
      else std::fill(row + prev + 1, row + e + 1, T(0));
      prev = e;
    }
  });
}

/// out [B, H, L, C] for the segment rows `up` [B * L] (global rows b C + J(b, t)).
template <class T>
void unpool_segment_bias(std::int32_t const* up, std::int64_t bsz, std::int64_t len, std::int64_t c,
                         std::int64_t heads, std::vector<T>& out) {
  detail::segment_bias<T>(bsz, heads, len, c, out, [&](std::int64_t b, T* block) {
    for (std::int64_t t = 0; t < len; ++t) {
      std::int64_t j = up[b * len + t] - b * c;
      HSEQ_CHECK(j >= 0 && j < c, "unpool_segment_bias: position " << t << " of row " << b << " reads segment row "
                                                                   << up[b * len + t] << ", outside the row's " << c);
      std::fill(block + t * c, block + t * c + j + 1, T(0));
    }
  });
}

}  // namespace hseq::hier
