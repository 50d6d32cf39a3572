// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "hseq/nn/linear.hpp"
#include "hseq/train/adamw.hpp"
#include "support/gradcheck.hpp"

using namespace hseq;

TEST_CASE("adamw: matches the PyTorch AdamW recurrence, with decay only where the parameter asks") {
  cpu::Context ctx;
  nn::Linear<cpu, double> m({.in = 3, .out = 2});  // weight decays, bias does not
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 1);
  train::AdamW<cpu, double>::Config cfg{.lr = 0.01, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6, .weight_decay = 0.1};
  train::AdamW<cpu, double> opt(ps, cfg);
  // Reference state per parameter element.
  struct Ref {
    double p, m = 0, v = 0;
    bool decay;
  };
  std::vector<Ref> ref;
  for (auto const& e : ps.entries())
    for (std::int64_t i = 0; i < e.param->shape.numel(); ++i) ref.push_back({e.param->value[i], 0, 0, e.param->decay});
  for (int step = 1; step <= 3; ++step) {
    std::size_t k = 0;
    for (auto const& e : ps.entries())
      for (std::int64_t i = 0; i < e.param->shape.numel(); ++i, ++k) {
        double g = std::sin(1.0 + 0.3 * double(k) + step);
        e.param->grad[i] = g;
        Ref& r = ref[k];
        if (r.decay) r.p -= cfg.lr * cfg.weight_decay * r.p;
        r.m = cfg.beta1 * r.m + (1 - cfg.beta1) * g;
        r.v = cfg.beta2 * r.v + (1 - cfg.beta2) * g * g;
        double mhat = r.m / (1 - std::pow(cfg.beta1, step)), vhat = r.v / (1 - std::pow(cfg.beta2, step));
        r.p -= cfg.lr * mhat / (std::sqrt(vhat) + cfg.eps);
      }
    opt.step(ctx);
    std::size_t j = 0;
    for (auto const& e : ps.entries())
      for (std::int64_t i = 0; i < e.param->shape.numel(); ++i, ++j)
        REQUIRE(e.param->value[i] == doctest::Approx(ref[j].p).epsilon(1e-12));
  }
  CHECK(opt.steps() == 3);
}

TEST_CASE("adamw: invalid hyper-parameters are rejected by name") {
  nn::Linear<cpu, float> m({.in = 2, .out = 2});
  nn::ParamStore<cpu, float> ps(m);
  using Opt = train::AdamW<cpu, float>;
  CHECK_THROWS_WITH_AS(Opt(ps, Opt::Config{.beta1 = 1.0}), doctest::Contains("betas"), Error);
  CHECK_THROWS_AS(Opt(ps, Opt::Config{.lr = -1}), Error);
}
