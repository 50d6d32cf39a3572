// SPDX-License-Identifier: MIT
// CUDA models/generate.hpp: generate() on the GPU (TransformerLm, Hourglass) returns the requested bytes,
// deterministically, and the CPU draws the same ones.
#include <doctest/doctest.h>

#include <string>

#include "cuda/compare.cuh"
#include "cuda/models/model_checks.cuh"
#include "hseq/cuda.hpp"
#include "hseq/hier/attention_pool.hpp"
#include "hseq/hier/attention_upsample.hpp"
#include "hseq/models/generate.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_models;

TEST_CASE("cuda models: generate() on the GPU returns the requested bytes, deterministically, as the CPU does") {
  LmSpec spec{.vocab = 256, .dim = 32, .heads = 4, .layers = 2, .context = 32};
  GpuCtx dctx;
  cpu::Context hctx;
  auto dm = spec.make<Gpu, float>();
  nn::ParamStore<Gpu, float> dps(dctx, *dm);
  dps.init(dctx, 1);
  auto hm = spec.make<cpu, float>();
  nn::ParamStore<cpu, float> hps(*hm);
  hps.init(hctx, 1);
  models::GenerateConfig g;
  g.max_bytes = 80;  // longer than the context: the cache slides
  g.sampler.seed = 3;
  std::string a = models::generate<Gpu, float>(dctx, *dm, "hello", g);
  CHECK(a.size() == 80);
  CHECK(models::generate<Gpu, float>(dctx, *dm, "hello", g) == a);
  // The CPU draws the same bytes: sampling inverts the CDF with one uniform per byte, and the logits
  // agree to ~1e-6, so a different byte would need a uniform within ~1e-6 of a CDF boundary (a
  // chance of ~1e-4 over 80 bytes).
  CHECK(models::generate<cpu, float>(hctx, *hm, "hello", g) == a);
  g.sampler.temperature = 0;  // greedy, with a prompt longer than the context
  CHECK(models::generate<Gpu, float>(dctx, *dm, std::string(50, 'x'), g).size() == 80);

  HgSpec<hier::AttentionPool, hier::AttentionUp> hg{"1@1 1@2 1@4 1@2 1@1", 256, 32, 4, 24, 64};
  auto dh = hg.make<Gpu, float>();
  nn::ParamStore<Gpu, float> dhps(dctx, *dh);
  dhps.init(dctx, 2);
  g.sampler.temperature = 1;
  g.max_bytes = 60;  // also longer than the context of 24
  std::string b = models::generate<Gpu, float>(dctx, *dh, "abc", g);
  CHECK(b.size() == 60);
  CHECK(models::generate<Gpu, float>(dctx, *dh, "abc", g) == b);
}

}  // namespace HSEQ_TEST_UNIT
