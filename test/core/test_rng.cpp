// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <ios>
#include <vector>

#include "hseq/core/rng.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::Philox4;
using hseq::Rng;

namespace {
void check_block(Philox4 got, Philox4 want) {
  for (int i = 0; i < 4; ++i) {
    INFO("word ", i, ": got 0x", std::hex, got.v[i], " want 0x", want.v[i]);
    CHECK(got.v[i] == want.v[i]);
  }
}
}  // namespace

// Known-answer tests: the kat_vectors file of Random123 (Salmon et al., SC'11), philox4x32 with 10 rounds.
TEST_CASE("rng: Philox4x32-10 known-answer vectors") {
  check_block(hseq::philox4x32_10(Philox4{{0, 0, 0, 0}}, 0, 0),
              Philox4{{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}});
  check_block(hseq::philox4x32_10(Philox4{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu,
                                  0xffffffffu),
              Philox4{{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}});
  check_block(hseq::philox4x32_10(Philox4{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u,
                                  0x299f31d0u),
              Philox4{{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}});
}

TEST_CASE("rng: philox_block maps (seed, stream, index) to key and counter") {
  std::uint64_t seed = 0x0123456789abcdefull, stream = 0xfedcba9876543210ull, index = 0x1122334455667788ull;
  Philox4 want = hseq::philox4x32_10(Philox4{{0x55667788u, 0x11223344u, 0x76543210u, 0xfedcba98u}}, 0x89abcdefu,
                                     0x01234567u);
  check_block(hseq::philox_block(seed, stream, index), want);
  // Every input word matters.
  Philox4 base = hseq::philox_block(seed, stream, index);
  auto differs = [&](Philox4 o) { return o.v[0] != base.v[0] || o.v[1] != base.v[1]; };
  CHECK(differs(hseq::philox_block(seed ^ 1, stream, index)));
  CHECK(differs(hseq::philox_block(seed ^ (1ull << 40), stream, index)));
  CHECK(differs(hseq::philox_block(seed, stream ^ 1, index)));
  CHECK(differs(hseq::philox_block(seed, stream ^ (1ull << 40), index)));
  CHECK(differs(hseq::philox_block(seed, stream, index ^ 1)));
  CHECK(differs(hseq::philox_block(seed, stream, index ^ (1ull << 40))));
}

TEST_CASE("rng: bits_to_unit uses the top 24 bits and stays below 1") {
  CHECK(hseq::bits_to_unit(0u) == 0.0);
  CHECK(hseq::bits_to_unit(0xffu) == 0.0);  // the low 8 bits are dropped
  CHECK(hseq::bits_to_unit(0x80000000u) == 0.5);
  CHECK(hseq::bits_to_unit(0x00000100u) == std::ldexp(1.0, -24));
  CHECK(hseq::bits_to_unit(0xffffffffu) == 1.0 - std::ldexp(1.0, -24));
  CHECK(hseq::bits_to_unit(0xffffffffu) < 1.0);
  CHECK(float(hseq::bits_to_unit(0xffffffffu)) < 1.0f);  // exact in float too
}

TEST_CASE("rng: uniform draws lie in [0, 1) with mean 1/2 and variance 1/12") {
  constexpr int kN = 100000;
  double sum = 0, sum2 = 0;
  int below_quarter = 0;
  bool in_range = true;
  for (int i = 0; i < kN; ++i) {
    double u = hseq::philox_uniform(42, 7, std::uint64_t(i));
    in_range = in_range && u >= 0.0 && u < 1.0;
    sum += u;
    sum2 += u * u;
    below_quarter += u < 0.25;
  }
  CHECK(in_range);
  double mean = sum / kN, var = sum2 / kN - mean * mean;
  // 5 standard errors: sd(mean) = sqrt(1/12 / N) = 9.1e-4; sd(var) = sqrt(1/180 / N) = 2.4e-4;
  // sd(fraction below 1/4) = sqrt(3/16 / N) = 1.4e-3.
  CHECK(std::abs(mean - 0.5) < 5 * 9.2e-4);
  CHECK(std::abs(var - 1.0 / 12) < 5 * 2.4e-4);
  CHECK(std::abs(below_quarter / double(kN) - 0.25) < 5 * 1.4e-3);
}

TEST_CASE("rng: normal draws have mean 0 and variance 1") {
  constexpr int kN = 100000;
  double sum = 0, sum2 = 0, sum4 = 0;
  int within_one = 0;
  bool finite = true;
  for (int i = 0; i < kN; ++i) {
    double z = hseq::philox_normal(1234, 99, std::uint64_t(i));
    finite = finite && std::isfinite(z);
    sum += z;
    sum2 += z * z;
    sum4 += z * z * z * z;
    within_one += std::abs(z) < 1.0;
  }
  CHECK(finite);
  double mean = sum / kN, var = sum2 / kN - mean * mean;
  // 5 standard errors: sd(mean) = 1/sqrt(N) = 3.2e-3; sd(sample variance) = sqrt(2/N) = 4.5e-3;
  // sd(E z^4) = sqrt(96/N) = 3.1e-2; P(|z| < 1) = 0.682689 with sd sqrt(p(1-p)/N) = 1.5e-3.
  CHECK(std::abs(mean) < 5 * 3.2e-3);
  CHECK(std::abs(var - 1.0) < 5 * 4.5e-3);
  CHECK(std::abs(sum4 / kN - 3.0) < 5 * 3.1e-2);
  CHECK(std::abs(within_one / double(kN) - 0.682689) < 5 * 1.5e-3);
}

TEST_CASE("rng: Rng is deterministic and its state is (seed, stream, position)") {
  Rng a(5, 3), b(5, 3), other_stream(5, 4), other_seed(6, 3);
  CHECK(a.seed() == 5);
  CHECK(a.stream() == 3);
  CHECK(a.position() == 0);
  int same_stream_diffs = 0, other_stream_diffs = 0, other_seed_diffs = 0;
  for (int i = 0; i < 100; ++i) {
    double x = a.uniform();
    same_stream_diffs += x != b.uniform();
    other_stream_diffs += x != other_stream.uniform();
    other_seed_diffs += x != other_seed.uniform();
  }
  CHECK(same_stream_diffs == 0);
  CHECK(other_stream_diffs > 90);
  CHECK(other_seed_diffs > 90);
  CHECK(a.position() == 100);

  // Draw i of the sequence is the stateless draw at index i.
  Rng r(77, 11);
  for (std::uint64_t i = 0; i < 5; ++i) CHECK(r.uniform() == hseq::philox_uniform(77, 11, i));
  CHECK(r.normal() == hseq::philox_normal(77, 11, 5));
  CHECK(r.position() == 6);
}

TEST_CASE("rng: set_position resumes a checkpointed stream") {
  Rng r(2024, 1);
  for (int i = 0; i < 10; ++i) (void)r.uniform();
  std::uint64_t saved = r.position();
  CHECK(saved == 10);
  std::vector<double> next;
  for (int i = 0; i < 5; ++i) next.push_back(i % 2 ? r.normal() : r.uniform());
  Rng restored(r.seed(), r.stream());
  restored.set_position(saved);
  for (int i = 0; i < 5; ++i) CHECK((i % 2 ? restored.normal() : restored.uniform()) == next[std::size_t(i)]);
  r.set_position(3);
  CHECK(r.uniform() == hseq::philox_uniform(2024, 1, 3));
  CHECK(r.position() == 4);
}

TEST_CASE("rng: below(n) is in [0, n) and roughly uniform") {
  Rng r(9, 9);
  constexpr int kN = 50000, kBuckets = 10;
  int counts[kBuckets] = {};
  bool in_range = true;
  for (int i = 0; i < kN; ++i) {
    std::uint64_t x = r.below(kBuckets);
    in_range = in_range && x < kBuckets;
    if (x < kBuckets) ++counts[x];
  }
  CHECK(in_range);
  CHECK(r.position() == kN);
  // Each count is Binomial(N, 0.1): sd = sqrt(N * 0.09) = 67; allow 5 sd.
  for (int c : counts) CHECK(std::abs(c - kN / kBuckets) < 5 * 67);
  CHECK(r.below(1) == 0);
  CHECK(r.below(0) == 0);
  // A large n reaches beyond 32 bits (the two words are combined).
  bool high = false;
  for (int i = 0; i < 64 && !high; ++i) high = r.below(std::uint64_t(1) << 62) >= (std::uint64_t(1) << 33);
  CHECK(high);
}

}  // namespace HSEQ_TEST_UNIT
