// SPDX-License-Identifier: MIT
// nn::RelativeAttention (Transformer-XL relative attention): gradients of every input and parameter,
// a naive reference of the equations, causality, relative distances and clamping, the distance
// scale, cached steps (forward_step) against forward, bad inputs, the workspace plan and frozen
// parameters.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "hseq/nn/relative_attention.hpp"
#include "support/frozen_check.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using test::random_tensor;
using RelAttn = nn::RelativeAttention<cpu, double>;
using CViewD = View<double const, HostSpace>;
using MViewD = View<double, HostSpace>;

namespace {

// Gradient check of y = RelAttn(x, mem) against x, the memory (when M > 0) and every parameter,
// u, v and r included (randomize_params overwrites u and v, which start at zero).
void gradcheck_rel(std::int64_t tm, std::int64_t clamp_len, std::int64_t scale = 1) {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 4, d = 6;
  RelAttn m({.dim = d, .heads = 2, .clamp_len = clamp_len, .distance_scale = scale});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 11);
  auto x = random_tensor(Shape{bsz, t, d}, 1), dx = random_tensor(Shape{bsz, t, d}, 0);
  auto mem = random_tensor(Shape{bsz, tm, d}, 4), dmem = random_tensor(Shape{bsz, tm, d}, 0);
  auto r = random_tensor(Shape{bsz, t, d}, 2);
  Tensor<double, cpu> y(Shape{bsz, t, d});
  RelAttn::Dims dims{bsz, t, tm};
  std::size_t const plan = m.forward_workspace(dims) + m.backward_workspace(dims);
  Workspace<cpu> ws(plan);
  CViewD memv = tm > 0 ? mem.cview() : CViewD{};
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), memv, y.view(), a);
    return test::dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), memv, y.view(), a);
    m.backward(ctx, s, r.cview(), dx.view(), tm > 0 ? dmem.view() : MViewD{}, a);
    CHECK(a.high_water() == plan);
  };
  test::GradCheck gc(ps);
  gc.input("x", x.view(), dx.view());
  if (tm > 0) gc.input("mem", mem.view(), dmem.view());
  gc.run(loss, grads);
}

