// SPDX-License-Identifier: MIT
// CUDA ops/init.hpp: init_param (zeros, ones, uniform, normal) draws what the CPU draws.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "cuda/ops/op_checks.cuh"
#include "hseq/ops/init.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda;
using hseq::cuda;  // the backend, not libcu++'s namespace ::cuda

TEST_CASE_TEMPLATE("cuda parity: init_param zeros, ones, uniform and normal", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::uint64_t const seed = 0x1234'5678'9abc'def0ull, stream = 0x1'0000'0007ull;
  for (Shape s : {Shape{37, 70}, Shape{100003}}) {
    INFO("shape ", s);
    std::int64_t const n = s.numel();
    HostTensor<T> want(s);
    auto got_dev = to_device(gctx, filled<T>(s, nan_v<T>()));

    {  // zeros and ones
      ops::init_param<T>(cctx, want.view(), ops::InitSpec::zeros(), seed, stream);
      ops::init_param<T>(gctx, got_dev.view(), ops::InitSpec::zeros(), seed, stream);
      CHECK(bit_mismatches(to_host(gctx, got_dev), want) == 0);
      ops::init_param<T>(cctx, want.view(), ops::InitSpec::ones(), seed, stream);
      ops::init_param<T>(gctx, got_dev.view(), ops::InitSpec::ones(), seed, stream);
      CHECK(bit_mismatches(to_host(gctx, got_dev), want) == 0);
      CHECK(want.data()[n - 1] == T(1));
    }
    {  // uniform: bit-exact
      // The draw is exact in double and the affine map is one IEEE multiply of exact values, so
      // both sides round the same double: identical bits.
      ops::init_param<T>(cctx, want.view(), ops::InitSpec::uniform(0.05), seed, stream);
      ops::init_param<T>(gctx, got_dev.view(), ops::InitSpec::uniform(0.05), seed, stream);
      CHECK(bit_mismatches(to_host(gctx, got_dev), want) == 0);
    }
    {  // normal: within one float ulp (double: 1e-14 relative)
      // Box-Muller uses log and cos: CUDA's double log/cos are within 1-2 ulp of glibc's, so the
      // double values differ in the last bits; rounding to float then agrees except where the double
      // lies next to a float rounding boundary, which moves the result by exactly one float ulp.
      ops::init_param<T>(cctx, want.view(), ops::InitSpec::normal(0.02), seed, stream);
      ops::init_param<T>(gctx, got_dev.view(), ops::InitSpec::normal(0.02), seed, stream);
      auto got = to_host(gctx, got_dev);
      std::int64_t bad = 0;
      for (std::int64_t i = 0; i < n; ++i) {
        T g = got.data()[i], w = want.data()[i];
        if constexpr (std::is_same_v<T, float>) {
          bool ok = g == w || g == std::nextafter(w, std::numeric_limits<float>::infinity()) ||
                    g == std::nextafter(w, -std::numeric_limits<float>::infinity());
          bad += !ok;
        } else {
          bad += !(rel_diff(g, w) <= 1e-14);
        }
      }
      CHECK(bad == 0);
      // Sanity: the draws are normal with std 0.02 (not all equal, not zero).
      double sq = 0;
      for (std::int64_t i = 0; i < n; ++i) sq += double(got.data()[i]) * double(got.data()[i]);
      CHECK(std::sqrt(sq / double(n)) == doctest::Approx(0.02).epsilon(0.2));
    }
  }
}

}  // namespace HSEQ_TEST_UNIT
