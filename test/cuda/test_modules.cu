// SPDX-License-Identifier: MIT
// CUDA backend, module level. Every nn/ and hier/ module is built on the CPU and on the GPU from the
// same seed and must agree in float (outputs, input gradients, every parameter gradient); the GPU
// gradients must match central finite differences computed on the GPU in double; the GPU
// workspace plans must equal what the runs carve; and cached attention (forward_step,
// append_kv / attend_cached, the block's forward_step) must equal the full forward.
//
// Helpers are named mm_* and live in an anonymous namespace so that they cannot clash with
// test/cuda/support.cuh or another test file of the same executable.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "hseq/cuda.hpp"
#include "hseq/hier/attention_pool.hpp"
#include "hseq/hier/attention_upsample.hpp"
#include "hseq/hier/avg_pool.hpp"
#include "hseq/hier/linear_pool.hpp"
#include "hseq/hier/linear_upsample.hpp"
#include "hseq/hier/repeat_upsample.hpp"
#include "hseq/hier/shift_right.hpp"
#include "cuda/compare.cuh"
#include "support/gradcheck.hpp"

using namespace hseq;

namespace {

using namespace hseq::test_cuda_cmp;

using nn::AttentionMask;

// ---------------------------------------------------------------------------------------------
// Host <-> backend copies, random data, comparisons

template <class T>
std::vector<T> mm_random(std::int64_t n, std::uint64_t seed, double scale = 1.0) {
  std::vector<T> v(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) v[std::size_t(i)] = T(scale * philox_normal(seed, 0xC0FFEE, std::uint64_t(i)));
  return v;
}

template <class T>
double mm_max_abs(std::vector<T> const& a) {
  double m = 0;
  for (T x : a) m = std::max(m, std::abs(double(x)));
  return m;
}
template <class T>
double mm_max_abs_diff(std::vector<T> const& a, std::vector<T> const& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    double d = std::abs(double(a[i]) - double(b[i]));
    m = std::max(m, std::isnan(d) ? std::numeric_limits<double>::infinity() : d);
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// A test case describes one module call: its float inputs (with or without a gradient), its
// outputs, optional integer ids, how to build the module on a backend, its workspace plan, and
// `apply`, which runs forward (and backward) on views of any backend.

template <class T, class S>
struct MmIo {
  std::vector<View<T const, S>> in;
  std::vector<View<T, S>> din;  // empty view: that input's gradient is not requested
  std::vector<View<T, S>> out;
  std::vector<View<T const, S>> dout;
  View<std::int32_t const, S> ids{};
};

struct MmCase {
  std::string name;
  std::vector<std::string> in_names;
  std::vector<Shape> in;
  std::vector<bool> in_grad;
  std::vector<Shape> out;
  std::vector<std::int32_t> ids;
  Shape ids_shape{0};
  double param_scale = 0.4;
  bool exact_plan = true;  // high_water() == plan (else <=)
  std::int64_t attn_head = 0;  // head size of every attention the module runs; 0: it runs none

  void add_in(std::string n, Shape s, bool grad = true) {
    in_names.push_back(std::move(n));
    in.push_back(s);
    in_grad.push_back(grad);
  }
  void add_out(Shape s) { out.push_back(s); }
};

/// One backend's instance of a case: the module, its parameter store, the buffers and a workspace
/// of exactly the planned size.
template <class B, class T, class Case>
struct MmRig {
  using S = typename B::Space;
  using Ctx = typename B::Context;
  using ModulePtr = decltype(std::declval<Case const&>().template make<B, T>());

  Ctx& ctx;
  Case const& c;
  ModulePtr module;
  nn::ParamStore<B, T> store;
  std::vector<Tensor<T, B>> in, din, out, dout;
  Tensor<std::int32_t, B> ids;
  std::size_t plan;
  Workspace<B> ws;
  MmIo<T, S> io;

  MmRig(Ctx& x, Case const& cs)
      : ctx(x), c(cs), module(cs.template make<B, T>()), store(x, *module), plan(cs.plan(*module)), ws(plan) {
    for (auto const& s : c.in) {
      in.emplace_back(s);
      din.emplace_back(s);
    }
    for (auto const& s : c.out) {
      out.emplace_back(s);
      dout.emplace_back(s);
    }
    if (!c.ids.empty()) ids = mm_to_backend<B>(ctx, c.ids, c.ids_shape);
    for (std::size_t i = 0; i < in.size(); ++i) {
      io.in.push_back(in[i].cview());
      io.din.push_back(c.in_grad[i] ? din[i].view() : View<T, S>{});
    }
    for (std::size_t j = 0; j < out.size(); ++j) {
      io.out.push_back(out[j].view());
      io.dout.push_back(dout[j].cview());
    }
    io.ids = ids.cview();
  }

  void upload(Tensor<T, B>& t, std::vector<T> const& h) {
    REQUIRE(std::int64_t(h.size()) == t.numel());
    B::template upload<T>(ctx, t.data(), h.data(), h.size());
  }
  std::vector<T> host(Tensor<T, B> const& t) { return mm_to_host<B, T>(ctx, t.cview()); }
  /// Runs the case on a fresh arena; returns the bytes it carved at its peak.
  std::size_t run(bool backward) {
    auto a = ws.arena();
    c.apply(ctx, *module, io, a, backward);
    B::synchronize(ctx);
    return a.high_water();
  }
};

/// CPU (float) vs GPU (float): same seed, same parameters, inputs and output gradients.
template <class Case>
void mm_compare(Case const& c, std::uint64_t seed) {
  INFO("module: ", c.name, " (CPU vs GPU, float)");
  cpu::Context hctx;
  GpuCtx dctx;
  MmRig<cpu, float, Case> h(hctx, c);
  MmRig<Gpu, float, Case> d(dctx, c);
  REQUIRE(h.store.entries().size() == d.store.entries().size());
  h.store.init(hctx, seed);
  d.store.init(dctx, seed);
  mm_check_close("initial parameters from the same seed", mm_to_host<Gpu, float>(dctx, d.store.values()),
                 mm_to_host<cpu, float>(hctx, h.store.values()), kInitNmse);
  mm_randomize(hctx, h.store, seed + 1, c.param_scale);
  mm_randomize(dctx, d.store, seed + 1, c.param_scale);
  for (std::size_t i = 0; i < c.in.size(); ++i) {
    auto v = mm_random<float>(c.in[i].numel(), seed * 100 + i + 1);
    h.upload(h.in[i], v);
    d.upload(d.in[i], v);
  }
  for (std::size_t j = 0; j < c.out.size(); ++j) {
    auto v = mm_random<float>(c.out[j].numel(), seed * 100 + 50 + j);
    h.upload(h.dout[j], v);
    d.upload(d.dout[j], v);
  }
  // Parameter gradients accumulate (start from zero); input gradients are overwritten (NaN before).
  for (std::size_t i = 0; i < c.in.size(); ++i) {
    std::vector<float> nan(std::size_t(c.in[i].numel()), std::numeric_limits<float>::quiet_NaN());
    h.upload(h.din[i], nan);
    d.upload(d.din[i], nan);
  }
  h.store.zero_grad(hctx);
  d.store.zero_grad(dctx);
  h.run(true);
  std::size_t used = d.run(true);
  {
    INFO("GPU workspace: planned ", d.plan, " bytes, forward + backward carved ", used);
    if (c.exact_plan)
      CHECK(used == d.plan);
    else
      CHECK(used <= d.plan);
  }
  for (std::size_t j = 0; j < c.out.size(); ++j)
    mm_check_close("output " + std::to_string(j), d.host(d.out[j]), h.host(h.out[j]), kNmse);
  for (std::size_t i = 0; i < c.in.size(); ++i)
    if (c.in_grad[i])
      mm_check_close("gradient of input '" + c.in_names[i] + "'", d.host(d.din[i]), h.host(h.din[i]), kNmse);
  mm_check_param_grads(hctx, h.store, dctx, d.store, kNmse);
  mm_check_attention_family<float>(dctx, c.attn_head, 2);  // forward and backward at least
}

/// Finite differences on the GPU in double, with test::GradCheck (test/support/gradcheck.hpp). The
/// host rig is the mirror GradCheck works on: it perturbs the mirror's parameter and input values
/// and reads the mirror's gradients; every evaluation uploads the mirror and runs forward (and
/// backward) on the GPU only, then downloads the gradients. So the accumulate rule (parameter
/// gradients accumulate onto GradCheck's sentinels, input gradients overwrite its NaNs) is checked
/// on the GPU too, and so is the workspace plan of every backward.
template <class Case>
void mm_gradcheck(Case const& c, std::uint64_t seed, std::int64_t max_per_tensor = 24) {
  INFO("module: ", c.name, " (GPU gradcheck, double)");
  cpu::Context hctx;
  GpuCtx dctx;
  MmRig<cpu, double, Case> h(hctx, c);
  MmRig<Gpu, double, Case> d(dctx, c);
  REQUIRE(h.store.values().numel() == d.store.values().numel());
  mm_randomize(hctx, h.store, seed, c.param_scale);
  for (std::size_t i = 0; i < c.in.size(); ++i)
    h.upload(h.in[i], mm_random<double>(c.in[i].numel(), seed * 100 + i + 1));
  std::vector<std::vector<double>> r;
  for (std::size_t j = 0; j < c.out.size(); ++j) {
    r.push_back(mm_random<double>(c.out[j].numel(), seed * 100 + 50 + j));
    d.upload(d.dout[j], r.back());
  }
  auto const np = std::size_t(h.store.values().numel());
  auto push = [&] {
    Gpu::upload<double>(dctx, d.store.values().data, h.store.values().data, np);
    for (std::size_t i = 0; i < c.in.size(); ++i)
      Gpu::upload<double>(dctx, d.in[i].data(), h.in[i].data(), std::size_t(h.in[i].numel()));
  };
  auto loss = [&] {
    push();
    d.run(false);
    double l = 0;
    for (std::size_t j = 0; j < c.out.size(); ++j) {
      auto y = d.host(d.out[j]);
      for (std::size_t k = 0; k < y.size(); ++k) l += y[k] * r[j][k];
    }
    return l;
  };
  bool plan_ok = true;
  std::size_t worst_used = 0;
  auto grads = [&] {
    push();
    Gpu::upload<double>(dctx, d.store.grads().data, h.store.grads().data, np);
    for (std::size_t i = 0; i < c.in.size(); ++i)
      if (c.in_grad[i]) Gpu::upload<double>(dctx, d.din[i].data(), h.din[i].data(), std::size_t(h.din[i].numel()));
    std::size_t used = d.run(true);
    worst_used = std::max(worst_used, used);
    plan_ok &= c.exact_plan ? used == d.plan : used <= d.plan;
    Gpu::download<double>(dctx, h.store.grads().data, d.store.grads().data, np);
    for (std::size_t i = 0; i < c.in.size(); ++i)
      if (c.in_grad[i]) Gpu::download<double>(dctx, h.din[i].data(), d.din[i].data(), std::size_t(h.din[i].numel()));
  };
  test::GradcheckOptions opt;
  opt.max_per_tensor = max_per_tensor;
  test::GradCheck gc(h.store, opt);
  for (std::size_t i = 0; i < c.in.size(); ++i)
    if (c.in_grad[i]) gc.input(c.in_names[i], h.in[i].view(), h.din[i].view());
  gc.run(loss, grads);
  INFO("GPU workspace (double): planned ", d.plan, " bytes, backward runs carved up to ", worst_used);
  CHECK(plan_ok);
  mm_check_attention_family<double>(dctx, c.attn_head);
}

template <class Case>
void mm_both(Case const& float_case, Case const& double_case, std::uint64_t seed) {
  mm_compare(float_case, seed);
  mm_gradcheck(double_case, seed + 7);
}

std::string mm_str(AttentionMask m) {
  std::ostringstream os;
  os << m;
  return os.str();
}

// ---------------------------------------------------------------------------------------------
// The cases

struct LinearCase : MmCase {
  std::int64_t nin, nout;
  bool bias;
  LinearCase(std::int64_t b, std::int64_t t, std::int64_t i, std::int64_t o, bool with_bias)
      : nin(i), nout(o), bias(with_bias) {
    name = std::string("Linear(") + std::to_string(i) + " -> " + std::to_string(o) + (bias ? ", bias)" : ", no bias)");
    add_in("x", Shape{b, t, i});
    add_out(Shape{b, t, o});
  }
  template <class B, class T>
  auto make() const {
    return std::make_unique<nn::Linear<B, T>>(typename nn::Linear<B, T>::Config{.in = nin, .out = nout, .bias = bias});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(in[0].rows()) + m.backward_workspace(in[0].rows());
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], io.out[0], a);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], a);
  }
};