/// The equations of the file comment of nn/relative_attention.hpp, by explicit loops in long
/// double: y [B, T, d], and the position term of each logit pos [B, H, T, L]
/// ((q_i + v_h) . Rk[δ'] / sqrt(dh) for visible j, 0 for masked j), Rk[δ'] = Wr sinusoid(δ' scale).
struct Ref {
  std::vector<double> y, pos;
};
Ref reference(nn::ParamStore<cpu, double>& ps, std::int64_t heads, std::int64_t clamp_len, Tensor<double, cpu> const& x,
              Tensor<double, cpu> const& mem, std::int64_t scale = 1) {
  std::int64_t const bsz = x.shape()[0], t = x.shape()[1], d = x.shape()[2], tm = mem.shape()[1], l = tm + t;
  std::int64_t const dh = d / heads;
  using LD = long double;
  auto val = [&](std::string const& name) { return ps.find(name).value.data; };
  // out = W in + b, W [out_dim, d] (PyTorch layout), b may be null.
  auto lin = [&](std::string const& name, double const* in, std::int64_t out_dim, bool bias) {
    double const* w = val(name + ".weight");
    double const* b = bias ? val(name + ".bias") : nullptr;
    std::vector<LD> o(static_cast<std::size_t>(out_dim));
    for (std::int64_t r = 0; r < out_dim; ++r) {
      LD acc = b ? LD(b[r]) : LD(0);
      for (std::int64_t c = 0; c < d; ++c) acc += LD(w[r * d + c]) * LD(in[c]);
      o[std::size_t(r)] = acc;
    }
    return o;
  };
  // Rk[δ] = Wr sinusoid(min(δ, clamp_len) scale), sinusoid interleaved: sin at 2k, cos at 2k + 1.
  std::vector<std::vector<LD>> rk;
  for (std::int64_t delta = 0; delta < l; ++delta) {
    std::int64_t dc = (clamp_len > 0 ? std::min(delta, clamp_len) : delta) * scale;
    std::vector<double> sin_row(static_cast<std::size_t>(d));
    for (std::int64_t c = 0; c < d; ++c) {
      double angle = double(dc) / std::pow(10000.0, double(c - c % 2) / double(d));
      sin_row[std::size_t(c)] = c % 2 == 0 ? std::sin(angle) : std::cos(angle);
    }
    rk.push_back(lin("r", sin_row.data(), d, false));
  }
  double const* u = val("u");
  double const* v = val("v");
  LD const inv = 1.0L / std::sqrt(LD(dh));
  Ref out{std::vector<double>(std::size_t(bsz * t * d)), std::vector<double>(std::size_t(bsz * heads * t * l), 0.0)};
  for (std::int64_t b = 0; b < bsz; ++b) {
    std::vector<std::vector<LD>> kv;  // rows of [mem; x]
    for (std::int64_t j = 0; j < tm; ++j) kv.push_back(lin("kv", mem.data() + (b * tm + j) * d, 2 * d, true));
    for (std::int64_t j = 0; j < t; ++j) kv.push_back(lin("kv", x.data() + (b * t + j) * d, 2 * d, true));
    for (std::int64_t i = 0; i < t; ++i) {
      auto q = lin("q", x.data() + (b * t + i) * d, d, true);
      std::vector<double> att(std::size_t(d), 0.0);
      for (std::int64_t h = 0; h < heads; ++h) {
        std::int64_t const vis = tm + i + 1;  // causal over [mem; x]: j <= M + i
        std::vector<LD> logit(static_cast<std::size_t>(vis));
        LD mx = -1e300L, sum = 0;
        for (std::int64_t j = 0; j < vis; ++j) {
          LD content = 0, position = 0;
          auto const& rrow = rk[std::size_t(tm + i - j)];
          for (std::int64_t e = 0; e < dh; ++e) {
            std::size_t c = std::size_t(h * dh + e);
            content += (q[c] + LD(u[c])) * kv[std::size_t(j)][c];
            position += (q[c] + LD(v[c])) * rrow[c];
          }
          logit[std::size_t(j)] = (content + position) * inv;
          out.pos[std::size_t(((b * heads + h) * t + i) * l + j)] = double(position * inv);
          mx = std::max(mx, logit[std::size_t(j)]);
        }
        for (std::int64_t j = 0; j < vis; ++j) sum += std::exp(logit[std::size_t(j)] - mx);
        for (std::int64_t j = 0; j < vis; ++j) {
          LD p = std::exp(logit[std::size_t(j)] - mx) / sum;
          for (std::int64_t e = 0; e < dh; ++e)
            att[std::size_t(h * dh + e)] += double(p * kv[std::size_t(j)][std::size_t(d + h * dh + e)]);
        }
      }
      auto y = lin("out", att.data(), d, true);
      for (std::int64_t c = 0; c < d; ++c) out.y[std::size_t((b * t + i) * d + c)] = double(y[std::size_t(c)]);
    }
  }
  return out;
}

/// Runs forward on a fresh arena; returns y and copies the saved dense position term into `dense`.
std::vector<double> run_forward(RelAttn const& m, Tensor<double, cpu> const& x, Tensor<double, cpu> const& mem,
                                std::vector<double>* dense = nullptr) {
  cpu::Context ctx;
  std::int64_t const tm = mem.shape()[1];
  Tensor<double, cpu> y(x.shape());
  RelAttn::Dims dims{x.shape()[0], x.shape()[1], tm};
  Workspace<cpu> ws(m.forward_workspace(dims));
  auto a = ws.arena();
  auto s = m.forward(ctx, x.cview(), tm > 0 ? mem.cview() : CViewD{}, y.view(), a);
  if (dense) dense->assign(s.dense.data, s.dense.data + s.dense.numel());
  return std::vector<double>(y.data(), y.data() + y.numel());
}

}  // namespace

