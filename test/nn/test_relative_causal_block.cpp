// SPDX-License-Identifier: MIT
// nn::RelativeCausalBlock (pre-LN causal self-attention block with Transformer-XL relative positions
// and a distance scale, as a backbone policy): the concepts and the Config made from a
// TransformerBlock's, gradients of the input and every parameter at distance scales 1 and 4, a
// naive reference of the block's equations, causality, the scale's effect, cached steps against the
// full forward (n = 1 and n > 1, double and float, cache reuse), a BlockStack of these blocks, and
// bad inputs.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "hseq/nn/block_stack.hpp"
#include "hseq/nn/relative_causal_block.hpp"
#include "hseq/nn/transformer_block.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using test::random_tensor;
template <class T>
using BlockT = nn::RelativeCausalBlock<cpu, T>;
using Block = BlockT<double>;
using TbConfig = nn::TransformerBlock<cpu, double>::Config;

// The block is a backbone policy the models can build (Config from a TransformerBlock's), in both
// precisions, and says that it encodes positions itself; a TransformerBlock does not.
static_assert(nn::ModelBackbonePolicy<Block, cpu, double>);
static_assert(nn::ModelBackbonePolicy<BlockT<float>, cpu, float>);
static_assert(Block::kRelativePositions);
static_assert(nn::kBlockRelativePositions<Block>);
static_assert(!nn::kBlockRelativePositions<nn::TransformerBlock<cpu, double>>);