struct LayerNormCase : MmCase {
  std::int64_t dim;
  LayerNormCase(std::int64_t b, std::int64_t t, std::int64_t d) : dim(d) {
    name = "LayerNorm(" + std::to_string(d) + ")";
    add_in("x", Shape{b, t, d});
    add_out(Shape{b, t, d});
  }
  template <class B, class T>
  auto make() const {
    return std::make_unique<nn::LayerNorm<B, T>>(typename nn::LayerNorm<B, T>::Config{.dim = dim});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(in[0].rows()) + m.backward_workspace(in[0].rows());
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], io.out[0], a);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], a);
  }
};

struct EmbeddingCase : MmCase {
  std::int64_t vocab, dim;
  EmbeddingCase(std::int64_t b, std::int64_t t, std::int64_t v, std::int64_t d) : vocab(v), dim(d) {
    name = "Embedding(" + std::to_string(v) + ", " + std::to_string(d) + ")";
    ids_shape = Shape{b, t};
    Rng rng(11);
    for (std::int64_t i = 0; i < b * t; ++i) ids.push_back(std::int32_t(rng.below(std::uint64_t(v))));
    ids[1] = ids[0];  // repeated ids: their gradients add up in the same row
    ids[std::size_t(b * t - 1)] = ids[0];
    add_out(Shape{b, t, d});
  }
  template <class B, class T>
  auto make() const {
    return std::make_unique<nn::Embedding<B, T>>(typename nn::Embedding<B, T>::Config{.vocab = vocab, .dim = dim});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(ids_shape.numel()) + m.backward_workspace(ids_shape.numel());
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.ids, io.out[0], a);
    if (bw) m.backward(ctx, s, io.dout[0], a);
  }
};

