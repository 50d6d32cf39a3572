// SPDX-License-Identifier: MIT
/// @file
/// @brief `Shape`: a small fixed-capacity list of extents (row-major, last dimension contiguous).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <sstream>
#include <string>

#include "hseq/core/config.hpp"
#include "hseq/core/error.hpp"

namespace hseq {

/// Extents of a tensor, rank 0..kMaxRank. Trivially copyable so that views can be passed to kernels.
class Shape {
 public:
  static constexpr int kMaxRank = 6;

  Shape() = default;
  Shape(std::initializer_list<std::int64_t> dims) {
    HSEQ_CHECK(static_cast<int>(dims.size()) <= kMaxRank,
               "Shape: rank " << dims.size() << " exceeds the maximum " << kMaxRank);
    for (std::int64_t d : dims) {
      HSEQ_CHECK(d >= 0, "Shape: negative extent " << d);
      dims_[rank_++] = d;
    }
  }

  HSEQ_HOST_DEVICE int rank() const { return rank_; }
  /// Extent of dimension i; negative i counts from the end (-1 is the last dimension).
  HSEQ_HOST_DEVICE std::int64_t operator[](int i) const { return dims_[i < 0 ? rank_ + i : i]; }
  std::int64_t at(int i) const {
    int j = i < 0 ? rank_ + i : i;
    HSEQ_CHECK(j >= 0 && j < rank_, "Shape " << to_string() << ": dimension " << i << " out of range");
    return dims_[j];
  }
  HSEQ_HOST_DEVICE std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }
  /// Product of every extent but the last: the number of rows when viewed as a matrix.
  HSEQ_HOST_DEVICE std::int64_t rows() const {
    std::int64_t n = 1;
    for (int i = 0; i + 1 < rank_; ++i) n *= dims_[i];
    return n;
  }
  /// The last extent: the row length when viewed as a matrix.
  HSEQ_HOST_DEVICE std::int64_t cols() const { return rank_ == 0 ? 1 : dims_[rank_ - 1]; }

  /// A copy with extent d appended as the new last dimension.
  Shape appended(std::int64_t d) const {
    HSEQ_CHECK(rank_ < kMaxRank, "Shape " << to_string() << ": cannot append beyond rank " << kMaxRank);
    HSEQ_CHECK(d >= 0, "Shape " << to_string() << ": cannot append the negative extent " << d);
    Shape r = *this;
    r.dims_[r.rank_++] = d;
    return r;
  }
  /// A copy without the leading dimension.
  Shape without_leading() const {
    Shape r;
    for (int i = 1; i < rank_; ++i) r.dims_[r.rank_++] = dims_[i];
    return r;
  }
  /// A copy with dimension i (negative counts from the end) set to d.
  Shape with(int i, std::int64_t d) const {
    int j = i < 0 ? rank_ + i : i;
    HSEQ_CHECK(j >= 0 && j < rank_, "Shape " << to_string() << ": dimension " << i << " out of range");
    HSEQ_CHECK(d >= 0, "Shape " << to_string() << ": negative extent " << d << " for dimension " << i);
    Shape r = *this;
    r.dims_[j] = d;
    return r;
  }

  friend bool operator==(Shape const& a, Shape const& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[i] != b.dims_[i]) return false;
    return true;
  }
  friend bool operator!=(Shape const& a, Shape const& b) { return !(a == b); }

  std::string to_string() const {
    std::ostringstream os;
    os << '[';
    for (int i = 0; i < rank_; ++i) os << (i ? ", " : "") << dims_[i];
    os << ']';
    return os.str();
  }
  friend std::ostream& operator<<(std::ostream& os, Shape const& s) { return os << s.to_string(); }

 private:
  std::int64_t dims_[kMaxRank] = {};
  int rank_ = 0;
};

}  // namespace hseq
