// SPDX-License-Identifier: MIT
/// @file
/// @brief Philox4x32-10 counter-based RNG. A draw is a pure function of (seed, stream, index), so the
/// CPU and a CUDA kernel produce bit-identical streams and any element can be drawn independently.
#pragma once

#include <cmath>
#include <cstdint>

#include "hseq/core/config.hpp"

namespace hseq {

/// Four 32-bit words: one Philox block.
struct Philox4 {
  std::uint32_t v[4];
};

/// Philox4x32 with 10 rounds (Salmon et al., SC'11); the constants are the published ones.
HSEQ_HOST_DEVICE Philox4 philox4x32_10(Philox4 ctr, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    std::uint64_t p0 = static_cast<std::uint64_t>(kM0) * ctr.v[0];
    std::uint64_t p1 = static_cast<std::uint64_t>(kM1) * ctr.v[2];
    std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    ctr = Philox4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

/// The Philox block for (seed, stream, index): key = seed, counter = (index, stream).
HSEQ_HOST_DEVICE Philox4 philox_block(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  Philox4 ctr{{static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(index >> 32),
               static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)}};
  return philox4x32_10(ctr, static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
}

/// Maps 32 random bits to a float in [0, 1) with 24 bits of resolution (exact in float and double).
HSEQ_HOST_DEVICE double bits_to_unit(std::uint32_t x) { return static_cast<double>(x >> 8) * (1.0 / 16777216.0); }

/// Uniform draw in [0, 1) for element `index` of stream `stream`.
HSEQ_HOST_DEVICE double philox_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  return bits_to_unit(philox_block(seed, stream, index).v[0]);
}

/// Standard normal draw for element `index` of stream `stream` (Box-Muller on two words of one block).
HSEQ_HOST_DEVICE double philox_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  Philox4 b = philox_block(seed, stream, index);
  double u1 = 1.0 - bits_to_unit(b.v[0]);  // (0, 1]: log is finite
  double u2 = bits_to_unit(b.v[1]);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

/// A sequential host-side generator over one Philox stream: draws index 0, 1, 2, ...
/// Its whole state is (seed, stream, next index), so it can be checkpointed as three integers.
class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0, std::uint64_t stream = 0) : seed_(seed), stream_(stream) {}
  double uniform() { return philox_uniform(seed_, stream_, index_++); }
  double normal() { return philox_normal(seed_, stream_, index_++); }
  /// Uniform integer in [0, n).
  std::uint64_t below(std::uint64_t n) {
    Philox4 b = philox_block(seed_, stream_, index_++);
    std::uint64_t r = (static_cast<std::uint64_t>(b.v[0]) << 32) | b.v[1];
    return n == 0 ? 0 : r % n;  // bias <= n / 2^64: negligible for dataset sizes
  }
  std::uint64_t seed() const { return seed_; }
  std::uint64_t stream() const { return stream_; }
  std::uint64_t position() const { return index_; }
  void set_position(std::uint64_t i) { index_ = i; }

 private:
  std::uint64_t seed_, stream_, index_ = 0;
};

}  // namespace hseq
