// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/nn/attention.hpp"
#include "support/frozen_check.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using AttnF = nn::MultiHeadAttention<cpu, float>;
using test::random_tensor;
using Attn = nn::MultiHeadAttention<cpu, double>;
using nn::AttentionMask;

namespace {

// Gradient check of cross-attention xq [B, Tq, d] -> keys/values [mem; xkv].
// With `dropout` > 0 the module's probability dropout runs with a fixed active stream (the mask is a
// function of the stream, so finite differences are valid).
void check_cross(AttentionMask mask, std::int64_t tq, std::int64_t tk, std::int64_t tm, std::int64_t rel_distance = 0,
                 double dropout = 0.0) {
  cpu::Context ctx;
  std::int64_t const bsz = 2, d = 6;
  Attn m({.dim = d, .heads = 2, .mask = mask, .rel_distance = rel_distance, .dropout = dropout});
  nn::DropoutStream const drop{31, 4, dropout > 0};
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 11);
  auto xq = random_tensor(Shape{bsz, tq, d}, 1), dxq = random_tensor(Shape{bsz, tq, d}, 0);
  auto xkv = random_tensor(Shape{bsz, tk, d}, 3), dxkv = random_tensor(Shape{bsz, tk, d}, 0);
  auto mem = random_tensor(Shape{bsz, tm, d}, 4), dmem = random_tensor(Shape{bsz, tm, d}, 0);
  auto r = random_tensor(Shape{bsz, tq, d}, 2);
  Tensor<double, cpu> y(Shape{bsz, tq, d});
  Attn::Dims dims{bsz, tq, tk, tm};
  Workspace<cpu> ws(m.forward_workspace(dims) + m.backward_workspace(dims));
  View<double const, HostSpace> memv = tm > 0 ? mem.cview() : View<double const, HostSpace>{};
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, xq.cview(), xkv.cview(), memv, y.view(), a, {}, drop);
    return test::dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, xq.cview(), xkv.cview(), memv, y.view(), a, {}, drop);
    CHECK(a.used() == m.forward_workspace(dims));
    m.backward(ctx, s, r.cview(), dxq.view(), dxkv.view(), tm > 0 ? dmem.view() : View<double, HostSpace>{}, a);
  };
  test::GradCheck gc(ps);
  gc.input("xq", xq.view(), dxq.view()).input("xkv", xkv.view(), dxkv.view());
  if (tm > 0) gc.input("mem", mem.view(), dmem.view());
  gc.run(loss, grads);
}

}  // namespace

TEST_CASE("gradcheck: MultiHeadAttention self-attention, causal and unmasked") {
  cpu::Context ctx;
  for (auto mask : {AttentionMask::causal(), AttentionMask::none()}) {
    CAPTURE(mask);
    Attn m({.dim = 8, .heads = 2, .mask = mask});
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 7);
    auto x = random_tensor(Shape{2, 5, 8}, 1), dx = random_tensor(Shape{2, 5, 8}, 0);
    auto r = random_tensor(Shape{2, 5, 8}, 2);
    Tensor<double, cpu> y(Shape{2, 5, 8});
    Attn::Dims dims{2, 5, 5, 0};
    std::size_t plan = m.forward_workspace(dims) + m.backward_workspace(dims);
    Workspace<cpu> ws(plan);
    auto loss = [&] {
      auto a = ws.arena();
      m.forward(ctx, x.cview(), y.view(), a);
      return test::dot(y.cview(), r.cview());
    };
    auto grads = [&] {
      auto a = ws.arena();
      auto s = m.forward(ctx, x.cview(), y.view(), a);
      m.backward(ctx, s, r.cview(), dx.view(), a);
      CHECK(a.high_water() == plan);  // self-attention uses exactly the planned workspace
    };
    test::GradCheck(ps).input("x", x.view(), dx.view()).run(loss, grads);
  }
}

