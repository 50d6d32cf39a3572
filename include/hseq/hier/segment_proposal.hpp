// SPDX-License-Identifier: MIT
/// @file
/// @brief `SegmentProposal`: the negative-sampling distribution of the IEM objective (spec models.md
/// §2.4): a unigram over the distinct K-byte segments of the training data,
///
///   q(c) = count(c) / W        over every window of K bytes at every offset (W = L - K + 1)
///
/// Every offset, not only multiples of K, because training batches are random crops, whose segments
/// start anywhere. The distinct segments are kept sorted by bytes, so the draws depend on the data
/// only (not on a hash map's order). Draws are with replacement and a pure function of
/// (seed, stream, index) through Philox (core/rng.hpp): draw j of a call is segment
/// `lower index` of the cumulative counts at philox(seed, stream, j) mod W, so a caller that derives
/// `stream` from its batch reproduces its negatives on a resumed run without any sampler state.
/// Host memory only: the model uploads the drawn bytes into its workspace.
///
/// Memory (W windows or segments of the data, D distinct ones; the data itself is only read):
///   - retained: K + 8 bytes per distinct segment (its bytes and a 64-bit cumulative count), for
///     variable segments its length + 16 bytes (bytes, offset, cumulative count); every vector is
///     allocated once at its exact size, so nothing else stays with the proposal;
///   - transient, during the construction only: one offset per window, 4 bytes (8 when the data
///     holds 4 GiB or more), sorted in place by the window's bytes (a radix sort with a fixed
///     512 KiB scratch); for variable segments one (offset, length) pair per segment, 8 bytes (16).
///     The distinct segments are the runs of the sorted array, counted before the retained vectors
///     are allocated. A handful of allocations, none per segment (no small freed blocks stay in the
///     process, as a hash map's nodes would): the construction's peak above the data is
///     4 W + (K + 8) D bytes + 512 KiB (the 4 MB KJV training split, K = 8: 4.0 M windows, 0.87 M
///     distinct segments, 15 MiB transient + 13 MiB retained), for variable segments 8 W + the
///     retained bytes.
/// Build it from the training split (or a prefix of it, for very large data).
///
/// Variable segments (a `VariableSegmenter`, e.g. `Delimited`): `SegmentProposal(bytes, segmenter)`
/// counts the segments the segmenter cuts the data into, in one pass from its first byte,
///
///   q(c) = count(c) / W        over the W segments of the data (1 .. MaxLen bytes each)
///
/// A training crop starts anywhere, so its first segment is usually a suffix of a data segment that
/// this count does not hold; every later segment of the crop is a data segment again (the
/// delimiter resynchronises; a MaxLen split of a long run may differ). The distinct segments are
/// kept sorted (shorter first among equal prefixes), with their offsets.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hseq/core/error.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/hier/segmenter_policy.hpp"

namespace hseq::hier {

class SegmentProposal {
 public:
  SegmentProposal() = default;
  /// Counts the K-byte windows of `bytes` (at least K bytes).
  SegmentProposal(std::string_view bytes, std::int64_t k) : k_(k) {
    HSEQ_CHECK(k > 0 && std::int64_t(bytes.size()) >= k,
               "SegmentProposal: " << bytes.size() << " bytes hold no segment of " << k << " bytes");
    if (std::uint64_t(bytes.size()) - std::uint64_t(k) < kNarrowLimit) count_windows<std::uint32_t>(bytes);
    else count_windows<std::uint64_t>(bytes);
  }

  /// Counts the segments `seg` cuts `bytes` into (at least one byte). The proposal remembers the
  /// segmenter's delimiter and its MaxLen (`delimiter`, `max_length`).
  template <VariableSegmenter S>
  SegmentProposal(std::string_view bytes, S const& seg) : k_(0), max_len_(S::kSize), delimiter_(seg.delimiter()) {
    static_assert(S::kSize <= std::int64_t(UINT32_MAX), "SegmentProposal: MaxLen must fit 32 bits");
    HSEQ_CHECK(!bytes.empty(), "SegmentProposal: no bytes to count segments in");
    if (std::uint64_t(bytes.size()) - 1 < kNarrowLimit) count_segments<std::uint32_t>(bytes, seg);
    else count_segments<std::uint64_t>(bytes, seg);
  }

