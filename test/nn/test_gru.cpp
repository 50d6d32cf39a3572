// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/nn/gru.hpp"
#include "support/frozen_check.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using test::random_tensor;
using GruD = nn::Gru<cpu, double>;
using GruF = nn::Gru<cpu, float>;

TEST_CASE("gradcheck: Gru (input, initial state, parameters; outputs and final state)") {
  cpu::Context ctx;
  for (bool bias : {true, false}) {
    CAPTURE(bias);
    std::int64_t const bsz = 2, t = 4, in = 3, h = 5;
    GruD m({.input = in, .hidden = h, .bias = bias});
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 4);
    auto x = random_tensor(Shape{bsz, t, in}, 1), dx = random_tensor(Shape{bsz, t, in}, 0);
    auto h0 = random_tensor(Shape{bsz, h}, 3), dh0 = random_tensor(Shape{bsz, h}, 0);
    auto r = random_tensor(Shape{bsz, t, h}, 2), rf = random_tensor(Shape{bsz, h}, 5);
    Tensor<double, cpu> y(Shape{bsz, t, h}), hf(Shape{bsz, h});
    std::size_t plan = m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t);
    Workspace<cpu> ws(plan);
    // L = <y, r> + <h_final, rf>: checks both the output and the final-state gradient paths.
    auto loss = [&] {
      auto a = ws.arena();
      m.forward(ctx, x.cview(), h0.cview(), y.view(), hf.view(), a);
      return test::dot(y.cview(), r.cview()) + test::dot(hf.cview(), rf.cview());
    };
    auto grads = [&] {
      auto a = ws.arena();
      auto s = m.forward(ctx, x.cview(), h0.cview(), y.view(), hf.view(), a);
      m.backward(ctx, s, r.cview(), rf.cview(), dx.view(), dh0.view(), a);
      CHECK(a.high_water() == plan);
    };
    test::GradCheck(ps).input("x", x.view(), dx.view()).input("h0", h0.view(), dh0.view()).run(loss, grads);
  }
}

TEST_CASE("gru: one step matches the PyTorch equations") {
  cpu::Context ctx;
  GruD m({.input = 2, .hidden = 3});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 8);
  auto x = random_tensor(Shape{1, 1, 2}, 1);
  auto h0 = random_tensor(Shape{1, 3}, 2);
  Tensor<double, cpu> y(Shape{1, 1, 3});
  Workspace<cpu> ws(m.forward_workspace(1, 1));
  auto a = ws.arena();
  m.forward(ctx, x.cview(), h0.cview(), y.view(), {}, a);
  auto wih = ps.find("weight_ih").value, whh = ps.find("weight_hh").value;
  auto bih = ps.find("bias_ih").value, bhh = ps.find("bias_hh").value;
  auto sig = [](double v) { return 1 / (1 + std::exp(-v)); };
  for (int j = 0; j < 3; ++j) {
    auto gi = [&](int g) { return bih[g * 3 + j] + wih[(g * 3 + j) * 2] * x.data()[0] + wih[(g * 3 + j) * 2 + 1] * x.data()[1]; };
    auto gh = [&](int g) {
      double s = bhh[g * 3 + j];
      for (int k = 0; k < 3; ++k) s += whh[(g * 3 + j) * 3 + k] * h0.data()[k];
      return s;
    };
    double r = sig(gi(0) + gh(0)), z = sig(gi(1) + gh(1)), n = std::tanh(gi(2) + r * gh(2));
    CHECK(y.data()[j] == doctest::Approx((1 - z) * n + z * h0.data()[j]).epsilon(1e-12));
  }
}

TEST_CASE("gru: empty initial state means zeros; bad shapes are reported") {
  cpu::Context ctx;
  GruF m({.input = 2, .hidden = 3});
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 1);
  auto x = random_tensor<float>(Shape{2, 3, 2}, 1);
  Tensor<float, cpu> y1(Shape{2, 3, 3}), y2(Shape{2, 3, 3});
  auto zeros = test::filled_tensor<float>(Shape{2, 3}, 0.f);
  Workspace<cpu> ws(m.forward_workspace(2, 3));
  auto a = ws.arena();
  m.forward(ctx, x.cview(), {}, y1.view(), {}, a);
  a.reset();
  m.forward(ctx, x.cview(), zeros.cview(), y2.view(), {}, a);
  for (std::int64_t i = 0; i < y1.numel(); ++i) CHECK(y1.data()[i] == y2.data()[i]);
  Tensor<float, cpu> bad(Shape{2, 3, 4});
  a.reset();
  CHECK_THROWS_WITH_AS(m.forward(ctx, bad.cview(), {}, y1.view(), {}, a), doctest::Contains("[2, 3, 4]"), Error);
  CHECK_THROWS_AS(GruF({.input = 0, .hidden = 3}), Error);
}

// ---- Ragged batches: per-sequence lengths ----

