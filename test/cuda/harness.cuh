// SPDX-License-Identifier: MIT
// The module case harness of the CUDA module tests (test/cuda/nn/, test/cuda/hier/): a case table
// harness. A case (a struct derived from MmCase, one per module, kept in the module's test file)
// describes one module call: its inputs (with or without a gradient), its outputs, optional integer
// ids, how to build the module on any backend (make<B, T>()), its workspace plan (plan(m)) and
// apply(), which runs forward (and backward) on views of any backend. The harness runs the same case
// on the CPU and on the GPU: mm_compare builds both from the same seed and requires them to agree in
// float (outputs, input gradients, every parameter gradient), mm_gradcheck checks the GPU gradients
// against central finite differences computed on the GPU in double, and both require the GPU
// workspace plan to equal what the runs carve (plan == use) and the attention kernels the context
// selects to be the ones dispatched. mm_forward_steps and mm_check_cached compare cached attention
// (forward_step, append_kv / attend_cached) with the full forward.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cuda/compare.cuh"
#include "hseq/cuda.hpp"
#include "support/gradcheck.hpp"

namespace hseq::test_cuda_harness {

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

/// A case of a row-wise module (Linear, LayerNorm, Mlp): one input x [B, T, in], one output
/// y [B, T, out], `forward(ctx, x, y, ws)` / `backward(ctx, saved, dy, dx, ws)`, and workspaces sized
/// by the number of rows B T. A derived case adds its inputs, outputs and `make<B, T>()`.
struct RowwiseCase : MmCase {
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

/// mm_compare on the float case, then mm_gradcheck on the (smaller) double case.
template <class Case>
void mm_both(Case const& float_case, Case const& double_case, std::uint64_t seed) {
  mm_compare(float_case, seed);
  mm_gradcheck(double_case, seed + 7);
}

/// An attention mask as its operator<< prints it (for case names).
inline std::string mm_str(AttentionMask m) {
  std::ostringstream os;
  os << m;
  return os.str();
}

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

}  // namespace hseq::test_cuda_harness
