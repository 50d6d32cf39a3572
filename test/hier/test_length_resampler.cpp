// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "hseq/hier/length_resampler.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using hier::LengthDirection;
using hier::LengthResamplerConfig;

constexpr LengthDirection kReduce = LengthDirection::kReduce;
constexpr LengthDirection kExpand = LengthDirection::kExpand;

template <std::int64_t R, class Q, LengthDirection D>
using Resampler = hier::LengthResampler<cpu, double, R, Q, D>;

// The three tags are query policies in both directions; a tag without a source, or whose source
// lacks backward, is not.
struct NoSource {
  static constexpr char const* kName = "none";
  static constexpr hier::WindowUse kWindow = hier::WindowUse::kNone;
};
template <Backend B, class T, std::int64_t R, LengthDirection D>
struct ForwardOnlySource {
  struct Saved {};
  explicit ForwardOnlySource(LengthResamplerConfig const&) {}
  template <class F>
  void visit_params(F&&, std::string const& = "") {}
  std::size_t forward_workspace(std::int64_t, std::int64_t) const { return 0; }
  std::size_t backward_workspace(std::int64_t, std::int64_t) const { return 0; }
  Saved forward(typename B::Context&, View<T const, typename B::Space>, View<T, typename B::Space>,
                Arena<typename B::Space>&) const {
    return {};
  }
};
struct ForwardOnly {
  static constexpr char const* kName = "forward-only";
  static constexpr hier::WindowUse kWindow = hier::WindowUse::kNone;
  template <Backend B, class T, std::int64_t R, LengthDirection D>
  using Source = ForwardOnlySource<B, T, R, D>;
};
static_assert(hier::QueryPolicy<hier::QueryBank, cpu, float, 2, kReduce>);
static_assert(hier::QueryPolicy<hier::QueryBank, cpu, double, 4, kExpand>);
static_assert(hier::QueryPolicy<hier::LengthMix, cpu, float, 2, kReduce>);
static_assert(hier::QueryPolicy<hier::LengthMix, cpu, double, 3, kExpand>);
static_assert(hier::QueryPolicy<hier::PooledQueries, cpu, float, 2, kReduce>);
static_assert(hier::QueryPolicy<hier::PooledQueries, cpu, double, 2, kExpand>);
static_assert(!hier::QueryPolicy<NoSource, cpu, double, 2, kReduce>);
static_assert(!hier::QueryPolicy<ForwardOnly, cpu, double, 2, kReduce>);
static_assert(!hier::QueryPolicy<int, cpu, double, 2, kReduce>);

/// A full-rate length the source accepts: the window for the mix (its only length), a shorter
/// multiple of R for the others (the bank then uses only its first rows).
template <class Q>
std::int64_t test_length(std::int64_t window, std::int64_t r) {
  return std::is_same_v<Q, hier::LengthMix> ? window : window - r;
}

std::vector<double> to_vector(Tensor<double, cpu> const& t) {
  return std::vector<double>(t.data(), t.data() + t.numel());
}

/// max_j |v[i, j] - v[k, j]| for rows i and k of one [rows, d] row-major buffer.
double rows_diff(std::vector<double> const& v, std::int64_t i, std::int64_t k, std::int64_t d) {
  double m = 0;
  for (std::int64_t j = 0; j < d; ++j) m = std::max(m, std::abs(v[std::size_t(i * d + j)] - v[std::size_t(k * d + j)]));
  return m;
}

/// max |a[row] - b[row]| over row `row` of two [rows, d] row-major buffers.
double row_diff(std::vector<double> const& a, std::vector<double> const& b, std::int64_t row, std::int64_t d) {
  double m = 0;
  for (std::int64_t j = 0; j < d; ++j)
    m = std::max(m, std::abs(a[std::size_t(row * d + j)] - b[std::size_t(row * d + j)]));
  return m;
}

