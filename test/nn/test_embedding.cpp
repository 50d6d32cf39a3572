// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "hseq/nn/embedding.hpp"
#include "support/frozen_check.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

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

TEST_CASE("embedding module: a frozen table gets no gradient") {
  cpu::Context ctx;
  nn::Embedding<cpu, double> m({.vocab = 7, .dim = 3});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 3);
  Tensor<std::int32_t, cpu> ids(Shape{5});
  for (std::int32_t i = 0; i < 5; ++i) ids.data()[i] = (i * 3) % 7;
  auto dout = random_tensor(Shape{5, 3}, 2);
  Tensor<double, cpu> out(Shape{5, 3});
  Workspace<cpu> ws(256);
  auto run = [&] {
    ps.zero_grad(ctx);
    auto a = ws.arena();
    auto s = m.forward(ctx, ids.cview(), out.view(), a);
    m.backward(ctx, s, dout.cview(), a);
    return std::vector<double>{};  // ids have no gradient
  };
  frozen_check::check(ps, run, {"weight"});
}

}  // namespace HSEQ_TEST_UNIT
