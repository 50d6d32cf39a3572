// SPDX-License-Identifier: MIT
// CUDA models/transformer_lm.hpp: TransformerLm on the GPU against the CPU, GPU finite differences in double (with tiny
// Hourglasses too), causality by perturbation, and cached logits equal to the full forward.
#include <doctest/doctest.h>

#include <cstdint>

#include "cuda/compare.cuh"
#include "cuda/models/model_checks.cuh"
#include "hseq/cuda.hpp"
#include "hseq/hier/attention_pool.hpp"
#include "hseq/hier/attention_upsample.hpp"
#include "hseq/hier/avg_pool.hpp"
#include "hseq/hier/linear_pool.hpp"
#include "hseq/hier/linear_upsample.hpp"
#include "hseq/models/hourglass.hpp"
#include "hseq/models/transformer_lm.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_models;

TEST_CASE("cuda models: TransformerLm on the GPU matches the CPU (tied/untied, learned/sinusoidal)") {
  for (bool tied : {true, false})
    for (auto pk : {nn::PositionKind::kLearned, nn::PositionKind::kSinusoidal}) {
      LmSpec spec;
      spec.tied = tied;
      spec.position = pk;
      mm_compare_model(spec, 2, 37, 31);
    }
  // Head size 32: the tensor-core float attention kernels (the specs above have head size 8).
  mm_compare_model(LmSpec{.vocab = 64, .dim = 64, .heads = 2, .layers = 2, .context = 72}, 2, 70, 32);
}

TEST_CASE("cuda models: gradcheck of tiny models on the GPU in double (TransformerLm, Hourglass)") {
  LmSpec lm{.vocab = 11, .dim = 8, .heads = 2, .layers = 2, .context = 6};
  mm_gradcheck_model(lm, 2, 5, 3, 8);
  lm.tied = false;
  lm.position = nn::PositionKind::kSinusoidal;
  mm_gradcheck_model(lm, 2, 5, 4, 8);
  mm_gradcheck_model(HgSpec<hier::AttentionPool, hier::AttentionUp>{"1@1 1@2 1@1", 11, 8, 2, 12, 8}, 2, 6, 5, 5);
  mm_gradcheck_model(HgSpec<hier::LinearPool, hier::LinearUp>{"1@1 1@3 1@1", 11, 8, 2, 12, 8}, 2, 6, 6, 5);
  // Two levels and a padded length (7 -> 8).
  mm_gradcheck_model(HgSpec<hier::AvgPool, hier::AttentionUp>{"1@1 1@2 1@4 1@2 1@1", 11, 8, 2, 12, 8}, 2, 7, 7, 5);
}

TEST_CASE("cuda models: TransformerLm on the GPU is causal by perturbation") {
  // Positions around 16, 32 and 64: the boundaries of the query and key tiles of the attention
  // kernels, whatever their size among these.
  // Head sizes 8 (simple kernels) and 32 (tensor-core float kernels, 64-row tiles).
  for (std::int64_t heads : {4, 1}) {
    LmSpec spec{.vocab = 64, .dim = 32, .heads = heads, .layers = 2, .context = 72};
    mm_causality(spec, 70, {0, 1, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 69}, 9);
  }
}

TEST_CASE("cuda models: TransformerLm cached logits on the GPU equal the full forward") {
  for (auto pk : {nn::PositionKind::kLearned, nn::PositionKind::kSinusoidal}) {
    LmSpec spec{.vocab = 64, .dim = 16, .heads = 2, .layers = 3, .context = 20, .position = pk, .tied = false};
    double rel = mm_cached_vs_full<double>(spec, 20, 7, 2);
    INFO(spec.name(), ", double: worst relative difference ", rel);
    CHECK(rel <= kCachedRelDouble);
  }
  LmSpec spec{.vocab = 64, .dim = 32, .heads = 4, .layers = 2, .context = 40};
  double rel = mm_cached_vs_full<float>(spec, 37, 9, 3);
  INFO(spec.name(), ", float: worst relative difference ", rel);
  CHECK(rel <= kCachedRelFloat);
}

}  // namespace HSEQ_TEST_UNIT