/// Gradient check (input and every parameter) of a resampler; n is the full-rate length. Also
/// checks that forward carves exactly forward_workspace and the peak is exactly the plan.
template <class M>
void check_resampler(LengthResamplerConfig cfg, std::int64_t bsz, std::int64_t n) {
  cpu::Context ctx;
  M m(cfg);
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 23, 0.4);
  std::int64_t n_in = hier::length_in<M::kFactor, M::kDirection>(n),
               n_out = hier::length_out<M::kFactor, M::kDirection>(n);
  std::int64_t d = cfg.dim;
  auto x = test::random_tensor(Shape{bsz, n_in, d}, 1), dx = test::random_tensor(Shape{bsz, n_in, d}, 0);
  auto r = test::random_tensor(Shape{bsz, n_out, d}, 2);
  Tensor<double, cpu> y(Shape{bsz, n_out, d});
  std::size_t plan = m.forward_workspace(bsz, n) + m.backward_workspace(bsz, n);
  Workspace<cpu> ws(plan);
  auto loss = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a);
    return test::dot(y.cview(), r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    auto s = m.forward(ctx, x.cview(), y.view(), a);
    CHECK(a.used() == m.forward_workspace(bsz, n));
    m.backward(ctx, s, r.cview(), dx.view(), a);
    CHECK(a.high_water() == plan);
  };
  test::GradCheck gc(ps);
  gc.input("x", x.view(), dx.view()).run(loss, grads);
}

TEST_CASE_TEMPLATE("gradcheck: LengthReducer and LengthExpander (input and every parameter)", Q, hier::QueryBank,
                   hier::LengthMix, hier::PooledQueries) {
  LengthResamplerConfig c2{.dim = 4, .heads = 2, .window = 8};
  SUBCASE("R = 2, reduce") { check_resampler<Resampler<2, Q, kReduce>>(c2, 2, test_length<Q>(8, 2)); }
  SUBCASE("R = 2, expand") { check_resampler<Resampler<2, Q, kExpand>>(c2, 2, test_length<Q>(8, 2)); }
  LengthResamplerConfig c3{.dim = 6, .heads = 3, .window = 9, .bias = false};
  SUBCASE("R = 3, no biases, reduce") { check_resampler<Resampler<3, Q, kReduce>>(c3, 1, test_length<Q>(9, 3)); }
  SUBCASE("R = 3, no biases, expand") { check_resampler<Resampler<3, Q, kExpand>>(c3, 1, test_length<Q>(9, 3)); }
}

// Lengths that R does not divide: the last group is partial (r valid rows of R), padded with a
// mask inside the layer. n = 7, R = 2 (r = 1) and n = 10, R = 4 (r = 2); the mix's window is n.
TEST_CASE_TEMPLATE("gradcheck: LengthReducer and LengthExpander at lengths R does not divide", Q, hier::QueryBank,
                   hier::LengthMix, hier::PooledQueries) {
  constexpr bool kMix = std::is_same_v<Q, hier::LengthMix>;
  LengthResamplerConfig c2{.dim = 4, .heads = 2, .window = kMix ? 7 : 8};
  SUBCASE("R = 2, n = 7, reduce") { check_resampler<Resampler<2, Q, kReduce>>(c2, 2, 7); }
  SUBCASE("R = 2, n = 7, expand") { check_resampler<Resampler<2, Q, kExpand>>(c2, 2, 7); }
  LengthResamplerConfig c4{.dim = 4, .heads = 1, .window = 10, .residual = true};
  SUBCASE("R = 4, n = 10, residual, reduce") { check_resampler<Resampler<4, Q, kReduce>>(c4, 2, 10); }
  SUBCASE("R = 4, n = 10, residual, expand") { check_resampler<Resampler<4, Q, kExpand>>(c4, 2, 10); }
}

// ---------------------------------------------------------------------------------------------
// The documented equations, written out naively in double, against forward.
// ---------------------------------------------------------------------------------------------

template <class M>
std::map<std::string, View<double, HostSpace>> params_of(M& m) {
  std::map<std::string, View<double, HostSpace>> out;
  m.visit_params([&](std::string const& name, nn::Param<double, HostSpace>& p) { out[name] = p.value; });
  return out;
}

/// [rows, out] = x [rows, in] W^T + b, W [out, in]; b may be absent.
std::vector<double> linear_ref(std::vector<double> const& x, std::int64_t rows, View<double, HostSpace> w,
                               View<double, HostSpace> b) {
  std::int64_t out = w.size(0), in = w.size(1);
  std::vector<double> y(std::size_t(rows * out));
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t o = 0; o < out; ++o) {
      double s = b.empty() ? 0.0 : b[o];
      for (std::int64_t k = 0; k < in; ++k) s += x[std::size_t(i * in + k)] * w[o * in + k];
      y[std::size_t(i * out + o)] = s;
    }
  return y;
}

