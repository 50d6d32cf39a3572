// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hseq/hier/repeat_upsample.hpp"
#include "resample_check.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

TEST_CASE("gradcheck: RepeatUpsample (input)") {
  test::check_upsample<hier::RepeatUpsample<cpu, double>, false>({.dim = 3, .factor = 3}, 2, 2);
}

TEST_CASE("repeat_upsample: each short vector repeated k times") {
  cpu::Context ctx;
  hier::RepeatUpsample<cpu, float> m({.dim = 1, .factor = 3});
  Tensor<float, cpu> y(Shape{1, 2, 1}), u(Shape{1, 6, 1});
  y.data()[0] = 4, y.data()[1] = 7;
  Workspace<cpu> ws(0);
  auto a = ws.arena();
  m.forward(ctx, y.cview(), {}, u.view(), a);
  float expect[] = {4, 4, 4, 7, 7, 7};
  for (int i = 0; i < 6; ++i) CHECK(u.data()[i] == expect[i]);
}

}  // namespace HSEQ_TEST_UNIT