namespace {

constexpr std::int64_t kDim = 8, kHeads = 2, kHidden = 12;

template <class T = double>
BlockT<T> make_block(std::int64_t scale, std::int64_t clamp = 0) {
  typename BlockT<T>::Config c(
      typename nn::TransformerBlock<cpu, T>::Config{.dim = kDim, .heads = kHeads, .mlp_hidden = kHidden});
  c.distance_scale = scale;
  c.clamp_len = clamp;
  return BlockT<T>(c);
}

/// y of a forward on a fresh workspace of exactly the plan.
template <class T>
std::vector<T> run(BlockT<T> const& m, Tensor<T, cpu> const& x) {
  cpu::Context ctx;
  Workspace<cpu> ws(m.forward_workspace(x.shape()[0], x.shape()[1]));
  auto a = ws.arena();
  Tensor<T, cpu> y(x.shape());
  m.forward(ctx, x.cview(), y.view(), a);
  return std::vector<T>(y.data(), y.data() + y.numel());
}

/// The block's equations by explicit loops in long double (file comments of
/// nn/relative_causal_block.hpp and nn/relative_attention.hpp): LN1, the relative attention with
/// score(i, j) = ((q_i + u) . k_j + (q_i + v) . Rk[δ']) / sqrt(dh), δ' = min(i - j, clamp), Rk[δ] =
/// Wr sinusoid(δ scale), causal softmax, output projection, residual, LN2, tanh-GELU MLP, residual.
std::vector<double> reference(nn::ParamStore<cpu, double>& ps, std::int64_t scale, std::int64_t clamp,
                              Tensor<double, cpu> const& x) {
  using LD = long double;
  std::int64_t const bsz = x.shape()[0], t = x.shape()[1], d = kDim, dh = d / kHeads;
  auto val = [&](std::string const& name) { return ps.find(name).value.data; };
  auto lin = [&](std::string const& name, std::vector<LD> const& in, std::int64_t out_dim, bool bias) {
    std::int64_t const in_dim = std::int64_t(in.size());
    double const* w = val(name + ".weight");
    double const* b = bias ? val(name + ".bias") : nullptr;
    std::vector<LD> o(static_cast<std::size_t>(out_dim));
    for (std::int64_t r = 0; r < out_dim; ++r) {
      LD acc = b ? LD(b[r]) : LD(0);
      for (std::int64_t c = 0; c < in_dim; ++c) acc += LD(w[r * in_dim + c]) * in[std::size_t(c)];
      o[std::size_t(r)] = acc;
    }
    return o;
  };
  auto layer_norm = [&](std::string const& name, std::vector<LD> const& in) {
    LD mean = 0, var = 0;
    for (LD v : in) mean += v;
    mean /= LD(d);
    for (LD v : in) var += (v - mean) * (v - mean);
    var /= LD(d);
    double const* g = val(name + ".weight");
    double const* be = val(name + ".bias");
    std::vector<LD> o(in.size());
    for (std::size_t c = 0; c < in.size(); ++c)
      o[c] = (in[c] - mean) / std::sqrt(var + LD(1e-5)) * LD(g[c]) + LD(be[c]);
    return o;
  };
  std::vector<std::vector<LD>> rk;  // Rk[δ], δ = 0..T-1
  for (std::int64_t delta = 0; delta < t; ++delta) {
    std::int64_t const dc = (clamp > 0 ? std::min(delta, clamp) : delta) * scale;
    std::vector<LD> sin_row(static_cast<std::size_t>(d));
    for (std::int64_t c = 0; c < d; ++c) {
      LD angle = LD(dc) / std::pow(10000.0L, LD(c - c % 2) / LD(d));
      sin_row[std::size_t(c)] = c % 2 == 0 ? std::sin(angle) : std::cos(angle);
    }
    rk.push_back(lin("attn.r", sin_row, d, false));
  }
  double const* u = val("attn.u");
  double const* v = val("attn.v");
  LD const inv = 1.0L / std::sqrt(LD(dh));
  std::vector<double> y(static_cast<std::size_t>(bsz * t * d));
  for (std::int64_t b = 0; b < bsz; ++b) {
    std::vector<std::vector<LD>> xr, h1, kv;
    for (std::int64_t i = 0; i < t; ++i) {
      xr.emplace_back(x.data() + (b * t + i) * d, x.data() + (b * t + i + 1) * d);
      h1.push_back(layer_norm("ln1", xr.back()));
      kv.push_back(lin("attn.kv", h1.back(), 2 * d, true));
    }
    for (std::int64_t i = 0; i < t; ++i) {
      auto q = lin("attn.q", h1[std::size_t(i)], d, true);
      std::vector<LD> att(static_cast<std::size_t>(d), 0);
      for (std::int64_t h = 0; h < kHeads; ++h) {
        std::vector<LD> logit(static_cast<std::size_t>(i + 1));
        LD mx = -1e300L, sum = 0;
        for (std::int64_t j = 0; j <= i; ++j) {
          LD content = 0, position = 0;
          for (std::int64_t e = 0; e < dh; ++e) {
            std::size_t c = std::size_t(h * dh + e);
            content += (q[c] + LD(u[c])) * kv[std::size_t(j)][c];
            position += (q[c] + LD(v[c])) * rk[std::size_t(i - j)][c];
          }
          logit[std::size_t(j)] = (content + position) * inv;
          mx = std::max(mx, logit[std::size_t(j)]);
        }
        for (LD l : logit) sum += std::exp(l - mx);
        for (std::int64_t j = 0; j <= i; ++j) {
          LD p = std::exp(logit[std::size_t(j)] - mx) / sum;
          for (std::int64_t e = 0; e < dh; ++e)
            att[std::size_t(h * dh + e)] += p * kv[std::size_t(j)][std::size_t(d + h * dh + e)];
        }
      }
      auto a = lin("attn.out", att, d, true);
      std::vector<LD> x1(static_cast<std::size_t>(d));
      for (std::size_t c = 0; c < x1.size(); ++c) x1[c] = xr[std::size_t(i)][c] + a[c];
      auto hid = lin("mlp.fc1", layer_norm("ln2", x1), kHidden, true);
      for (LD& z : hid) z = 0.5L * z * (1 + std::tanh(0.7978845608028654L * (z + 0.044715L * z * z * z)));
      auto m = lin("mlp.fc2", hid, d, true);
      for (std::int64_t c = 0; c < d; ++c)
        y[std::size_t((b * t + i) * d + c)] = double(x1[std::size_t(c)] + m[std::size_t(c)]);
    }
  }
  return y;
}

/// Feeds x [B, T, dim] through forward_step over `cache` from position 0 in chunks of next(pos)
/// positions; returns the stepped outputs [B, T, dim]. Checks every step's scratch against the plan.
template <class T>
std::vector<T> run_steps(BlockT<T> const& m, Tensor<T, cpu> const& x, Tensor<T, cpu>& cache,
                         std::function<std::int64_t(std::int64_t)> const& next) {
  cpu::Context ctx;
  std::int64_t const bsz = x.shape()[0], t = x.shape()[1], d = x.shape()[2];
  Workspace<cpu> ws(m.step_workspace(bsz, t, t));
  std::vector<T> out(static_cast<std::size_t>(x.numel()), T(0));
  for (std::int64_t pos = 0; pos < t;) {
    std::int64_t const n = std::min(next(pos), t - pos);
    Tensor<T, cpu> xc(Shape{bsz, n, d}), yc(Shape{bsz, n, d});
    for (std::int64_t b = 0; b < bsz; ++b) std::copy_n(x.data() + (b * t + pos) * d, n * d, xc.data() + b * n * d);
    auto a = ws.arena();
    m.forward_step(ctx, xc.cview(), cache.view(), pos, yc.view(), a);
    CHECK(a.high_water() == m.step_workspace(bsz, n, pos));  // the plan is the use
    CHECK(a.used() == 0);                                    // scratch released
    for (std::int64_t b = 0; b < bsz; ++b) std::copy_n(yc.data() + b * n * d, n * d, out.data() + (b * t + pos) * d);
    pos += n;
  }
  return out;
}

template <class T>
double max_abs_diff(std::vector<T> const& a, std::vector<T> const& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
  return worst;
}

}  // namespace