struct MlpCase : MmCase {
  std::int64_t dim, hidden;
  MlpCase(std::int64_t b, std::int64_t t, std::int64_t d, std::int64_t h) : dim(d), hidden(h) {
    name = "Mlp(" + std::to_string(d) + ", hidden " + std::to_string(h) + ")";
    add_in("x", Shape{b, t, d});
    add_out(Shape{b, t, d});
  }
  template <class B, class T>
  auto make() const {
    return std::make_unique<nn::Mlp<B, T>>(typename nn::Mlp<B, T>::Config{.dim = dim, .hidden = hidden});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(in[0].rows()) + m.backward_workspace(in[0].rows());
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], io.out[0], a);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], a);
  }
};

/// Self-attention: y = Attn(x, x); backward sums the query and key/value paths into dx.
struct SelfAttentionCase : MmCase {
  std::int64_t bsz, t, dim, heads;
  AttentionMask mask;
  SelfAttentionCase(std::int64_t b, std::int64_t tt, std::int64_t d, std::int64_t h, AttentionMask m)
      : bsz(b), t(tt), dim(d), heads(h), mask(m) {
    attn_head = d / h;
    name = "MultiHeadAttention self, " + mm_str(m) + ", T " + std::to_string(tt) + ", heads " + std::to_string(h);
    add_in("x", Shape{b, tt, d});
    add_out(Shape{b, tt, d});
  }
  template <class B, class T>
  auto make() const {
    using M = nn::MultiHeadAttention<B, T>;
    return std::make_unique<M>(typename M::Config{.dim = dim, .heads = heads, .mask = mask});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    typename M::Dims dims{bsz, t, t, 0};
    return m.forward_workspace(dims) + m.backward_workspace(dims);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], io.out[0], a);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], a);
  }
};

/// Cross-attention: queries xq [B, Tq, d], keys/values [mem; xkv] with Tk != Tq, optional memory.
struct CrossAttentionCase : MmCase {
  std::int64_t bsz, tq, tk, tm, dim, heads;
  AttentionMask mask;
  CrossAttentionCase(std::int64_t b, std::int64_t q, std::int64_t k, std::int64_t m_, std::int64_t d, std::int64_t h,
                     AttentionMask m)
      : bsz(b), tq(q), tk(k), tm(m_), dim(d), heads(h), mask(m) {
    attn_head = d / h;
    name = "MultiHeadAttention cross, " + mm_str(m) + ", Tq " + std::to_string(q) + ", Tk " + std::to_string(k) +
           ", memory " + std::to_string(m_);
    add_in("xq", Shape{b, q, d});
    add_in("xkv", Shape{b, k, d});
    if (m_ > 0) add_in("mem", Shape{b, m_, d});
    add_out(Shape{b, q, d});
  }
  template <class B, class T>
  auto make() const {
    using M = nn::MultiHeadAttention<B, T>;
    return std::make_unique<M>(typename M::Config{.dim = dim, .heads = heads, .mask = mask});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    typename M::Dims dims{bsz, tq, tk, tm};
    return m.forward_workspace(dims) + m.backward_workspace(dims, /*shared_dx=*/false);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    View<T const, S> mem = tm > 0 ? io.in[2] : View<T const, S>{};
    auto s = m.forward(ctx, io.in[0], io.in[1], mem, io.out[0], a);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], io.din[1], tm > 0 ? io.din[2] : View<T, S>{}, a);
  }
};

