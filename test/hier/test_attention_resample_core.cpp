// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/hier/attention_resample_core.hpp"
#include "hseq/hier/segment_bias.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using Core = hier::AttentionResampleCore<cpu, double>;

TEST_CASE("gradcheck: AttentionResampleCore (queries, keys/values, every parameter), under a mask and under a bias") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, tq = 3, tk = 5, d = 6, h = 2;
  hier::ResampleConfig cfg{.dim = d, .factor = 1, .heads = h, .mlp_hidden = 10};
  // A bias that gives query i the keys (i, i + 2] (a window no AttentionMask describes).
  Tensor<double, cpu> bias(Shape{bsz, h, tq, tk});
  for (std::int64_t n = 0; n < bias.numel(); ++n) {
    std::int64_t i = (n / tk) % tq, j = n % tk;
    bias.data()[n] = j > i && j <= i + 2 ? 0.0 : hier::kMaskedLogit;
  }
  for (bool biased : {false, true}) {
    CAPTURE(biased);
    Core m(cfg, nn::AttentionMask::rates(2, 1, 1, 0));
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 3, 0.4);
    auto q = test::random_tensor(Shape{bsz, tq, d}, 1), dq = test::random_tensor(Shape{bsz, tq, d}, 0);
    auto kv = test::random_tensor(Shape{bsz, tk, d}, 2), dkv = test::random_tensor(Shape{bsz, tk, d}, 0);
    auto r = test::random_tensor(Shape{bsz, tq, d}, 4);
    Tensor<double, cpu> out(Shape{bsz, tq, d});
    Core::CView b = biased ? bias.cview() : Core::CView{};
    std::size_t plan = m.forward_workspace(bsz, tq, tk) + m.backward_workspace(bsz, tq, tk);
    Workspace<cpu> ws(plan);
    auto loss = [&] {
      auto a = ws.arena();
      m.forward(ctx, q.cview(), kv.cview(), b, out.view(), a);
      return test::dot(out.cview(), r.cview());
    };
    auto grads = [&] {
      auto a = ws.arena();
      auto s = m.forward(ctx, q.cview(), kv.cview(), b, out.view(), a);
      CHECK(a.used() == m.forward_workspace(bsz, tq, tk));
      m.backward(ctx, s, r.cview(), dq.view(), dkv.view(), a);
      CHECK(a.high_water() == plan);
    };
    test::GradCheck(ps).input("q", q.view(), dq.view()).input("kv", kv.view(), dkv.view()).run(loss, grads);
  }
}

TEST_CASE("attention_resample_core: a cached query over appended keys/values equals the forward's row") {
  cpu::Context ctx;
  std::int64_t const tk = 4, d = 6;
  hier::ResampleConfig cfg{.dim = d, .factor = 1, .heads = 2, .mlp_hidden = 10};
  Core m(cfg, nn::AttentionMask::none());
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 5, 0.4);
  auto q = test::random_tensor(Shape{1, 1, d}, 1), kv = test::random_tensor(Shape{1, tk, d}, 2);
  Tensor<double, cpu> full(Shape{1, 1, d}), step(Shape{1, 1, d}), cache(Shape{1, tk + 2, 2 * d});
  Workspace<cpu> ws(m.forward_workspace(1, 1, tk) + m.step_workspace(1, tk + 2));
  auto a = ws.arena();
  m.forward(ctx, q.cview(), kv.cview(), {}, full.view(), a);
  for (std::int64_t j = 0; j < tk; ++j)
    m.append_kv(ctx, View<double const, HostSpace>(kv.data() + j * d, Shape{1, 1, d}), cache.view(), j, a);
  m.forward_cached(ctx, q.cview(), cache.view(), tk, step.view(), a);
  for (std::int64_t c = 0; c < d; ++c) CHECK(step.data()[c] == doctest::Approx(full.data()[c]).epsilon(1e-13));
  // The parameters keep the names attention pooling and upsampling have always given them.
  std::vector<std::string> names;
  for (auto const& e : ps.entries()) names.push_back(e.name);
  CHECK(names.front() == "attn.q.weight");
  CHECK(std::find(names.begin(), names.end(), "ln_ff.weight") != names.end());
  CHECK(names.back() == "mlp.fc2.bias");
}

}  // namespace HSEQ_TEST_UNIT
