// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/nn/lstm.hpp"
#include "support/frozen_check.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using test::random_tensor;
using LstmD = nn::Lstm<cpu, double>;
using LstmF = nn::Lstm<cpu, float>;

TEST_CASE("gradcheck: Lstm (input, h0, c0, parameters; outputs and final h, c)") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 4, in = 3, h = 4;
  LstmD m({.input = in, .hidden = h});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 6);
  auto x = random_tensor(Shape{bsz, t, in}, 1), dx = random_tensor(Shape{bsz, t, in}, 0);
  auto h0 = random_tensor(Shape{bsz, h}, 3), dh0 = random_tensor(Shape{bsz, h}, 0);
  auto c0 = random_tensor(Shape{bsz, h}, 4), dc0 = random_tensor(Shape{bsz, h}, 0);
  auto r = random_tensor(Shape{bsz, t, h}, 2), rh = random_tensor(Shape{bsz, h}, 5), rc = random_tensor(Shape{bsz, h}, 7);
  Tensor<double, cpu> y(Shape{bsz, t, h}), hf(Shape{bsz, h}), cf(Shape{bsz, h});
  std::size_t plan = m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t);
  Workspace<cpu> ws(plan);
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), {h0.cview(), c0.cview()}, y.view(), {hf.view(), cf.view()}, a);
    return test::dot(y.cview(), r.cview()) + test::dot(hf.cview(), rh.cview()) + test::dot(cf.cview(), rc.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), {h0.cview(), c0.cview()}, y.view(), {hf.view(), cf.view()}, a);
    m.backward(ctx, s, r.cview(), {rh.cview(), rc.cview()}, dx.view(), {dh0.view(), dc0.view()}, a);
    CHECK(a.high_water() == plan);
  };
  test::GradCheck(ps)
      .input("x", x.view(), dx.view())
      .input("h0", h0.view(), dh0.view())
      .input("c0", c0.view(), dc0.view())
      .run(loss, grads);
}

TEST_CASE("lstm: one step matches the PyTorch equations") {
  cpu::Context ctx;
  LstmD m({.input = 2, .hidden = 2});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 8);
  auto x = random_tensor(Shape{1, 1, 2}, 1);
  auto h0 = random_tensor(Shape{1, 2}, 2), c0 = random_tensor(Shape{1, 2}, 3);
  Tensor<double, cpu> y(Shape{1, 1, 2}), cf(Shape{1, 2});
  Workspace<cpu> ws(m.forward_workspace(1, 1));
  auto a = ws.arena();
  m.forward(ctx, x.cview(), {h0.cview(), c0.cview()}, y.view(), {{}, cf.view()}, a);
  auto wih = ps.find("weight_ih").value, whh = ps.find("weight_hh").value;
  auto bih = ps.find("bias_ih").value, bhh = ps.find("bias_hh").value;
  auto sig = [](double v) { return 1 / (1 + std::exp(-v)); };
  for (int j = 0; j < 2; ++j) {
    auto pre = [&](int g) {
      int row = g * 2 + j;
      return bih[row] + bhh[row] + wih[row * 2] * x.data()[0] + wih[row * 2 + 1] * x.data()[1] +
             whh[row * 2] * h0.data()[0] + whh[row * 2 + 1] * h0.data()[1];
    };
    double i = sig(pre(0)), f = sig(pre(1)), g = std::tanh(pre(2)), o = sig(pre(3));
    double c = f * c0.data()[j] + i * g;
    CHECK(cf.data()[j] == doctest::Approx(c).epsilon(1e-12));
    CHECK(y.data()[j] == doctest::Approx(o * std::tanh(c)).epsilon(1e-12));
  }
}

