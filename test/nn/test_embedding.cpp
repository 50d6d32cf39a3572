// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hseq/nn/embedding.hpp"
#include "support/gradcheck.hpp"

using namespace hseq;
using test::random_tensor;

TEST_CASE("gradcheck: Embedding (table, with repeated ids)") {
  cpu::Context ctx;
  nn::Embedding<cpu, double> m({.vocab = 7, .dim = 5});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 1);
  Tensor<std::int32_t, cpu> ids(Shape{2, 4});
  std::int32_t vals[] = {3, 1, 3, 6, 0, 3, 2, 1};
  std::copy(vals, vals + 8, ids.data());
  auto r = random_tensor(Shape{2, 4, 5}, 2);
  Tensor<double, cpu> y(Shape{2, 4, 5});
  Workspace<cpu> ws(0);
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, ids.cview(), y.view(), a);
    return test::dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, ids.cview(), y.view(), a);
    m.backward(ctx, s, r.cview(), a);
  };
  test::GradCheck(ps).run(loss, grads);
}

TEST_CASE("embedding module: gathers rows and rejects ids outside the table") {
  cpu::Context ctx;
  nn::Embedding<cpu, float> m({.vocab = 4, .dim = 2});
  nn::ParamStore<cpu, float> ps(m);
  auto t = ps.find("weight").value;
  for (int i = 0; i < 8; ++i) t[i] = float(i);
  Tensor<std::int32_t, cpu> ids(Shape{3});
  ids.data()[0] = 2, ids.data()[1] = 0, ids.data()[2] = 3;
  Tensor<float, cpu> y(Shape{3, 2});
  Workspace<cpu> ws(0);
  auto a = ws.arena();
  m.forward(ctx, ids.cview(), y.view(), a);
  CHECK(y.data()[0] == 4.f);
  CHECK(y.data()[1] == 5.f);
  CHECK(y.data()[2] == 0.f);
  CHECK(y.data()[5] == 7.f);
  ids.data()[1] = 4;
  CHECK_THROWS_WITH_AS(m.forward(ctx, ids.cview(), y.view(), a), doctest::Contains("id 4"), Error);
  ids.data()[1] = -1;
  CHECK_THROWS_AS(m.forward(ctx, ids.cview(), y.view(), a), Error);
}