/// n_out: y's length (the full-rate n for the expander, whose n_in = ceil(n / R) leaves it open).
template <std::int64_t R, class Q, LengthDirection D>
std::vector<double> reference_forward(Resampler<R, Q, D>& m, Tensor<double, cpu> const& x, std::int64_t n_out) {
  auto p = params_of(m);
  auto get = [&](std::string const& name) { return p.count(name) ? p[name] : View<double, HostSpace>{}; };
  std::int64_t bsz = x.shape()[0], n_in = x.shape()[1], d = x.shape()[2], heads = m.config().heads, dh = d / heads;
  std::vector<double> y;
  for (std::int64_t b = 0; b < bsz; ++b) {
    std::vector<double> xb(x.data() + b * n_in * d, x.data() + (b + 1) * n_in * d), z(std::size_t(n_out * d), 0.0);
    for (std::int64_t i = 0; i < n_out; ++i)
      for (std::int64_t j = 0; j < d; ++j) {
        double& zij = z[std::size_t(i * d + j)];
        if constexpr (std::is_same_v<Q, hier::QueryBank>) {
          zij = get("query.bank")[i * d + j];  // z = P[0 : n_out]
        } else if constexpr (std::is_same_v<Q, hier::LengthMix>) {
          for (std::int64_t t = 0; t < n_in; ++t) zij += get("query.mix")[i * n_in + t] * xb[std::size_t(t * d + j)];
        } else if constexpr (D == kReduce) {
          // AvgPool_R over the group's valid rows (a partial last group: its r rows, weight 1 / r)
          std::int64_t const valid = std::min<std::int64_t>(R, n_in - i * R);
          for (std::int64_t r = 0; r < valid; ++r) zij += xb[std::size_t((i * R + r) * d + j)] / double(valid);
        } else {
          zij = xb[std::size_t((i / R) * d + j)];  // Repeat_R
        }
      }
    auto q = linear_ref(z, n_out, get("attn.q.weight"), get("attn.q.bias"));
    auto kv = linear_ref(xb, n_in, get("attn.kv.weight"), get("attn.kv.bias"));  // keys [0, d), values [d, 2 d)
    std::vector<double> att(std::size_t(n_out * d), 0.0), pr(static_cast<std::size_t>(n_in), 0.0);
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < n_out; ++i) {
        double mx = -1e300, sum = 0;
        for (std::int64_t t = 0; t < n_in; ++t) {
          double s = 0;
          for (std::int64_t c = 0; c < dh; ++c)
            s += q[std::size_t(i * d + h * dh + c)] * kv[std::size_t(t * 2 * d + h * dh + c)];
          pr[std::size_t(t)] = s / std::sqrt(double(dh));
          mx = std::max(mx, pr[std::size_t(t)]);
        }
        for (auto& v : pr) sum += (v = std::exp(v - mx));
        for (std::int64_t t = 0; t < n_in; ++t)
          for (std::int64_t c = 0; c < dh; ++c)
            att[std::size_t(i * d + h * dh + c)] +=
                pr[std::size_t(t)] / sum * kv[std::size_t(t * 2 * d + d + h * dh + c)];
      }
    auto yb = linear_ref(att, n_out, get("attn.out.weight"), get("attn.out.bias"));
    y.insert(y.end(), yb.begin(), yb.end());
  }
  return y;
}

template <std::int64_t R, class Q, LengthDirection D>
void check_against_reference(LengthResamplerConfig cfg, std::int64_t bsz, std::int64_t n) {
  cpu::Context ctx;
  Resampler<R, Q, D> m(cfg);
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 31, 0.5);
  std::int64_t n_in = hier::length_in<R, D>(n), n_out = hier::length_out<R, D>(n), d = cfg.dim;
  auto x = test::random_tensor(Shape{bsz, n_in, d}, 5);
  Tensor<double, cpu> y(Shape{bsz, n_out, d});
  Workspace<cpu> ws(m.forward_workspace(bsz, n));
  auto a = ws.arena();
  m.forward(ctx, x.cview(), y.view(), a);
  auto ref = reference_forward(m, x, n_out);
  REQUIRE(ref.size() == std::size_t(y.numel()));
  double worst = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::abs(ref[i] - y.data()[i]));
  CHECK(worst < 1e-12);
}

