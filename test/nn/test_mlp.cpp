// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hseq/nn/mlp.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using MlpF = nn::Mlp<cpu, float>;
using test::random_tensor;

TEST_CASE("gradcheck: Mlp (input, fc1, fc2)") {
  cpu::Context ctx;
  nn::Mlp<cpu, double> m({.dim = 4, .hidden = 6});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 9);
  auto x = random_tensor(Shape{2, 3, 4}, 1), dx = random_tensor(Shape{2, 3, 4}, 0);
  auto r = random_tensor(Shape{2, 3, 4}, 2);
  Tensor<double, cpu> y(Shape{2, 3, 4});
  std::size_t plan = m.forward_workspace(6) + m.backward_workspace(6);
  Workspace<cpu> ws(plan);
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a);
    return test::dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), a);
    m.backward(ctx, s, r.cview(), dx.view(), a);
    CHECK(a.high_water() == plan);
  };
  test::GradCheck(ps).input("x", x.view(), dx.view()).run(loss, grads);
  CHECK(ps.entries().size() == 4);
  CHECK(ps.entries()[0].name == "fc1.weight");
  CHECK(ps.entries()[3].name == "fc2.bias");
}

TEST_CASE("mlp: hidden defaults to 4 * dim and sizes are validated") {
  nn::Mlp<cpu, float> m({.dim = 8});
  CHECK(m.config().hidden == 32);
  CHECK_THROWS_AS(MlpF({.dim = 0}), Error);
}

}  // namespace HSEQ_TEST_UNIT
