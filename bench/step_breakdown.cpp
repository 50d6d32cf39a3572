// SPDX-License-Identifier: MIT
// hseq_step_breakdown: where the time of one training step of a TransformerLm goes on the CPU, for
// fp32 and bf16 GEMM math (docs/performance.md, "Where the time goes").
//
// It times, at the step's own shapes, every kind of op the step runs, each on its own (median of
// --reps runs after one untimed), multiplies by how many times the step runs it, and compares the
// sum with the whole step measured the way the programs train (zero_grad, forward, backward,
// AdamW). The difference ("rest") is what the op list leaves out: residual adds, copies between
// heads and rows, bias adds and gradients, gradient zeroing, and the cost of running the ops in a
// chain (caches) rather than alone.
//
//   per layer: Linear q, kv, out (d x d, d x 2d, d x d), MLP d x 4d and 4d x d: forward and the two
//     backward GEMMs each; attention core forward + backward (causal); 2 LayerNorms; GELU on 4d.
//   once: final LayerNorm, tied head [N, d] x [d, 256] (3 GEMMs), cross-entropy, embedding and
//     positions forward + backward, AdamW over every parameter.
//
//   usage: hseq_step_breakdown [--batch 16] [--seq-len 256] [--dim 256] [--heads 4] [--layers 6]
//                              [--precision fp32|bf16] [--reps 10]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "hseq/hseq.hpp"

#if defined(HSEQ_USE_CBLAS)
extern "C" char* openblas_get_corename();
#endif

namespace {

using hseq::cpu;
using hseq::Shape;
using hseq::Tensor;
using hseq::ops::Mat;
using hseq::ops::Trans;

struct Options {
  std::int64_t batch = 16, seq_len = 256, dim = 256, heads = 4, layers = 6, reps = 10;
  std::string precision = "fp32";
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    HSEQ_CHECK(i + 1 < argc, "hseq_step_breakdown: " << k << " needs a value");
    std::string v = argv[++i];
    if (k == "--batch") o.batch = std::stoll(v);
    else if (k == "--seq-len") o.seq_len = std::stoll(v);
    else if (k == "--dim") o.dim = std::stoll(v);
    else if (k == "--heads") o.heads = std::stoll(v);
    else if (k == "--layers") o.layers = std::stoll(v);
    else if (k == "--reps") o.reps = std::stoll(v);
    else if (k == "--precision") o.precision = v;
    else HSEQ_FAIL("hseq_step_breakdown: unknown flag " << k);
  }
  HSEQ_CHECK(o.batch > 0 && o.seq_len > 0 && o.dim > 0 && o.heads > 0 && o.layers > 0 && o.reps > 0 &&
                 o.dim % o.heads == 0,
             "hseq_step_breakdown: sizes must be positive and --dim a multiple of --heads");
  return o;
}