TEST_CASE("RelativeCausalBlock: Config from a TransformerBlock's takes its fields; a non-causal mask is an error") {
  TbConfig tb{
      .dim = 12, .heads = 3, .mlp_hidden = 20, .bias = false, .eps = 1e-6, .init_std = 0.05, .out_init_std = 0.01};
  Block::Config c(tb);
  CHECK(c.dim == 12);
  CHECK(c.heads == 3);
  CHECK(c.mlp_hidden == 20);
  CHECK(c.bias == false);
  CHECK(c.eps == 1e-6);
  CHECK(c.init_std == 0.05);
  CHECK(c.out_init_std == 0.01);
  CHECK(c.distance_scale == 1);
  CHECK(c.clamp_len == 0);
  // The fields reach the modules: without biases there is no projection bias parameter, and the
  // attention's scale and clamp are the Config's.
  c.distance_scale = 3;
  c.clamp_len = 5;
  Block m(c);
  CHECK(m.inner().attention().config().distance_scale == 3);
  CHECK(m.inner().attention().config().clamp_len == 5);
  nn::ParamStore<cpu, double> ps(m);
  std::vector<std::string> names;
  for (auto const& e : ps.entries()) names.push_back(e.name);
  CHECK(std::find(names.begin(), names.end(), "attn.q.bias") == names.end());
  CHECK(std::find(names.begin(), names.end(), "mlp.fc1.bias") == names.end());
  CHECK(std::find(names.begin(), names.end(), "attn.r.weight") != names.end());
  CHECK(ps.find("mlp.fc1.weight").value.shape == Shape{20, 12});
  CHECK(std::find(names.begin(), names.end(), "ln1.bias") != names.end());  // LayerNorm keeps its bias
  TbConfig bidirectional{.dim = 8, .heads = 2, .mask = nn::AttentionMask::none()};
  CHECK_THROWS_WITH_AS(Block::Config{bidirectional}, doctest::Contains("mask none"), Error);
  Block::Config bad(TbConfig{.dim = 8, .heads = 2});
  bad.distance_scale = 0;
  CHECK_THROWS_WITH_AS(Block{bad}, doctest::Contains("distance_scale 0"), Error);
}

