// SPDX-License-Identifier: MIT
// CUDA comm/cuda_nccl.hpp: comm::Nccl's collectives in a clique of one GPU, and a Trainer over it
// against the default one-process trainer. A clique of several processes needs a GPU for each
// (NCCL does not put two ranks on one device): not tested here.
// Compiled only where NCCL is found (HSEQ_TEST_NCCL).
#include <doctest/doctest.h>

#if defined(HSEQ_TEST_NCCL)

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/compare.cuh"
#include "cuda/models/model_checks.cuh"
#include "hseq/comm/cuda_nccl.hpp"
#include "hseq/cuda.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/train/trainer.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_models;

namespace {
comm::Nccl one_gpu_clique() {
  ncclUniqueId id{};
  REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  return comm::Nccl(id, 0, 1);
}
}  // namespace

static_assert(comm::Communicator<comm::Nccl, Gpu>);

TEST_CASE("cuda comm::Nccl: a clique of one keeps its data, broadcasts, gathers and sums host values") {
  GpuCtx ctx;
  comm::Nccl c = one_gpu_clique();
  CHECK(c.rank() == 0);
  CHECK(c.size() == 1);
  std::vector<float> host = {1.5f, -2.0f, 3.25f};
  Tensor<float, Gpu> d(Shape{3});
  Gpu::upload<float>(ctx, d.data(), host.data(), host.size());
  c.all_reduce_sum(ctx, d.data(), 3);
  c.broadcast(ctx, d.data(), 3, 0);
  std::vector<float> back(3);
  Gpu::download<float>(ctx, back.data(), d.data(), 3);
  CHECK(back == host);
  double v[2] = {0.25, 4.0};
  c.host_all_reduce_sum(v, 2);
  CHECK(v[0] == 0.25);
  CHECK(v[1] == 4.0);
  std::uint64_t out = 0;
  c.host_all_gather(42, &out);
  CHECK(out == 42);
  c.barrier();
  CHECK_THROWS(c.broadcast(ctx, d.data(), 3, 1));
}

TEST_CASE("cuda comm::Nccl: a Trainer over a clique of one GPU takes the default trainer's steps") {
  using LmG = models::TransformerLm<Gpu, float>;
  std::string text;
  for (int i = 0; i < 300; ++i) text += "the quick brown fox " + std::to_string(i % 17) + " jumps over the lazy dog.\n";
  auto data = io::TextDataset::from_string(text, "corpus", 0.1);
  LmSpec spec{.vocab = 256, .dim = 32, .heads = 4, .layers = 2, .context = 32};
  train::TrainerConfig tc;
  tc.batch = 4;
  tc.seq_len = 32;
  tc.steps = 4;
  tc.warmup = 2;
  tc.eval_every = 0;
  GpuCtx ctx;
  comm::Nccl clique = one_gpu_clique();
  auto m1 = spec.make<Gpu, float>();
  nn::ParamStore<Gpu, float> p1(ctx, *m1);
  p1.init(ctx, 7);
  train::Trainer<Gpu, float, LmG, train::RandomCrops, comm::Nccl> t1(ctx, *m1, p1, data, tc, clique);
  auto m2 = spec.make<Gpu, float>();
  nn::ParamStore<Gpu, float> p2(ctx, *m2);
  p2.init(ctx, 7);
  train::Trainer<Gpu, float, LmG> t2(ctx, *m2, p2, data, tc);
  for (int i = 0; i < 4; ++i) CHECK(t1.step(ctx) == t2.step(ctx));
}

}  // namespace HSEQ_TEST_UNIT

#endif  // HSEQ_TEST_NCCL