TEST_CASE("gradcheck: MultiHeadAttention cross-attention with rate-aware masks") {
  // Upsampling-style: full-rate queries (Tq = 8) see short keys j <= floor(p / 4).
  check_cross(AttentionMask::rates(1, 0, 4, 0), 8, 2, 0);
  // Pooling-style: short queries (Tq = 3) see shifted full-rate keys p <= 3i + 2.
  check_cross(AttentionMask::rates(3, 2, 1, 0), 3, 9, 0);
  // Unmasked cross-attention.
  check_cross(AttentionMask::none(), 4, 6, 0);
}

TEST_CASE("gradcheck: MultiHeadAttention with a memory prefix (input, memory and parameters)") {
  check_cross(AttentionMask::causal(), 4, 4, 3);
  check_cross(AttentionMask::none(), 3, 5, 2);
}

TEST_CASE("gradcheck: MultiHeadAttention with probability dropout active (inputs, memory, every parameter)") {
  check_cross(AttentionMask::causal(), 4, 4, 3, 0, 0.3);                // memory prefix
  check_cross(AttentionMask::rates(3, 2, 1, 0), 3, 9, 0, 0, 0.3);       // pooling-style cross-attention
  check_cross(AttentionMask::rates(1, 0, 4, 0), 8, 2, 0, 0, 0.2);       // upsampling-style
  check_cross(AttentionMask::causal(), 5, 5, 2, 3, 0.3);                // with the relative-distance bias
  // Self-attention through the short overload, with the planned workspace used exactly.
  cpu::Context ctx;
  Attn m({.dim = 8, .heads = 2, .mask = AttentionMask::causal(), .dropout = 0.25});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 7);
  auto x = random_tensor(Shape{2, 5, 8}, 1), dx = random_tensor(Shape{2, 5, 8}, 0);
  auto r = random_tensor(Shape{2, 5, 8}, 2);
  Tensor<double, cpu> y(Shape{2, 5, 8});
  Attn::Dims dims{2, 5, 5, 0};
  std::size_t plan = m.forward_workspace(dims) + m.backward_workspace(dims);
  Workspace<cpu> ws(plan);
  nn::DropoutStream const drop{8, 9, true};
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a, drop);
    return test::dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), a, drop);
    m.backward(ctx, s, r.cview(), dx.view(), a);
    CHECK(a.high_water() == plan);  // dropout needs no extra workspace
  };
  test::GradCheck(ps).input("x", x.view(), dx.view()).run(loss, grads);
}

TEST_CASE("attention dropout: inactive or rate 0 is bit-identical to no dropout; streams decide the mask") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 9, d = 8, tm = 3;
  auto x = random_tensor(Shape{bsz, t, d}, 41), mem = random_tensor(Shape{bsz, tm, d}, 42);
  auto r = random_tensor(Shape{bsz, t, d}, 43);
  Attn::Dims dims{bsz, t, t, tm};
  struct Result {
    std::vector<double> y, dx, dmem, grads, mass;
  };
  // Same parameters (seeded init) for every configuration.
  auto run = [&](double rate, nn::DropoutStream drop) {
    Attn m({.dim = d, .heads = 2, .mask = AttentionMask::causal(), .dropout = rate});
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 44);
    ps.zero_grad(ctx);
    Workspace<cpu> ws(m.forward_workspace(dims) + m.backward_workspace(dims));
    auto a = ws.arena();
    Tensor<double, cpu> y(x.shape()), dx(x.shape()), dmem(mem.shape()), mass(Shape{bsz, 2, tm + t});
    auto s = m.forward(ctx, x.cview(), x.cview(), mem.cview(), y.view(), a, mass.view(), drop);
    m.backward(ctx, s, r.cview(), dx.view(), dx.view(), dmem.view(), a);
    auto g = ps.grads();
    return Result{{y.data(), y.data() + y.numel()},
                  {dx.data(), dx.data() + dx.numel()},
                  {dmem.data(), dmem.data() + dmem.numel()},
                  {g.data, g.data + g.numel()},
                  {mass.data(), mass.data() + mass.numel()}};
  };
  Result const plain = run(0.0, {});
  auto same = [&](Result const& o) {
    return o.y == plain.y && o.dx == plain.dx && o.dmem == plain.dmem && o.grads == plain.grads && o.mass == plain.mass;
  };
  CHECK(same(run(0.4, {})));                  // rate set, stream inactive (evaluation)
  CHECK(same(run(0.4, {5, 6, false})));       // an inactive stream with a key
  CHECK(same(run(0.0, {5, 6, true})));        // active stream, rate 0
  Result const a = run(0.4, {5, 6, true}), a2 = run(0.4, {5, 6, true}), b = run(0.4, {5, 7, true});
  CHECK(a.y == a2.y);  // deterministic
  CHECK(a.grads == a2.grads);
  CHECK(a.y != plain.y);
  CHECK(b.y != a.y);        // another stream, another mask
  CHECK(a.mass == plain.mass);  // the key mass is of the undropped probabilities
}