TEST_CASE("gradcheck: RelativeCausalBlock, input and every parameter, distance scales 1 and 4") {
  struct Case {
    std::int64_t scale, clamp;
  };
  for (Case c : {Case{1, 0}, Case{4, 0}, Case{3, 2}}) {
    INFO("distance_scale ", c.scale, ", clamp_len ", c.clamp);
    cpu::Context ctx;
    std::int64_t const bsz = 2, t = 5;
    Block m = make_block(c.scale, c.clamp);
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 21);
    auto x = random_tensor(Shape{bsz, t, kDim}, 1), dx = random_tensor(Shape{bsz, t, kDim}, 0);
    auto r = random_tensor(Shape{bsz, t, kDim}, 2);
    Tensor<double, cpu> y(Shape{bsz, t, kDim});
    std::size_t const fw = m.forward_workspace(bsz, t), plan = fw + m.backward_workspace(bsz, t);
    Workspace<cpu> ws(plan);
    auto loss = [&] {
      auto a = ws.arena();
      m.forward(ctx, x.cview(), y.view(), a);
      CHECK(a.high_water() == fw);
      return test::dot(y.cview(), r.cview());
    };
    auto grads = [&] {
      auto a = ws.arena();
      auto s = m.forward(ctx, x.cview(), y.view(), a);
      m.backward(ctx, s, r.cview(), dx.view(), a);
      CHECK(a.high_water() == plan);  // forward keeps what it carves; backward's scratch follows
    };
    test::GradCheck gc(ps);
    gc.input("x", x.view(), dx.view());
    gc.run(loss, grads);
  }
}

TEST_CASE("RelativeCausalBlock: forward matches a naive reference of the block's equations (scaled distances)") {
  std::int64_t const bsz = 2, t = 7;
  struct Case {
    std::int64_t scale, clamp;
  };
  for (Case c : {Case{1, 0}, Case{4, 0}, Case{16, 0}, Case{4, 3}}) {
    INFO("distance_scale ", c.scale, ", clamp_len ", c.clamp);
    Block m = make_block(c.scale, c.clamp);
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 13, 0.7);
    auto x = random_tensor(Shape{bsz, t, kDim}, 1);
    auto y = run(m, x);
    auto ref = reference(ps, c.scale, c.clamp, x);
    for (std::size_t i = 0; i < y.size(); ++i) CHECK(y[i] == doctest::Approx(ref[i]).epsilon(1e-11));
  }
}

TEST_CASE("RelativeCausalBlock: the distance scale changes the output on the same weights") {
  std::int64_t const bsz = 2, t = 6;
  Block m1 = make_block(1), m4 = make_block(4);
  nn::ParamStore<cpu, double> p1(m1), p4(m4);
  test::randomize_params(p1, 17, 0.7);
  test::randomize_params(p4, 17, 0.7);  // the same draws: the same weights
  for (std::size_t k = 0; k < p1.entries().size(); ++k) {
    auto a = p1.entries()[k].param->value, b = p4.entries()[k].param->value;
    REQUIRE(std::memcmp(a.data, b.data, sizeof(double) * std::size_t(a.numel())) == 0);
  }
  auto x = random_tensor(Shape{bsz, t, kDim}, 3);
  auto y1 = run(m1, x), y4 = run(m4, x);
  // Row 0 of each sequence sees only distance 0, where sinusoid(0 s) = sinusoid(0): equal rows.
  // Every later row sees distances >= 1, scaled differently: different rows.
  for (std::int64_t b = 0; b < bsz; ++b)
    for (std::int64_t i = 0; i < t; ++i) {
      double diff = 0;
      for (std::int64_t c = 0; c < kDim; ++c) {
        std::size_t k = std::size_t((b * t + i) * kDim + c);
        diff = std::max(diff, std::abs(y1[k] - y4[k]));
      }
      CAPTURE(i);
      if (i == 0)
        CHECK(diff == 0.0);
      else
        CHECK(diff > 1e-6);
    }
}

