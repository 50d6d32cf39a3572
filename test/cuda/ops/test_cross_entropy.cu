// SPDX-License-Identifier: MIT
// CUDA ops/cross_entropy.hpp: the cross-entropy forward and backward (ignored rows, aliasing) match the CPU; a target
// out of the vocabulary throws, and the error does not stick.
#include <doctest/doctest.h>

#include <cstdint>

#include "cuda/ops/op_checks.cuh"
#include "hseq/ops/cross_entropy.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda;
using hseq::cuda;  // the backend, not libcu++'s namespace ::cuda

TEST_CASE_TEMPLATE("cuda parity: cross_entropy forward and backward with ignored rows", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  struct Size {
    std::int64_t rows, vocab;
  };
  for (Size sz : {Size{37, 300}, Size{7, 5003}}) {
    INFO("rows ", sz.rows, ", vocab ", sz.vocab);
    auto logits = random_normal<T>(Shape{sz.rows, sz.vocab}, 50, 3.0);
    HostTensor<std::int32_t> targets(Shape{sz.rows});
    for (std::int64_t i = 0; i < sz.rows; ++i)
      targets.data()[i] = std::int32_t(philox_uniform(51, 0, std::uint64_t(i)) * double(sz.vocab));
    targets.data()[0] = std::int32_t(sz.vocab - 1);  // the last class
    targets.data()[1] = -1;                          // ignored
    targets.data()[sz.rows - 1] = -7;                // any negative target is ignored
    if (sz.rows > 10) targets.data()[5] = -1;
    auto glogits = to_device(gctx, logits);
    auto gtargets = to_device(gctx, targets);

    auto losses = filled<T>(Shape{sz.rows}, nan_v<T>());
    auto glosses = to_device(gctx, losses);
    std::int64_t const counted = ops::cross_entropy_forward<T>(cctx, logits.cview(), targets.cview(), losses.view());
    std::int64_t const gcounted = ops::cross_entropy_forward<T>(gctx, glogits.cview(), gtargets.cview(), glosses.view());
    CHECK(gcounted == counted);
    CHECK(counted == sz.rows - (sz.rows > 10 ? 3 : 2));
    auto hl = to_host(gctx, glosses);
    CHECK_NMSE(hl, losses, kTol<T>);
    CHECK(hl.data()[1] == T(0));
    CHECK(hl.data()[sz.rows - 1] == T(0));

    T const dloss = T(1.0 / double(counted));
    auto want = filled<T>(logits.shape(), nan_v<T>());
    auto gd = to_device(gctx, want);
    ops::cross_entropy_backward<T>(cctx, logits.cview(), targets.cview(), dloss, want.view());
    ops::cross_entropy_backward<T>(gctx, glogits.cview(), gtargets.cview(), dloss, gd.view());
    auto hd = to_host(gctx, gd);
    CHECK_NMSE(hd, want, kTol<T>);
    CHECK(nonzeros(hd.data() + 1 * sz.vocab, sz.vocab) == 0);  // ignored row
    // Documented aliasing: dlogits may alias logits.
    ops::cross_entropy_backward<T>(gctx, glogits.cview(), gtargets.cview(), dloss, glogits.view());
    CHECK_NMSE(to_host(gctx, glogits), want, kTol<T>);
  }
}

TEST_CASE_TEMPLATE("cuda parity: cross_entropy throws on a target >= vocabulary, then works again", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const rows = 37, vocab = 300;
  auto logits = random_normal<T>(Shape{rows, vocab}, 52);
  HostTensor<std::int32_t> bad(Shape{rows}), good(Shape{rows});
  for (std::int64_t i = 0; i < rows; ++i) good.data()[i] = bad.data()[i] = std::int32_t((i * 7) % vocab);
  bad.data()[20] = std::int32_t(vocab);
  auto glogits = to_device(gctx, logits);
  auto gbad = to_device(gctx, bad);
  auto ggood = to_device(gctx, good);
  HostTensor<T> losses(Shape{rows});
  DeviceTensor<T> glosses(Shape{rows}), gd(logits.shape());
  CHECK_THROWS_AS(ops::cross_entropy_forward<T>(cctx, logits.cview(), bad.cview(), losses.view()), hseq::Error);
  CHECK_THROWS_AS(ops::cross_entropy_forward<T>(gctx, glogits.cview(), gbad.cview(), glosses.view()), hseq::Error);
  CHECK_THROWS_AS(ops::cross_entropy_backward<T>(gctx, glogits.cview(), gbad.cview(), T(1), gd.view()), hseq::Error);
  // The error state does not stick: valid targets work afterwards.
  std::int64_t counted = ops::cross_entropy_forward<T>(cctx, logits.cview(), good.cview(), losses.view());
  std::int64_t gcounted = 0;
  CHECK_NOTHROW(gcounted = ops::cross_entropy_forward<T>(gctx, glogits.cview(), ggood.cview(), glosses.view()));
  CHECK(gcounted == counted);
  CHECK_NMSE(to_host(gctx, glosses), losses, kTol<T>);
  CHECK_NOTHROW(ops::cross_entropy_backward<T>(gctx, glogits.cview(), ggood.cview(), T(1), gd.view()));
}

}  // namespace HSEQ_TEST_UNIT