/// Median seconds of `reps` runs of f after one untimed run.
double median_seconds(std::int64_t reps, std::function<void()> const& f) {
  f();
  std::vector<double> t;
  for (std::int64_t i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void fill(Tensor<float, cpu>& t, std::uint64_t seed) {
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = float(0.5 * hseq::philox_normal(seed, 3, std::uint64_t(i)));
}

struct Row {
  std::string name;
  double seconds;  // per step: one run times the count
  double flops;    // per step
};

}  // namespace

int main(int argc, char** argv) try {
  Options o = parse(argc, argv);
  cpu::Context ctx;
  ctx.set_gemm_math(hseq::parse_gemm_math(o.precision, "--precision"));
  std::int64_t const n = o.batch * o.seq_len, d = o.dim, v = 256, L = o.layers;

  // --- the whole step, as the programs train -------------------------------------------------
  using Lm = hseq::models::TransformerLm<cpu, float>;
  Lm model({.vocab = v, .dim = d, .heads = o.heads, .layers = L, .context = o.seq_len});
  hseq::nn::ParamStore<cpu, float> params(ctx, model);
  params.init(ctx, 1);
  hseq::train::AdamW<cpu, float> opt(ctx, params, hseq::train::AdamW<cpu, float>::Config{});
  Tensor<std::int32_t, cpu> ids(Shape{o.batch, o.seq_len}), targets(Shape{o.batch, o.seq_len});
  for (std::int64_t i = 0; i < n; ++i) {
    ids.data()[i] = std::int32_t(hseq::philox_uniform(5, 1, std::uint64_t(i)) * 256) & 255;
    targets.data()[i] = std::int32_t(hseq::philox_uniform(5, 2, std::uint64_t(i)) * 256) & 255;
  }
  hseq::Workspace<cpu> ws(model.forward_workspace(o.batch, o.seq_len) + model.backward_workspace(o.batch, o.seq_len));
  Lm::Trace trace;
  double const step = median_seconds(o.reps, [&] {
    params.zero_grad(ctx);
    auto arena = ws.arena();
    model.forward(ctx, ids.cview(), targets.cview(), arena, trace);
    model.backward(ctx, trace, arena);
    opt.step(ctx);
  });

  // --- the ops, alone, at the step's shapes -------------------------------------------------
  std::vector<Row> rows;
  auto linear = [&](char const* name, std::int64_t in, std::int64_t out, std::int64_t count) {
    Tensor<float, cpu> x(Shape{n, in}), w(Shape{out, in}), y(Shape{n, out}), dy(Shape{n, out}), dw(Shape{out, in}),
        dx(Shape{n, in});
    fill(x, 1);
    fill(w, 2);
    fill(dy, 3);
    // nn::Linear: y = x W^T; dW += dy^T x; dx = dy W.
    double s = median_seconds(o.reps, [&] {
      hseq::ops::gemm<float>(ctx, Trans::kNo, {x.data(), n, in}, Trans::kYes, {w.data(), out, in}, {y.data(), n, out});
      hseq::ops::gemm<float>(ctx, Trans::kYes, {dy.data(), n, out}, Trans::kNo, {x.data(), n, in}, {dw.data(), out, in},
                             1.0f, 1.0f);
      hseq::ops::gemm<float>(ctx, Trans::kNo, {dy.data(), n, out}, Trans::kNo, {w.data(), out, in}, {dx.data(), n, in});
    });
    rows.push_back({name, s * double(count), 6.0 * double(n * in * out) * double(count)});
  };
  linear("gemm: attention q + out (d x d)", d, d, 2 * L);
  linear("gemm: attention kv (d x 2d)", d, 2 * d, L);
  linear("gemm: mlp up (d x 4d)", d, 4 * d, L);
  linear("gemm: mlp down (4d x d)", 4 * d, d, L);
  linear("gemm: tied head (d x 256)", d, v, 1);

  {
    hseq::ops::AttentionDims ad{o.batch, o.heads, o.seq_len, o.seq_len, d / o.heads, 0};
    Tensor<float, cpu> q(Shape{o.batch, o.seq_len, d}), kv(Shape{o.batch, o.seq_len, 2 * d}),
        out(Shape{o.batch, o.seq_len, d}), dout(Shape{o.batch, o.seq_len, d}), dq(Shape{o.batch, o.seq_len, d}),
        dkv(Shape{o.batch, o.seq_len, 2 * d}), probs(hseq::ops::attention_stats_shape(hseq::HostSpace{}, ad)),
        scratch(Shape{hseq::ops::attention_backward_scratch(hseq::HostSpace{}, ad)});
    fill(q, 4);
    fill(kv, 5);
    fill(dout, 6);
    float const scale = 1.0f / std::sqrt(float(d / o.heads));
    auto mask = hseq::ops::AttentionMask::causal();
    double s = median_seconds(o.reps, [&] {
      hseq::ops::attention_forward<float>(ctx, ad, mask, scale, q.cview(), kv.cview(), out.view(), probs.view());
      hseq::ops::attention_backward<float>(ctx, ad, mask, scale, q.cview(), kv.cview(), out.cview(), probs.cview(),
                                           dout.cview(), dq.view(), dkv.view(), scratch.view());
    });
    // Causal: half of 4 T^2 d forward and 8 T^2 d backward per batch element.
    rows.push_back({"attention core (causal)", s * double(L),
                    0.5 * 12.0 * double(o.batch) * double(o.seq_len * o.seq_len) * double(d) * double(L)});
  }
  {
    Tensor<float, cpu> x(Shape{n, d}), g(Shape{d}), b(Shape{d}), y(Shape{n, d}), mean(Shape{n}), rstd(Shape{n}),
        dy(Shape{n, d}), dx(Shape{n, d}), dg(Shape{d}), db(Shape{d});
    fill(x, 7);
    fill(g, 8);
    fill(b, 9);
    fill(dy, 10);
    double s = median_seconds(o.reps, [&] {
      hseq::ops::layer_norm_forward<float>(ctx, x.cview(), g.cview(), b.cview(), 1e-5f, y.view(), mean.view(), rstd.view());
      hseq::ops::layer_norm_backward<float>(ctx, x.cview(), g.cview(), mean.cview(), rstd.cview(), dy.cview(), dx.view(),
                                            dg.view(), db.view());
    });
    rows.push_back({"layer norm", s * double(2 * L + 1), 0});
  }
  {
    Tensor<float, cpu> x(Shape{n, 4 * d}), y(Shape{n, 4 * d}), dy(Shape{n, 4 * d}), dx(Shape{n, 4 * d});
    fill(x, 11);
    fill(dy, 12);
    double s = median_seconds(o.reps, [&] {
      hseq::ops::gelu_forward<float>(ctx, x.cview(), y.view());
      hseq::ops::gelu_backward<float>(ctx, x.cview(), dy.cview(), dx.view());
    });
    rows.push_back({"gelu", s * double(L), 0});
  }
  {
    Tensor<float, cpu> logits(Shape{n, v}), losses(Shape{n}), dlogits(Shape{n, v});
    fill(logits, 13);
    double s = median_seconds(o.reps, [&] {
      hseq::ops::cross_entropy_forward<float>(ctx, logits.cview(), targets.cview().reshape(Shape{n}), losses.view());
      hseq::ops::cross_entropy_backward<float>(ctx, logits.cview(), targets.cview().reshape(Shape{n}), 1.0f / float(n),
                                               dlogits.view());
    });
    rows.push_back({"cross-entropy", s, 0});
  }
  {
    Tensor<float, cpu> table(Shape{v, d}), pos(Shape{o.seq_len, d}), out(Shape{n, d}), dtable(Shape{v, d});
    fill(table, 14);
    fill(out, 15);
    double s = median_seconds(o.reps, [&] {
      hseq::ops::embedding_forward<float>(ctx, table.cview(), ids.cview().reshape(Shape{n}), out.view());
      hseq::ops::embedding_backward<float>(ctx, ids.cview().reshape(Shape{n}), out.cview(), dtable.view());
    });
    rows.push_back({"embedding", s, 0});
  }
  {
    std::int64_t const p = params.count();
    Tensor<float, cpu> w(Shape{p}), g(Shape{p}), m(Shape{p}), vv(Shape{p});
    fill(w, 16);
    fill(g, 17);
    hseq::ops::AdamWStep st;
    double s = median_seconds(o.reps, [&] {
      hseq::ops::adamw_update<float>(ctx, w.view(), g.cview(), m.view(), vv.view(), st);
    });
    rows.push_back({"adamw (" + std::to_string(p) + " parameters)", s, 0});
  }

  // --- report ------------------------------------------------------------------------------------
  char const* core = "";
#if defined(HSEQ_USE_CBLAS)
  core = openblas_get_corename();
#endif
  std::printf("config: batch %lld x %lld, d %lld, heads %lld, layers %lld, vocab 256; precision %s",
              (long long)o.batch, (long long)o.seq_len, (long long)d, (long long)o.heads, (long long)L,
              o.precision.c_str());
  if (ctx.gemm_math() == hseq::GemmMath::kBf16)
    std::printf(" (%s)", hseq::cpu_bf16_path_name(hseq::detail::bf16_gemm_of(ctx).path()));
  std::printf("; threads %d; openblas core %s\n", hseq::detail::max_threads(), core);
  double sum = 0, gemm_s = 0, gemm_f = 0;
  for (Row const& r : rows) {
    sum += r.seconds;
    if (r.name.rfind("gemm", 0) == 0) {
      gemm_s += r.seconds;
      gemm_f += r.flops;
    }
  }
  std::printf("%-40s %10s %7s %10s\n", "op (per training step)", "ms", "share", "GFLOP/s");
  for (Row const& r : rows) {
    std::printf("%-40s %10.2f %6.1f%%", r.name.c_str(), r.seconds * 1e3, 100.0 * r.seconds / step);
    if (r.flops > 0) std::printf(" %10.1f", r.flops / r.seconds / 1e9);
    std::printf("\n");
  }
  std::printf("%-40s %10.2f %6.1f%% %10.1f\n", "all GEMMs", gemm_s * 1e3, 100.0 * gemm_s / step, gemm_f / gemm_s / 1e9);
  std::printf("%-40s %10.2f %6.1f%%\n", "sum of the ops alone", sum * 1e3, 100.0 * sum / step);
  std::printf("%-40s %10.2f %6.1f%%\n", "rest (step - sum)", (step - sum) * 1e3, 100.0 * (step - sum) / step);
  std::printf("%-40s %10.2f %6.1f%%   %.0f tokens/s\n", "whole step", step * 1e3, 100.0, double(n) / step);
  return 0;
} catch (std::exception const& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
