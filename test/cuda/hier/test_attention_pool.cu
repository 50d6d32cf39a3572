// SPDX-License-Identifier: MIT
// CUDA hier/attention_pool.hpp: AttentionPool's and AttentionPoolLinear's shortening modules (causal and not) on the GPU
// against the CPU in float and GPU finite differences in double, workspace plan == use (the case harness of
// test/cuda/harness.cuh).
#include <doctest/doctest.h>

#include "cuda/compare.cuh"
#include "cuda/harness.cuh"
#include "cuda/hier/resample_cases.cuh"
#include "hseq/cuda.hpp"
#include "hseq/hier/attention_pool.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_harness;
using namespace hseq::test_cuda_hier;

TEST_CASE("cuda modules: AttentionPool shortening (gradcheck)") {
  mm_both(ShortenCase<hier::AttentionPool>({.dim = 32, .factor = 4, .heads = 4, .mlp_hidden = 64}, 2, 32),
          ShortenCase<hier::AttentionPool>({.dim = 4, .factor = 3, .heads = 2, .mlp_hidden = 6}, 2, 6), 26);
  mm_compare(ShortenCase<hier::AttentionPool>({.dim = 64, .factor = 3, .heads = 2, .mlp_hidden = 64}, 2, 36), 39);
  // non-causal (bidirectional encoder): mask none
  mm_both(ShortenCase<hier::AttentionPool>({.dim = 32, .factor = 4, .heads = 4, .mlp_hidden = 64, .causal = false}, 2, 32),
          ShortenCase<hier::AttentionPool>({.dim = 4, .factor = 3, .heads = 2, .mlp_hidden = 6, .causal = false}, 2, 6),
          43);
}

TEST_CASE("cuda modules: AttentionPoolLinear shortening (queries from linear pooling; gradcheck)") {
  mm_both(ShortenCase<hier::AttentionPoolLinear>({.dim = 32, .factor = 4, .heads = 4, .mlp_hidden = 64}, 2, 32),
          ShortenCase<hier::AttentionPoolLinear>({.dim = 4, .factor = 3, .heads = 2, .mlp_hidden = 6}, 2, 6), 47);
  mm_compare(ShortenCase<hier::AttentionPoolLinear>({.dim = 64, .factor = 3, .heads = 2, .mlp_hidden = 64}, 2, 36), 48);
  mm_both(ShortenCase<hier::AttentionPoolLinear>(
              {.dim = 32, .factor = 4, .heads = 4, .mlp_hidden = 64, .causal = false}, 2, 32),
          ShortenCase<hier::AttentionPoolLinear>({.dim = 4, .factor = 3, .heads = 2, .mlp_hidden = 6, .causal = false},
                                                 2, 6),
          49);
}

}  // namespace HSEQ_TEST_UNIT
