// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <string>

#include "hseq/hier/fixed_chunks.hpp"
#include "hseq/hier/part_config.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

static_assert(hier::SegmenterPolicy<hier::FixedChunks<3>>);
static_assert(hier::FixedChunks<3>::kSize == 3);

TEST_CASE("fixed chunks: the name records K, and lengths must be whole segments") {
  CHECK(std::string(hier::FixedChunks<1>::kName) == "fixed1");
  CHECK(std::string(hier::FixedChunks<8>::kName) == "fixed8");
  CHECK(std::string(hier::FixedChunks<128>::kName) == "fixed128");
  CHECK(hier::FixedChunks<4>::segments(12, "test") == 3);
  CHECK(hier::FixedChunks<1>::segments(5, "test") == 5);
  CHECK_THROWS_WITH_AS(hier::FixedChunks<4>::segments(10, "Model"),
                       doctest::Contains("Model: sequence length 10 is not a positive multiple of the segment size 4"),
                       Error);
  CHECK_THROWS_WITH_AS(hier::FixedChunks<4>::segments(0, "Model"), doctest::Contains("sequence length 0"), Error);
}

TEST_CASE("part config: every part checks the sizes it shares") {
  CHECK(hier::check_part({.dim = 4, .segment = 2}, "P").dim == 4);
  CHECK_THROWS_WITH_AS(hier::check_part({.dim = 0, .segment = 2}, "P"), doctest::Contains("P: dim 0"), Error);
  CHECK_THROWS_WITH_AS(hier::check_part({.dim = 4, .segment = 2, .layers = 0}, "P"),
                       doctest::Contains("layers must be >= 1"), Error);
}

}  // namespace HSEQ_TEST_UNIT
