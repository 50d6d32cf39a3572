// SPDX-License-Identifier: MIT
/// @file
/// @brief `EmitLayout`: where a data-dependent level's segments close, for a batch (host memory),
/// and `compute_emits`, which fills it from a `ByteRule` row by row.
///
/// For row b of n positions (a row may be shorter: `row_len[b]`, the rest is padding):
///   emit[b, j]   = e_j, the position that closes segment j (e_0 = 0), j < count[b];
///                  padding entries (j >= count[b]) hold the row's last real position
///   seg_of[b, t] = J(t) = max{j : e_j <= t}, the segment position t reads (inclusive rule, spec
///                  segmentation.md §1); padding positions read the row's last segment
///   count[b]     = emits of the row (>= 1 when the row has a position: t = 0 always emits)
/// `segments` = the largest count of the batch: the inner level runs over [B, segments] rows, and
/// since J(t) < count[b] and attention over j is causal, no real position ever reads a padding
/// segment (no mask is needed). Padding entries point at real rows so that every gather stays in
/// range and finite.
///
/// Rows are segmented independently (no state crosses rows, unlike BLT's batch-flattened entropies),
/// so a row's layout does not depend on the batch it is in. `capacity` bounds the emits kept per
/// row (the static capacity a workspace plan reserves); emits past it are dropped (the row's last
/// segment then grows: still causal) and counted in `dropped`. The default capacity, the rule's
/// `max_emits(n)`, never drops.
///
/// Reserved for the worst case on first use: later calls with the same or smaller sizes do not
/// allocate (no allocation in the training loop).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "hseq/core/error.hpp"
#include "hseq/hier/byte_rule.hpp"

namespace hseq::hier {

struct EmitLayout {
  std::int64_t batch = 0, n = 0;  ///< rows, positions per row (the padded length)
  std::int64_t capacity = 0;      ///< emits kept per row at most
  std::int64_t segments = 0;      ///< the largest count of the batch (<= capacity)
  std::int64_t dropped = 0;       ///< emits refused because their row was full
  std::vector<std::int32_t> count;   ///< [B]
  std::vector<std::int32_t> emit;    ///< [B, segments] e_j (row-major with stride `segments`)
  std::vector<std::int32_t> seg_of;  ///< [B, n] J(t)

  void reserve(std::int64_t batch_, std::int64_t n_, std::int64_t capacity_) {
    count.reserve(std::size_t(batch_));
    emit.reserve(std::size_t(batch_ * capacity_));
    seg_of.reserve(std::size_t(batch_ * n_));
  }
  std::int32_t emit_at(std::int64_t b, std::int64_t j) const { return emit[std::size_t(b * segments + j)]; }
  std::int32_t segment_of(std::int64_t b, std::int64_t t) const { return seg_of[std::size_t(b * n + t)]; }
};

/// Fills `out` for `batch` rows of `n` tokens (`tokens` [B, n], host, row-major): row b has
/// `row_len[b]` real positions (all n when `row_len` is empty). `capacity` 0 means the rule's
/// `max_emits(n)`. For a nested level, `tokens` are the enclosing level's tokens at its emits
/// (`gather_emitted`) and `row_len` its counts. `scores` [B, n]: the per-position scores of the
/// entropy rules (`ByteRule::needs_scores`; ignored by the others).
inline void compute_emits(ByteRule const& rule, std::span<std::int32_t const> tokens, std::int64_t batch,
                          std::int64_t n, std::span<std::int32_t const> row_len, std::int64_t capacity,
                          EmitLayout& out, std::span<double const> scores = {}) {
  HSEQ_CHECK(batch >= 1 && n >= 1 && std::int64_t(tokens.size()) == batch * n,
             "compute_emits: " << tokens.size() << " tokens for a batch of " << batch << " rows of " << n);
  HSEQ_CHECK(!rule.needs_scores() || std::int64_t(scores.size()) == batch * n,
             "compute_emits: the rule \"" << rule.to_string() << "\" needs a score per position, got "
                                          << scores.size() << " for " << batch << " x " << n);
  HSEQ_CHECK(row_len.empty() || std::int64_t(row_len.size()) == batch,
             "compute_emits: " << row_len.size() << " row lengths for a batch of " << batch);
  if (capacity <= 0) capacity = rule.max_emits(n);
  out.reserve(batch, n, capacity);
  out.batch = batch;
  out.n = n;
  out.capacity = capacity;
  out.dropped = 0;
  out.count.assign(std::size_t(batch), 0);
  out.seg_of.assign(std::size_t(batch * n), 0);
  // Pass 1: decisions (seg_of holds 1 at emits for now) and counts.
  std::int64_t s_max = 0;
  for (std::int64_t b = 0; b < batch; ++b) {
    std::int64_t len = row_len.empty() ? n : std::int64_t(row_len[std::size_t(b)]);
    HSEQ_CHECK(len >= 0 && len <= n, "compute_emits: row " << b << " has length " << len << " of " << n);
    ByteRule::State s = rule.start();
    std::int64_t c = 0;
    std::int32_t* seg = out.seg_of.data() + b * n;
    for (std::int64_t t = 0; t < len; ++t) {
      std::size_t at = std::size_t(b * n + t);
      bool e = rule.step(s, tokens[at], rule.needs_scores() ? scores[at] : 0.0);
      if (e && c == capacity) {
        ++out.dropped;
        e = false;
      }
      if (e) ++c;
      seg[t] = e ? 1 : 0;
    }
    out.count[std::size_t(b)] = std::int32_t(c);
    s_max = std::max(s_max, c);
  }
  out.segments = std::max<std::int64_t>(s_max, 1);
  // Pass 2: e_j and J(t) (padding positions read the row's last segment, padding emits point at
  // the row's last real position; an empty row reads segment 0 at position 0).
  out.emit.assign(std::size_t(batch * out.segments), 0);
  for (std::int64_t b = 0; b < batch; ++b) {
    std::int64_t len = row_len.empty() ? n : std::int64_t(row_len[std::size_t(b)]);
    std::int32_t* seg = out.seg_of.data() + b * n;
    std::int32_t* em = out.emit.data() + b * out.segments;
    std::int64_t j = -1;
    for (std::int64_t t = 0; t < len; ++t) {
      if (seg[t]) em[++j] = std::int32_t(t);
      seg[t] = std::int32_t(j);
    }
    std::int64_t last = std::max<std::int64_t>(j, 0);
    for (std::int64_t t = len; t < n; ++t) seg[t] = std::int32_t(last);
    for (std::int64_t k = j + 1; k < out.segments; ++k) em[k] = std::int32_t(std::max<std::int64_t>(len - 1, 0));
  }
}

/// The tokens at a layout's emits, [B, segments] (padding entries repeat the row's last real
/// position's token): what a nested level's rule reads.
inline void gather_emitted(std::span<std::int32_t const> tokens, EmitLayout const& lay,
                           std::vector<std::int32_t>& out) {
  HSEQ_CHECK(std::int64_t(tokens.size()) == lay.batch * lay.n,
             "gather_emitted: " << tokens.size() << " tokens for a layout of " << lay.batch << " x " << lay.n);
  out.resize(std::size_t(lay.batch * lay.segments));  // reserved by the caller for no allocation
  for (std::int64_t b = 0; b < lay.batch; ++b)
    for (std::int64_t j = 0; j < lay.segments; ++j)
      out[std::size_t(b * lay.segments + j)] = tokens[std::size_t(b * lay.n + lay.emit_at(b, j))];
}

}  // namespace hseq::hier