TEST_CASE("gradcheck: RelativeAttention (x, memory, every parameter incl. u, v, r)") {
  SUBCASE("M = 0") { gradcheck_rel(0, 0); }
  SUBCASE("M = 3") { gradcheck_rel(3, 0); }
  SUBCASE("M = 3, clamp_len 2 (distances 2..6 share R[2])") { gradcheck_rel(3, 2); }
  SUBCASE("M = 0, distance_scale 4") { gradcheck_rel(0, 0, 4); }
  SUBCASE("M = 3, clamp_len 2, distance_scale 3") { gradcheck_rel(3, 2, 3); }
}

TEST_CASE("RelativeAttention: forward matches a naive reference of the Transformer-XL equations") {
  std::int64_t const bsz = 2, t = 5, d = 8, heads = 2;
  struct Case {
    std::int64_t tm, clamp_len, scale = 1;
  };
  for (Case c : {Case{0, 0}, Case{4, 0}, Case{4, 3}, Case{0, 2}, Case{0, 0, 4}, Case{4, 0, 16}, Case{4, 3, 4}}) {
    CAPTURE(c.tm);
    CAPTURE(c.clamp_len);
    CAPTURE(c.scale);
    RelAttn m({.dim = d, .heads = heads, .clamp_len = c.clamp_len, .distance_scale = c.scale});
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 13, 0.7);
    auto x = random_tensor(Shape{bsz, t, d}, 1), mem = random_tensor(Shape{bsz, c.tm, d}, 3);
    auto y = run_forward(m, x, mem);
    Ref ref = reference(ps, heads, c.clamp_len, x, mem, c.scale);
    for (std::size_t i = 0; i < y.size(); ++i) CHECK(y[i] == doctest::Approx(ref.y[i]).epsilon(1e-10));
  }
}

TEST_CASE("RelativeAttention: causality by perturbation (memory visible to all, x row t only to rows >= t)") {
  std::int64_t const bsz = 2, t = 8, tm = 3, d = 8;
  RelAttn m({.dim = d, .heads = 2});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 5, 0.5);
  auto x = random_tensor(Shape{bsz, t, d}, 1), mem = random_tensor(Shape{bsz, tm, d}, 2);
  auto base = run_forward(m, x, mem);
  auto row_moved = [&](std::vector<double> const& y, std::int64_t b, std::int64_t i) {
    return std::memcmp(y.data() + (b * t + i) * d, base.data() + (b * t + i) * d, sizeof(double) * std::size_t(d)) != 0;
  };
  for (std::int64_t pos : {std::int64_t(0), std::int64_t(3), t - 1}) {
    CAPTURE(pos);
    auto x2 = random_tensor(Shape{bsz, t, d}, 1);
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t c = 0; c < d; ++c) x2.data()[(b * t + pos) * d + c] += 1.5;
    auto y = run_forward(m, x2, mem);
    for (std::int64_t b = 0; b < bsz; ++b) {
      std::int64_t before = 0, after = 0;
      for (std::int64_t i = 0; i < t; ++i) (i < pos ? before : after) += row_moved(y, b, i);
      CHECK(before == 0);  // rows < pos bit-identical
      CHECK(after > 0);    // and the perturbation does reach the output
      if (pos + 1 < t) CHECK(row_moved(y, b, pos + 1));  // through the key/value path alone
    }
  }
  // Every query sees the whole memory: changing its first row moves every output row.
  auto mem2 = random_tensor(Shape{bsz, tm, d}, 2);
  for (std::int64_t b = 0; b < bsz; ++b)
    for (std::int64_t c = 0; c < d; ++c) mem2.data()[b * tm * d + c] += 1.5;
  auto y = run_forward(m, x, mem2);
  for (std::int64_t b = 0; b < bsz; ++b)
    for (std::int64_t i = 0; i < t; ++i) CHECK(row_moved(y, b, i));
}