TEST_CASE("attention dropout: the cached paths (forward_step, attend_cached) never drop") {
  // A module configured with dropout generates exactly like one without (the cached paths take no
  // stream), and the full forward with an inactive stream equals the cached rows.
  cpu::Context ctx;
  std::int64_t const bsz = 1, t = 6, d = 8;
  AttnF with({.dim = d, .heads = 2, .dropout = 0.5}), without({.dim = d, .heads = 2});
  nn::ParamStore<cpu, float> pw(with), po(without);
  pw.init(ctx, 3);
  po.init(ctx, 3);
  auto x = random_tensor<float>(Shape{bsz, t, d}, 51);
  Tensor<float, cpu> cw(Shape{bsz, t, 2 * d}), co(Shape{bsz, t, 2 * d}), yw(x.shape()), yo(x.shape());
  Workspace<cpu> ws(with.step_workspace(bsz, t, 0) + with.forward_workspace({bsz, t, t, 0}));
  auto a = ws.arena();
  with.forward_step(ctx, x.cview(), cw.view(), 0, yw.view(), a);
  without.forward_step(ctx, x.cview(), co.view(), 0, yo.view(), a);
  CHECK(std::equal(yw.data(), yw.data() + yw.numel(), yo.data()));
  Tensor<float, cpu> full(x.shape());
  with.forward(ctx, x.cview(), full.view(), a);
  CHECK(std::equal(full.data(), full.data() + full.numel(), yw.data()));
  // Cached cross-attention: the same key/value cache rows, the same outputs.
  auto xq = random_tensor<float>(Shape{bsz, 3, d}, 52);
  Tensor<float, cpu> qw(xq.shape()), qo(xq.shape());
  Workspace<cpu> cws(with.cached_workspace(bsz, 3, t));
  auto ca = cws.arena();
  with.attend_cached(ctx, xq.cview(), cw.view(), t, qw.view(), ca);
  without.attend_cached(ctx, xq.cview(), co.view(), t, qo.view(), ca);
  CHECK(std::equal(qw.data(), qw.data() + qw.numel(), qo.data()));
}

namespace {
// Runs attention with queries xq and keys xkv and returns the output.
std::vector<float> run_attn(nn::MultiHeadAttention<cpu, float> const& m, Tensor<float, cpu> const& xq,
                            Tensor<float, cpu> const& xkv) {
  cpu::Context ctx;
  Tensor<float, cpu> y(xq.shape());
  nn::MultiHeadAttention<cpu, float>::Dims dims{xq.shape()[0], xq.shape()[1], xkv.shape()[1], 0};
  Workspace<cpu> ws(m.forward_workspace(dims));
  auto a = ws.arena();
  m.forward(ctx, xq.cview(), xkv.cview(), {}, y.view(), a);
  return std::vector<float>(y.data(), y.data() + y.numel());
}
}  // namespace