TEST_CASE_TEMPLATE("length_resampler: the residual adds the query input z to the output (and its gradient)", Q,
                   hier::QueryBank, hier::LengthMix, hier::PooledQueries) {
  LengthResamplerConfig c{.dim = 4, .heads = 2, .window = 8, .residual = true};
  check_resampler<Resampler<2, Q, kReduce>>(c, 2, test_length<Q>(8, 2));
  check_resampler<Resampler<2, Q, kExpand>>(c, 2, test_length<Q>(8, 2));
  // y(residual) - y(none) = z, with the same parameters.
  cpu::Context ctx;
  using M = Resampler<2, Q, kReduce>;
  LengthResamplerConfig plain = c;
  plain.residual = false;
  M with(c), without(plain);
  nn::ParamStore<cpu, double> pw(with), po(without);
  test::randomize_params(pw, 5, 0.4);
  test::randomize_params(po, 5, 0.4);
  std::int64_t const n = test_length<Q>(8, 2);
  auto x = test::random_tensor(Shape{2, n, 4}, 9);
  Tensor<double, cpu> yw(Shape{2, n / 2, 4}), yo(Shape{2, n / 2, 4});
  Workspace<cpu> ww(with.forward_workspace(2, n)), wo(without.forward_workspace(2, n));
  auto aw = ww.arena();
  auto ao = wo.arena();
  auto sw = with.forward(ctx, x.cview(), yw.view(), aw);
  without.forward(ctx, x.cview(), yo.view(), ao);
  double worst = 0;
  for (std::int64_t i = 0; i < yw.numel(); ++i) worst = std::max(worst, std::abs(yw.data()[i] - yo.data()[i] - sw.z.data[i]));
  CHECK(worst < 1e-14);
  double zmax = 0;
  for (std::int64_t i = 0; i < yw.numel(); ++i) zmax = std::max(zmax, std::abs(sw.z.data[i]));
  CHECK(zmax > 1e-3);  // the residual is not a zero added
}

TEST_CASE_TEMPLATE("length_resampler: forward equals the documented equations", Q, hier::QueryBank, hier::LengthMix,
                   hier::PooledQueries) {
  LengthResamplerConfig cfg{.dim = 6, .heads = 2, .window = 12};
  check_against_reference<3, Q, kReduce>(cfg, 2, test_length<Q>(12, 3));
  check_against_reference<3, Q, kExpand>(cfg, 2, test_length<Q>(12, 3));
  check_against_reference<2, Q, kReduce>({.dim = 4, .heads = 1, .window = 8, .bias = false}, 1, 8);
  check_against_reference<2, Q, kExpand>({.dim = 4, .heads = 1, .window = 8, .bias = false}, 1, 8);
  // Lengths R does not divide: 11 = 3 + 3 + 3 + 2 and 10 = 4 + 4 + 2 (the mean of the partial
  // group over its valid rows only; the expander's rows past n cut).
  check_against_reference<3, Q, kReduce>({.dim = 6, .heads = 2, .window = 11}, 2, 11);
  check_against_reference<3, Q, kExpand>({.dim = 6, .heads = 2, .window = 11}, 2, 11);
  check_against_reference<4, Q, kReduce>({.dim = 4, .heads = 1, .window = 10}, 1, 10);
  check_against_reference<4, Q, kExpand>({.dim = 4, .heads = 1, .window = 10}, 1, 10);
}

// ---------------------------------------------------------------------------------------------
// Shapes and parameters.
// ---------------------------------------------------------------------------------------------

TEST_CASE("length_resampler: parameter names and shapes follow the window and R") {
  LengthResamplerConfig cfg{.dim = 4, .heads = 2, .window = 12};
  auto layout = [](auto& m) {
    std::vector<std::pair<std::string, Shape>> out;
    m.visit_params([&](std::string const& name, nn::Param<double, HostSpace>& p) { out.emplace_back(name, p.shape); });
    return out;
  };
  Resampler<3, hier::QueryBank, kReduce> bank(cfg);
  Resampler<3, hier::QueryBank, kExpand> bank_up(cfg);
  Resampler<3, hier::LengthMix, kReduce> mix(cfg);
  Resampler<3, hier::LengthMix, kExpand> mix_up(cfg);
  Resampler<3, hier::PooledQueries, kReduce> pooled(cfg);
  std::vector<std::pair<std::string, Shape>> attn = {{"attn.q.weight", Shape{4, 4}},   {"attn.q.bias", Shape{4}},
                                                     {"attn.kv.weight", Shape{8, 4}},  {"attn.kv.bias", Shape{8}},
                                                     {"attn.out.weight", Shape{4, 4}}, {"attn.out.bias", Shape{4}}};
  auto with = [&](std::string name, Shape s) {
    auto v = attn;
    v.insert(v.begin(), std::make_pair(std::move(name), s));
    return v;
  };
  CHECK(layout(bank) == with("query.bank", Shape{4, 4}));      // window / R queries
  CHECK(layout(bank_up) == with("query.bank", Shape{12, 4}));  // window queries
  CHECK(layout(mix) == with("query.mix", Shape{4, 12}));       // [m, n]
  CHECK(layout(mix_up) == with("query.mix", Shape{12, 4}));    // [n, m]
  CHECK(layout(pooled) == attn);
}