TEST_CASE("RelativeAttention: the position term depends on the distance only, and clamp_len clamps it") {
  std::int64_t const bsz = 2, t = 5, tm = 4, d = 8, heads = 2, l = tm + t;
  for (std::int64_t clamp_len : {std::int64_t(0), std::int64_t(3)}) {
    CAPTURE(clamp_len);
    RelAttn m({.dim = d, .heads = heads, .clamp_len = clamp_len});
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 21, 0.7);
    auto x = random_tensor(Shape{bsz, t, d}, 1), mem = random_tensor(Shape{bsz, tm, d}, 3);
    auto at = [&](std::vector<double> const& v, std::int64_t b, std::int64_t h, std::int64_t i, std::int64_t j) {
      return v[std::size_t(((b * heads + h) * t + i) * l + j)];
    };
    // With random queries: the module's dense bias is the reference's position term, 0 where masked.
    std::vector<double> dense;
    run_forward(m, x, mem, &dense);
    Ref ref = reference(ps, heads, clamp_len, x, mem);
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t i = 0; i < t; ++i)
          for (std::int64_t j = 0; j < l; ++j) {
            if (j > tm + i) {
              CHECK(at(dense, b, h, i, j) == 0.0);
              continue;
            }
            CHECK(at(dense, b, h, i, j) == doctest::Approx(at(ref.pos, b, h, i, j)).epsilon(1e-10));
          }
    // With q = 0 the position term is v_h . Rk[δ'] / sqrt(dh): a function of the head and the
    // distance δ = M + i - j only, constant for δ >= clamp_len.
    auto& wq = ps.find("q.weight");
    auto& bq = ps.find("q.bias");
    std::fill(wq.value.begin(), wq.value.end(), 0.0);
    std::fill(bq.value.begin(), bq.value.end(), 0.0);
    run_forward(m, x, mem, &dense);
    for (std::int64_t h = 0; h < heads; ++h) {
      std::vector<double> by_distance(static_cast<std::size_t>(l), 0.0);
      for (std::int64_t delta = 0; delta < l; ++delta) by_distance[std::size_t(delta)] = at(dense, 0, h, t - 1, tm + t - 1 - delta);
      for (std::int64_t b = 0; b < bsz; ++b)
        for (std::int64_t i = 0; i < t; ++i)
          for (std::int64_t j = 0; j <= tm + i; ++j) {
            double want = by_distance[std::size_t(tm + i - j)];
            CHECK(std::abs(at(dense, b, h, i, j) - want) <= 1e-14 * (1 + std::abs(want)));
          }
      double spread = 0;
      for (std::int64_t delta = 0; delta < l; ++delta) {
        double dv = std::abs(by_distance[std::size_t(delta)] - by_distance[0]);
        if (clamp_len > 0 && delta >= clamp_len) {
          double at_clamp = by_distance[std::size_t(clamp_len)];
          CHECK(std::abs(by_distance[std::size_t(delta)] - at_clamp) <= 1e-14 * (1 + std::abs(at_clamp)));
        }
        spread = std::max(spread, dv);
      }
      CHECK(spread > 1e-3);  // the term does vary with the distance, so the checks above can fail
      if (clamp_len > 0) CHECK(std::abs(by_distance[std::size_t(clamp_len)] - by_distance[std::size_t(clamp_len - 1)]) > 1e-6);
    }
  }
}