struct BlockCase : MmCase {
  std::int64_t bsz, t, tm, dim, heads, hidden;
  AttentionMask mask;
  BlockCase(std::int64_t b, std::int64_t tt, std::int64_t m_, std::int64_t d, std::int64_t h, std::int64_t hid,
            AttentionMask m)
      : bsz(b), t(tt), tm(m_), dim(d), heads(h), hidden(hid), mask(m) {
    attn_head = d / h;
    name = "TransformerBlock, " + mm_str(m) + ", T " + std::to_string(tt) + ", memory " + std::to_string(m_);
    add_in("x", Shape{b, tt, d});
    if (m_ > 0) add_in("mem", Shape{b, m_, d});
    add_out(Shape{b, tt, d});
  }
  template <class B, class T>
  auto make() const {
    using M = nn::TransformerBlock<B, T>;
    return std::make_unique<M>(typename M::Config{.dim = dim, .heads = heads, .mlp_hidden = hidden, .mask = mask});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(bsz, t, tm) + m.backward_workspace(bsz, t, tm);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    View<T const, S> mem = tm > 0 ? io.in[1] : View<T const, S>{};
    auto s = m.forward(ctx, io.in[0], io.out[0], a, mem);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], a, tm > 0 ? io.din[1] : View<T, S>{});
  }
};

/// Gru: L = <y, r> + <h_final, rf>, gradients of x and h0.
struct GruCase : MmCase {
  std::int64_t bsz, t, input, hidden;
  bool bias;
  std::vector<std::int32_t> lengths;  // ragged batch (empty: all t)
  GruCase(std::int64_t b, std::int64_t tt, std::int64_t i, std::int64_t h, bool with_bias)
      : bsz(b), t(tt), input(i), hidden(h), bias(with_bias) {
    name = std::string("Gru(") + std::to_string(i) + " -> " + std::to_string(h) + (bias ? ", bias)" : ", no bias)");
    add_in("x", Shape{b, tt, i});
    add_in("h0", Shape{b, h});
    add_out(Shape{b, tt, h});
    add_out(Shape{b, h});
  }
  template <class B, class T>
  auto make() const {
    using M = nn::Gru<B, T>;
    return std::make_unique<M>(typename M::Config{.input = input, .hidden = hidden, .bias = bias});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], io.in[1], io.out[0], io.out[1], a, lengths);
    if (bw) m.backward(ctx, s, io.dout[0], io.dout[1], io.din[0], io.din[1], a);
  }
};

/// Lstm: L = <y, r> + <h_final, rh> + <c_final, rc>, gradients of x, h0 and c0.
struct LstmCase : MmCase {
  std::int64_t bsz, t, input, hidden;
  std::vector<std::int32_t> lengths;  // ragged batch (empty: all t)
  LstmCase(std::int64_t b, std::int64_t tt, std::int64_t i, std::int64_t h) : bsz(b), t(tt), input(i), hidden(h) {
    name = "Lstm(" + std::to_string(i) + " -> " + std::to_string(h) + ")";
    add_in("x", Shape{b, tt, i});
    add_in("h0", Shape{b, h});
    add_in("c0", Shape{b, h});
    add_out(Shape{b, tt, h});
    add_out(Shape{b, h});
    add_out(Shape{b, h});
  }
  template <class B, class T>
  auto make() const {
    using M = nn::Lstm<B, T>;
    return std::make_unique<M>(typename M::Config{.input = input, .hidden = hidden});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], typename M::State{io.in[1], io.in[2]}, io.out[0],
                       typename M::MutState{io.out[1], io.out[2]}, a, lengths);
    if (bw)
      m.backward(ctx, s, io.dout[0], typename M::State{io.dout[1], io.dout[2]}, io.din[0],
                 typename M::MutState{io.din[1], io.din[2]}, a);
  }
};

struct PositionCase : MmCase {
  nn::PositionKind kind;
  std::int64_t max_len, dim, offset;
  PositionCase(std::int64_t b, std::int64_t t, std::int64_t d, nn::PositionKind k, std::int64_t max_len_,
               std::int64_t off)
      : kind(k), max_len(max_len_), dim(d), offset(off) {
    name = std::string("PositionEmbedding ") + (k == nn::PositionKind::kLearned ? "learned" : "sinusoidal") +
           ", offset " + std::to_string(off);
    add_in("x", Shape{b, t, d});
    add_out(Shape{b, t, d});
  }
  template <class B, class T>
  auto make() const {
    using M = nn::PositionEmbedding<B, T>;
    return std::make_unique<M>(typename M::Config{.kind = kind, .max_len = max_len, .dim = dim});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(in[0][0], in[0][1]) + m.backward_workspace(in[0][0], in[0][1]);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], io.out[0], offset, a);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], a);
  }
};

struct ShiftCase : MmCase {
  std::int64_t shift;
  ShiftCase(std::int64_t b, std::int64_t t, std::int64_t d, std::int64_t s) : shift(s) {
    name = "ShiftRight(" + std::to_string(s) + ")";
    add_in("x", Shape{b, t, d});
    add_out(Shape{b, t, d});
  }
  template <class B, class T>
  auto make() const {
    using M = hier::ShiftRight<B, T>;
    return std::make_unique<M>(typename M::Config{.shift = shift});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(in[0][0], in[0][1]) + m.backward_workspace(in[0][0], in[0][1]);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], io.out[0], a);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], a);
  }
};