TEST_CASE_TEMPLATE("length_resampler: [B, n, d] -> [B, ceil(n / R), d] -> [B, n, d] at every accepted n", Q,
                   hier::QueryBank,
                   hier::LengthMix, hier::PooledQueries) {
  cpu::Context ctx;
  constexpr std::int64_t kR = 2;
  std::int64_t const d = 4, bsz = 3, window = 8;
  Resampler<kR, Q, kReduce> red({.dim = d, .heads = 2, .window = window});
  Resampler<kR, Q, kExpand> up({.dim = d, .heads = 2, .window = window});
  nn::ParamStore<cpu, double> ps_r(red), ps_e(up);
  ps_r.init(ctx, 1);
  ps_e.init(ctx, 2);
  std::vector<std::int64_t> lengths;
  if constexpr (std::is_same_v<Q, hier::LengthMix>)
    lengths = {window};
  else if constexpr (std::is_same_v<Q, hier::QueryBank>)
    lengths = {1, 2, 3, 4, 5, 6, 7, 8};
  else
    lengths = {1, 2, 3, 4, 8, 15, 16, 22};  // the window does not limit pooled queries
  for (std::int64_t n : lengths) {
    CAPTURE(n);
    Workspace<cpu> ws(red.forward_workspace(bsz, n) + up.forward_workspace(bsz, n));
    auto a = ws.arena();
    auto x = test::random_tensor(Shape{bsz, n, d}, 3);
    Tensor<double, cpu> latent(Shape{bsz, (n + kR - 1) / kR, d}), back(Shape{bsz, n, d});
    red.forward(ctx, x.cview(), latent.view(), a);
    CHECK(a.used() == red.forward_workspace(bsz, n));
    up.forward(ctx, latent.cview(), back.view(), a);
    CHECK(a.used() == red.forward_workspace(bsz, n) + up.forward_workspace(bsz, n));
    CHECK(std::all_of(latent.data(), latent.data() + latent.numel(), [](double v) { return std::isfinite(v); }));
    CHECK(std::all_of(back.data(), back.data() + back.numel(), [](double v) { return std::isfinite(v); }));
    // The output shape is the only one forward accepts.
    Tensor<double, cpu> wrong(Shape{bsz, (n + kR - 1) / kR + 1, d});
    auto a2 = ws.arena();
    CHECK_THROWS_AS(red.forward(ctx, x.cview(), wrong.view(), a2), Error);
    Tensor<double, cpu> wrong_up(Shape{bsz, n, d + 1});
    CHECK_THROWS_AS(up.forward(ctx, latent.cview(), wrong_up.view(), a2), Error);
  }
}

TEST_CASE("length_resampler: the PooledQueries expander repeats its queries, so a block's R rows are equal") {
  cpu::Context ctx;
  std::int64_t const d = 4, m = 3, r = 3;
  Resampler<3, hier::PooledQueries, kExpand> up({.dim = d, .heads = 2});
  nn::ParamStore<cpu, double> ps(up);
  test::randomize_params(ps, 3, 0.5);
  auto latent = test::random_tensor(Shape{1, m, d}, 4);
  Tensor<double, cpu> y(Shape{1, m * r, d});
  Workspace<cpu> ws(up.forward_workspace(1, m * r));
  auto a = ws.arena();
  up.forward(ctx, latent.cview(), y.view(), a);
  auto v = to_vector(y);
  for (std::int64_t t = 1; t < m * r; ++t) {
    CAPTURE(t);
    double diff = rows_diff(v, t - 1, t, d);
    if (t % r)
      CHECK(diff == 0);  // same block: same query, same keys
    else
      CHECK(diff > 1e-6);  // next block: another latent row as the query
  }
}

// ---------------------------------------------------------------------------------------------
// Bad sizes.
// ---------------------------------------------------------------------------------------------