TEST_CASE("RelativeAttention: distance_scale s makes row distance δ read the unscaled table at δ s") {
  // With q = 0 the position term is v_h . Rk[δ] / sqrt(dh), a function of the distance alone. On the
  // same weights, the scale-s layer's term at row distance δ must be the unscaled layer's at δ s
  // (both take the sinusoid at the integer position δ s), and it must differ from the unscaled
  // layer's at δ (so the scale is not ignored).
  std::int64_t const bsz = 1, d = 8, heads = 2, s = 4, t = 5, t1 = (t - 1) * s + 1;
  RelAttn m1({.dim = d, .heads = heads}), ms({.dim = d, .heads = heads, .distance_scale = s});
  nn::ParamStore<cpu, double> p1(m1), ps(ms);
  test::randomize_params(p1, 23, 0.7);
  test::randomize_params(ps, 23, 0.7);  // the same draws: the same weights
  for (auto* p : {&p1, &ps}) {
    auto& wq = p->find("q.weight");
    auto& bq = p->find("q.bias");
    std::fill(wq.value.begin(), wq.value.end(), 0.0);
    std::fill(bq.value.begin(), bq.value.end(), 0.0);
  }
  Tensor<double, cpu> none(Shape{bsz, 0, d});
  std::vector<double> dense1, denses;
  run_forward(m1, random_tensor(Shape{bsz, t1, d}, 1), none, &dense1);
  run_forward(ms, random_tensor(Shape{bsz, t, d}, 2), none, &denses);
  // The last query's row holds every distance: term(δ) = dense[h, T-1, T-1-δ].
  auto term = [&](std::vector<double> const& v, std::int64_t tt, std::int64_t h, std::int64_t delta) {
    return v[std::size_t((h * tt + tt - 1) * tt + tt - 1 - delta)];
  };
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t delta = 0; delta < t; ++delta) {
      CAPTURE(h);
      CAPTURE(delta);
      double want = term(dense1, t1, h, delta * s), got = term(denses, t, h, delta);
      CHECK(std::abs(got - want) <= 1e-13 * (1 + std::abs(want)));
      if (delta > 0) CHECK(std::abs(got - term(dense1, t1, h, delta)) > 1e-6);
    }
}

namespace {
/// Rows of forward (no memory) over x [B, T, d] computed by forward_step from position 0 in chunks
/// of next(pos) positions over caches of `cap` positions; checks every step's scratch == its plan.
std::vector<double> run_steps(RelAttn const& m, Tensor<double, cpu> const& x, std::int64_t cap,
                              std::function<std::int64_t(std::int64_t)> const& next) {
  cpu::Context ctx;
  std::int64_t const bsz = x.shape()[0], t = x.shape()[1], d = x.shape()[2];
  Tensor<double, cpu> kv(Shape{bsz, cap, 2 * d}), rk(Shape{cap, d});
  Workspace<cpu> ws(m.step_workspace(bsz, t, t));
  std::vector<double> out(static_cast<std::size_t>(x.numel()));
  for (std::int64_t pos = 0; pos < t;) {
    std::int64_t const n = std::min(next(pos), t - pos);
    Tensor<double, cpu> xc(Shape{bsz, n, d}), yc(Shape{bsz, n, d});
    for (std::int64_t b = 0; b < bsz; ++b) std::copy_n(x.data() + (b * t + pos) * d, n * d, xc.data() + b * n * d);
    auto a = ws.arena();
    m.forward_step(ctx, xc.cview(), kv.view(), rk.view(), pos, yc.view(), a);
    CHECK(a.high_water() == m.step_workspace(bsz, n, pos));
    CHECK(a.used() == 0);
    for (std::int64_t b = 0; b < bsz; ++b) std::copy_n(yc.data() + b * n * d, n * d, out.data() + (b * t + pos) * d);
    pos += n;
  }
  return out;
}
}  // namespace