TEST_CASE("RelativeCausalBlock: causal by perturbation at distance scales 1 and 4") {
  for (std::int64_t scale : {1, 4}) {
    CAPTURE(scale);
    Block m = make_block(scale);
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 5);
    std::int64_t const bsz = 2, t = 7;
    auto x = random_tensor(Shape{bsz, t, kDim}, 7);
    auto base = run(m, x);
    for (std::int64_t p : {std::int64_t(0), std::int64_t(3), t - 1}) {
      CAPTURE(p);
      auto x2 = random_tensor(Shape{bsz, t, kDim}, 7);  // the same draws as x
      x2.data()[(1 * t + p) * kDim + 2] += 0.5;         // batch row 1, position p
      auto y2 = run(m, x2);
      std::int64_t before_changed = 0, after_changed = 0;
      for (std::int64_t b = 0; b < bsz; ++b)
        for (std::int64_t i = 0; i < t; ++i) {
          bool same = std::memcmp(y2.data() + (b * t + i) * kDim, base.data() + (b * t + i) * kDim,
                                  sizeof(double) * std::size_t(kDim)) == 0;
          if (b == 0 || i < p)
            before_changed += !same;  // rows < p (and the other batch row): bit-identical
          else
            after_changed += !same;
        }
      CHECK(before_changed == 0);
      CHECK(after_changed == t - p);  // and every row >= p moves
    }
  }
}

TEST_CASE("RelativeCausalBlock: forward_step equals the full forward's rows (n = 1 and n > 1, several positions)") {
  std::int64_t const bsz = 2, t = 11, cap = 13;
  struct Case {
    std::int64_t scale, clamp;
  };
  struct Schedule {
    char const* name;
    std::function<std::int64_t(std::int64_t)> next;
  };
  std::vector<Schedule> schedules{
      {"one at a time", [](std::int64_t) { return std::int64_t(1); }},
      {"prefill 4, then 1", [](std::int64_t pos) { return pos == 0 ? std::int64_t(4) : std::int64_t(1); }},
      {"chunks of 3", [](std::int64_t) { return std::int64_t(3); }},
      {"all at once", [](std::int64_t) { return std::int64_t(11); }},
  };
  for (Case c : {Case{1, 0}, Case{4, 0}, Case{4, 3}}) {
    Block m = make_block(c.scale, c.clamp);
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 31, 0.5);
    auto x = random_tensor(Shape{bsz, t, kDim}, 9);
    auto full = run(m, x);
    Tensor<double, cpu> cache(m.cache_shape(bsz, cap));
    CHECK(cache.shape() == Shape{bsz + 1, cap, 2 * kDim});
    for (auto const& s : schedules) {
      INFO("distance_scale ", c.scale, ", clamp_len ", c.clamp, ", ", s.name);
      // The cache is reused across schedules: each generation restarts at position 0.
      auto stepped = run_steps(m, x, cache, s.next);
      CHECK(max_abs_diff(full, stepped) <= 1e-12);
    }
    // New parameters: the next generation over the same cache (restarting at 0) follows them,
    // because the Rk rows, like the keys, are rewritten from row 0.
    test::randomize_params(ps, 32, 0.5);
    auto full2 = run(m, x);
    REQUIRE(max_abs_diff(full, full2) > 1e-3);
    CHECK(max_abs_diff(full2, run_steps(m, x, cache, schedules[1].next)) <= 1e-12);
  }
}

TEST_CASE("RelativeCausalBlock: forward_step equals the full forward in float") {
  std::int64_t const bsz = 2, t = 9;
  for (std::int64_t scale : {1, 4}) {
    CAPTURE(scale);
    auto m = make_block<float>(scale);
    nn::ParamStore<cpu, float> ps(m);
    test::randomize_params(ps, 41, 0.5);
    auto x = random_tensor<float>(Shape{bsz, t, kDim}, 9);
    auto full = run(m, x);
    Tensor<float, cpu> cache(m.cache_shape(bsz, t));
    auto stepped =
        run_steps<float>(m, x, cache, [](std::int64_t pos) { return pos == 0 ? std::int64_t(3) : std::int64_t(1); });
    CHECK(max_abs_diff(full, stepped) <= 1e-5);
  }
}