/// A shortening policy's module: x [B, L, d] (already shifted) -> y [B, L / k, d].
template <class Policy>
struct ShortenCase : MmCase {
  hier::ResampleConfig cfg;
  std::int64_t bsz, len;
  ShortenCase(hier::ResampleConfig c, std::int64_t b, std::int64_t l) : cfg(c), bsz(b), len(l) {
    if constexpr (std::is_same_v<Policy, hier::AttentionPool>) attn_head = c.dim / c.heads;
    name = std::string("shorten ") + Policy::kName + ", k " + std::to_string(c.factor) + ", L " + std::to_string(l);
    add_in("x", Shape{b, l, c.dim});
    add_out(Shape{b, l / c.factor, c.dim});
  }
  template <class B, class T>
  auto make() const {
    return std::make_unique<typename Policy::template Module<B, T>>(cfg);
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(bsz, len) + m.backward_workspace(bsz, len);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], io.out[0], a);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], a);
  }
};

/// An upsampling policy's module: y [B, Ls, d], res [B, Ls k, d] -> u [B, Ls k, d]. The residual's
/// gradient is requested only from policies that use it.
template <class Policy>
struct UpsampleCase : MmCase {
  hier::ResampleConfig cfg;
  std::int64_t bsz, len;
  UpsampleCase(hier::ResampleConfig c, std::int64_t b, std::int64_t ls) : cfg(c), bsz(b), len(ls * c.factor) {
    if constexpr (std::is_same_v<Policy, hier::AttentionUp>) attn_head = c.dim / c.heads;
    name = std::string("upsample ") + Policy::kName + ", k " + std::to_string(c.factor) + ", Ls " + std::to_string(ls);
    add_in("y", Shape{b, ls, c.dim});
    add_in("res", Shape{b, len, c.dim}, Policy::kUsesResidual);
    add_out(Shape{b, len, c.dim});
  }
  template <class B, class T>
  auto make() const {
    return std::make_unique<typename Policy::template Module<B, T>>(cfg);
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(bsz, len) + m.backward_workspace(bsz, len);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], io.in[1], io.out[0], a);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], io.din[1], a);
  }
};

// ---------------------------------------------------------------------------------------------
// Cached attention on any backend

/// The rows of x [B, T, d] (host values xh) computed by m.forward_step over a key/value cache of
/// `cap` positions: a prefill of `prefill` positions, then chunks of next(pos) positions. Checks
/// each step's scratch against step_workspace.
template <class B, class T, class M, class Next>
std::vector<T> mm_forward_steps(typename B::Context& ctx, M const& m, std::vector<T> const& xh, std::int64_t bsz,
                                std::int64_t t, std::int64_t d, std::int64_t cap, std::int64_t prefill, Next next) {
  Tensor<T, B> cache(Shape{bsz, cap, 2 * d});
  std::vector<T> stepped(xh.size(), T(0));
  Workspace<B> sws(m.step_workspace(bsz, prefill, t));
  std::int64_t pos = 0;
  while (pos < t) {
    std::int64_t n = std::min<std::int64_t>(pos == 0 ? prefill : next(pos), t - pos);
    std::vector<T> xc(std::size_t(bsz * n * d));
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t i = 0; i < n * d; ++i) xc[std::size_t(b * n * d + i)] = xh[std::size_t((b * t + pos) * d + i)];
    auto xd = mm_to_backend<B>(ctx, xc, Shape{bsz, n, d});
    Tensor<T, B> yc(Shape{bsz, n, d});
    auto a = sws.arena();
    m.forward_step(ctx, xd.cview(), cache.view(), pos, yc.view(), a);
    CHECK(a.high_water() <= m.step_workspace(bsz, n, pos));
    auto yh = mm_to_host<B, T>(ctx, yc.cview());
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t i = 0; i < n * d; ++i)
        stepped[std::size_t((b * t + pos) * d + i)] = yh[std::size_t(b * n * d + i)];
    pos += n;
  }
  return stepped;
}

/// Full causal self-attention of x [B, T, d], and the same rows from forward_step over a key/value
/// cache with spare capacity: a prefill of 5 positions, then single positions and one chunk of 3.
/// On the GPU, float head sizes 17..64 take the tensor-core kernels, others the simple ones.
template <class B, class T>
std::pair<std::vector<T>, std::vector<T>> mm_attention_steps(std::uint64_t seed, std::int64_t t, std::int64_t d,
                                                             std::int64_t heads) {
  using M = nn::MultiHeadAttention<B, T>;
  typename B::Context ctx;
  std::int64_t const bsz = 2, cap = t + 3;
  M m({.dim = d, .heads = heads});
  nn::ParamStore<B, T> ps(ctx, m);
  ps.init(ctx, seed);
  mm_randomize(ctx, ps, seed, 0.4);
  auto xh = mm_random<T>(bsz * t * d, seed + 1);
  auto x = mm_to_backend<B>(ctx, xh, Shape{bsz, t, d});
  Tensor<T, B> y(Shape{bsz, t, d});
  typename M::Dims dims{bsz, t, t, 0};
  Workspace<B> ws(m.forward_workspace(dims));
  {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a);
  }
  auto full = mm_to_host<B, T>(ctx, y.cview());
  auto stepped = mm_forward_steps<B, T>(ctx, m, xh, bsz, t, d, cap, 5,
                                        [](std::int64_t pos) { return pos == 8 ? std::int64_t(3) : std::int64_t(1); });
  if constexpr (std::is_same_v<B, Gpu>) mm_check_attention_family<T>(ctx, d / heads, 2);
  return {full, stepped};
}