TEST_CASE("RelativeAttention: forward_step equals forward's rows (n = 1 and n > 1; scales; clamping)") {
  std::int64_t const bsz = 2, t = 10, d = 8, cap = 12;
  struct Case {
    std::int64_t clamp_len, scale;
  };
  for (Case c : {Case{0, 1}, Case{3, 1}, Case{0, 4}, Case{3, 4}}) {
    RelAttn m({.dim = d, .heads = 2, .clamp_len = c.clamp_len, .distance_scale = c.scale});
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 29, 0.6);
    auto x = random_tensor(Shape{bsz, t, d}, 5);
    Tensor<double, cpu> none(Shape{bsz, 0, d});
    auto full = run_forward(m, x, none);
    // A plan for the capacity covers every step: the scratch never shrinks as the position grows
    // (with clamping, fewer new distances are past the clamp, yet the plan must not drop).
    for (std::int64_t n : {1, 3})
      for (std::int64_t p = 0; p + 1 < cap; ++p) CHECK(m.step_workspace(bsz, n, p) <= m.step_workspace(bsz, n, p + 1));
    for (std::int64_t first : {1, 3, 10}) {  // a prefill of `first` positions, then chunks of 1 or 2
      for (std::int64_t chunk : {1, 2}) {
        INFO("clamp_len ", c.clamp_len, ", distance_scale ", c.scale, ", prefill ", first, ", then ", chunk);
        auto stepped = run_steps(m, x, cap, [&](std::int64_t pos) { return pos == 0 ? first : chunk; });
        double worst = 0;
        for (std::size_t i = 0; i < full.size(); ++i) worst = std::max(worst, std::abs(full[i] - stepped[i]));
        CHECK(worst <= 1e-12);
      }
    }
  }
}

TEST_CASE("RelativeAttention: bad configuration and shapes name what is wrong") {
  CHECK_THROWS_WITH_AS(RelAttn({.dim = 10, .heads = 3}), doctest::Contains("heads 3 do not divide the width 10"), Error);
  CHECK_THROWS_WITH_AS(RelAttn({.dim = 8, .heads = 2, .distance_scale = 0}), doctest::Contains("distance_scale 0"),
                       Error);
  CHECK_THROWS_WITH_AS(RelAttn({.dim = 8, .heads = 2, .clamp_len = -1}), doctest::Contains("clamp_len -1"), Error);
  CHECK_THROWS_AS(RelAttn({.dim = 0, .heads = 1}), Error);
  cpu::Context ctx;
  RelAttn m({.dim = 8, .heads = 2});
  nn::ParamStore<cpu, double> ps(m);
  Tensor<double, cpu> x(Shape{2, 5, 8}), y(Shape{2, 5, 8}), x6(Shape{2, 5, 6});
  Tensor<double, cpu> mem_w(Shape{2, 3, 6}), mem_b(Shape{1, 3, 8}), mem(Shape{2, 3, 8});
  Workspace<cpu> ws(1 << 20);
  auto a = ws.arena();
  CHECK_THROWS_WITH_AS(m.forward(ctx, x.cview(), mem_w.cview(), y.view(), a), doctest::Contains("memory [2, 3, 6]"),
                       Error);
  CHECK_THROWS_WITH_AS(m.forward(ctx, x.cview(), mem_b.cview(), y.view(), a), doctest::Contains("memory [1, 3, 8]"),
                       Error);
  CHECK_THROWS_WITH_AS(m.forward(ctx, x6.cview(), y.view(), a), doctest::Contains("x [2, 5, 6]"), Error);
  CHECK_THROWS_WITH_AS(m.forward(ctx, x.cview(), x6.view(), a), doctest::Contains("y [2, 5, 6]"), Error);
  auto s = m.forward(ctx, x.cview(), mem.cview(), y.view(), a);
  Tensor<double, cpu> dx(Shape{2, 5, 8}), dmem_bad(Shape{2, 2, 8});
  CHECK_THROWS_WITH_AS(m.backward(ctx, s, x6.cview(), dx.view(), MViewD{}, a), doctest::Contains("dy [2, 5, 6]"), Error);
  CHECK_THROWS_WITH_AS(m.backward(ctx, s, y.cview(), dx.view(), dmem_bad.view(), a), doctest::Contains("dmem [2, 2, 8]"),
                       Error);
  // forward_step: the Rk table must have the key/value cache's capacity, and the steps must fit it.
  Tensor<double, cpu> kv(Shape{2, 6, 16}), rk(Shape{6, 8}), rk_short(Shape{5, 8});
  CHECK_THROWS_WITH_AS(m.forward_step(ctx, x.cview(), kv.view(), rk_short.view(), 0, y.view(), a),
                       doctest::Contains("Rk cache [5, 8]"), Error);
  CHECK_THROWS_WITH_AS(m.forward_step(ctx, x.cview(), kv.view(), rk.view(), 2, y.view(), a),
                       doctest::Contains("positions [2, 7) exceed the cache of 6 positions"), Error);
}

