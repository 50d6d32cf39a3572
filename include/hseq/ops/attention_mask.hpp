// SPDX-License-Identifier: MIT
/// @file
/// @brief Attention masks: none, causal, and the rate-aware mask between sequences at different rates.
///
/// Position i of a sequence at rate r summarises tokens up to its *newest* token, newest(i) =
/// i * rate + offset (in the token coordinates the caller chooses). Query i may see key j when the
/// key's newest token is not after the query's: j * k_rate + k_offset <= i * q_rate + q_offset.
/// Causal self-attention is rates (1, 0, 1, 0). Hourglass upsampling attention (full-rate query p,
/// short key j summarising tokens up to j*k) is (1, 0, k, 0): p sees j <= floor(p / k). Attention
/// pooling after the shift by k-1 (short query j covers shifted positions up to j*k + k-1) is
/// (k, k-1, 1, 0). A key/value prefix of `prefix` positions (a memory) is always visible.
#pragma once

#include <algorithm>
#include <cstdint>
#include <ostream>

#include "hseq/core/config.hpp"
#include "hseq/core/error.hpp"

namespace hseq::ops {

struct AttentionMask {
  enum class Kind { kNone, kCausal, kRate };
  Kind kind = Kind::kNone;
  std::int64_t q_rate = 1, q_offset = 0, k_rate = 1, k_offset = 0;

  static AttentionMask none() { return {}; }
  static AttentionMask causal() { return {Kind::kCausal, 1, 0, 1, 0}; }
  static AttentionMask rates(std::int64_t q_rate, std::int64_t q_offset, std::int64_t k_rate, std::int64_t k_offset) {
    HSEQ_CHECK(q_rate >= 1 && k_rate >= 1,
               "AttentionMask::rates: rates must be >= 1, got q_rate " << q_rate << ", k_rate " << k_rate);
    return {Kind::kRate, q_rate, q_offset, k_rate, k_offset};
  }

  /// Number of keys (after a prefix of `prefix` always-visible keys, out of `tk` in total including
  /// the prefix) visible to query i: keys [0, visible(i)) are visible, the rest masked. The count
  /// is non-decreasing in i, which lets kernels skip fully masked key blocks.
  HSEQ_HOST_DEVICE std::int64_t visible(std::int64_t i, std::int64_t tk, std::int64_t prefix) const {
    if (kind == Kind::kNone) return tk;
    std::int64_t num = i * q_rate + q_offset - k_offset;  // key j visible iff j * k_rate <= num
    std::int64_t last = num < 0 ? -1 : num / k_rate;      // floor for num >= 0
    std::int64_t v = prefix + last + 1;
    return v < prefix ? prefix : (v > tk ? tk : v);
  }
  HSEQ_HOST_DEVICE bool allowed(std::int64_t i, std::int64_t j, std::int64_t tk, std::int64_t prefix) const {
    return j < visible(i, tk, prefix);
  }

  friend std::ostream& operator<<(std::ostream& os, AttentionMask const& m) {
    switch (m.kind) {
      case Kind::kNone: return os << "none";
      case Kind::kCausal: return os << "causal";
      default:
        return os << "rates(q " << m.q_rate << "i+" << m.q_offset << ", k " << m.k_rate << "j+" << m.k_offset << ")";
    }
  }
};

}  // namespace hseq::ops