  /// K for fixed-size segments; 0 for variable ones (see `variable`, `max_length`).
  std::int64_t segment_size() const { return k_; }
  /// Whether the segments have variable lengths (built from a VariableSegmenter).
  bool variable() const { return !offsets_.empty(); }
  /// The most bytes a segment holds (K, or the segmenter's MaxLen).
  std::int64_t max_length() const { return variable() ? max_len_ : k_; }
  /// The delimiter of the segmenter a variable proposal was built with (empty for fixed ones).
  std::string const& delimiter() const { return delimiter_; }
  /// Number of distinct segments.
  std::int64_t size() const { return std::int64_t(cumulative_.size()); }
  /// Number of windows counted (W).
  std::int64_t total() const { return cumulative_.empty() ? 0 : cumulative_.back(); }
  std::int64_t count(std::int64_t i) const { return cumulative_.at(std::size_t(i)) - (i == 0 ? 0 : cumulative_[std::size_t(i) - 1]); }
  /// The bytes of distinct segment i (sorted order).
  std::span<std::uint8_t const> segment(std::int64_t i) const {
    HSEQ_CHECK(i >= 0 && i < size(), "SegmentProposal: segment " << i << " of " << size());
    if (variable())
      return {bytes_.data() + offsets_[std::size_t(i)], std::size_t(offsets_[std::size_t(i) + 1] - offsets_[std::size_t(i)])};
    return {bytes_.data() + i * k_, std::size_t(k_)};
  }
  /// log q(segment i).
  double log_prob(std::int64_t i) const { return std::log(double(count(i))) - std::log(double(total())); }
  /// Index of the segment with these bytes, or -1 when it never occurs.
  std::int64_t find(std::span<std::int32_t const> seg) const {
    if (variable()) {
      auto less = [](std::uint8_t a, std::int32_t b) { return std::int32_t(a) < b; };
      std::int64_t lo = 0, hi = size();
      while (lo < hi) {  // lower bound in the sorted segments (lexicographic, a prefix first)
        std::int64_t mid = (lo + hi) / 2;
        auto s = segment(mid);
        if (std::lexicographical_compare(s.begin(), s.end(), seg.begin(), seg.end(), less)) lo = mid + 1;
        else hi = mid;
      }
      if (lo == size()) return -1;
      auto s = segment(lo);
      if (s.size() != seg.size()) return -1;
      for (std::size_t r = 0; r < s.size(); ++r)
        if (std::int32_t(s[r]) != seg[r]) return -1;
      return lo;
    }
    HSEQ_CHECK(std::int64_t(seg.size()) == k_, "SegmentProposal::find: " << seg.size() << " bytes, segments have " << k_);
    std::int64_t lo = 0, hi = size();
    while (lo < hi) {  // lower bound in the sorted segments
      std::int64_t mid = (lo + hi) / 2;
      if (std::lexicographical_compare(bytes_.begin() + mid * k_, bytes_.begin() + (mid + 1) * k_, seg.begin(),
                                       seg.end(), [](std::uint8_t a, std::int32_t b) { return std::int32_t(a) < b; }))
        lo = mid + 1;
      else
        hi = mid;
    }
    if (lo == size()) return -1;
    for (std::int64_t r = 0; r < k_; ++r)
      if (std::int32_t(bytes_[std::size_t(lo * k_ + r)]) != seg[std::size_t(r)]) return -1;
    return lo;
  }

  /// Fills out[j] with the index of draw j (with replacement, probability q). Allocates nothing.
  void draw(std::uint64_t seed, std::uint64_t stream, std::span<std::int64_t> out) const {
    HSEQ_CHECK(size() > 0, "SegmentProposal::draw: the proposal is empty (build it from the training data)");
    std::uint64_t w = std::uint64_t(total());
    for (std::size_t j = 0; j < out.size(); ++j) {
      Philox4 b = philox_block(seed, stream, j);
      std::uint64_t r = ((std::uint64_t(b.v[0]) << 32) | b.v[1]) % w;  // bias <= W / 2^64
      out[j] = std::upper_bound(cumulative_.begin(), cumulative_.end(), std::int64_t(r)) - cumulative_.begin();
    }
  }

