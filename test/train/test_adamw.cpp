// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "hseq/core/state.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/train/adamw.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

TEST_CASE("adamw: matches the PyTorch AdamW recurrence, with decay only where the parameter asks") {
  cpu::Context ctx;
  nn::Linear<cpu, double> m({.in = 3, .out = 2});  // weight decays, bias does not
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 1);
  train::AdamW<cpu, double>::Config cfg{.lr = 0.01, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6, .weight_decay = 0.1};
  train::AdamW<cpu, double> opt(ctx, ps, cfg);
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
  cpu::Context ctx;
  using Opt = train::AdamW<cpu, float>;
  CHECK_THROWS_WITH_AS(Opt(ctx, ps, Opt::Config{.beta1 = 1.0}), doctest::Contains("betas"), Error);
  CHECK_THROWS_AS(Opt(ctx, ps, Opt::Config{.lr = -1}), Error);
}

TEST_CASE("adamw: visit_state names each parameter's moments and the step count, aliasing the state") {
  static_assert(StatefulPart<train::AdamW<cpu, float>>);
  cpu::Context ctx;
  nn::Linear<cpu, float> m({.in = 3, .out = 2});
  nn::ParamStore<cpu, float> ps(ctx, m, "fc.");
  train::AdamW<cpu, float> opt(ctx, ps, {});
  for (std::int64_t i = 0; i < ps.grads().numel(); ++i) ps.grads()[i] = float(i % 5) - 2.0f;
  opt.step(ctx);
  opt.step(ctx);

  std::vector<std::string> names;
  std::vector<Shape> shapes;
  std::int64_t step_seen = -1;
  opt.visit_state([&](std::string const& name, auto&& x) {
    names.push_back(name);
    if constexpr (std::is_same_v<std::remove_cvref_t<decltype(x)>, std::int64_t>) {
      step_seen = x;
      x = 41;  // a loader assigns through the reference
    } else {
      shapes.push_back(x.shape);
      // The views alias the optimizer's flat buffers at the parameter's offset.
      auto const& e = ps.entries()[(names.size() - 1) / 2];
      auto flat = name[0] == 'm' ? opt.first_moment() : opt.second_moment();
      CHECK(x.data == flat.data + e.offset);
      x[0] = 7.0f;
    }
  });
  CHECK(names == std::vector<std::string>{"m.fc.weight", "v.fc.weight", "m.fc.bias", "v.fc.bias", "step"});
  CHECK(shapes == std::vector<Shape>{Shape{2, 3}, Shape{2, 3}, Shape{2}, Shape{2}});
  CHECK(step_seen == 2);
  CHECK(opt.steps() == 41);
  CHECK(opt.first_moment()[ps.entries()[1].offset] == 7.0f);
  CHECK(opt.second_moment()[0] == 7.0f);

  // reset runs on the caller's context and clears moments and step.
  opt.reset(ctx);
  CHECK(opt.steps() == 0);
  for (std::int64_t i = 0; i < opt.first_moment().numel(); ++i) {
    REQUIRE(opt.first_moment()[i] == 0.0f);
    REQUIRE(opt.second_moment()[i] == 0.0f);
  }
}

TEST_CASE("adamw: a frozen parameter is skipped: value and moments untouched, no decay; the others update") {
  cpu::Context ctx;
  nn::Linear<cpu, double> m({.in = 3, .out = 2});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 1);
  train::AdamW<cpu, double> opt(ctx, ps, {.lr = 0.01, .weight_decay = 0.5});  // weight decays
  ps.set_frozen("weight", true);
  auto& w = ps.find("weight");
  auto& b = ps.find("bias");
  std::vector<double> w0(w.value.begin(), w.value.end()), b0(b.value.begin(), b.value.end());
  for (int step = 0; step < 2; ++step) {
    // A non-zero gradient even on the frozen parameter: the optimizer alone must skip it.
    for (std::int64_t i = 0; i < ps.grads().numel(); ++i) ps.grads()[i] = 0.3 + 0.1 * double(i % 3);
    opt.step(ctx);
  }
  auto const& ew = ps.entries()[0];
  REQUIRE(ew.name == "weight");
  for (std::int64_t i = 0; i < w.shape.numel(); ++i) {
    CHECK(w.value[i] == w0[std::size_t(i)]);
    CHECK(opt.first_moment()[ew.offset + i] == 0.0);
    CHECK(opt.second_moment()[ew.offset + i] == 0.0);
  }
  for (std::int64_t i = 0; i < b.shape.numel(); ++i) CHECK(b.value[i] != b0[std::size_t(i)]);
  // Unfrozen, it trains again.
  ps.set_frozen("weight", false);
  opt.step(ctx);
  for (std::int64_t i = 0; i < w.shape.numel(); ++i) CHECK(w.value[i] != w0[std::size_t(i)]);
}

TEST_CASE("adamw: lr_scale 0.5 halves a parameter's first update (exact first-step formula)") {
  cpu::Context ctx;
  nn::Linear<cpu, double> m({.in = 3, .out = 2});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 2);
  train::AdamW<cpu, double>::Config cfg{.lr = 0.01, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-3, .weight_decay = 0.2};
  train::AdamW<cpu, double> opt(ctx, ps, cfg);
  ps.set_lr_scale("weight", 0.5);
  std::vector<double> p0(ps.values().begin(), ps.values().end());
  for (std::int64_t i = 0; i < ps.grads().numel(); ++i) ps.grads()[i] = 0.05 * double(i % 4) - 0.07;
  double const lr = 0.02;  // the schedule's value for this step
  opt.step(ctx, lr);
  // First step: m = (1-b1) g, v = (1-b2) g^2, so m^ = g, v^ = g^2 and
  // p1 = p0 (1 - lr' wd) - lr' g / (|g| + eps) with lr' = lr * lr_scale.
  for (auto const& e : ps.entries()) {
    CAPTURE(e.name);
    double scale = e.name == "weight" ? 0.5 : 1.0;
    double wd = e.param->decay ? cfg.weight_decay : 0.0;
    for (std::int64_t i = 0; i < e.param->shape.numel(); ++i) {
      double p = p0[std::size_t(e.offset + i)], g = ps.grads()[e.offset + i];
      double want = p * (1 - lr * scale * wd) - lr * scale * g / (std::fabs(g) + cfg.eps);
      CHECK(e.param->value[i] == doctest::Approx(want).epsilon(1e-12));
      // The scaled update is half the unscaled one.
      double unscaled = p * (1 - lr * wd) - lr * g / (std::fabs(g) + cfg.eps);
      if (scale != 1.0) CHECK(e.param->value[i] - p == doctest::Approx(0.5 * (unscaled - p)).epsilon(1e-10));
    }
  }
}

}  // namespace HSEQ_TEST_UNIT