TEST_CASE("gradcheck: Gru with ragged lengths (input, initial state, parameters)") {
  cpu::Context ctx;
  std::int64_t const bsz = 3, t = 4, in = 3, h = 5;
  std::vector<std::int32_t> const lengths{4, 2, 0};
  GruD m({.input = in, .hidden = h});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 4);
  auto x = random_tensor(Shape{bsz, t, in}, 1), dx = random_tensor(Shape{bsz, t, in}, 0);
  auto h0 = random_tensor(Shape{bsz, h}, 3), dh0 = random_tensor(Shape{bsz, h}, 0);
  auto r = random_tensor(Shape{bsz, t, h}, 2), rf = random_tensor(Shape{bsz, h}, 5);
  Tensor<double, cpu> y(Shape{bsz, t, h}), hf(Shape{bsz, h});
  std::size_t plan = m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t);
  Workspace<cpu> ws(plan);
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), h0.cview(), y.view(), hf.view(), a, lengths);
    return test::dot(y.cview(), r.cview()) + test::dot(hf.cview(), rf.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), h0.cview(), y.view(), hf.view(), a, lengths);
    m.backward(ctx, s, r.cview(), rf.cview(), dx.view(), dh0.view(), a);
    CHECK(a.high_water() == plan);
  };
  test::GradCheck(ps).input("x", x.view(), dx.view()).input("h0", h0.view(), dh0.view()).run(loss, grads);
}

namespace {
struct GruRun {
  std::vector<double> y, hf, dx, dh0, dparams;
};
GruRun run_gru(GruD const& m, nn::ParamStore<cpu, double>& ps, Tensor<double, cpu> const& x,
               Tensor<double, cpu> const& h0, std::vector<std::int32_t> const& lengths,
               Tensor<double, cpu> const& r, Tensor<double, cpu> const& rf) {
  cpu::Context ctx;
  std::int64_t bsz = x.shape()[0], t = x.shape()[1], h = h0.shape()[1];
  Tensor<double, cpu> y(Shape{bsz, t, h}), hf(Shape{bsz, h}), dx(x.shape()), dh0(h0.shape());
  Workspace<cpu> ws(m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t));
  ps.zero_grad(ctx);
  auto a = ws.arena();
  auto s = m.forward(ctx, x.cview(), h0.cview(), y.view(), hf.view(), a, lengths);
  m.backward(ctx, s, r.cview(), rf.cview(), dx.view(), dh0.view(), a);
  auto vec = [](auto const& v) { return std::vector<double>(v.data(), v.data() + v.numel()); };
  auto g = ps.grads();
  return {vec(y), vec(hf), vec(dx), vec(dh0), std::vector<double>(g.data, g.data + g.numel())};
}
}  // namespace

TEST_CASE("gru: ragged lengths equal running each sequence alone on its valid steps") {
  std::int64_t const bsz = 3, t = 5, in = 3, h = 4;
  std::vector<std::int32_t> const lengths{5, 2, 0};
  GruD m({.input = in, .hidden = h});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 8);
  auto x = random_tensor(Shape{bsz, t, in}, 1), h0 = random_tensor(Shape{bsz, h}, 2);
  auto r = random_tensor(Shape{bsz, t, h}, 3), rf = random_tensor(Shape{bsz, h}, 4);
  GruRun all = run_gru(m, ps, x, h0, lengths, r, rf);
  for (std::int64_t b = 0; b < bsz; ++b) {
    CAPTURE(b);
    std::int64_t len = lengths[std::size_t(b)];
    std::vector<double> hf_ref(h0.data() + b * h, h0.data() + (b + 1) * h);
    if (len > 0) {  // reference: the unmasked module on sequence b's first len steps alone
      Tensor<double, cpu> xb(Shape{1, len, in}), h0b(Shape{1, h}), rb(Shape{1, len, h}), rfb(Shape{1, h});
      std::copy(x.data() + b * t * in, x.data() + (b * t + len) * in, xb.data());
      std::copy(h0.data() + b * h, h0.data() + (b + 1) * h, h0b.data());
      std::copy(r.data() + b * t * h, r.data() + (b * t + len) * h, rb.data());
      std::copy(rf.data() + b * h, rf.data() + (b + 1) * h, rfb.data());
      GruRun one = run_gru(m, ps, xb, h0b, {}, rb, rfb);
      for (std::int64_t i = 0; i < len * h; ++i) CHECK(all.y[std::size_t(b * t * h + i)] == doctest::Approx(one.y[std::size_t(i)]).epsilon(1e-13));
      for (std::int64_t i = 0; i < len * in; ++i)
        CHECK(all.dx[std::size_t(b * t * in + i)] == doctest::Approx(one.dx[std::size_t(i)]).epsilon(1e-12));
      for (std::int64_t i = 0; i < h; ++i) CHECK(all.dh0[std::size_t(b * h + i)] == doctest::Approx(one.dh0[std::size_t(i)]).epsilon(1e-12));
      hf_ref = one.hf;
    } else {  // nothing ran: dh0 is the final-state gradient
      for (std::int64_t i = 0; i < h; ++i) CHECK(all.dh0[std::size_t(b * h + i)] == rf.data()[b * h + i]);
    }
    for (std::int64_t i = 0; i < h; ++i) CHECK(all.hf[std::size_t(b * h + i)] == doctest::Approx(hf_ref[std::size_t(i)]).epsilon(1e-13));
    for (std::int64_t i = len * h; i < t * h; ++i) CHECK(all.y[std::size_t(b * t * h + i)] == 0.0);
    for (std::int64_t i = len * in; i < t * in; ++i) CHECK(all.dx[std::size_t(b * t * in + i)] == 0.0);
  }
}