TEST_CASE("attention: causality by perturbation for every mask kind") {
  cpu::Context ctx;
  std::int64_t const d = 8, bsz = 2;
  struct Case {
    char const* name;
    AttentionMask mask;
    std::int64_t tq, tk;
    // First query index whose output may depend on key t.
    std::int64_t (*first_dependent)(std::int64_t t);
  };
  Case cases[] = {
      {"causal", AttentionMask::causal(), 70, 70, [](std::int64_t t) { return t; }},
      // upsampling: query p sees key j iff 4j <= p, so key t first matters at p = 4t
      {"rates(1,0,4,0)", AttentionMask::rates(1, 0, 4, 0), 72, 18, [](std::int64_t t) { return 4 * t; }},
      // pooling: query i sees key p iff p <= 4i + 3, so key t first matters at i = ceil((t - 3) / 4)
      {"rates(4,3,1,0)", AttentionMask::rates(4, 3, 1, 0), 18, 72,
       [](std::int64_t t) { return t <= 3 ? 0 : (t - 3 + 3) / 4; }},
  };
  for (auto const& c : cases) {
    std::string const name = c.name;  // CAPTURE of a char const* prints the pointer
    CAPTURE(name);
    nn::MultiHeadAttention<cpu, float> m({.dim = d, .heads = 2, .mask = c.mask});
    nn::ParamStore<cpu, float> ps(m);
    ps.init(ctx, 3);
    auto xkv = random_tensor<float>(Shape{bsz, c.tk, d}, 1);
    bool self = c.tq == c.tk;
    auto xq = self ? random_tensor<float>(Shape{bsz, c.tq, d}, 1) : random_tensor<float>(Shape{bsz, c.tq, d}, 2);
    auto base = run_attn(m, xq, xkv);
    for (std::int64_t t : {std::int64_t(0), std::int64_t(1), c.tk / 2, c.tk / 2 + 1, c.tk - 1}) {
      CAPTURE(t);
      auto xkv2 = random_tensor<float>(Shape{bsz, c.tk, d}, 1);
      auto xq2 = self ? random_tensor<float>(Shape{bsz, c.tq, d}, 1) : random_tensor<float>(Shape{bsz, c.tq, d}, 2);
      for (std::int64_t b = 0; b < bsz; ++b)
        for (std::int64_t j = 0; j < d; ++j) {
          xkv2.data()[(b * c.tk + t) * d + j] += 1.5f;
          if (self) xq2.data()[(b * c.tq + t) * d + j] += 1.5f;
        }
      auto out = run_attn(m, xq2, xkv2);
      std::int64_t first = c.first_dependent(t);
      REQUIRE(first < c.tq);  // some query depends on key t, so the check below can fail
      // Queries before `first` must be bit-identical and every query from `first` on must move: the
      // first dependent query is pinned. In the self-attention case query t also moves through its
      // own query vector, so query t + 1 (which sees key t through the mask only) is what pins it.
      std::int64_t before_moved = 0, after_unmoved = 0;
      for (std::int64_t b = 0; b < bsz; ++b)
        for (std::int64_t i = 0; i < c.tq; ++i) {
          bool moved = false;
          for (std::int64_t j = 0; j < d; ++j) {
            std::size_t k = std::size_t((b * c.tq + i) * d + j);
            moved = moved || out[k] != base[k];
          }
          if (i < first) before_moved += moved;
          else after_unmoved += !moved;
        }
      CHECK(before_moved == 0);
      CHECK(after_unmoved == 0);
    }
  }
}

TEST_CASE("attention: bad configuration and shapes name the values") {
  CHECK_THROWS_WITH_AS(AttnF({.dim = 10, .heads = 3}),
                       doctest::Contains("heads 3 do not divide the width 10"), Error);
  CHECK_THROWS_AS(AttnF({.dim = 0, .heads = 1}), Error);
  cpu::Context ctx;
  nn::MultiHeadAttention<cpu, float> m({.dim = 8, .heads = 2});
  nn::ParamStore<cpu, float> ps(m);
  Tensor<float, cpu> x(Shape{2, 5, 6}), y(Shape{2, 5, 6});
  Workspace<cpu> ws(1 << 20);
  auto a = ws.arena();
  CHECK_THROWS_WITH_AS(m.forward(ctx, x.cview(), y.view(), a), doctest::Contains("[2, 5, 6]"), Error);
}

