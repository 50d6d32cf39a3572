// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hseq/hier/linear_pool.hpp"
#include "resample_check.hpp"

using namespace hseq;

TEST_CASE("gradcheck: LinearPoolShorten (input, projection)") {
  test::check_shorten<hier::LinearPoolShorten<cpu, double>>({.dim = 3, .factor = 2}, 2, 6);
}

TEST_CASE("linear_pool: one Linear over each group of k concatenated vectors") {
  cpu::Context ctx;
  hier::LinearPoolShorten<cpu, double> m({.dim = 2, .factor = 2});
  nn::ParamStore<cpu, double> ps(m);
  auto w = ps.find("proj.weight").value;  // [2, 4]
  for (int i = 0; i < 8; ++i) w[i] = i % 5 == 0 ? 1.0 : 0.0;  // rows pick input 0 and input 1 (of 4)
  Tensor<double, cpu> x(Shape{1, 2, 2}), y(Shape{1, 1, 2});
  for (int i = 0; i < 4; ++i) x.data()[i] = double(i + 1);
  Workspace<cpu> ws(0);
  auto a = ws.arena();
  m.forward(ctx, x.cview(), y.view(), a);
  CHECK(y.data()[0] == 1.0);
  CHECK(y.data()[1] == 2.0);
}
