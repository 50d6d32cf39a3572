// SPDX-License-Identifier: MIT
// CUDA ops/softmax.hpp: the plain and the masked softmax (every mask kind, a prefix, rows that see nothing), forward
// and backward, match the CPU; masked entries are exactly zero.
#include <doctest/doctest.h>

#include <cstdint>

#include "cuda/ops/op_checks.cuh"
#include "hseq/ops/attention_mask.hpp"
#include "hseq/ops/softmax.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda;
using hseq::cuda;  // the backend, not libcu++'s namespace ::cuda
using ops::AttentionMask;

TEST_CASE_TEMPLATE("cuda parity: plain softmax forward and backward", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  for (Shape s : {Shape{37, 300}, Shape{3, 2051}, Shape{4, 5, 1}}) {
    INFO("shape ", s);
    auto x = random_normal<T>(s, 30, 4.0);
    auto dx = to_device(gctx, x);
    HostTensor<T> y(s);
    DeviceTensor<T> gy(s);
    ops::softmax_forward<T>(cctx, x.cview(), y.view());
    ops::softmax_forward<T>(gctx, dx.cview(), gy.view());
    CHECK_NMSE(to_host(gctx, gy), y, kTol<T>);
    // In place (y aliases x).
    ops::softmax_forward<T>(gctx, dx.cview(), dx.view());
    CHECK_NMSE(to_host(gctx, dx), y, kTol<T>);

    auto dyv = random_normal<T>(s, 31);
    auto want = filled<T>(s, nan_v<T>());
    auto gdx = to_device(gctx, want);
    auto gyy = to_device(gctx, y);  // identical y on both sides
    auto gdy = to_device(gctx, dyv);
    ops::softmax_backward<T>(cctx, y.cview(), dyv.cview(), want.view());
    ops::softmax_backward<T>(gctx, gyy.cview(), gdy.cview(), gdx.view());
    CHECK_NMSE(to_host(gctx, gdx), want, kTol<T>);
  }
}

namespace {

struct SoftmaxCase {
  char const* name;
  AttentionMask mask;
  std::int64_t tq, tk, prefix;
};

}  // namespace

TEST_CASE_TEMPLATE("cuda parity: masked softmax forward and backward", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  SoftmaxCase const cases[] = {
      {"none", AttentionMask::none(), 37, 45, 0},
      {"causal, prefix 8", AttentionMask::causal(), 37, 50, 8},
      {"rates(1, 0, 3, 0), prefix 4", AttentionMask::rates(1, 0, 3, 0), 37, 17, 4},
      {"rates(3, 2, 1, 0), prefix 6", AttentionMask::rates(3, 2, 1, 0), 13, 45, 6},
      {"rates(1, -3, 1, 0): rows that see nothing", AttentionMask::rates(1, -3, 1, 0), 37, 37, 0},
      {"causal, Tk 300", AttentionMask::causal(), 300, 300, 0},
  };
  for (auto const& c : cases) {
    INFO("case ", c.name);
    Shape const s{2, 3, c.tq, c.tk};
    T const scale = T(0.3);
    auto x = random_normal<T>(s, 32, 3.0);
    auto dxx = to_device(gctx, x);
    auto y = filled<T>(s, nan_v<T>());
    auto gy = to_device(gctx, y);
    ops::softmax_forward<T>(cctx, x.cview(), y.view(), c.mask, scale, c.prefix);
    ops::softmax_forward<T>(gctx, dxx.cview(), gy.view(), c.mask, scale, c.prefix);
    auto got = to_host(gctx, gy);
    CHECK_NMSE(got, y, kTol<T>);

    auto dyv = random_normal<T>(s, 33);
    auto want_dx = filled<T>(s, nan_v<T>());
    auto gdx = to_device(gctx, want_dx);
    auto gyy = to_device(gctx, y);
    auto gdy = to_device(gctx, dyv);
    ops::softmax_backward<T>(cctx, y.cview(), dyv.cview(), want_dx.view(), c.mask, scale, c.prefix);
    ops::softmax_backward<T>(gctx, gyy.cview(), gdy.cview(), gdx.view(), c.mask, scale, c.prefix);
    auto got_dx = to_host(gctx, gdx);
    CHECK_NMSE(got_dx, want_dx, kTol<T>);

    // Masked entries are exactly zero in y and dx on the GPU; a row that sees nothing is all zero.
    std::int64_t masked_nonzero = 0, blind_rows = 0;
    for (std::int64_t r = 0; r < s.rows(); ++r) {
      std::int64_t vis = c.mask.visible(r % c.tq, c.tk, c.prefix);
      blind_rows += vis == 0;
      masked_nonzero += nonzeros(got.data() + r * c.tk + vis, c.tk - vis);
      masked_nonzero += nonzeros(got_dx.data() + r * c.tk + vis, c.tk - vis);
    }
    CHECK(masked_nonzero == 0);
    if (c.mask.kind == AttentionMask::Kind::kRate && c.mask.q_offset < 0) CHECK(blind_rows == 2 * 3 * 3);
  }
}

}  // namespace HSEQ_TEST_UNIT
