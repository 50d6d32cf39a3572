// SPDX-License-Identifier: MIT
// GemmMath names and their parsing (backend/gemm_math.hpp).
#include <doctest/doctest.h>

#include <string>

#include "hseq/backend/gemm_math.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

TEST_CASE("gemm math: names round-trip and a misspelt name throws naming the known ones") {
  for (hseq::GemmMath m : {hseq::GemmMath::kFp32, hseq::GemmMath::kTf32, hseq::GemmMath::kBf16})
    CHECK(hseq::parse_gemm_math(hseq::gemm_math_name(m)) == m);
  CHECK(std::string(hseq::gemm_math_name(hseq::GemmMath::kBf16)) == "bf16");
  CHECK_THROWS_WITH_AS(hseq::parse_gemm_math("fp16", "--precision"),
                       doctest::Contains("--precision: unknown precision 'fp16' (known: fp32, tf32, bf16)"), hseq::Error);
  CHECK_THROWS_AS(hseq::parse_gemm_math(""), hseq::Error);
  CHECK_THROWS_AS(hseq::parse_gemm_math("BF16"), hseq::Error);
}

}  // namespace HSEQ_TEST_UNIT
