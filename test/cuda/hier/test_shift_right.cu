// SPDX-License-Identifier: MIT
// CUDA hier/shift_right.hpp: ShiftRight on the GPU against the CPU in float and GPU finite differences in double,
// workspace plan == use (the case harness of test/cuda/harness.cuh).
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <string>

#include "cuda/compare.cuh"
#include "cuda/harness.cuh"
#include "hseq/cuda.hpp"
#include "hseq/hier/shift_right.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_harness;

namespace {

struct ShiftCase : MmCase {
  std::int64_t shift;
  ShiftCase(std::int64_t b, std::int64_t t, std::int64_t d, std::int64_t s) : shift(s) {
    name = "ShiftRight(" + std::to_string(s) + ")";
    add_in("x", Shape{b, t, d});
    add_out(Shape{b, t, d});
  }
  template <class B, class T>
  auto make() const {
    using M = hier::ShiftRight<B, T>;
    return std::make_unique<M>(typename M::Config{.shift = shift});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(in[0][0], in[0][1]) + m.backward_workspace(in[0][0], in[0][1]);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], io.out[0], a);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], a);
  }
};

}  // namespace

TEST_CASE("cuda modules: ShiftRight (gradcheck)") {
  mm_both(ShiftCase(2, 20, 32, 3), ShiftCase(2, 5, 3, 2), 22);
  mm_both(ShiftCase(2, 9, 32, 0), ShiftCase(2, 4, 3, 0), 23);
}

}  // namespace HSEQ_TEST_UNIT
