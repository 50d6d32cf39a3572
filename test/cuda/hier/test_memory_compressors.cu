// SPDX-License-Identifier: MIT
// CUDA hier/memory_compressors.hpp: the Compressive Transformer's compression modules on the GPU against the
// CPU in float and GPU finite differences in double (max, dilated convolution; mean and conv are the
// AvgPool / LinearPool modules, tested in test_avg_pool.cu / test_linear_pool.cu), and the most-used
// selection bit for bit.
#include <doctest/doctest.h>

#include <cstdint>
#include <span>
#include <vector>

#include "cuda/compare.cuh"
#include "cuda/harness.cuh"
#include "cuda/hier/resample_cases.cuh"
#include "cuda/support.cuh"
#include "hseq/cuda.hpp"
#include "hseq/hier/memory_compressors.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_harness;
using namespace hseq::test_cuda_hier;

TEST_CASE("cuda modules: memory compression by max pooling and by dilated convolutions (gradcheck)") {
  mm_both(ShortenCase<hier::MaxPool<3>>({.dim = 32, .factor = 3}, 2, 24),
          ShortenCase<hier::MaxPool<3>>({.dim = 3, .factor = 3}, 2, 6), 70);
  mm_both(ShortenCase<hier::DilatedConv<4>>({.dim = 32, .factor = 4}, 2, 24),
          ShortenCase<hier::DilatedConv<4>>({.dim = 3, .factor = 4}, 1, 8), 71);
  mm_both(ShortenCase<hier::DilatedConv<3>>({.dim = 32, .factor = 3}, 2, 24),
          ShortenCase<hier::DilatedConv<3>>({.dim = 3, .factor = 3}, 2, 6), 72);
}

TEST_CASE_TEMPLATE("cuda parity: most-used memory compression keeps the same rows as the CPU", T, float, double) {
  cpu::Context cctx;
  hseq::cuda::Context gctx;
  std::int64_t const bsz = 3, n = 24, d = 40, c = 4;
  hier::MostUsedCompress<cpu, T> hm({.dim = d, .factor = c});
  hier::MostUsedCompress<hseq::cuda, T> gm({.dim = d, .factor = c});
  auto old = test_cuda::random_normal<T>(Shape{bsz, n, d}, 80);
  auto gold = test_cuda::to_device(gctx, old);
  std::vector<double> usage(std::size_t(bsz * n));
  for (std::size_t i = 0; i < usage.size(); ++i) usage[i] = double((i * 7919) % 13);  // ties included
  Workspace<cpu> hws(hm.forward_workspace(bsz, n));
  Workspace<hseq::cuda> gws(gm.forward_workspace(bsz, n));
  auto ha = hws.arena();
  auto ga = gws.arena();
  test_cuda::HostTensor<T> y(Shape{bsz, n / c, d});
  test_cuda::DeviceTensor<T> gy(Shape{bsz, n / c, d});
  auto hs = hm.forward(cctx, old.cview(), std::span<double const>(usage), y.view(), ha);
  auto gs = gm.forward(gctx, gold.cview(), std::span<double const>(usage), gy.view(), ga);
  CHECK(test_cuda::bit_mismatches(test_cuda::to_host(gctx, gy), y) == 0);
  auto dy = test_cuda::random_normal<T>(Shape{bsz, n / c, d}, 81);
  auto gdy = test_cuda::to_device(gctx, dy);
  test_cuda::HostTensor<T> dold(Shape{bsz, n, d});
  test_cuda::DeviceTensor<T> gdold(Shape{bsz, n, d});
  hm.backward(cctx, hs, dy.cview(), dold.view(), ha);
  gm.backward(gctx, gs, gdy.cview(), gdold.view(), ga);
  CHECK(test_cuda::bit_mismatches(test_cuda::to_host(gctx, gdold), dold) == 0);  // one value per row
}

}  // namespace HSEQ_TEST_UNIT