TEST_CASE("length_resampler: bad sizes are refused with the sizes named") {
  cpu::Context ctx;
  LengthResamplerConfig cfg{.dim = 4, .heads = 2, .window = 8};
  Resampler<2, hier::PooledQueries, kReduce> pooled(cfg);
  Resampler<2, hier::QueryBank, kReduce> bank(cfg);
  Resampler<2, hier::QueryBank, kExpand> bank_up(cfg);
  Resampler<2, hier::LengthMix, kReduce> mix(cfg);
  Resampler<2, hier::LengthMix, kExpand> mix_up(cfg);
  nn::ParamStore<cpu, double> p1(pooled), p2(bank), p3(bank_up), p4(mix), p5(mix_up);
  Workspace<cpu> ws(1 << 20);
  auto run = [&](auto const& m, Shape xs, Shape ys) {
    auto x = test::random_tensor(xs, 1);
    Tensor<double, cpu> y(ys);
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a);
  };
  // The accepted sizes at the boundaries run (so the refusals below are about the sizes).
  CHECK_NOTHROW(run(pooled, Shape{1, 10, 4}, Shape{1, 5, 4}));
  CHECK_NOTHROW(run(bank, Shape{1, 8, 4}, Shape{1, 4, 4}));
  CHECK_NOTHROW(run(bank_up, Shape{1, 4, 4}, Shape{1, 8, 4}));
  CHECK_NOTHROW(run(mix, Shape{1, 8, 4}, Shape{1, 4, 4}));
  CHECK_NOTHROW(run(mix_up, Shape{1, 4, 4}, Shape{1, 8, 4}));

  CHECK_NOTHROW(run(pooled, Shape{1, 7, 4}, Shape{1, 4, 4}));  // padded: ceil(7 / 2) = 4 rows
  CHECK_NOTHROW(run(bank_up, Shape{1, 4, 4}, Shape{1, 7, 4}));
  CHECK_THROWS_WITH_AS(run(pooled, Shape{1, 7, 4}, Shape{1, 3, 4}),
                       doctest::Contains("LengthReducer<R = 2, pool>: y [1, 3, 4] for x [1, 7, 4], expected [1, 4, 4]"),
                       Error);
  CHECK_THROWS_WITH_AS(run(mix, Shape{2, 9, 4}, Shape{2, 5, 4}),
                       doctest::Contains("length n = 9 (x [2, 9, 4]) differs from the window 8"), Error);
  CHECK_THROWS_WITH_AS(run(bank_up, Shape{1, 4, 4}, Shape{1, 6, 4}),
                       doctest::Contains("LengthExpander<R = 2, bank>: y [1, 6, 4] for x [1, 4, 4]: expected [1, n, 4] "
                                         "with ceil(n / 2) = 4, i.e. n in [7, 8]"),
                       Error);
  CHECK_THROWS_WITH_AS(run(bank, Shape{1, 10, 4}, Shape{1, 5, 4}),
                       doctest::Contains("length n = 10 (x [1, 10, 4]) exceeds the window 8"), Error);
  CHECK_THROWS_WITH_AS(
      run(bank_up, Shape{1, 5, 4}, Shape{1, 10, 4}),
      doctest::Contains("LengthExpander<R = 2, bank>: length n = 10 (x [1, 5, 4]) exceeds the window 8"), Error);
  CHECK_THROWS_WITH_AS(
      run(bank_up, Shape{1, 5, 4}, Shape{1, 9, 4}),
      doctest::Contains("LengthExpander<R = 2, bank>: length n = 9 (x [1, 5, 4]) exceeds the window 8"), Error);
  CHECK_THROWS_WITH_AS(run(mix, Shape{1, 6, 4}, Shape{1, 3, 4}),
                       doctest::Contains("length n = 6 (x [1, 6, 4]) differs from the window 8"), Error);
  CHECK_THROWS_WITH_AS(
      run(mix_up, Shape{1, 3, 4}, Shape{1, 6, 4}),
      doctest::Contains("LengthExpander<R = 2, mix>: length n = 6 (x [1, 3, 4]) differs from the window 8"), Error);
  CHECK_THROWS_WITH_AS(run(bank, Shape{1, 8, 5}, Shape{1, 4, 5}),
                       doctest::Contains("x [1, 8, 5] has width 5, expected dim 4"), Error);
  CHECK_THROWS_WITH_AS(run(pooled, Shape{1, 8, 3}, Shape{1, 4, 3}),
                       doctest::Contains("x [1, 8, 3] has width 3, expected dim 4"), Error);
  CHECK_THROWS_WITH_AS(run(pooled, Shape{2, 8, 4}, Shape{2, 8, 4}),
                       doctest::Contains("y [2, 8, 4] for x [2, 8, 4], expected [2, 4, 4]"), Error);
  CHECK_THROWS_WITH_AS(run(mix_up, Shape{2, 4, 4}, Shape{2, 4, 4}),
                       doctest::Contains("y [2, 4, 4] for x [2, 4, 4]: expected [2, n, 4] with ceil(n / 2) = 4"), Error);

  // Configurations: the bank and the mix need a positive window (any: a partial last group is
  // padded); pooled queries ignore it.
  using BankReducer = Resampler<2, hier::QueryBank, kReduce>;
  using MixExpander = Resampler<3, hier::LengthMix, kExpand>;
  using PooledReducer = Resampler<2, hier::PooledQueries, kReduce>;
  LengthResamplerConfig odd{.dim = 4, .heads = 2, .window = 7}, none{.dim = 4, .heads = 2, .window = 0};
  CHECK_NOTHROW(BankReducer{odd});
  CHECK(BankReducer{odd}.source().bank().shape == (Shape{4, 4}));  // ceil(7 / 2) queries
  CHECK_THROWS_WITH_AS(BankReducer{none}, doctest::Contains("LengthReducer<R = 2, bank>: window 0 must be positive"),
                       Error);
  CHECK_THROWS_WITH_AS(MixExpander{none}, doctest::Contains("LengthExpander<R = 3, mix>: window 0 must be positive"),
                       Error);
  CHECK_NOTHROW(PooledReducer{none});
  LengthResamplerConfig no_dim{.dim = 0, .heads = 1};
  CHECK_THROWS_WITH_AS(PooledReducer{no_dim}, doctest::Contains("dim 0 and heads 1 must be positive"), Error);
}

