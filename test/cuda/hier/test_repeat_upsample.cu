// SPDX-License-Identifier: MIT
// CUDA hier/repeat_upsample.hpp: Repeat's upsampling module on the GPU against the CPU in float and GPU finite
// differences in double, workspace plan == use (the case harness of test/cuda/harness.cuh).
#include <doctest/doctest.h>

#include "cuda/compare.cuh"
#include "cuda/harness.cuh"
#include "cuda/hier/resample_cases.cuh"
#include "hseq/cuda.hpp"
#include "hseq/hier/repeat_upsample.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_harness;
using namespace hseq::test_cuda_hier;

TEST_CASE("cuda modules: Repeat upsampling (gradcheck)") {
  mm_both(UpsampleCase<hier::Repeat>({.dim = 32, .factor = 3}, 2, 8),
          UpsampleCase<hier::Repeat>({.dim = 3, .factor = 3}, 2, 2), 27);
}

}  // namespace HSEQ_TEST_UNIT