// ---- Relative-distance score bias and the key mass ----

TEST_CASE("gradcheck: MultiHeadAttention with the relative-distance bias (rel_bias and inputs)") {
  check_cross(AttentionMask::causal(), 4, 4, 3, 5);   // self-attention-like over [memory; keys]
  check_cross(AttentionMask::none(), 3, 5, 2, 4);     // negative distances clamp to entry 0
  check_cross(AttentionMask::causal(), 5, 5, 0, 2);   // distances >= 1 share the last entry
}

namespace {
/// Naive module forward from the parameters: Q = xq Wq^T + bq, [K V] = [mem; xkv] Wkv^T + bkv,
/// per head p = softmax(scale q.k + rel[h, clamp(Tm + i - j, 0, D - 1)]) over the causal keys
/// j <= Tm + i, y = (sum p v) Wo^T + bo; mass[b, h, j] = sum_i p[i, j].
struct ModRef {
  std::vector<double> y, mass;
};
ModRef module_ref(nn::ParamStore<cpu, double>& ps, std::int64_t heads, std::int64_t dmax, Tensor<double, cpu> const& xq,
                  Tensor<double, cpu> const& xkv, Tensor<double, cpu> const& mem) {
  std::int64_t bsz = xq.shape()[0], tq = xq.shape()[1], d = xq.shape()[2], tk = xkv.shape()[1], tm = mem.shape()[1];
  std::int64_t dh = d / heads, tkk = tm + tk;
  auto lin = [&](std::string const& name, double const* x, std::int64_t out_dim, std::int64_t i) {
    auto& w = ps.find(name + ".weight");
    auto& b = ps.find(name + ".bias");
    std::vector<double> o(static_cast<std::size_t>(out_dim));
    for (std::int64_t r = 0; r < out_dim; ++r) {
      long double acc = b.value.data[r];
      for (std::int64_t c = 0; c < d; ++c) acc += (long double)w.value.data[r * d + c] * x[i * d + c];
      o[std::size_t(r)] = double(acc);
    }
    return o;
  };
  double const* rel = ps.find("rel_bias").value.data;
  ModRef out{std::vector<double>(std::size_t(bsz * tq * d)), std::vector<double>(std::size_t(bsz * heads * tkk), 0.0)};
  double scale = 1.0 / std::sqrt(double(dh));
  for (std::int64_t b = 0; b < bsz; ++b) {
    std::vector<std::vector<double>> kv;
    for (std::int64_t j = 0; j < tm; ++j) kv.push_back(lin("kv", mem.data() + b * tm * d, 2 * d, j));
    for (std::int64_t j = 0; j < tk; ++j) kv.push_back(lin("kv", xkv.data() + b * tk * d, 2 * d, j));
    for (std::int64_t i = 0; i < tq; ++i) {
      auto q = lin("q", xq.data() + b * tq * d, d, i);
      std::vector<double> att(std::size_t(d), 0.0);
      for (std::int64_t h = 0; h < heads; ++h) {
        std::int64_t vis = std::min(tkk, tm + i + 1);
        std::vector<long double> l(static_cast<std::size_t>(vis));
        long double mx = -1e300L, sum = 0;
        for (std::int64_t j = 0; j < vis; ++j) {
          long double s = 0;
          for (std::int64_t e = 0; e < dh; ++e) s += (long double)q[std::size_t(h * dh + e)] * kv[std::size_t(j)][std::size_t(h * dh + e)];
          std::int64_t delta = std::min<std::int64_t>(std::max<std::int64_t>(tm + i - j, 0), dmax - 1);
          l[std::size_t(j)] = scale * s + rel[h * dmax + delta];
          mx = std::max(mx, l[std::size_t(j)]);
        }
        for (std::int64_t j = 0; j < vis; ++j) sum += std::exp(l[std::size_t(j)] - mx);
        for (std::int64_t j = 0; j < vis; ++j) {
          long double p = std::exp(l[std::size_t(j)] - mx) / sum;
          out.mass[std::size_t((b * heads + h) * tkk + j)] += double(p);
          for (std::int64_t e = 0; e < dh; ++e) att[std::size_t(h * dh + e)] += double(p * kv[std::size_t(j)][std::size_t(d + h * dh + e)]);
        }
      }
      auto y = lin("out", att.data(), d, 0);
      std::copy(y.begin(), y.end(), out.y.begin() + (b * tq + i) * d);
    }
  }
  return out;
}
}  // namespace