/// Unmasked cross-attention of xq [B, 5, d] over xkv [B, 11, d] by forward, and by append_kv (two
/// appends, the second at row 6) into a cache of capacity 15 followed by attend_cached.
template <class B, class T>
std::pair<std::vector<T>, std::vector<T>> mm_attend_cached(std::uint64_t seed, std::int64_t d, std::int64_t heads) {
  using M = nn::MultiHeadAttention<B, T>;
  typename B::Context ctx;
  std::int64_t const bsz = 2, nq = 5, tk = 11, split = 6, cap = tk + 4;
  M m({.dim = d, .heads = heads, .mask = AttentionMask::none()});
  nn::ParamStore<B, T> ps(ctx, m);
  ps.init(ctx, seed);
  mm_randomize(ctx, ps, seed, 0.4);
  auto qh = mm_random<T>(bsz * nq * d, seed + 1), kh = mm_random<T>(bsz * tk * d, seed + 2);
  auto xq = mm_to_backend<B>(ctx, qh, Shape{bsz, nq, d});
  auto xkv = mm_to_backend<B>(ctx, kh, Shape{bsz, tk, d});
  Tensor<T, B> y(Shape{bsz, nq, d});
  typename M::Dims dims{bsz, nq, tk, 0};
  Workspace<B> ws(m.forward_workspace(dims));
  {
    auto a = ws.arena();
    m.forward(ctx, xq.cview(), xkv.cview(), View<T const, typename B::Space>{}, y.view(), a);
  }
  auto full = mm_to_host<B, T>(ctx, y.cview());
  auto rows = [&](std::int64_t from, std::int64_t to) {
    std::vector<T> v;
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t i = from * d; i < to * d; ++i) v.push_back(kh[std::size_t(b * tk * d + i)]);
    return mm_to_backend<B>(ctx, v, Shape{bsz, to - from, d});
  };
  auto part1 = rows(0, split), part2 = rows(split, tk);
  Tensor<T, B> cache(Shape{bsz, cap, 2 * d});
  std::size_t plan = std::max(m.cached_workspace(bsz, split, tk), m.cached_workspace(bsz, nq, tk));
  Workspace<B> cws(plan);
  {
    auto a = cws.arena();
    m.append_kv(ctx, part1.cview(), cache.view(), 0, a);
    m.append_kv(ctx, part2.cview(), cache.view(), split, a);
    CHECK(a.high_water() <= m.cached_workspace(bsz, split, tk));
  }
  Tensor<T, B> yc(Shape{bsz, nq, d});
  {
    auto a = cws.arena();
    m.attend_cached(ctx, xq.cview(), cache.view(), tk, yc.view(), a);
    CHECK(a.high_water() <= m.cached_workspace(bsz, nq, tk));
  }
  if constexpr (std::is_same_v<B, Gpu>) mm_check_attention_family<T>(ctx, d / heads, 2);
  return {full, mm_to_host<B, T>(ctx, yc.cview())};
}

/// A causal TransformerBlock: full forward, and forward_step (prefill of 4, then one at a time).
template <class B, class T>
std::pair<std::vector<T>, std::vector<T>> mm_block_steps(std::uint64_t seed) {
  using M = nn::TransformerBlock<B, T>;
  typename B::Context ctx;
  std::int64_t const bsz = 2, t = 13, d = 16, cap = t + 2;
  M m({.dim = d, .heads = 2, .mlp_hidden = 24});
  nn::ParamStore<B, T> ps(ctx, m);
  ps.init(ctx, seed);
  mm_randomize(ctx, ps, seed, 0.3);
  auto xh = mm_random<T>(bsz * t * d, seed + 1);
  auto x = mm_to_backend<B>(ctx, xh, Shape{bsz, t, d});
  Tensor<T, B> y(Shape{bsz, t, d});
  Workspace<B> ws(m.forward_workspace(bsz, t));
  {
    auto a = ws.arena();
    m.forward(ctx, x.cview(), y.view(), a);
  }
  auto full = mm_to_host<B, T>(ctx, y.cview());
  auto stepped = mm_forward_steps<B, T>(ctx, m, xh, bsz, t, d, cap, 4, [](std::int64_t) { return std::int64_t(1); });
  if constexpr (std::is_same_v<B, Gpu>) mm_check_attention_family<T>(ctx, d / 2, 2);
  return {full, stepped};
}

/// Cached vs full on the GPU in double (exact up to summation order: 1e-12 relative to the largest
/// output), GPU vs CPU in float for both paths, and cached vs full on the GPU in float.
template <class FD, class FG, class FC>
void mm_check_cached(FD run_double, FG run_gpu_float, FC run_cpu_float) {
  {
    auto [full, cached] = run_double();
    double scale = std::max(1.0, mm_max_abs(full));
    INFO("GPU double: cached vs full, largest |output| ", scale);
    CHECK(mm_max_abs_diff(full, cached) <= 1e-12 * scale);
  }
  auto [df, dc] = run_gpu_float();
  auto [hf, hc] = run_cpu_float();
  mm_check_close("GPU vs CPU (float), full forward", df, hf, kNmse);
  mm_check_close("GPU vs CPU (float), cached path", dc, hc, kNmse);
  mm_check_close("GPU (float), cached vs full", dc, df, kNmse);
}

}  // namespace

// =============================================================================================
// nn/

TEST_CASE("cuda modules: Linear matches the CPU in float and finite differences in double (gradcheck)") {
  for (bool bias : {true, false}) {
    CAPTURE(bias);
    mm_both(LinearCase(3, 7, 32, 48, bias), LinearCase(3, 2, 5, 4, bias), 1);
  }
}

TEST_CASE("cuda modules: LayerNorm matches the CPU in float and finite differences in double (gradcheck)") {
  mm_both(LayerNormCase(3, 11, 64), LayerNormCase(2, 3, 6), 2);
}

TEST_CASE("cuda modules: Embedding matches the CPU in float and finite differences in double (gradcheck)") {
  mm_both(EmbeddingCase(3, 13, 40, 32), EmbeddingCase(2, 4, 7, 5), 3);
}

