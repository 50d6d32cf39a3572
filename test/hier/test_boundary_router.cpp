// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "hseq/hier/boundary_router.hpp"
#include "hseq/nn/module.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

TEST_CASE("boundary_router: the rule kind picks the router, whose parameters, probabilities and steps it forwards") {
  cpu::Context ctx;
  std::int64_t const d = 4, bsz = 2, len = 6;
  using R = hier::BoundaryRouter<cpu, double>;
  auto x = test::random_tensor<double>(Shape{bsz, len, d}, 3, 1.0);
  for (auto kind : {hier::ByteRule::Kind::kRouter, hier::ByteRule::Kind::kMlp}) {
    bool mlp = kind == hier::ByteRule::Kind::kMlp;
    CAPTURE(mlp);
    R r({kind, d});
    CHECK(r.is_mlp() == mlp);
    nn::ParamStore<cpu, double> ps(r);
    std::vector<std::string> names;
    for (auto const& e : ps.entries()) names.push_back(e.name);
    CHECK(names == (mlp ? std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
                        : std::vector<std::string>{"qk.weight"}));
    test::randomize_params(ps, 2, 0.7);
    // The same probabilities as the router itself, with the same parameters.
    Workspace<cpu> ws(2 * r.forward_workspace(bsz, len) + r.backward_workspace(bsz, len));
    auto a = ws.arena();
    R::Saved s;
    r.forward(ctx, x.cview(), {}, s, a);
    CHECK(s.is_mlp == mlp);
    REQUIRE(s.p().size() == std::size_t(bsz * len));
    CHECK(s.row_len() == std::vector<std::int32_t>{std::int32_t(len), std::int32_t(len)});
    std::vector<double> direct;
    if (mlp) {
      hier::MlpRouter<cpu, double> m({d});
      nn::ParamStore<cpu, double> mps(m);
      std::copy(ps.values().begin(), ps.values().end(), mps.values().begin());
      hier::MlpRouter<cpu, double>::Saved ms;
      m.forward(ctx, x.cview(), {}, ms, a);
      direct = ms.p;
    } else {
      hier::CosineRouter<cpu, double> c({d});
      nn::ParamStore<cpu, double> cps(c);
      std::copy(ps.values().begin(), ps.values().end(), cps.values().begin());
      hier::CosineRouter<cpu, double>::Saved cs;
      c.forward(ctx, x.cview(), {}, cs, a);
      direct = cs.p;
    }
    CHECK(direct == s.p());
    // Steps through the wrapper give the forward's probabilities.
    auto st = r.make_step_state(bsz);
    Workspace<cpu> wst(r.step_workspace());
    for (std::int64_t t = 0; t < len; ++t)
      for (std::int64_t b = 0; b < bsz; ++b) {
        auto sa = wst.arena();
        double p = r.step(ctx, st, b, View<double const, HostSpace>(x.data() + (b * len + t) * d, Shape{1, 1, d}), sa);
        CHECK(p == doctest::Approx(s.p()[std::size_t(b * len + t)]).epsilon(1e-14));
      }
    r.reset(st);
    auto sa = wst.arena();
    CHECK(r.step(ctx, st, 0, View<double const, HostSpace>(x.data() + 2 * d, Shape{1, 1, d}), sa) == 1.0);
    // Backward reaches the input and the parameters.
    Tensor<double, cpu> dx(Shape{bsz, len, d});
    std::vector<double> dp(std::size_t(bsz * len), 1.0);
    std::fill(ps.grads().begin(), ps.grads().end(), 0.0);
    r.backward(ctx, s, dp, dx.view(), a);
    double gx = 0, gp = 0;
    for (double v : dx.cview()) gx += std::abs(v);
    for (double v : ps.grads()) gp += std::abs(v);
    CHECK(gx > 0);
    CHECK(gp > 0);
  }
  CHECK_THROWS_WITH_AS(R({hier::ByteRule::Kind::kSpace, d}), doctest::Contains("not a learned router"), Error);
}

}  // namespace HSEQ_TEST_UNIT