TEST_CASE("attention: relative-distance bias and key mass match a naive module reference") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, d = 6, heads = 2, tq = 5, tk = 5, tm = 3, dmax = 4;
  Attn m({.dim = d, .heads = heads, .mask = AttentionMask::causal(), .rel_distance = dmax});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 13, 0.7);
  auto xq = random_tensor(Shape{bsz, tq, d}, 1), xkv = random_tensor(Shape{bsz, tk, d}, 2),
       mem = random_tensor(Shape{bsz, tm, d}, 3);
  Tensor<double, cpu> y(Shape{bsz, tq, d}), mass(Shape{bsz, heads, tm + tk});
  Attn::Dims dims{bsz, tq, tk, tm};
  Workspace<cpu> ws(m.forward_workspace(dims));
  {
    auto a = ws.arena();
    m.forward(ctx, xq.cview(), xkv.cview(), mem.cview(), y.view(), a, mass.view());
  }
  ModRef ref = module_ref(ps, heads, dmax, xq, xkv, mem);
  for (std::int64_t i = 0; i < y.numel(); ++i) CHECK(y.data()[i] == doctest::Approx(ref.y[std::size_t(i)]).epsilon(1e-12));
  for (std::int64_t i = 0; i < mass.numel(); ++i)
    CHECK(mass.data()[i] == doctest::Approx(ref.mass[std::size_t(i)]).epsilon(1e-12));
  // A table constant along the distance is a per-row shift that softmax removes; a varying one is not.
  Attn plain({.dim = d, .heads = heads, .mask = AttentionMask::causal()});
  nn::ParamStore<cpu, double> ps_plain(plain);
  for (auto const& e : ps_plain.entries()) {
    auto& src = ps.find(e.name);
    std::copy(src.value.data, src.value.data + src.value.numel(), ps_plain.find(e.name).value.data);
  }
  Tensor<double, cpu> y_plain(y.shape()), y_const(y.shape());
  auto& rel = ps.find("rel_bias");
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t k = 0; k < dmax; ++k) rel.value.data[h * dmax + k] = 0.3 * double(h + 1);
  {
    auto a = ws.arena();
    plain.forward(ctx, xq.cview(), xkv.cview(), mem.cview(), y_plain.view(), a);
  }
  {
    auto a = ws.arena();
    m.forward(ctx, xq.cview(), xkv.cview(), mem.cview(), y_const.view(), a);
  }
  double moved = 0;
  for (std::int64_t i = 0; i < y.numel(); ++i) {
    CHECK(y_const.data()[i] == doctest::Approx(y_plain.data()[i]).epsilon(1e-12));
    moved = std::max(moved, std::abs(y.data()[i] - y_plain.data()[i]));
  }
  CHECK(moved > 1e-3);
}