TEST_CASE("cuda modules: Mlp matches the CPU in float and finite differences in double (gradcheck)") {
  mm_both(MlpCase(2, 9, 32, 64), MlpCase(2, 3, 4, 6), 4);
}

TEST_CASE("cuda modules: MultiHeadAttention self-attention, causal and unmasked (gradcheck)") {
  for (auto mask : {AttentionMask::causal(), AttentionMask::none()}) {
    // Head size 8 (the simple one-thread-per-row kernels) ...
    mm_both(SelfAttentionCase(2, 37, 32, 4, mask), SelfAttentionCase(2, 5, 8, 2, mask), 5);
    // ... and the float head sizes of the tensor-core kernels (17..64): 32 over 70 positions
    // (two 64-row tiles), 64, and 24 (padded inside the kernel). Double runs the simple kernels
    // compiled for head size 32.
    mm_compare(SelfAttentionCase(2, 70, 64, 2, mask), 30);
    mm_compare(SelfAttentionCase(2, 45, 64, 1, mask), 31);
    mm_compare(SelfAttentionCase(1, 33, 48, 2, mask), 32);
    mm_gradcheck(SelfAttentionCase(2, 5, 32, 1, mask), 33, 16);
  }
}

TEST_CASE("cuda modules: MultiHeadAttention cross-attention with Tk != Tq and rate-aware masks (gradcheck)") {
  // Upsampling-style: full-rate queries see short keys j <= floor(p / 4).
  mm_both(CrossAttentionCase(2, 24, 6, 0, 32, 4, AttentionMask::rates(1, 0, 4, 0)),
          CrossAttentionCase(2, 8, 2, 0, 6, 2, AttentionMask::rates(1, 0, 4, 0)), 6);
  // Pooling-style: short queries see shifted full-rate keys p <= 3 i + 2.
  mm_both(CrossAttentionCase(2, 7, 21, 0, 32, 4, AttentionMask::rates(3, 2, 1, 0)),
          CrossAttentionCase(2, 3, 9, 0, 6, 2, AttentionMask::rates(3, 2, 1, 0)), 7);
  // Unmasked.
  mm_both(CrossAttentionCase(2, 10, 14, 0, 32, 4, AttentionMask::none()),
          CrossAttentionCase(2, 4, 6, 0, 6, 2, AttentionMask::none()), 8);
  // Head size 32 (the tensor-core float kernels), with 70 full-rate rows on one side.
  mm_compare(CrossAttentionCase(2, 70, 18, 0, 64, 2, AttentionMask::rates(1, 0, 4, 0)), 34);
  mm_compare(CrossAttentionCase(2, 18, 70, 0, 64, 2, AttentionMask::rates(4, 3, 1, 0)), 35);
  mm_compare(CrossAttentionCase(2, 9, 23, 0, 64, 2, AttentionMask::none()), 36);
}

TEST_CASE("cuda modules: MultiHeadAttention with a memory prefix (input, memory and parameters, gradcheck)") {
  mm_both(CrossAttentionCase(2, 12, 12, 5, 32, 4, AttentionMask::causal()),
          CrossAttentionCase(2, 4, 4, 3, 6, 2, AttentionMask::causal()), 9);
  mm_both(CrossAttentionCase(2, 7, 9, 4, 32, 4, AttentionMask::none()),
          CrossAttentionCase(2, 3, 5, 2, 6, 2, AttentionMask::none()), 10);
  mm_compare(CrossAttentionCase(2, 12, 12, 5, 64, 2, AttentionMask::causal()), 37);  // head size 32
}

TEST_CASE("cuda modules: MultiHeadAttention forward_step with a key/value cache equals the full causal forward") {
  // head size 4 (simple kernels); head size 32 over 70 positions (tensor-core float kernels, two 64-row tiles)
  struct Size {
    std::int64_t t, d, heads;
  };
  for (Size z : {Size{19, 16, 4}, Size{70, 64, 2}}) {
    CAPTURE(z.t);
    CAPTURE(z.d);
    CAPTURE(z.heads);
    mm_check_cached([&] { return mm_attention_steps<Gpu, double>(12, z.t, z.d, z.heads); },
                    [&] { return mm_attention_steps<Gpu, float>(12, z.t, z.d, z.heads); },
                    [&] { return mm_attention_steps<cpu, float>(12, z.t, z.d, z.heads); });
  }
}

TEST_CASE("cuda modules: MultiHeadAttention append_kv + attend_cached equals the unmasked cross-attention forward") {
  for (std::int64_t heads : {4, 1}) {  // head sizes 4 and 16 (simple kernels) ...
    CAPTURE(heads);
    mm_check_cached([&] { return mm_attend_cached<Gpu, double>(13, 16, heads); },
                    [&] { return mm_attend_cached<Gpu, float>(13, 16, heads); },
                    [&] { return mm_attend_cached<cpu, float>(13, 16, heads); });
  }
  for (std::int64_t heads : {2, 1}) {  // ... and 32 and 64 (tensor-core float kernels)
    CAPTURE(heads);
    mm_check_cached([&] { return mm_attend_cached<Gpu, double>(13, 64, heads); },
                    [&] { return mm_attend_cached<Gpu, float>(13, 64, heads); },
                    [&] { return mm_attend_cached<cpu, float>(13, 64, heads); });
  }
}

TEST_CASE("cuda modules: TransformerBlock causal and unmasked, and with a memory prefix (gradcheck)") {
  for (auto mask : {AttentionMask::causal(), AttentionMask::none()}) {
    mm_both(BlockCase(2, 21, 0, 32, 4, 64, mask), BlockCase(2, 5, 0, 8, 2, 12, mask), 14);
  }
  mm_both(BlockCase(2, 12, 6, 32, 4, 64, AttentionMask::causal()), BlockCase(2, 4, 3, 6, 3, 8, AttentionMask::causal()),
          15);
  mm_compare(BlockCase(2, 21, 0, 64, 2, 128, AttentionMask::causal()), 38);  // head size 32
}