TEST_CASE("lstm: bad shapes are reported") {
  cpu::Context ctx;
  LstmF m({.input = 2, .hidden = 3});
  nn::ParamStore<cpu, float> ps(m);
  Tensor<float, cpu> x(Shape{2, 3, 2}), y(Shape{2, 3, 3}), h0(Shape{2, 4});
  Workspace<cpu> ws(m.forward_workspace(2, 3));
  auto a = ws.arena();
  CHECK_THROWS_WITH_AS(m.forward(ctx, x.cview(), {h0.cview(), {}}, y.view(), {}, a), doctest::Contains("[2, 4]"), Error);
  CHECK_THROWS_AS(LstmF({.input = 2, .hidden = -1}), Error);
}

// ---- Ragged batches: per-sequence lengths ----

TEST_CASE("gradcheck: Lstm with ragged lengths (input, h0, c0, parameters)") {
  cpu::Context ctx;
  std::int64_t const bsz = 3, t = 4, in = 3, h = 4;
  std::vector<std::int32_t> const lengths{4, 2, 0};
  LstmD m({.input = in, .hidden = h});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 6);
  auto x = random_tensor(Shape{bsz, t, in}, 1), dx = random_tensor(Shape{bsz, t, in}, 0);
  auto h0 = random_tensor(Shape{bsz, h}, 3), dh0 = random_tensor(Shape{bsz, h}, 0);
  auto c0 = random_tensor(Shape{bsz, h}, 4), dc0 = random_tensor(Shape{bsz, h}, 0);
  auto r = random_tensor(Shape{bsz, t, h}, 2), rh = random_tensor(Shape{bsz, h}, 5), rc = random_tensor(Shape{bsz, h}, 7);
  Tensor<double, cpu> y(Shape{bsz, t, h}), hf(Shape{bsz, h}), cf(Shape{bsz, h});
  std::size_t plan = m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t);
  Workspace<cpu> ws(plan);
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), {h0.cview(), c0.cview()}, y.view(), {hf.view(), cf.view()}, a, lengths);
    return test::dot(y.cview(), r.cview()) + test::dot(hf.cview(), rh.cview()) + test::dot(cf.cview(), rc.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), {h0.cview(), c0.cview()}, y.view(), {hf.view(), cf.view()}, a, lengths);
    m.backward(ctx, s, r.cview(), {rh.cview(), rc.cview()}, dx.view(), {dh0.view(), dc0.view()}, a);
    CHECK(a.high_water() == plan);
  };
  test::GradCheck(ps)
      .input("x", x.view(), dx.view())
      .input("h0", h0.view(), dh0.view())
      .input("c0", c0.view(), dc0.view())
      .run(loss, grads);
}

namespace {
struct LstmRun {
  std::vector<double> y, hf, cf, dx, dh0, dc0, dparams;
};
LstmRun run_lstm(LstmD const& m, nn::ParamStore<cpu, double>& ps, Tensor<double, cpu> const& x,
                 Tensor<double, cpu> const& h0, Tensor<double, cpu> const& c0, std::vector<std::int32_t> const& lengths,
                 Tensor<double, cpu> const& r, Tensor<double, cpu> const& rh, Tensor<double, cpu> const& rc) {
  cpu::Context ctx;
  std::int64_t bsz = x.shape()[0], t = x.shape()[1], h = h0.shape()[1];
  Tensor<double, cpu> y(Shape{bsz, t, h}), hf(Shape{bsz, h}), cf(Shape{bsz, h}), dx(x.shape()), dh0(h0.shape()),
      dc0(c0.shape());
  Workspace<cpu> ws(m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t));
  ps.zero_grad(ctx);
  auto a = ws.arena();
  auto s = m.forward(ctx, x.cview(), {h0.cview(), c0.cview()}, y.view(), {hf.view(), cf.view()}, a, lengths);
  m.backward(ctx, s, r.cview(), {rh.cview(), rc.cview()}, dx.view(), {dh0.view(), dc0.view()}, a);
  auto vec = [](auto const& v) { return std::vector<double>(v.data(), v.data() + v.numel()); };
  auto g = ps.grads();
  return {vec(y), vec(hf), vec(cf), vec(dx), vec(dh0), vec(dc0), std::vector<double>(g.data, g.data + g.numel())};
}
}  // namespace

