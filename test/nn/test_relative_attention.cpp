// SPDX-License-Identifier: MIT
// nn::RelativeAttention (Transformer-XL relative attention): gradients of every input and parameter,
// a naive reference of the equations, causality, relative distances and clamping, bad inputs, the
// workspace plan and frozen parameters.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
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
void gradcheck_rel(std::int64_t tm, std::int64_t clamp_len) {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 4, d = 6;
  RelAttn m({.dim = d, .heads = 2, .clamp_len = clamp_len});
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
/// ((q_i + v_h) . Rk[δ'] / sqrt(dh) for visible j, 0 for masked j).
struct Ref {
  std::vector<double> y, pos;
};
Ref reference(nn::ParamStore<cpu, double>& ps, std::int64_t heads, std::int64_t clamp_len, Tensor<double, cpu> const& x,
              Tensor<double, cpu> const& mem) {
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
  // Rk[δ] = Wr sinusoid(min(δ, clamp_len)), sinusoid interleaved: sin at 2k, cos at 2k + 1.
  std::vector<std::vector<LD>> rk;
  for (std::int64_t delta = 0; delta < l; ++delta) {
    std::int64_t dc = clamp_len > 0 ? std::min(delta, clamp_len) : delta;
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
}

TEST_CASE("RelativeAttention: forward matches a naive reference of the Transformer-XL equations") {
  std::int64_t const bsz = 2, t = 5, d = 8, heads = 2;
  struct Case {
    std::int64_t tm, clamp_len;
  };
  for (Case c : {Case{0, 0}, Case{4, 0}, Case{4, 3}, Case{0, 2}}) {
    CAPTURE(c.tm);
    CAPTURE(c.clamp_len);
    RelAttn m({.dim = d, .heads = heads, .clamp_len = c.clamp_len});
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 13, 0.7);
    auto x = random_tensor(Shape{bsz, t, d}, 1), mem = random_tensor(Shape{bsz, c.tm, d}, 3);
    auto y = run_forward(m, x, mem);
    Ref ref = reference(ps, heads, c.clamp_len, x, mem);
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

TEST_CASE("RelativeAttention: bad configuration and shapes name what is wrong") {
  CHECK_THROWS_WITH_AS(RelAttn({.dim = 10, .heads = 3}), doctest::Contains("heads 3 do not divide the width 10"), Error);
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
}

TEST_CASE("RelativeAttention: workspace plan == use for forward and forward + backward") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 6, d = 8;
  struct Case {
    std::int64_t tm, clamp_len;
  };
  for (Case c : {Case{0, 0}, Case{3, 0}, Case{3, 2}}) {
    CAPTURE(c.tm);
    CAPTURE(c.clamp_len);
    RelAttn m({.dim = d, .heads = 2, .clamp_len = c.clamp_len});
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