TEST_CASE("attention: forward_step with the relative-distance bias equals the full causal forward") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, d = 8, t = 7, dmax = 3;
  Attn m({.dim = d, .heads = 2, .mask = AttentionMask::causal(), .rel_distance = dmax});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 17, 0.5);
  auto x = random_tensor(Shape{bsz, t, d}, 1);
  Tensor<double, cpu> y_full(Shape{bsz, t, d}), cache(Shape{bsz, t, 2 * d});
  Workspace<cpu> ws(m.forward_workspace({bsz, t, t, 0}) + m.step_workspace(bsz, t, t));
  {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y_full.view(), a);
  }
  std::int64_t pos = 0;
  for (std::int64_t n : {3, 1, 3}) {
    Tensor<double, cpu> xs(Shape{bsz, n, d}), ys(Shape{bsz, n, d});
    for (std::int64_t b = 0; b < bsz; ++b)
      std::copy(x.data() + (b * t + pos) * d, x.data() + (b * t + pos + n) * d, xs.data() + b * n * d);
    auto a = ws.arena();
    m.forward_step(ctx, xs.cview(), cache.view(), pos, ys.view(), a);
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t i = 0; i < n * d; ++i)
        CHECK(ys.data()[b * n * d + i] == doctest::Approx(y_full.data()[(b * t + pos) * d + i]).epsilon(1e-12));
    pos += n;
  }
}

TEST_CASE("attention: frozen projections or relative bias get no gradient; the input gradients are unchanged") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, tq = 3, tk = 4, tm = 2, d = 6;
  Attn m({.dim = d, .heads = 2, .mask = AttentionMask::none(), .rel_distance = 3});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 11);
  auto xq = random_tensor(Shape{bsz, tq, d}, 1), xkv = random_tensor(Shape{bsz, tk, d}, 3);
  auto mem = random_tensor(Shape{bsz, tm, d}, 4), dy = random_tensor(Shape{bsz, tq, d}, 2);
  Tensor<double, cpu> y(Shape{bsz, tq, d}), dxq(Shape{bsz, tq, d}), dxkv(Shape{bsz, tk, d}), dmem(Shape{bsz, tm, d});
  Attn::Dims dims{bsz, tq, tk, tm};
  Workspace<cpu> ws(m.forward_workspace(dims) + m.backward_workspace(dims));
  auto run = [&] {
    ps.zero_grad(ctx);
    auto a = ws.arena();
    auto s = m.forward(ctx, xq.cview(), xkv.cview(), mem.cview(), y.view(), a);
    m.backward(ctx, s, dy.cview(), dxq.view(), dxkv.view(), dmem.view(), a);
    std::vector<double> all(dxq.data(), dxq.data() + dxq.numel());
    all.insert(all.end(), dxkv.data(), dxkv.data() + dxkv.numel());
    all.insert(all.end(), dmem.data(), dmem.data() + dmem.numel());
    return all;
  };
  frozen_check::check(ps, run, {"rel_bias", "q.weight", "kv.weight", "kv.bias", "out.weight"});
}