// ---------------------------------------------------------------------------------------------
// No causal mask; the latent is the only path from input to output.
// ---------------------------------------------------------------------------------------------

/// y for x and for x with its last row shifted by 1: the first output row must differ.
template <std::int64_t R, class Q, LengthDirection D>
void check_last_row_reaches_first(std::int64_t n) {
  cpu::Context ctx;
  std::int64_t const d = 4;
  Resampler<R, Q, D> m({.dim = d, .heads = 2, .window = n});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 11, 0.5);
  std::int64_t n_in = hier::length_in<R, D>(n), n_out = hier::length_out<R, D>(n);
  Workspace<cpu> ws(m.forward_workspace(1, n));
  auto run = [&](Tensor<double, cpu> const& x) {
    Tensor<double, cpu> y(Shape{1, n_out, d});
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a);
    return to_vector(y);
  };
  auto x = test::random_tensor(Shape{1, n_in, d}, 6);
  auto base = run(x);
  for (std::int64_t j = 0; j < d; ++j) x.data()[(n_in - 1) * d + j] += 1.0;
  auto moved = run(x);
  CHECK(row_diff(base, moved, 0, d) > 1e-6);
}

TEST_CASE_TEMPLATE("length_resampler: bidirectional: the last input row changes the first output row", Q,
                   hier::QueryBank, hier::LengthMix, hier::PooledQueries) {
  check_last_row_reaches_first<2, Q, kReduce>(8);
  check_last_row_reaches_first<2, Q, kExpand>(8);
  check_last_row_reaches_first<4, Q, kReduce>(12);
  check_last_row_reaches_first<4, Q, kExpand>(12);
}

/// Rank of a [rows, cols] row-major matrix by Gaussian elimination with full pivoting; pivots below
/// rel_tol times the first (largest) pivot count as zero.
int numeric_rank(std::vector<double> a, int rows, int cols, double rel_tol) {
  int rank = 0;
  double first = 0;
  for (int k = 0; k < std::min(rows, cols); ++k) {
    int pi = k, pj = k;
    for (int i = k; i < rows; ++i)
      for (int j = k; j < cols; ++j)
        if (std::abs(a[std::size_t(i * cols + j)]) > std::abs(a[std::size_t(pi * cols + pj)])) pi = i, pj = j;
    double piv = std::abs(a[std::size_t(pi * cols + pj)]);
    if (k == 0) first = piv;
    if (!(piv > rel_tol * first) || piv == 0) break;
    ++rank;
    for (int j = 0; j < cols; ++j) std::swap(a[std::size_t(k * cols + j)], a[std::size_t(pi * cols + j)]);
    for (int i = 0; i < rows; ++i) std::swap(a[std::size_t(i * cols + k)], a[std::size_t(i * cols + pj)]);
    for (int i = k + 1; i < rows; ++i) {
      double f = a[std::size_t(i * cols + k)] / a[std::size_t(k * cols + k)];
      for (int j = k; j < cols; ++j) a[std::size_t(i * cols + j)] -= f * a[std::size_t(k * cols + j)];
    }
  }
  return rank;
}