TEST_CASE("lstm: ragged lengths equal running each sequence alone on its valid steps") {
  std::int64_t const bsz = 3, t = 5, in = 3, h = 4;
  std::vector<std::int32_t> const lengths{5, 2, 0};
  LstmD m({.input = in, .hidden = h});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 8);
  auto x = random_tensor(Shape{bsz, t, in}, 1), h0 = random_tensor(Shape{bsz, h}, 2), c0 = random_tensor(Shape{bsz, h}, 5);
  auto r = random_tensor(Shape{bsz, t, h}, 3), rh = random_tensor(Shape{bsz, h}, 4), rc = random_tensor(Shape{bsz, h}, 6);
  LstmRun all = run_lstm(m, ps, x, h0, c0, lengths, r, rh, rc);
  for (std::int64_t b = 0; b < bsz; ++b) {
    CAPTURE(b);
    std::int64_t len = lengths[std::size_t(b)];
    std::vector<double> hf_ref(h0.data() + b * h, h0.data() + (b + 1) * h), cf_ref(c0.data() + b * h, c0.data() + (b + 1) * h);
    std::vector<double> dh0_ref(rh.data() + b * h, rh.data() + (b + 1) * h), dc0_ref(rc.data() + b * h, rc.data() + (b + 1) * h);
    if (len > 0) {  // reference: the unmasked module on sequence b's first len steps alone
      Tensor<double, cpu> xb(Shape{1, len, in}), h0b(Shape{1, h}), c0b(Shape{1, h}), rb(Shape{1, len, h}), rhb(Shape{1, h}),
          rcb(Shape{1, h});
      std::copy(x.data() + b * t * in, x.data() + (b * t + len) * in, xb.data());
      std::copy(h0.data() + b * h, h0.data() + (b + 1) * h, h0b.data());
      std::copy(c0.data() + b * h, c0.data() + (b + 1) * h, c0b.data());
      std::copy(r.data() + b * t * h, r.data() + (b * t + len) * h, rb.data());
      std::copy(rh.data() + b * h, rh.data() + (b + 1) * h, rhb.data());
      std::copy(rc.data() + b * h, rc.data() + (b + 1) * h, rcb.data());
      LstmRun one = run_lstm(m, ps, xb, h0b, c0b, {}, rb, rhb, rcb);
      for (std::int64_t i = 0; i < len * h; ++i)
        CHECK(all.y[std::size_t(b * t * h + i)] == doctest::Approx(one.y[std::size_t(i)]).epsilon(1e-13));
      for (std::int64_t i = 0; i < len * in; ++i)
        CHECK(all.dx[std::size_t(b * t * in + i)] == doctest::Approx(one.dx[std::size_t(i)]).epsilon(1e-12));
      hf_ref = one.hf;
      cf_ref = one.cf;
      dh0_ref = one.dh0;
      dc0_ref = one.dc0;
    }
    for (std::int64_t i = 0; i < h; ++i) {
      CHECK(all.hf[std::size_t(b * h + i)] == doctest::Approx(hf_ref[std::size_t(i)]).epsilon(1e-13));
      CHECK(all.cf[std::size_t(b * h + i)] == doctest::Approx(cf_ref[std::size_t(i)]).epsilon(1e-13));
      CHECK(all.dh0[std::size_t(b * h + i)] == doctest::Approx(dh0_ref[std::size_t(i)]).epsilon(1e-12));
      CHECK(all.dc0[std::size_t(b * h + i)] == doctest::Approx(dc0_ref[std::size_t(i)]).epsilon(1e-12));
    }
    for (std::int64_t i = len * h; i < t * h; ++i) CHECK(all.y[std::size_t(b * t * h + i)] == 0.0);
    for (std::int64_t i = len * in; i < t * in; ++i) CHECK(all.dx[std::size_t(b * t * in + i)] == 0.0);
  }
}

