// SPDX-License-Identifier: MIT
// CUDA hier/attention_upsample.hpp: AttentionUp's and AttentionUpLinear's upsampling modules (causal and not) on the
// GPU against the CPU in float and GPU finite differences in double, workspace plan == use (the case harness of
// test/cuda/harness.cuh).
#include <doctest/doctest.h>

#include "cuda/compare.cuh"
#include "cuda/harness.cuh"
#include "cuda/hier/resample_cases.cuh"
#include "hseq/cuda.hpp"
#include "hseq/hier/attention_upsample.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_harness;
using namespace hseq::test_cuda_hier;

TEST_CASE("cuda modules: AttentionUp upsampling (residual and all parameters, gradcheck)") {
  mm_both(UpsampleCase<hier::AttentionUp>({.dim = 32, .factor = 4, .heads = 4, .mlp_hidden = 64}, 2, 6),
          UpsampleCase<hier::AttentionUp>({.dim = 4, .factor = 2, .heads = 2, .mlp_hidden = 6}, 2, 3), 29);
  mm_compare(UpsampleCase<hier::AttentionUp>({.dim = 64, .factor = 3, .heads = 2, .mlp_hidden = 64}, 2, 12), 40);
  // non-causal: mask none
  mm_both(UpsampleCase<hier::AttentionUp>({.dim = 32, .factor = 4, .heads = 4, .mlp_hidden = 64, .causal = false}, 2, 6),
          UpsampleCase<hier::AttentionUp>({.dim = 4, .factor = 2, .heads = 2, .mlp_hidden = 6, .causal = false}, 2, 3),
          44);
}

TEST_CASE("cuda modules: AttentionUpLinear upsampling (queries from linear upsampling; residual, all parameters)") {
  mm_both(UpsampleCase<hier::AttentionUpLinear>({.dim = 32, .factor = 4, .heads = 4, .mlp_hidden = 64}, 2, 6),
          UpsampleCase<hier::AttentionUpLinear>({.dim = 4, .factor = 2, .heads = 2, .mlp_hidden = 6}, 2, 3), 50);
  mm_compare(UpsampleCase<hier::AttentionUpLinear>({.dim = 64, .factor = 3, .heads = 2, .mlp_hidden = 64}, 2, 12), 51);
  mm_both(UpsampleCase<hier::AttentionUpLinear>(
              {.dim = 32, .factor = 4, .heads = 4, .mlp_hidden = 64, .causal = false}, 2, 6),
          UpsampleCase<hier::AttentionUpLinear>({.dim = 4, .factor = 2, .heads = 2, .mlp_hidden = 6, .causal = false},
                                                2, 3),
          52);
}

}  // namespace HSEQ_TEST_UNIT