TEST_CASE("cuda modules: TransformerBlock forward_step equals the full forward") {
  mm_check_cached([] { return mm_block_steps<Gpu, double>(16); }, [] { return mm_block_steps<Gpu, float>(16); },
                  [] { return mm_block_steps<cpu, float>(16); });
}

TEST_CASE("cuda modules: Gru with and without biases: outputs, final state and all gradients (gradcheck)") {
  for (bool bias : {true, false}) {
    CAPTURE(bias);
    mm_both(GruCase(3, 12, 24, 32, bias), GruCase(2, 4, 3, 5, bias), 17);
  }
}

TEST_CASE("cuda modules: Lstm outputs, final h and c, and all gradients (gradcheck)") {
  mm_both(LstmCase(3, 12, 24, 32), LstmCase(2, 4, 3, 4), 18);
}

TEST_CASE("cuda modules: Gru and Lstm with ragged sequence lengths (gradcheck)") {
  GruCase gf(3, 12, 24, 32, true), gd(3, 4, 3, 5, true);
  gf.lengths = {12, 5, 0};
  gd.lengths = {4, 2, 0};
  gf.name += ", ragged";
  gd.name += ", ragged";
  mm_both(gf, gd, 41);
  LstmCase lf(3, 12, 24, 32), ld(3, 4, 3, 4);
  lf.lengths = {7, 12, 1};
  ld.lengths = {1, 4, 0};
  lf.name += ", ragged";
  ld.name += ", ragged";
  mm_both(lf, ld, 42);
}

TEST_CASE("cuda modules: PositionEmbedding learned (with an offset) and sinusoidal (gradcheck)") {
  mm_both(PositionCase(2, 20, 32, nn::PositionKind::kLearned, 40, 7),
          PositionCase(2, 5, 4, nn::PositionKind::kLearned, 9, 3), 19);
  mm_both(PositionCase(2, 20, 32, nn::PositionKind::kSinusoidal, 0, 0),
          PositionCase(2, 3, 6, nn::PositionKind::kSinusoidal, 0, 0), 20);
  mm_both(PositionCase(2, 20, 32, nn::PositionKind::kSinusoidal, 0, 13),
          PositionCase(2, 3, 6, nn::PositionKind::kSinusoidal, 0, 5), 21);
}

// =============================================================================================
// hier/

TEST_CASE("cuda modules: ShiftRight (gradcheck)") {
  mm_both(ShiftCase(2, 20, 32, 3), ShiftCase(2, 5, 3, 2), 22);
  mm_both(ShiftCase(2, 9, 32, 0), ShiftCase(2, 4, 3, 0), 23);
}

TEST_CASE("cuda modules: AvgPool shortening (gradcheck)") {
  mm_both(ShortenCase<hier::AvgPool>({.dim = 32, .factor = 4}, 2, 32),
          ShortenCase<hier::AvgPool>({.dim = 3, .factor = 3}, 2, 6), 24);
}

TEST_CASE("cuda modules: LinearPool shortening (gradcheck)") {
  mm_both(ShortenCase<hier::LinearPool>({.dim = 32, .factor = 3}, 2, 24),
          ShortenCase<hier::LinearPool>({.dim = 3, .factor = 2}, 2, 6), 25);
}

TEST_CASE("cuda modules: AttentionPool shortening (gradcheck)") {
  mm_both(ShortenCase<hier::AttentionPool>({.dim = 32, .factor = 4, .heads = 4, .mlp_hidden = 64}, 2, 32),
          ShortenCase<hier::AttentionPool>({.dim = 4, .factor = 3, .heads = 2, .mlp_hidden = 6}, 2, 6), 26);
  mm_compare(ShortenCase<hier::AttentionPool>({.dim = 64, .factor = 3, .heads = 2, .mlp_hidden = 64}, 2, 36), 39);
  // non-causal (bidirectional encoder): mask none
  mm_both(ShortenCase<hier::AttentionPool>({.dim = 32, .factor = 4, .heads = 4, .mlp_hidden = 64, .causal = false}, 2, 32),
          ShortenCase<hier::AttentionPool>({.dim = 4, .factor = 3, .heads = 2, .mlp_hidden = 6, .causal = false}, 2, 6),
          43);
}

TEST_CASE("cuda modules: Repeat upsampling (gradcheck)") {
  mm_both(UpsampleCase<hier::Repeat>({.dim = 32, .factor = 3}, 2, 8),
          UpsampleCase<hier::Repeat>({.dim = 3, .factor = 3}, 2, 2), 27);
}

TEST_CASE("cuda modules: LinearUp upsampling (gradcheck)") {
  mm_both(UpsampleCase<hier::LinearUp>({.dim = 32, .factor = 4}, 2, 6),
          UpsampleCase<hier::LinearUp>({.dim = 3, .factor = 2}, 2, 3), 28);
}

TEST_CASE("cuda modules: AttentionUp upsampling (residual and all parameters, gradcheck)") {
  mm_both(UpsampleCase<hier::AttentionUp>({.dim = 32, .factor = 4, .heads = 4, .mlp_hidden = 64}, 2, 6),
          UpsampleCase<hier::AttentionUp>({.dim = 4, .factor = 2, .heads = 2, .mlp_hidden = 6}, 2, 3), 29);
  mm_compare(UpsampleCase<hier::AttentionUp>({.dim = 64, .factor = 3, .heads = 2, .mlp_hidden = 64}, 2, 12), 40);
  // non-causal: mask none
  mm_both(UpsampleCase<hier::AttentionUp>({.dim = 32, .factor = 4, .heads = 4, .mlp_hidden = 64, .causal = false}, 2, 6),
          UpsampleCase<hier::AttentionUp>({.dim = 4, .factor = 2, .heads = 2, .mlp_hidden = 6, .causal = false}, 2, 3),
          44);
}
