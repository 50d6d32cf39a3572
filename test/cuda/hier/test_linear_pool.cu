// SPDX-License-Identifier: MIT
// CUDA hier/linear_pool.hpp: LinearPool's shortening module on the GPU against the CPU in float and GPU finite
// differences in double, workspace plan == use (the case harness of test/cuda/harness.cuh).
#include <doctest/doctest.h>

#include "cuda/compare.cuh"
#include "cuda/harness.cuh"
#include "cuda/hier/resample_cases.cuh"
#include "hseq/cuda.hpp"
#include "hseq/hier/linear_pool.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_harness;
using namespace hseq::test_cuda_hier;

TEST_CASE("cuda modules: LinearPool shortening (gradcheck)") {
  mm_both(ShortenCase<hier::LinearPool>({.dim = 32, .factor = 3}, 2, 24),
          ShortenCase<hier::LinearPool>({.dim = 3, .factor = 2}, 2, 6), 25);
}

}  // namespace HSEQ_TEST_UNIT