 private:
  /// Offsets below this fit the 32-bit index arrays of the construction.
  static constexpr std::uint64_t kNarrowLimit = std::uint64_t(1) << 32;

  /// Sorts window offsets by the windows' K bytes (unsigned, lexicographic) in place: an MSD radix
  /// sort. A range of more than kPairs windows is split by its byte at `depth` (one counting pass
  /// and an in-place permutation, no buffer); a smaller one is sorted as (next 8 bytes as a
  /// big-endian number, offset) pairs in a scratch of kPairs pairs, and its runs of equal numbers
  /// again at depth + 8 when K is longer. The largest part of a range is sorted by the same loop,
  /// only the others recursively, so the recursion is at most log2(W) deep.
  template <class Index>
  class WindowSort {
   public:
    static constexpr std::size_t kPairs = std::size_t(1) << 15;  // 512 KiB of scratch pairs
    WindowSort(unsigned char const* data, std::size_t k, std::size_t windows)
        : p_(data), k_(k), pairs_(std::min(windows, kPairs)) {}

    void sort(Index* a, std::size_t n, std::size_t depth) {
      while (n > 1 && depth < k_) {
        Index* big = nullptr;  // the largest part, left to this loop
        std::size_t big_n = 0, next = 0;
        auto part = [&](Index* x, std::size_t len) {  // keeps the largest part, sorts the other one now
          if (len > big_n) {
            std::swap(x, big);
            std::swap(len, big_n);
          }
          if (len > 1) sort(x, len, next);
        };
        if (n <= kPairs) {
          std::size_t m = std::min<std::size_t>(8, k_ - depth);
          for (std::size_t i = 0; i < n; ++i) pairs_[i] = {key(a[i], depth, m), a[i]};
          std::sort(pairs_.begin(), pairs_.begin() + std::ptrdiff_t(n),
                    [](Pair const& x, Pair const& y) { return x.key < y.key; });
          for (std::size_t i = 0; i < n; ++i) a[i] = pairs_[i].off;
          if (m == k_ - depth) return;  // the keys held the windows' last bytes
          next = depth + 8;
          for (std::size_t i = 0; i < n;) {  // runs of equal keys (from the data: the scratch is reused)
            std::uint64_t ki = key(a[i], depth, 8);
            std::size_t j = i + 1;
            while (j < n && key(a[j], depth, 8) == ki) ++j;
            part(a + i, j - i);
            i = j;
          }
        } else {
          std::size_t count[256] = {}, at[256], end[256];
          for (std::size_t i = 0; i < n; ++i) ++count[p_[a[i] + depth]];
          for (std::size_t c = 0, sum = 0; c < 256; ++c) {
            at[c] = sum;
            sum += count[c];
            end[c] = sum;
          }
          for (std::size_t c = 0; c < 256; ++c)  // each window to its byte's part, by swaps
            while (at[c] < end[c]) {
              std::size_t d = p_[a[at[c]] + depth];
              if (d == c) ++at[c];
              else std::swap(a[at[c]], a[at[d]++]);
            }
          next = depth + 1;
          for (std::size_t c = 0; c < 256; ++c) part(a + (end[c] - count[c]), count[c]);
        }
        a = big;
        n = big_n;
        depth = next;
      }
    }

   private:
    struct Pair {
      std::uint64_t key;
      Index off;
    };
    /// The m <= 8 bytes from `depth` of the window at `off`, as a big-endian number.
    std::uint64_t key(Index off, std::size_t depth, std::size_t m) const {
      unsigned char const* q = p_ + off + depth;
      std::uint64_t v = 0;
      for (std::size_t r = 0; r < m; ++r) v = (v << 8) | q[r];
      return v;
    }
    unsigned char const* p_;
    std::size_t k_;
    std::vector<Pair> pairs_;
  };