TEST_CASE("RelativeAttention: workspace plan == use for forward and forward + backward") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 6, d = 8;
  struct Case {
    std::int64_t tm, clamp_len, scale = 1;
  };
  for (Case c : {Case{0, 0}, Case{3, 0}, Case{3, 2}, Case{0, 0, 4}, Case{3, 2, 4}}) {
    CAPTURE(c.tm);
    CAPTURE(c.clamp_len);
    CAPTURE(c.scale);
    RelAttn m({.dim = d, .heads = 2, .clamp_len = c.clamp_len, .distance_scale = c.scale});
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 3);
    auto x = random_tensor(Shape{bsz, t, d}, 1), mem = random_tensor(Shape{bsz, c.tm, d}, 2);
    auto dy = random_tensor(Shape{bsz, t, d}, 4);
    Tensor<double, cpu> y(Shape{bsz, t, d}), dx(Shape{bsz, t, d}), dmem(Shape{bsz, c.tm, d});
    RelAttn::Dims dims{bsz, t, c.tm};
    std::size_t const fw = m.forward_workspace(dims), bw = m.backward_workspace(dims);
    CViewD memv = c.tm > 0 ? mem.cview() : CViewD{};
    {  // forward alone in exactly its plan: everything it carves is saved, nothing is released
      Workspace<cpu> ws(fw);
      auto a = ws.arena();
      m.forward(ctx, x.cview(), memv, y.view(), a);
      CHECK(a.high_water() == fw);
      CHECK(a.used() == fw);
    }
    {  // forward + backward in exactly the sum: backward's scratch follows the saved buffers
      Workspace<cpu> ws(fw + bw);
      auto a = ws.arena();
      auto s = m.forward(ctx, x.cview(), memv, y.view(), a);
      m.backward(ctx, s, dy.cview(), dx.view(), c.tm > 0 ? dmem.view() : MViewD{}, a);
      CHECK(a.high_water() == fw + bw);
      CHECK(a.used() == fw);  // backward released its scratch
    }
  }
}

TEST_CASE("RelativeAttention: frozen parameters get no gradient; the input gradients are unchanged") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 4, tm = 2, d = 6;
  RelAttn m({.dim = d, .heads = 2, .clamp_len = 3});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 11);
  auto x = random_tensor(Shape{bsz, t, d}, 1), mem = random_tensor(Shape{bsz, tm, d}, 4);
  auto dy = random_tensor(Shape{bsz, t, d}, 2);
  Tensor<double, cpu> y(Shape{bsz, t, d}), dx(Shape{bsz, t, d}), dmem(Shape{bsz, tm, d});
  RelAttn::Dims dims{bsz, t, tm};
  Workspace<cpu> ws(m.forward_workspace(dims) + m.backward_workspace(dims));
  auto run = [&] {
    ps.zero_grad(ctx);
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), mem.cview(), y.view(), a);
    m.backward(ctx, s, dy.cview(), dx.view(), dmem.view(), a);
    std::vector<double> all(dx.data(), dx.data() + dx.numel());
    all.insert(all.end(), dmem.data(), dmem.data() + dmem.numel());
    return all;
  };
  frozen_check::check(ps, run, {"u", "v", "r.weight", "q.weight", "kv.weight", "out.bias"});
}

}  // namespace HSEQ_TEST_UNIT
