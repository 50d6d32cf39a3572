// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>

#include "hseq/train/schedule.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::train::WarmupCosine;

TEST_CASE("schedule: linear warm-up, cosine decay to the floor, then flat") {
  WarmupCosine s(1.0, 4, 14, 0.1);
  CHECK(s(0) == doctest::Approx(0.25));
  CHECK(s(3) == doctest::Approx(1.0));
  CHECK(s(4) == doctest::Approx(1.0));
  CHECK(s(9) == doctest::Approx(0.1 + 0.45 * (1 + std::cos(3.141592653589793 * 0.5))));
  CHECK(s(14) == doctest::Approx(0.1));
  CHECK(s(100) == doctest::Approx(0.1));
  for (int i = 4; i < 14; ++i) CHECK(s(i + 1) <= s(i));
  CHECK(s.at_fraction(10, 0.0) == doctest::Approx(1.0));
  CHECK(s.at_fraction(10, 1.0) == doctest::Approx(0.1));
  CHECK(s.at_fraction(1, 0.9) == doctest::Approx(0.5));  // still warming up
  CHECK_THROWS_AS(WarmupCosine(1.0, 0, 0, 0.1), hseq::Error);
  CHECK_THROWS_AS(WarmupCosine(1.0, 0, 10, 1.5), hseq::Error);
}

}  // namespace HSEQ_TEST_UNIT