  /// The fixed-size construction: sorts the offsets of the windows (Index: uint32 or uint64) by
  /// their bytes, then keeps one window of each run of equal ones, with the run's end as the
  /// cumulative count.
  template <class Index>
  void count_windows(std::string_view bytes) {
    auto const* p = reinterpret_cast<unsigned char const*>(bytes.data());
    std::size_t const k = std::size_t(k_), windows = bytes.size() - k + 1;
    std::vector<Index> idx(windows);  // W offsets: with the sort's scratch, the only transient memory
    std::iota(idx.begin(), idx.end(), Index(0));
    WindowSort<Index>(p, k, windows).sort(idx.data(), windows, 0);
    auto equal = [&](Index a, Index b) { return std::memcmp(p + a, p + b, k) == 0; };
    std::size_t distinct = 1;
    for (std::size_t i = 1; i < windows; ++i) distinct += !equal(idx[i - 1], idx[i]);
    cumulative_.resize(distinct);
    bytes_.resize(distinct * k);
    for (std::size_t i = 0, r = 0; i < windows; ++i)
      if (i + 1 == windows || !equal(idx[i], idx[i + 1])) {
        std::memcpy(bytes_.data() + r * k, p + idx[i], k);
        cumulative_[r++] = std::int64_t(i + 1);
      }
  }

  /// The variable construction: the (offset, length) of every segment of the data (counted in a
  /// first pass, so the array is allocated once), sorted by the segments' bytes, then its runs.
  template <class Off, class S>
  void count_segments(std::string_view bytes, S const& seg) {
    std::vector<std::int32_t> cur(static_cast<std::size_t>(S::kSize));  // the current segment's bytes (at most MaxLen)
    auto each = [&](auto&& f) {  // f(begin, length) for each segment, in order
      std::size_t begin = 0;
      for (std::size_t p = 0; p < bytes.size(); ++p) {
        cur[p - begin] = std::int32_t(static_cast<unsigned char>(bytes[p]));
        if (p + 1 == bytes.size() || seg.ends(std::span<std::int32_t const>(cur.data(), p + 1 - begin))) {
          f(begin, p + 1 - begin);
          begin = p + 1;
        }
      }
    };
    struct Piece {
      Off off;
      std::uint32_t len;
    };
    std::size_t n = 0;
    each([&](std::size_t, std::size_t) { ++n; });
    std::vector<Piece> pieces;  // W pieces: the only transient memory
    pieces.reserve(n);
    each([&](std::size_t b, std::size_t len) { pieces.push_back({Off(b), std::uint32_t(len)}); });
    auto view = [&](Piece const& x) {  // compared as unsigned bytes, a prefix first
      return std::string_view(bytes.data() + std::size_t(x.off), x.len);
    };
    std::sort(pieces.begin(), pieces.end(), [&](Piece const& a, Piece const& b) { return view(a) < view(b); });
    std::size_t distinct = 1, length = pieces[0].len;
    for (std::size_t i = 1; i < n; ++i)
      if (view(pieces[i - 1]) != view(pieces[i])) {
        ++distinct;
        length += pieces[i].len;
      }
    cumulative_.resize(distinct);
    offsets_.resize(distinct + 1);
    bytes_.resize(length);
    std::size_t r = 0, at = 0;
    offsets_[0] = 0;
    for (std::size_t i = 0; i < n; ++i)
      if (i + 1 == n || view(pieces[i]) != view(pieces[i + 1])) {
        std::memcpy(bytes_.data() + at, bytes.data() + std::size_t(pieces[i].off), pieces[i].len);
        at += pieces[i].len;
        offsets_[r + 1] = std::int64_t(at);
        cumulative_[r++] = std::int64_t(i + 1);
      }
  }

  std::int64_t k_ = 0;
  std::int64_t max_len_ = 0;              // variable segments: the segmenter's MaxLen
  std::string delimiter_;                 // variable segments: the segmenter's delimiter
  std::vector<std::int64_t> offsets_;     // variable segments: [size + 1] where each one starts in bytes_
  std::vector<std::uint8_t> bytes_;       // [size, k] distinct segments, sorted (variable: concatenated)
  std::vector<std::int64_t> cumulative_;  // [size] running window counts
};

}  // namespace hseq::hier
