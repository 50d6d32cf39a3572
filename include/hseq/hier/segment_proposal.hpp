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
/// Memory: the distinct segments (K bytes each) and one 64-bit cumulative count per segment; build
/// it from the training split (or a prefix of it, for very large data).
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
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
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
    std::unordered_map<std::string_view, std::int64_t> counts;
    std::int64_t windows = std::int64_t(bytes.size()) - k + 1;
    for (std::int64_t i = 0; i < windows; ++i) ++counts[bytes.substr(std::size_t(i), std::size_t(k))];
    std::vector<std::string_view> keys;
    keys.reserve(counts.size());
    for (auto const& kv : counts) keys.push_back(kv.first);
    std::sort(keys.begin(), keys.end());
    bytes_.reserve(keys.size() * std::size_t(k));
    cumulative_.reserve(keys.size());
    std::int64_t total = 0;
    for (auto key : keys) {
      for (char ch : key) bytes_.push_back(static_cast<unsigned char>(ch));
      total += counts[key];
      cumulative_.push_back(total);
    }
  }

  /// Counts the segments `seg` cuts `bytes` into (at least one byte). The proposal remembers the
  /// segmenter's delimiter and its MaxLen (`delimiter`, `max_length`).
  template <VariableSegmenter S>
  SegmentProposal(std::string_view bytes, S const& seg) : k_(0), max_len_(S::kSize), delimiter_(seg.delimiter()) {
    HSEQ_CHECK(!bytes.empty(), "SegmentProposal: no bytes to count segments in");
    std::unordered_map<std::string_view, std::int64_t> counts;
    std::vector<std::int32_t> cur;  // the current segment's bytes (at most MaxLen)
    cur.reserve(std::size_t(S::kSize));
    std::size_t begin = 0;
    for (std::size_t p = 0; p < bytes.size(); ++p) {
      cur.push_back(std::int32_t(static_cast<unsigned char>(bytes[p])));
      if (p + 1 == bytes.size() || seg.ends(cur)) {
        ++counts[bytes.substr(begin, p + 1 - begin)];
        begin = p + 1;
        cur.clear();
      }
    }
    std::vector<std::string_view> keys;
    keys.reserve(counts.size());
    for (auto const& kv : counts) keys.push_back(kv.first);
    std::sort(keys.begin(), keys.end());
    offsets_.reserve(keys.size() + 1);
    cumulative_.reserve(keys.size());
    offsets_.push_back(0);
    std::int64_t total = 0;
    for (auto key : keys) {
      for (char ch : key) bytes_.push_back(static_cast<unsigned char>(ch));
      offsets_.push_back(std::int64_t(bytes_.size()));
      total += counts[key];
      cumulative_.push_back(total);
    }
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
  std::int64_t k_ = 0;
  std::int64_t max_len_ = 0;              // variable segments: the segmenter's MaxLen
  std::string delimiter_;                 // variable segments: the segmenter's delimiter
  std::vector<std::int64_t> offsets_;     // variable segments: [size + 1] where each one starts in bytes_
  std::vector<std::uint8_t> bytes_;       // [size, k] distinct segments, sorted (variable: concatenated)
  std::vector<std::int64_t> cumulative_;  // [size] running window counts
};

}  // namespace hseq::hier