TEST_CASE("attention: forward_biased with a causal 0 / masked bias equals the causal mask; gradcheck under a ragged bias") {
  cpu::Context ctx;
  std::int64_t const bsz = 2, t = 5, tk = 7, d = 6, h = 2;
  // (1) The causal pattern as a bias, against the causal mask: output and every gradient.
  Attn causal({.dim = d, .heads = h, .mask = AttentionMask::causal()});
  nn::ParamStore<cpu, double> ps(causal);
  test::randomize_params(ps, 13);
  auto x = random_tensor(Shape{bsz, t, d}, 1), r = random_tensor(Shape{bsz, t, d}, 2);
  Tensor<double, cpu> bias(Shape{bsz, h, t, t});
  for (std::int64_t i = 0; i < bias.numel(); ++i) {
    std::int64_t q = (i / t) % t, k = i % t;
    bias.data()[i] = k <= q ? 0.0 : -1e30;
  }
  std::size_t plan = causal.forward_workspace({bsz, t, t, 0}) + causal.backward_workspace({bsz, t, t, 0}, true);
  Workspace<cpu> ws(plan);
  auto run = [&](bool biased) {
    Tensor<double, cpu> y(Shape{bsz, t, d}), dx(Shape{bsz, t, d});
    ps.zero_grad(ctx);
    auto a = ws.arena();
    auto s = biased ? causal.forward_biased(ctx, x.cview(), x.cview(), bias.cview(), y.view(), a)
                    : causal.forward(ctx, x.cview(), y.view(), a);
    causal.backward(ctx, s, r.cview(), dx.view(), a);
    std::vector<double> all(y.data(), y.data() + y.numel());
    all.insert(all.end(), dx.data(), dx.data() + dx.numel());
    for (auto const& e : ps.entries()) all.insert(all.end(), e.param->grad.data, e.param->grad.data + e.param->grad.numel());
    return all;
  };
  auto masked = run(false), biased = run(true);
  REQUIRE(masked.size() == biased.size());
  double worst = 0;
  for (std::size_t i = 0; i < masked.size(); ++i) worst = std::max(worst, std::abs(masked[i] - biased[i]));
  CHECK(worst < 1e-13);
  // (2) Finite differences under a pattern no AttentionMask describes (each query a window of keys).
  Attn m({.dim = d, .heads = h, .mask = AttentionMask::causal()});
  nn::ParamStore<cpu, double> pm(m);
  test::randomize_params(pm, 17);
  auto xq = random_tensor(Shape{bsz, t, d}, 3), dxq = random_tensor(Shape{bsz, t, d}, 0);
  auto xkv = random_tensor(Shape{bsz, tk, d}, 4), dxkv = random_tensor(Shape{bsz, tk, d}, 0);
  Tensor<double, cpu> win(Shape{bsz, h, t, tk}), y(Shape{bsz, t, d});
  for (std::int64_t i = 0; i < win.numel(); ++i) {
    std::int64_t b = i / (h * t * tk), q = (i / tk) % t, k = i % tk, lo = (q + b) % 3, hi = lo + 1 + q % 3;
    win.data()[i] = k >= lo && k <= hi ? 0.0 : -1e30;
  }
  std::size_t plan2 = m.forward_workspace({bsz, t, tk, 0}) + m.backward_workspace({bsz, t, tk, 0}, false);
  Workspace<cpu> ws2(plan2);
  auto loss = [&] {
    auto a = ws2.arena();
    m.forward_biased(ctx, xq.cview(), xkv.cview(), win.cview(), y.view(), a);
    return test::dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws2.arena();
    auto s = m.forward_biased(ctx, xq.cview(), xkv.cview(), win.cview(), y.view(), a);
    m.backward(ctx, s, r.cview(), dxq.view(), dxkv.view(), View<double, HostSpace>{}, a);
    CHECK(a.high_water() <= plan2);
  };
  test::GradCheck(pm).input("xq", xq.view(), dxq.view()).input("xkv", xkv.view(), dxkv.view()).run(loss, grads);
  // A hidden key's value changes nothing, bit for bit; a visible one does.
  {
    auto a = ws2.arena();
    m.forward_biased(ctx, xq.cview(), xkv.cview(), win.cview(), y.view(), a);
  }
  std::vector<double> base(y.data(), y.data() + y.numel());
  xkv.data()[6 * d] += 1.0;  // key 6 of row 0: hidden from every query of row 0 (hi <= 4)
  xkv.data()[(tk + 1) * d] += 1.0;  // key 1 of row 1: visible to queries 0, 1 ...
  {
    auto a = ws2.arena();
    m.forward_biased(ctx, xq.cview(), xkv.cview(), win.cview(), y.view(), a);
  }
  CHECK(std::equal(base.begin(), base.begin() + t * d, y.data()));
  CHECK(!std::equal(base.begin() + t * d, base.end(), y.data() + t * d));
  // A bias of the wrong shape, or with the relative-distance table, is refused by name.
  Tensor<double, cpu> bad(Shape{bsz, 1, t, tk});
  auto a = ws2.arena();
  CHECK_THROWS_WITH_AS(m.forward_biased(ctx, xq.cview(), xkv.cview(), bad.cview(), y.view(), a),
                       doctest::Contains("is not [B, H, Tq, Tk]"), Error);
  Attn rel({.dim = d, .heads = h, .rel_distance = 4});
  CHECK_THROWS_WITH_AS(rel.forward_biased(ctx, xq.cview(), xkv.cview(), win.cview(), y.view(), a),
                       doctest::Contains("relative-distance"), Error);
}

}  // namespace HSEQ_TEST_UNIT