TEST_CASE("length_resampler: numeric_rank (the helper below) finds full and deficient ranks") {
  std::vector<double> eye(36, 0.0), low(36, 0.0);
  for (int i = 0; i < 6; ++i) eye[std::size_t(i * 7)] = 1.0 + i;
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 6; ++j) low[std::size_t(i * 6 + j)] = (i + 1.0) * (j + 2.0) + (i % 2) * (j - 1.5);  // rank 2
  CHECK(numeric_rank(eye, 6, 6, 1e-10) == 6);
  CHECK(numeric_rank(low, 6, 6, 1e-10) == 2);
}

TEST_CASE_TEMPLATE("length_resampler: reduce -> expand passes through the m latent rows only", Q, hier::QueryBank,
                   hier::LengthMix, hier::PooledQueries) {
  cpu::Context ctx;
  constexpr std::int64_t kR = 2;
  std::int64_t const d = 4, n = 8, m = n / kR;
  Resampler<kR, Q, kReduce> red({.dim = d, .heads = 2, .window = n});
  Resampler<kR, Q, kExpand> up({.dim = d, .heads = 2, .window = n});
  nn::ParamStore<cpu, double> ps_r(red), ps_e(up);
  test::randomize_params(ps_r, 41, 0.5);
  test::randomize_params(ps_e, 43, 0.5);
  Workspace<cpu> ws(red.forward_workspace(1, n) + up.forward_workspace(1, n) +
                    std::max(red.backward_workspace(1, n), up.backward_workspace(1, n)));
  auto reduce = [&](Tensor<double, cpu> const& x) {
    Tensor<double, cpu> l(Shape{1, m, d});
    auto a = ws.arena();
    red.forward(ctx, x.cview(), l.view(), a);
    return l;
  };
  auto expand = [&](Tensor<double, cpu> const& l) {
    Tensor<double, cpu> y(Shape{1, n, d});
    auto a = ws.arena();
    up.forward(ctx, l.cview(), y.view(), a);
    return to_vector(y);
  };
  auto x1 = test::random_tensor(Shape{1, n, d}, 7), x2 = test::random_tensor(Shape{1, n, d}, 8);

  SUBCASE("same latent, same output; another input's latent, another output") {
    auto l1 = reduce(x1);
    auto y1 = expand(l1);
    auto l2 = reduce(x2);  // overwrites the shared workspace with another input's buffers
    auto y2 = expand(l2);
    Tensor<double, cpu> l1_copy(l1.shape());
    std::copy(l1.data(), l1.data() + l1.numel(), l1_copy.data());
    CHECK(expand(l1_copy) == y1);  // bit-identical: nothing but the latent reaches the expander
    double diff = 0;
    for (std::int64_t t = 0; t < n; ++t) diff = std::max(diff, row_diff(y1, y2, t, d));
    CHECK(diff > 1e-6);
  }

  SUBCASE("perturbing any latent row changes every output row") {
    auto l = reduce(x1);
    auto base = expand(l);
    for (std::int64_t i = 0; i < m; ++i) {
      Tensor<double, cpu> lp(l.shape());
      std::copy(l.data(), l.data() + l.numel(), lp.data());
      lp.data()[i * d + 1] += 0.5;
      auto out = expand(lp);
      for (std::int64_t t = 0; t < n; ++t) {
        CAPTURE(i);
        CAPTURE(t);
        CHECK(row_diff(base, out, t, d) > 1e-8);
      }
    }
  }

  SUBCASE("the Jacobian d(output) / d(input) has rank m d < n d") {
    // One backward per output element through expand then reduce: row k of J = d y_k / d x.
    std::int64_t const rows = n * d, cols = n * d;
    std::vector<double> jac;
    Tensor<double, cpu> l(Shape{1, m, d}), y(Shape{1, n, d}), dy(Shape{1, n, d}), dl(Shape{1, m, d}),
        dx(Shape{1, n, d});
    for (std::int64_t k = 0; k < rows; ++k) {
      auto a = ws.arena();
      auto sr = red.forward(ctx, x1.cview(), l.view(), a);
      auto se = up.forward(ctx, l.cview(), y.view(), a);
      std::fill(dy.data(), dy.data() + dy.numel(), 0.0);
      dy.data()[k] = 1.0;
      up.backward(ctx, se, dy.cview(), dl.view(), a);
      red.backward(ctx, sr, dl.cview(), dx.view(), a);
      jac.insert(jac.end(), dx.data(), dx.data() + dx.numel());
    }
    int rank = numeric_rank(jac, int(rows), int(cols), 1e-10);
    CHECK(rank == m * d);
    CHECK(rank < n * d);
  }
}

}  // namespace HSEQ_TEST_UNIT