TEST_CASE("gru: changing padded inputs beyond the lengths changes nothing (bit-identical)") {
  std::int64_t const bsz = 3, t = 6, in = 3, h = 4;
  std::vector<std::int32_t> const lengths{6, 3, 1};
  GruD m({.input = in, .hidden = h});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 9);
  auto x = random_tensor(Shape{bsz, t, in}, 1), h0 = random_tensor(Shape{bsz, h}, 2);
  auto r = random_tensor(Shape{bsz, t, h}, 3), rf = random_tensor(Shape{bsz, h}, 4);
  GruRun base = run_gru(m, ps, x, h0, lengths, r, rf);
  auto x2 = random_tensor(Shape{bsz, t, in}, 11, 3.0);  // different padding ...
  for (std::int64_t b = 0; b < bsz; ++b)                // ... same valid steps
    std::copy(x.data() + b * t * in, x.data() + (b * t + lengths[std::size_t(b)]) * in, x2.data() + b * t * in);
  auto r2 = random_tensor(Shape{bsz, t, h}, 12);  // output gradients at padded steps are ignored too
  for (std::int64_t b = 0; b < bsz; ++b)
    std::copy(r.data() + b * t * h, r.data() + (b * t + lengths[std::size_t(b)]) * h, r2.data() + b * t * h);
  GruRun moved = run_gru(m, ps, x2, h0, lengths, r2, rf);
  CHECK(moved.y == base.y);
  CHECK(moved.hf == base.hf);
  CHECK(moved.dh0 == base.dh0);
  CHECK(moved.dparams == base.dparams);
  for (std::size_t i = 0; i < base.dx.size(); ++i) CHECK(moved.dx[i] == base.dx[i]);  // padded rows: 0 == -0 allowed
  // Without lengths the padding does leak (the test can fail).
  GruRun leak0 = run_gru(m, ps, x, h0, {}, r, rf), leak1 = run_gru(m, ps, x2, h0, {}, r, rf);
  CHECK(leak0.hf != leak1.hf);
}

TEST_CASE("gru: lengths out of range or of the wrong count are reported") {
  cpu::Context ctx;
  GruD m({.input = 2, .hidden = 3});
  nn::ParamStore<cpu, double> ps(m);
  auto x = random_tensor(Shape{2, 4, 2}, 1);
  Tensor<double, cpu> y(Shape{2, 4, 3});
  Workspace<cpu> ws(m.forward_workspace(2, 4));
  auto fwd = [&](std::vector<std::int32_t> len) {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), {}, y.view(), {}, a, len);
  };
  CHECK_THROWS_WITH_AS(fwd({4, 5}), doctest::Contains("length 5 of sequence 1 outside [0, T = 4]"), Error);
  CHECK_THROWS_WITH_AS(fwd({-1, 2}), doctest::Contains("length -1 of sequence 0"), Error);
  CHECK_THROWS_WITH_AS(fwd({4}), doctest::Contains("1 sequence lengths for a batch of 2"), Error);
  CHECK_NOTHROW(fwd({0, 4}));
}

TEST_CASE("gru: frozen weights or biases get no gradient; dx and dh0 are unchanged") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 4, in = 3, h = 5;
  GruD m({.input = in, .hidden = h});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 4);
  auto x = random_tensor(Shape{bsz, t, in}, 1), h0 = random_tensor(Shape{bsz, h}, 3);
  auto r = random_tensor(Shape{bsz, t, h}, 2), rf = random_tensor(Shape{bsz, h}, 5);
  Tensor<double, cpu> y(Shape{bsz, t, h}), hf(Shape{bsz, h}), dx(Shape{bsz, t, in}), dh0(Shape{bsz, h});
  Workspace<cpu> ws(m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t));
  auto run = [&] {
    ps.zero_grad(ctx);
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), h0.cview(), y.view(), hf.view(), a);
    m.backward(ctx, s, r.cview(), rf.cview(), dx.view(), dh0.view(), a);
    std::vector<double> all(dx.data(), dx.data() + dx.numel());
    all.insert(all.end(), dh0.data(), dh0.data() + dh0.numel());
    return all;
  };
  frozen_check::check(ps, run, {"weight_ih", "weight_hh", "bias_ih", "bias_hh"});
}

}  // namespace HSEQ_TEST_UNIT
