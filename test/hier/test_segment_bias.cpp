// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "hseq/core/error.hpp"
#include "hseq/hier/segment_bias.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

namespace {
/// 1 where the bias leaves key j visible to query i, 0 where it hides it.
std::vector<int> visible(std::vector<double> const& bias) {
  std::vector<int> v;
  for (double x : bias) {
    REQUIRE((x == 0.0 || x == hier::kMaskedLogit));
    v.push_back(x == 0.0);
  }
  return v;
}
}  // namespace

TEST_CASE("segment_bias: pooling sees its own segment's positions; a padding segment its end alone") {
  // Row 0 (5 positions) closes segments at 0, 3; row 1 at 0, 1, 4. C = 3: row 0's third segment is
  // padding (its end repeats 3). Two heads: the same pattern twice.
  std::int32_t ends[] = {0, 3, 3, 5 + 0, 5 + 1, 5 + 4};
  std::vector<double> bias;
  hier::pool_segment_bias<double>(ends, 2, 3, 5, 2, bias);
  REQUIRE(bias.size() == 2u * 2 * 3 * 5);
  std::vector<int> row0{1, 0, 0, 0, 0,  // segment 0: {0}
                        0, 1, 1, 1, 0,  // segment 1: (0, 3]
                        0, 0, 0, 1, 0};  // padding: its end
  std::vector<int> row1{1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1};
  auto v = visible(bias);
  std::vector<int> expect;
  for (auto const* r : {&row0, &row0, &row1, &row1}) expect.insert(expect.end(), r->begin(), r->end());
  CHECK(v == expect);
  // A float bias hides as surely: exp(kMaskedLogit - max) is 0 in float.
  std::vector<float> fb;
  hier::pool_segment_bias<float>(ends, 2, 3, 5, 1, fb);
  CHECK(fb[1] == float(hier::kMaskedLogit));
  CHECK(std::exp(fb[1] - 50.f) == 0.f);
  // Ends outside their row or going back are refused by name.
  std::int32_t outside[] = {0, 5, 5};
  CHECK_THROWS_WITH_AS(hier::pool_segment_bias<double>(outside, 1, 3, 5, 1, bias),
                       doctest::Contains("segment end 5 of row 0 is outside its 5 positions"), Error);
  std::int32_t back[] = {0, 3, 2};
  CHECK_THROWS_WITH_AS(hier::pool_segment_bias<double>(back, 1, 3, 5, 1, bias),
                       doctest::Contains("segment 2 of row 0 ends at 2, before the previous one (3)"), Error);
}

TEST_CASE("segment_bias: unpooling position t sees the segments j <= J(t)") {
  // Row 0 (4 positions): J = 0, 0, 1, 2; row 1: J = 0, 1, 1, 1 (its third segment is padding). C = 3.
  std::int32_t up[] = {0, 0, 1, 2, 3 + 0, 3 + 1, 3 + 1, 3 + 1};
  std::vector<double> bias;
  hier::unpool_segment_bias<double>(up, 2, 4, 3, 1, bias);
  std::vector<int> expect{1, 0, 0, 1, 0, 0, 1, 1, 0, 1, 1, 1,   // row 0
                          1, 0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0};  // row 1: never its padding segment
  CHECK(visible(bias) == expect);
  std::int32_t bad[] = {0, 3, 1, 2};  // position 1 of row 0 reads row 1's first segment
  CHECK_THROWS_WITH_AS(hier::unpool_segment_bias<double>(bad, 1, 4, 3, 1, bias),
                       doctest::Contains("position 1 of row 0 reads segment row 3"), Error);
}

}  // namespace HSEQ_TEST_UNIT