TEST_CASE("lstm: changing padded inputs beyond the lengths changes nothing (bit-identical)") {
  std::int64_t const bsz = 3, t = 6, in = 3, h = 4;
  std::vector<std::int32_t> const lengths{6, 3, 1};
  LstmD m({.input = in, .hidden = h});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 9);
  auto x = random_tensor(Shape{bsz, t, in}, 1), h0 = random_tensor(Shape{bsz, h}, 2), c0 = random_tensor(Shape{bsz, h}, 5);
  auto r = random_tensor(Shape{bsz, t, h}, 3), rh = random_tensor(Shape{bsz, h}, 4), rc = random_tensor(Shape{bsz, h}, 6);
  LstmRun base = run_lstm(m, ps, x, h0, c0, lengths, r, rh, rc);
  auto x2 = random_tensor(Shape{bsz, t, in}, 11, 3.0);
  auto r2 = random_tensor(Shape{bsz, t, h}, 12);
  for (std::int64_t b = 0; b < bsz; ++b) {
    std::int64_t len = lengths[std::size_t(b)];
    std::copy(x.data() + b * t * in, x.data() + (b * t + len) * in, x2.data() + b * t * in);
    std::copy(r.data() + b * t * h, r.data() + (b * t + len) * h, r2.data() + b * t * h);
  }
  LstmRun moved = run_lstm(m, ps, x2, h0, c0, lengths, r2, rh, rc);
  CHECK(moved.y == base.y);
  CHECK(moved.hf == base.hf);
  CHECK(moved.cf == base.cf);
  CHECK(moved.dh0 == base.dh0);
  CHECK(moved.dc0 == base.dc0);
  CHECK(moved.dparams == base.dparams);
  for (std::size_t i = 0; i < base.dx.size(); ++i) CHECK(moved.dx[i] == base.dx[i]);
  LstmRun leak0 = run_lstm(m, ps, x, h0, c0, {}, r, rh, rc), leak1 = run_lstm(m, ps, x2, h0, c0, {}, r, rh, rc);
  CHECK(leak0.cf != leak1.cf);
}

TEST_CASE("lstm: lengths out of range or of the wrong count are reported") {
  cpu::Context ctx;
  LstmD m({.input = 2, .hidden = 3});
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

TEST_CASE("lstm: frozen weights or biases get no gradient; dx, dh0 and dc0 are unchanged") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 4, in = 3, h = 4;
  LstmD m({.input = in, .hidden = h});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 6);
  auto x = random_tensor(Shape{bsz, t, in}, 1), h0 = random_tensor(Shape{bsz, h}, 3), c0 = random_tensor(Shape{bsz, h}, 4);
  auto r = random_tensor(Shape{bsz, t, h}, 2), rh = random_tensor(Shape{bsz, h}, 5), rc = random_tensor(Shape{bsz, h}, 7);
  Tensor<double, cpu> y(Shape{bsz, t, h}), hf(Shape{bsz, h}), cf(Shape{bsz, h});
  Tensor<double, cpu> dx(Shape{bsz, t, in}), dh0(Shape{bsz, h}), dc0(Shape{bsz, h});
  Workspace<cpu> ws(m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t));
  auto run = [&] {
    ps.zero_grad(ctx);
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), {h0.cview(), c0.cview()}, y.view(), {hf.view(), cf.view()}, a);
    m.backward(ctx, s, r.cview(), {rh.cview(), rc.cview()}, dx.view(), {dh0.view(), dc0.view()}, a);
    std::vector<double> all(dx.data(), dx.data() + dx.numel());
    all.insert(all.end(), dh0.data(), dh0.data() + dh0.numel());
    all.insert(all.end(), dc0.data(), dc0.data() + dc0.numel());
    return all;
  };
  frozen_check::check(ps, run, {"weight_ih", "weight_hh", "bias_ih", "bias_hh"});
}

}  // namespace HSEQ_TEST_UNIT
