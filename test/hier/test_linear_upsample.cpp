// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hseq/hier/linear_upsample.hpp"
#include "resample_check.hpp"

using namespace hseq;

TEST_CASE("gradcheck: LinearUpsample (input, projection)") {
  test::check_upsample<hier::LinearUpsample<cpu, double>, false>({.dim = 3, .factor = 2}, 2, 3);
}

TEST_CASE("linear_upsample: the k d outputs of one short vector become k full-rate vectors") {
  cpu::Context ctx;
  hier::LinearUpsample<cpu, double> m({.dim = 1, .factor = 2});
  nn::ParamStore<cpu, double> ps(m);
  auto w = ps.find("proj.weight").value;  // [2, 1]
  w[0] = 2.0, w[1] = -1.0;
  Tensor<double, cpu> y(Shape{1, 1, 1}), u(Shape{1, 2, 1});
  y.data()[0] = 3.0;
  Workspace<cpu> ws(0);
  auto a = ws.arena();
  m.forward(ctx, y.cview(), {}, u.view(), a);
  CHECK(u.data()[0] == 6.0);
  CHECK(u.data()[1] == -3.0);
}