TEST_CASE("RelativeCausalBlock: a BlockStack of them trains and generates") {
  using Stack = nn::BlockStack<cpu, double, Block>;
  std::int64_t const bsz = 2, t = 6, layers = 2;
  Block::Config bc(TbConfig{.dim = kDim, .heads = kHeads, .mlp_hidden = kHidden});
  bc.distance_scale = 4;
  Stack m({layers, bc});
  nn::ParamStore<cpu, double> ps(m, "blocks.");
  CHECK(ps.entries().front().name == "blocks.0.ln1.weight");
  test::randomize_params(ps, 21, 0.4);
  cpu::Context ctx;
  auto x = random_tensor(Shape{bsz, t, kDim}, 1), dx = random_tensor(Shape{bsz, t, kDim}, 0);
  auto r = random_tensor(Shape{bsz, t, kDim}, 2);
  Tensor<double, cpu> da(Shape{bsz, t, kDim}), db(Shape{bsz, t, kDim});
  Workspace<cpu> ws(m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t));
  Stack::Saved s;
  std::vector<double> full;
  auto loss = [&] {
    auto a = ws.arena();
    auto y = m.forward(ctx, x.cview(), s, a);
    full.assign(y.data, y.data + y.numel());
    return test::dot(y, r.cview());
  };
  auto grads = [&] {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), s, a);
    View<double, HostSpace> d = da.view(), tmp = db.view();
    ops::copy<double>(ctx, r.cview(), d);
    m.backward(ctx, s, d, tmp, a);
    ops::copy<double>(ctx, View<double const, HostSpace>(d), dx.view());
  };
  test::GradCheck(ps).input("x", x.view(), dx.view()).run(loss, grads);
  // Cached generation through the stack: a prefill of 2, then one position at a time.
  loss();
  auto cache = m.make_cache(bsz, t);
  REQUIRE(cache.size() == std::size_t(layers));
  CHECK(cache[0].shape() == Shape{bsz + 1, t, 2 * kDim});
  Workspace<cpu> sws(m.step_workspace(bsz, t, t));
  double worst = 0;
  for (std::int64_t pos = 0; pos < t;) {
    std::int64_t const n = pos == 0 ? 2 : 1;
    Tensor<double, cpu> xa(Shape{bsz, n, kDim}), xb(Shape{bsz, n, kDim});
    for (std::int64_t b = 0; b < bsz; ++b)
      std::copy_n(x.data() + (b * t + pos) * kDim, n * kDim, xa.data() + b * n * kDim);
    View<double, HostSpace> cur = xa.view(), tmp = xb.view();
    auto sa = sws.arena();
    m.forward_step(ctx, cur, tmp, cache, pos, sa);
    CHECK(sa.high_water() <= m.step_workspace(bsz, n, pos));
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t i = 0; i < n * kDim; ++i)
        worst = std::max(worst, std::abs(full[std::size_t((b * t + pos) * kDim + i)] - cur.data[b * n * kDim + i]));
    pos += n;
  }
  CHECK(worst <= 1e-12);
}

TEST_CASE("RelativeCausalBlock: bad shapes name what is wrong") {
  cpu::Context ctx;
  Block m = make_block(2);
  nn::ParamStore<cpu, double> ps(m);
  Tensor<double, cpu> x(Shape{2, 3, kDim}), y(Shape{2, 3, kDim});
  Tensor<double, cpu> tb_cache(Shape{2, 8, 2 * kDim});  // a TransformerBlock's cache: no slice for Rk
  Tensor<double, cpu> cache(m.cache_shape(2, 4));
  Workspace<cpu> ws(m.step_workspace(2, 3, 8));
  auto a = ws.arena();
  CHECK_THROWS_WITH_AS(m.forward_step(ctx, x.cview(), tb_cache.view(), 0, y.view(), a),
                       doctest::Contains("cache [2, 8, 16]"), Error);
  CHECK_THROWS_WITH_AS(m.forward_step(ctx, x.cview(), cache.view(), 2, y.view(), a),
                       doctest::Contains("positions [2, 5) exceed the cache of 4 positions"), Error);
  Tensor<double, cpu> y_bad(Shape{2, 3, 6});
  CHECK_THROWS_WITH_AS(m.forward_step(ctx, x.cview(), cache.view(), 0, y_bad.view(), a),
                       doctest::Contains("y [2, 3, 6]"), Error);
}

}  // namespace HSEQ_TEST_UNIT
