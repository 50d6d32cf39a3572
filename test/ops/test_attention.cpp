// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "hseq/ops/attention.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::HostSpace;
using hseq::Shape;
using hseq::Tensor;
using hseq::View;
using hseq::ops::AttentionDims;
using hseq::ops::AttentionMask;
using hseq::test::random_tensor;
using DT = Tensor<double, hseq::cpu>;

namespace {
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (hseq::Error const& e) {
    return e.what();
  }
  return "<no exception>";
}

/// Naive attention in long double, straight from the definition: for each batch b, head h, query i:
/// s_j = scale <q_i, k_j> over the keys the mask allows, p = softmax(s), out_i = sum_j p_j v_j.
/// Returns out [B, Tq, H*dh] and probs [B, H, Tq, Tk] (zero where masked / for blind rows).
struct Ref {
  std::vector<double> out, probs;
};
template <class T>
Ref attention_ref(AttentionDims const& d, AttentionMask mask, double scale, T const* q, T const* kv) {
  std::int64_t const w = d.width();
  Ref r{std::vector<double>(std::size_t(d.batch * d.tq * w), 0.0),
        std::vector<double>(std::size_t(d.batch * d.heads * d.tq * d.tk), 0.0)};
  std::vector<long double> s(std::size_t(d.tk));
  for (std::int64_t b = 0; b < d.batch; ++b)
    for (std::int64_t h = 0; h < d.heads; ++h)
      for (std::int64_t i = 0; i < d.tq; ++i) {
        long double mx = -std::numeric_limits<long double>::infinity();
        bool any = false;
        for (std::int64_t j = 0; j < d.tk; ++j) {
          if (!mask.allowed(i, j, d.tk, d.prefix)) continue;
          long double dotp = 0;
          for (std::int64_t e = 0; e < d.head_dim; ++e)
            dotp += (long double)q[(b * d.tq + i) * w + h * d.head_dim + e] *
                    (long double)kv[(b * d.tk + j) * 2 * w + h * d.head_dim + e];
          s[std::size_t(j)] = scale * dotp;
          mx = std::max(mx, s[std::size_t(j)]);
          any = true;
        }
        if (!any) continue;
        long double sum = 0;
        for (std::int64_t j = 0; j < d.tk; ++j)
          if (mask.allowed(i, j, d.tk, d.prefix)) sum += std::exp(s[std::size_t(j)] - mx);
        for (std::int64_t j = 0; j < d.tk; ++j) {
          if (!mask.allowed(i, j, d.tk, d.prefix)) continue;
          long double p = std::exp(s[std::size_t(j)] - mx) / sum;
          r.probs[std::size_t(((b * d.heads + h) * d.tq + i) * d.tk + j)] = double(p);
          for (std::int64_t e = 0; e < d.head_dim; ++e)
            r.out[std::size_t((b * d.tq + i) * w + h * d.head_dim + e)] +=
                double(p * (long double)kv[(b * d.tk + j) * 2 * w + w + h * d.head_dim + e]);
        }
      }
  return r;
}

struct Case {
  char const* name;
  AttentionMask mask;
  AttentionDims d;
};

std::vector<Case> forward_cases() {
  return {
      {"none, Tq != Tk", AttentionMask::none(), {2, 2, 5, 7, 3, 0}},
      {"none, prefix", AttentionMask::none(), {1, 3, 4, 6, 2, 2}},
      {"causal", AttentionMask::causal(), {2, 2, 9, 9, 4, 0}},
      {"causal, prefix", AttentionMask::causal(), {2, 2, 6, 9, 3, 3}},
      {"causal, Tq 70 (two query blocks)", AttentionMask::causal(), {1, 2, 70, 70, 4, 0}},
      {"causal, Tq 130 with prefix (three blocks)", AttentionMask::causal(), {1, 2, 130, 135, 3, 5}},
      {"none, Tq 130", AttentionMask::none(), {2, 1, 130, 20, 3, 0}},
      {"upsampling rates(1, 0, 3, 0)", AttentionMask::rates(1, 0, 3, 0), {2, 2, 12, 4, 3, 0}},
      {"upsampling rates(1, 0, 4, 0), Tq 70, prefix", AttentionMask::rates(1, 0, 4, 0), {1, 2, 70, 20, 4, 2}},
      {"pooling rates(3, 2, 1, 0)", AttentionMask::rates(3, 2, 1, 0), {2, 2, 4, 12, 3, 0}},
      {"blind first rows rates(1, 0, 1, 3)", AttentionMask::rates(1, 0, 1, 3), {1, 2, 8, 8, 2, 0}},
      {"blind first block rates(1, -64, 1, 0), Tq 130", AttentionMask::rates(1, -64, 1, 0), {1, 2, 130, 70, 3, 0}},
      {"blind first block with prefix", AttentionMask::rates(1, -64, 1, 0), {1, 1, 70, 12, 2, 2}},
  };
}

template <class T>
void check_forward(Case const& c, double tol) {
  hseq::cpu::Context ctx;
  AttentionDims const& d = c.d;
  INFO("case: ", c.name);
  auto q = random_tensor<T>(Shape{d.batch, d.tq, d.width()}, 1);
  auto kv = random_tensor<T>(Shape{d.batch, d.tk, 2 * d.width()}, 2);
  Tensor<T, hseq::cpu> out(q.shape()), probs(Shape{d.batch, d.heads, d.tq, d.tk});
  std::fill(out.data(), out.data() + out.numel(), std::numeric_limits<T>::quiet_NaN());
  std::fill(probs.data(), probs.data() + probs.numel(), std::numeric_limits<T>::quiet_NaN());
  double const scale = 1.0 / std::sqrt(double(d.head_dim));
  hseq::ops::attention_forward<T>(ctx, d, c.mask, T(scale), q.cview(), kv.cview(), out.view(), probs.view());
  Ref ref = attention_ref(d, c.mask, double(T(scale)), q.data(), kv.data());
  std::int64_t bad_out = 0, bad_probs = 0, masked_nonzero = 0;
  double worst = 0;
  for (std::int64_t i = 0; i < out.numel(); ++i) {
    double err = std::abs(double(out.data()[i]) - ref.out[std::size_t(i)]);
    if (!(err <= tol)) {
      ++bad_out;
      worst = std::max(worst, std::isnan(err) ? 1e300 : err);
    }
  }
  for (std::int64_t b = 0; b < d.batch; ++b)
    for (std::int64_t h = 0; h < d.heads; ++h)
      for (std::int64_t i = 0; i < d.tq; ++i)
        for (std::int64_t j = 0; j < d.tk; ++j) {
          std::size_t k = std::size_t(((b * d.heads + h) * d.tq + i) * d.tk + j);
          double p = double(probs.data()[k]);
          bad_probs += !(std::abs(p - ref.probs[k]) <= tol);
          if (!c.mask.allowed(i, j, d.tk, d.prefix)) masked_nonzero += p != 0.0;
        }
  INFO("worst output error ", worst);
  CHECK(bad_out == 0);
  CHECK(bad_probs == 0);
  CHECK(masked_nonzero == 0);
}

/// Runs forward + backward; returns nothing, fills the gradients.
void grads_of(AttentionDims const& d, AttentionMask mask, double scale, DT const& q, DT const& kv, DT& out, DT& probs,
              DT const& dout, DT& dq, DT& dkv, DT& scratch) {
  hseq::cpu::Context ctx;
  hseq::ops::attention_forward<double>(ctx, d, mask, scale, q.cview(), kv.cview(), out.view(), probs.view());
  hseq::ops::attention_backward<double>(ctx, d, mask, scale, q.cview(), kv.cview(), out.cview(), probs.cview(), dout.cview(),
                                        dq.view(), dkv.view(), scratch.view());
}
}  // namespace

TEST_CASE("attention: forward matches a naive reference (double)") {
  for (auto const& c : forward_cases()) check_forward<double>(c, 1e-13);
}

TEST_CASE("attention: forward matches a naive reference (float)") {
  for (auto const& c : forward_cases()) check_forward<float>(c, 2e-6);
}

TEST_CASE("attention: backward matches finite differences") {
  struct BCase {
    char const* name;
    AttentionMask mask;
    AttentionDims d;
  };
  BCase cases[] = {
      {"none, Tq != Tk", AttentionMask::none(), {2, 2, 3, 5, 3, 0}},
      {"causal with prefix", AttentionMask::causal(), {1, 2, 5, 7, 2, 2}},
      {"upsampling rates(1, 0, 2, 0)", AttentionMask::rates(1, 0, 2, 0), {2, 1, 6, 3, 3, 0}},
      {"pooling rates(2, 1, 1, 0), blind rows via offset", AttentionMask::rates(2, 1, 1, 4), {1, 2, 4, 8, 2, 0}},
      {"causal, Tq 70 (two query blocks)", AttentionMask::causal(), {1, 1, 70, 72, 2, 2}},
      {"blind first block, Tq 70", AttentionMask::rates(1, -64, 1, 0), {1, 2, 70, 8, 2, 0}},
  };
  for (auto const& c : cases) {
    INFO("case: ", c.name);
    AttentionDims const& d = c.d;
    double const scale = 0.8;
    auto q = random_tensor<double>(Shape{d.batch, d.tq, d.width()}, 3);
    auto kv = random_tensor<double>(Shape{d.batch, d.tk, 2 * d.width()}, 4);
    auto r = random_tensor<double>(q.shape(), 5);
    DT out(q.shape()), probs(Shape{d.batch, d.heads, d.tq, d.tk}), dq(q.shape()), dkv(kv.shape());
    DT scratch(Shape{hseq::ops::attention_backward_scratch(d, hseq::detail::max_threads())});
    hseq::cpu::Context ctx;
    auto loss = [&] {
      hseq::ops::attention_forward<double>(ctx, d, c.mask, scale, q.cview(), kv.cview(), out.view(), probs.view());
      return hseq::test::dot<double>(out.cview(), r.cview());
    };
    auto grads = [&] { grads_of(d, c.mask, scale, q, kv, out, probs, r, dq, dkv, scratch); };
    hseq::test::GradCheck gc(hseq::test::GradcheckOptions{1e-6, 1e-6, 1e-9, 96});
    gc.input("q", q.view(), dq.view()).input("kv", kv.view(), dkv.view()).run(loss, grads);
  }
}

TEST_CASE("attention: backward matches the naive reference's gradients on a larger causal case") {
  // Tq = 130 spans three query blocks; compare against finite differences of the naive reference
  // on a few elements in every block, for q, keys and values.
  AttentionDims d{1, 2, 130, 133, 3, 3};
  auto mask = AttentionMask::causal();
  double const scale = 0.6;
  auto q = random_tensor<double>(Shape{d.batch, d.tq, d.width()}, 6);
  auto kv = random_tensor<double>(Shape{d.batch, d.tk, 2 * d.width()}, 7);
  auto r = random_tensor<double>(q.shape(), 8);
  DT out(q.shape()), probs(Shape{d.batch, d.heads, d.tq, d.tk}), dq(q.shape()), dkv(kv.shape());
  DT scratch(Shape{hseq::ops::attention_backward_scratch(d, hseq::detail::max_threads())});
  grads_of(d, mask, scale, q, kv, out, probs, r, dq, dkv, scratch);
  auto ref_loss = [&] {
    Ref ref = attention_ref(d, mask, scale, q.data(), kv.data());
    double s = 0;
    for (std::int64_t i = 0; i < q.numel(); ++i) s += ref.out[std::size_t(i)] * r.data()[i];
    return s;
  };
  auto check_elem = [&](DT& t, DT const& g, std::int64_t i) {
    double const h = 1e-6, keep = t.data()[i];
    t.data()[i] = keep + h;
    double lp = ref_loss();
    t.data()[i] = keep - h;
    double lm = ref_loss();
    t.data()[i] = keep;
    double num = (lp - lm) / (2 * h);
    INFO("element ", i, " analytic ", g.data()[i], " numeric ", num);
    CHECK(std::abs(g.data()[i] - num) <= 1e-6 * std::max(std::abs(num), std::abs(g.data()[i])) + 1e-8);
  };
  std::int64_t const w = d.width();
  for (std::int64_t row : {0, 5, 63, 64, 100, 127, 128, 129})
    for (std::int64_t col : {std::int64_t(0), w - 1}) check_elem(q, dq, row * w + col);
  for (std::int64_t row : {0, 2, 3, 66, 67, 130, 132})  // prefix keys, keys in each block, the last keys
    for (std::int64_t col : {std::int64_t(1), w + 2, 2 * w - 1}) check_elem(kv, dkv, row * 2 * w + col);
}

TEST_CASE("attention: causal outputs do not depend on later keys and values (bit-identical)") {
  hseq::cpu::Context ctx;
  AttentionDims d{2, 2, 70, 70, 4, 0};
  auto q = random_tensor<double>(Shape{d.batch, d.tq, d.width()}, 9);
  auto kv = random_tensor<double>(Shape{d.batch, d.tk, 2 * d.width()}, 10);
  DT out0(q.shape()), out1(q.shape()), probs(Shape{d.batch, d.heads, d.tq, d.tk});
  hseq::ops::attention_forward<double>(ctx, d, AttentionMask::causal(), 0.5, q.cview(), kv.cview(), out0.view(),
                                       probs.view());
  std::int64_t const w = d.width();
  for (std::int64_t t : {1, 30, 63, 64, 65, 69}) {
    INFO("perturbed key/value row ", t);
    std::vector<double> keep(kv.data(), kv.data() + kv.numel());
    for (std::int64_t b = 0; b < d.batch; ++b)
      for (std::int64_t e = 0; e < 2 * w; ++e) kv.data()[(b * d.tk + t) * 2 * w + e] += 5.0 + double(e);
    hseq::ops::attention_forward<double>(ctx, d, AttentionMask::causal(), 0.5, q.cview(), kv.cview(), out1.view(),
                                         probs.view());
    // Only keys/values move (the queries do not), so a row moves only through the mask: rows
    // before t must be bit-identical and every row from t on, the first dependent one included, must move.
    std::int64_t changed_before = 0, unchanged_after = 0;
    for (std::int64_t b = 0; b < d.batch; ++b)
      for (std::int64_t i = 0; i < d.tq; ++i) {
        bool moved = false;
        for (std::int64_t e = 0; e < w; ++e) {
          std::int64_t k = (b * d.tq + i) * w + e;
          moved = moved || !(out1.data()[k] == out0.data()[k]);
        }
        if (i < t) changed_before += moved;
        else unchanged_after += !moved;
      }
    CHECK(changed_before == 0);
    CHECK(unchanged_after == 0);
    std::copy(keep.begin(), keep.end(), kv.data());
  }
}

TEST_CASE("attention: the same rows in different query blocks agree with a single-block call") {
  // Query rows are independent: attention over Tq = 130 rows equals, row by row, attention for the
  // [64, 130) rows computed alone with the matching query offset.
  hseq::cpu::Context ctx;
  AttentionDims d{1, 2, 130, 130, 3, 0};
  auto q = random_tensor<double>(Shape{1, 130, d.width()}, 11);
  auto kv = random_tensor<double>(Shape{1, 130, 2 * d.width()}, 12);
  DT out(q.shape()), probs(Shape{1, 2, 130, 130});
  hseq::ops::attention_forward<double>(ctx, d, AttentionMask::causal(), 0.5, q.cview(), kv.cview(), out.view(),
                                       probs.view());
  AttentionDims d2{1, 2, 66, 130, 3, 0};
  DT q2(Shape{1, 66, d.width()}), out2(q2.shape()), probs2(Shape{1, 2, 66, 130});
  std::copy(q.data() + 64 * d.width(), q.data() + 130 * d.width(), q2.data());
  hseq::ops::attention_forward<double>(ctx, d2, AttentionMask::rates(1, 64, 1, 0), 0.5, q2.cview(), kv.cview(),
                                       out2.view(), probs2.view());
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < q2.numel(); ++i)
    bad += !(std::abs(out2.data()[i] - out.data()[64 * d.width() + i]) <= 1e-14);
  CHECK(bad == 0);
}

TEST_CASE("attention: a key/value cache with kv_rows > Tk uses only its first Tk rows") {
  // Decoding: the kv buffer has capacity kv_rows per batch element, of which the first tk rows are
  // filled; the rest is garbage (NaN) that must be neither read nor written.
  hseq::cpu::Context ctx;
  struct CCase {
    AttentionMask mask;
    std::int64_t tq, tk, cap, prefix;
  };
  for (CCase c : {CCase{AttentionMask::rates(1, 4, 1, 0), 1, 5, 9, 0},  // one new token at position 4
                  CCase{AttentionMask::rates(1, 3, 1, 0), 3, 6, 8, 0},  // three new tokens at 3, 4, 5
                  CCase{AttentionMask::none(), 2, 4, 4, 1},             // full buffer: kv_rows == tk
                  CCase{AttentionMask::causal(), 70, 70, 75, 0}}) {     // two query blocks
    INFO("mask ", c.mask, ", Tq ", c.tq, ", Tk ", c.tk, ", capacity ", c.cap);
    AttentionDims d{2, 2, c.tq, c.tk, 3, c.prefix, c.cap};
    AttentionDims dc = d;  // the same problem on a compact [B, Tk, 2W] buffer
    dc.kv_rows = 0;
    std::int64_t const w = d.width();
    auto q = random_tensor<double>(Shape{d.batch, d.tq, w}, 13);
    auto compact = random_tensor<double>(Shape{d.batch, d.tk, 2 * w}, 14);
    DT cache(Shape{d.batch, c.cap, 2 * w});
    std::fill(cache.data(), cache.data() + cache.numel(), std::numeric_limits<double>::quiet_NaN());
    for (std::int64_t b = 0; b < d.batch; ++b)
      std::copy_n(compact.data() + b * d.tk * 2 * w, d.tk * 2 * w, cache.data() + b * c.cap * 2 * w);
    DT out(q.shape()), probs(Shape{d.batch, d.heads, d.tq, d.tk});
    hseq::ops::attention_forward<double>(ctx, d, c.mask, 0.5, q.cview(), cache.cview(), out.view(), probs.view());
    Ref ref = attention_ref(dc, c.mask, 0.5, q.data(), compact.data());
    std::int64_t bad = 0;
    for (std::int64_t i = 0; i < out.numel(); ++i) bad += !(std::abs(out.data()[i] - ref.out[std::size_t(i)]) <= 1e-13);
    CHECK(bad == 0);

    // Backward writes the first tk rows of each block (equal to the compact gradients) and leaves
    // the rest of the cache gradient alone.
    auto dout = random_tensor<double>(q.shape(), 15);
    DT dq(q.shape()), dkv(cache.shape()), dq_c(q.shape()), dkv_c(compact.shape()), probs_c(probs.shape()), out_c(q.shape());
    DT scratch(Shape{hseq::ops::attention_backward_scratch(d, hseq::detail::max_threads())});
    std::fill(dkv.data(), dkv.data() + dkv.numel(), 7.0);
    // The NaN rows beyond tk would poison dq and dkv if backward read them.
    hseq::ops::attention_backward<double>(ctx, d, c.mask, 0.5, q.cview(), cache.cview(), out.cview(), probs.cview(), dout.cview(),
                                          dq.view(), dkv.view(), scratch.view());
    hseq::ops::attention_forward<double>(ctx, dc, c.mask, 0.5, q.cview(), compact.cview(), out_c.view(), probs_c.view());
    hseq::ops::attention_backward<double>(ctx, dc, c.mask, 0.5, q.cview(), compact.cview(), out_c.cview(), probs_c.cview(),
                                          dout.cview(), dq_c.view(), dkv_c.view(), scratch.view());
    std::int64_t bad_dq = 0, bad_dkv = 0, touched = 0;
    for (std::int64_t i = 0; i < dq.numel(); ++i) bad_dq += !(std::abs(dq.data()[i] - dq_c.data()[i]) <= 1e-13);
    for (std::int64_t b = 0; b < d.batch; ++b)
      for (std::int64_t r = 0; r < c.cap; ++r)
        for (std::int64_t e = 0; e < 2 * w; ++e) {
          double v = dkv.data()[(b * c.cap + r) * 2 * w + e];
          if (r < d.tk) bad_dkv += !(std::abs(v - dkv_c.data()[(b * d.tk + r) * 2 * w + e]) <= 1e-13);
          else touched += v != 7.0;
        }
    CHECK(bad_dq == 0);
    CHECK(bad_dkv == 0);
    CHECK(touched == 0);
  }
  // A capacity smaller than Tk is rejected.
  AttentionDims bad{1, 1, 2, 5, 2, 0, 4};
  DT q(Shape{1, 2, 2}), kv(Shape{1, 4, 4}), out(Shape{1, 2, 2}), probs(Shape{1, 1, 2, 5});
  CHECK_THROWS_AS(hseq::ops::attention_forward<double>(ctx, bad, AttentionMask::none(), 1.0, q.cview(), kv.cview(),
                                                       out.view(), probs.view()),
                  hseq::Error);
}

TEST_CASE("attention: bad shapes throw naming them") {
  hseq::cpu::Context ctx;
  AttentionDims d{2, 2, 3, 4, 5, 0};
  DT q(Shape{2, 3, 10}), kv(Shape{2, 4, 20}), out(Shape{2, 3, 10}), probs(Shape{2, 2, 3, 4});
  DT q_bad(Shape{2, 3, 9}), kv_bad(Shape{2, 5, 20}), probs_bad(Shape{2, 2, 4, 3});
  auto fwd = [&](DT const& qq, DT const& kk, DT& oo, DT& pp, AttentionDims dd) {
    hseq::ops::attention_forward<double>(ctx, dd, AttentionMask::none(), 1.0, qq.cview(), kk.cview(), oo.view(),
                                         pp.view());
  };
  CHECK_NOTHROW(fwd(q, kv, out, probs, d));
  std::string msg = error_of([&] { fwd(q_bad, kv, out, probs, d); });
  CHECK(msg.find("[2, 3, 9]") != std::string::npos);
  CHECK(msg.find("[2, 3, 10]") != std::string::npos);
  msg = error_of([&] { fwd(q, kv_bad, out, probs, d); });
  CHECK(msg.find("[2, 5, 20]") != std::string::npos);
  CHECK(msg.find("[2, 4, 20]") != std::string::npos);
  msg = error_of([&] { fwd(q, kv, out, probs_bad, d); });
  CHECK(msg.find("[2, 2, 4, 3]") != std::string::npos);
  AttentionDims bad_prefix = d;
  bad_prefix.prefix = 5;
  msg = error_of([&] { fwd(q, kv, out, probs, bad_prefix); });
  CHECK(msg.find("prefix 5") != std::string::npos);
  // Backward: too little scratch names both sizes.
  DT dq(q.shape()), dkv(kv.shape()), small(Shape{1});
  msg = error_of([&] {
    hseq::ops::attention_backward<double>(ctx, d, AttentionMask::none(), 1.0, q.cview(), kv.cview(), out.cview(),
                                          probs.cview(), out.cview(), dq.view(), dkv.view(), small.view());
  });
  CHECK(msg.find("scratch of 1 elements") != std::string::npos);
  DT scratch(Shape{hseq::ops::attention_backward_scratch(d, hseq::detail::max_threads())});
  msg = error_of([&] {
    hseq::ops::attention_backward<double>(ctx, d, AttentionMask::none(), 1.0, q.cview(), kv.cview(), out.cview(),
                                          probs.cview(), out.cview(), dq.view(), kv_bad.view(), scratch.view());
  });
  CHECK(msg.find("[2, 5, 20]") != std::string::npos);
}

// ---- Score biases (table by head and relative distance, dense per query/key) and the key mass ----

namespace {
using Scores = hseq::ops::AttentionScores<double, HostSpace>;
using ScoreGrads = hseq::ops::AttentionScoreGrads<double, HostSpace>;

/// Naive biased attention in long double: l_j = scale <q_i, k_j> + table[h, clamp(q0 + i - j, 0, D-1)]
/// + dense[b, h, i, j] over allowed keys, p = softmax(l), out = sum p v, mass[b, h, j] = sum_i p.
struct BiasedRef {
  std::vector<double> out, probs, mass;
};
BiasedRef biased_ref(AttentionDims const& d, AttentionMask mask, double scale, double const* q, double const* kv,
                     double const* table, std::int64_t dmax, double const* dense, std::int64_t q0) {
  std::int64_t const w = d.width();
  BiasedRef r{std::vector<double>(std::size_t(d.batch * d.tq * w), 0.0),
              std::vector<double>(std::size_t(d.batch * d.heads * d.tq * d.tk), 0.0),
              std::vector<double>(std::size_t(d.batch * d.heads * d.tk), 0.0)};
  for (std::int64_t b = 0; b < d.batch; ++b)
    for (std::int64_t h = 0; h < d.heads; ++h)
      for (std::int64_t i = 0; i < d.tq; ++i) {
        std::vector<long double> l(std::size_t(d.tk), 0);
        long double mx = -std::numeric_limits<long double>::infinity();
        for (std::int64_t j = 0; j < d.tk; ++j) {
          if (!mask.allowed(i, j, d.tk, d.prefix)) continue;
          long double dotp = 0;
          for (std::int64_t e = 0; e < d.head_dim; ++e)
            dotp += (long double)q[(b * d.tq + i) * w + h * d.head_dim + e] *
                    (long double)kv[(b * d.tk + j) * 2 * w + h * d.head_dim + e];
          long double v = scale * dotp;
          if (table) {
            std::int64_t delta = q0 + i - j;
            delta = delta < 0 ? 0 : (delta > dmax - 1 ? dmax - 1 : delta);
            v += table[h * dmax + delta];
          }
          if (dense) v += dense[((b * d.heads + h) * d.tq + i) * d.tk + j];
          l[std::size_t(j)] = v;
          mx = std::max(mx, v);
        }
        long double sum = 0;
        for (std::int64_t j = 0; j < d.tk; ++j)
          if (mask.allowed(i, j, d.tk, d.prefix)) sum += std::exp(l[std::size_t(j)] - mx);
        for (std::int64_t j = 0; j < d.tk; ++j) {
          if (!mask.allowed(i, j, d.tk, d.prefix)) continue;
          long double p = std::exp(l[std::size_t(j)] - mx) / sum;
          r.probs[std::size_t(((b * d.heads + h) * d.tq + i) * d.tk + j)] = double(p);
          r.mass[std::size_t((b * d.heads + h) * d.tk + j)] += double(p);
          for (std::int64_t e = 0; e < d.head_dim; ++e)
            r.out[std::size_t((b * d.tq + i) * w + h * d.head_dim + e)] +=
                double(p * (long double)kv[(b * d.tk + j) * 2 * w + w + h * d.head_dim + e]);
        }
      }
  return r;
}

struct BiasCase {
  char const* name;
  AttentionMask mask;
  AttentionDims d;
  std::int64_t dmax;
  std::int64_t q_pos0;  // -1: the prefix
  bool table, dense;
};
std::vector<BiasCase> bias_cases() {
  return {
      {"causal, table", AttentionMask::causal(), {2, 2, 9, 9, 3, 0}, 4, -1, true, false},
      {"causal, prefix, table + dense", AttentionMask::causal(), {2, 2, 6, 9, 3, 3}, 5, -1, true, true},
      {"none (negative distances clamp to 0), table", AttentionMask::none(), {1, 3, 5, 7, 2, 0}, 3, 1, true, false},
      {"none, dense only", AttentionMask::none(), {2, 1, 4, 6, 2, 2}, 1, -1, false, true},
      {"upsampling rates(1, 0, 2, 0), table, q_pos0 2", AttentionMask::rates(1, 0, 2, 0), {1, 2, 8, 4, 2, 0}, 6, 2,
       true, true},
      {"causal, Tq 70 (two query blocks), table", AttentionMask::causal(), {1, 2, 70, 72, 2, 2}, 80, -1, true, false},
      {"blind rows rates(1, 0, 1, 3), table + dense", AttentionMask::rates(1, 0, 1, 3), {1, 2, 6, 6, 2, 0}, 6, -1,
       true, true},
  };
}
}  // namespace

TEST_CASE("attention scores: biased forward and key mass match a naive reference") {
  hseq::cpu::Context ctx;
  for (auto const& c : bias_cases()) {
    INFO("case: ", std::string(c.name));
    AttentionDims const& d = c.d;
    auto q = random_tensor<double>(Shape{d.batch, d.tq, d.width()}, 21);
    auto kv = random_tensor<double>(Shape{d.batch, d.tk, 2 * d.width()}, 22);
    auto table = random_tensor<double>(Shape{d.heads, c.dmax}, 23, 2.0);
    auto dense = random_tensor<double>(Shape{d.batch, d.heads, d.tq, d.tk}, 24, 2.0);
    DT out(q.shape()), probs(Shape{d.batch, d.heads, d.tq, d.tk}), mass(Shape{d.batch, d.heads, d.tk});
    std::fill(mass.data(), mass.data() + mass.numel(), std::numeric_limits<double>::quiet_NaN());
    Scores sc;
    if (c.table) sc.table = table.cview();
    if (c.dense) sc.dense = dense.cview();
    sc.q_pos0 = c.q_pos0;
    sc.key_mass = mass.view();
    double const scale = 0.7;
    hseq::ops::attention_forward<double>(ctx, d, c.mask, scale, q.cview(), kv.cview(), out.view(), probs.view(), sc);
    std::int64_t q0 = c.q_pos0 >= 0 ? c.q_pos0 : d.prefix;
    BiasedRef ref = biased_ref(d, c.mask, scale, q.data(), kv.data(), c.table ? table.data() : nullptr, c.dmax,
                               c.dense ? dense.data() : nullptr, q0);
    std::int64_t bad = 0;
    for (std::int64_t i = 0; i < out.numel(); ++i) bad += !(std::abs(out.data()[i] - ref.out[std::size_t(i)]) <= 1e-13);
    for (std::int64_t i = 0; i < probs.numel(); ++i)
      bad += !(std::abs(probs.data()[i] - ref.probs[std::size_t(i)]) <= 1e-13);
    for (std::int64_t i = 0; i < mass.numel(); ++i) bad += !(std::abs(mass.data()[i] - ref.mass[std::size_t(i)]) <= 1e-12);
    CHECK(bad == 0);
    // The bias must actually move the result: compare against the unbiased reference.
    BiasedRef plain = biased_ref(d, c.mask, scale, q.data(), kv.data(), nullptr, 1, nullptr, 0);
    double moved = 0;
    for (std::size_t i = 0; i < plain.out.size(); ++i) moved = std::max(moved, std::abs(plain.out[i] - ref.out[i]));
    CHECK(moved > 1e-3);
  }
}

TEST_CASE("attention scores: off (or only the key mass) is bit-identical to the plain call") {
  hseq::cpu::Context ctx;
  AttentionDims d{2, 2, 70, 73, 3, 3};
  auto q = random_tensor<double>(Shape{d.batch, d.tq, d.width()}, 31);
  auto kv = random_tensor<double>(Shape{d.batch, d.tk, 2 * d.width()}, 32);
  auto r = random_tensor<double>(q.shape(), 33);
  DT out0(q.shape()), out1(q.shape()), p0(Shape{d.batch, d.heads, d.tq, d.tk}), p1(p0.shape()),
      mass(Shape{d.batch, d.heads, d.tk});
  DT dq0(q.shape()), dq1(q.shape()), dkv0(kv.shape()), dkv1(kv.shape());
  DT scratch(Shape{hseq::ops::attention_backward_scratch(d, hseq::detail::max_threads())});
  auto mask = AttentionMask::causal();
  hseq::ops::attention_forward<double>(ctx, d, mask, 0.6, q.cview(), kv.cview(), out0.view(), p0.view());
  hseq::ops::attention_backward<double>(ctx, d, mask, 0.6, q.cview(), kv.cview(), out0.cview(), p0.cview(), r.cview(),
                                        dq0.view(), dkv0.view(), scratch.view());
  Scores sc;
  sc.key_mass = mass.view();
  hseq::ops::attention_forward<double>(ctx, d, mask, 0.6, q.cview(), kv.cview(), out1.view(), p1.view(), sc);
  hseq::ops::attention_backward<double>(ctx, d, mask, 0.6, q.cview(), kv.cview(), out1.cview(), p1.cview(), r.cview(),
                                        dq1.view(), dkv1.view(), scratch.view(), Scores{}, ScoreGrads{});
  CHECK(std::equal(out0.data(), out0.data() + out0.numel(), out1.data()));
  CHECK(std::equal(p0.data(), p0.data() + p0.numel(), p1.data()));
  CHECK(std::equal(dq0.data(), dq0.data() + dq0.numel(), dq1.data()));
  CHECK(std::equal(dkv0.data(), dkv0.data() + dkv0.numel(), dkv1.data()));
  // Each query's weights sum to 1, so the mass over keys sums to the number of queries.
  for (std::int64_t p = 0; p < d.batch * d.heads; ++p) {
    double tot = 0;
    for (std::int64_t j = 0; j < d.tk; ++j) tot += mass.data()[p * d.tk + j];
    CHECK(tot == doctest::Approx(double(d.tq)).epsilon(1e-12));
  }
}

TEST_CASE("attention scores: gradcheck of q, kv, the distance table and the dense bias") {
  for (auto const& c : bias_cases()) {
    INFO("case: ", std::string(c.name));
    AttentionDims const& d = c.d;
    auto q = random_tensor<double>(Shape{d.batch, d.tq, d.width()}, 41);
    auto kv = random_tensor<double>(Shape{d.batch, d.tk, 2 * d.width()}, 42);
    auto table = random_tensor<double>(Shape{d.heads, c.dmax}, 43);
    auto dense = random_tensor<double>(Shape{d.batch, d.heads, d.tq, d.tk}, 44);
    auto r = random_tensor<double>(q.shape(), 45);
    DT out(q.shape()), probs(Shape{d.batch, d.heads, d.tq, d.tk}), dq(q.shape()), dkv(kv.shape()),
        dtable(table.shape()), ddense(dense.shape());
    DT scratch(Shape{hseq::ops::attention_backward_scratch(d, hseq::detail::max_threads())});
    hseq::cpu::Context ctx;
    double const scale = 0.8;
    Scores sc;
    if (c.table) sc.table = table.cview();
    if (c.dense) sc.dense = dense.cview();
    sc.q_pos0 = c.q_pos0;
    auto loss = [&] {
      hseq::ops::attention_forward<double>(ctx, d, c.mask, scale, q.cview(), kv.cview(), out.view(), probs.view(), sc);
      return hseq::test::dot<double>(out.cview(), r.cview());
    };
    auto grads = [&] {
      hseq::ops::attention_forward<double>(ctx, d, c.mask, scale, q.cview(), kv.cview(), out.view(), probs.view(), sc);
      std::fill(dtable.data(), dtable.data() + dtable.numel(), 0.0);  // the table gradient accumulates
      ScoreGrads g;
      if (c.table) g.table = dtable.view();
      if (c.dense) g.dense = ddense.view();
      hseq::ops::attention_backward<double>(ctx, d, c.mask, scale, q.cview(), kv.cview(), out.cview(), probs.cview(),
                                            r.cview(), dq.view(), dkv.view(), scratch.view(), sc, g);
    };
    hseq::test::GradCheck gc(hseq::test::GradcheckOptions{1e-6, 1e-6, 1e-9, 96});
    gc.input("q", q.view(), dq.view()).input("kv", kv.view(), dkv.view());
    if (c.table) gc.input("table", table.view(), dtable.view());
    if (c.dense) gc.input("dense", dense.view(), ddense.view());
    gc.run(loss, grads);
  }
}

TEST_CASE("attention scores: the table gradient accumulates and masked dense entries get zero") {
  hseq::cpu::Context ctx;
  AttentionDims d{2, 2, 6, 6, 2, 0};
  auto q = random_tensor<double>(Shape{d.batch, d.tq, d.width()}, 51);
  auto kv = random_tensor<double>(Shape{d.batch, d.tk, 2 * d.width()}, 52);
  auto table = random_tensor<double>(Shape{d.heads, 3}, 53);
  auto dense = random_tensor<double>(Shape{d.batch, d.heads, d.tq, d.tk}, 54);
  auto r = random_tensor<double>(q.shape(), 55);
  DT out(q.shape()), probs(Shape{d.batch, d.heads, d.tq, d.tk}), dq(q.shape()), dkv(kv.shape()), dt1(table.shape()),
      dt2(table.shape()), dd(dense.shape());
  DT scratch(Shape{hseq::ops::attention_backward_scratch(d, hseq::detail::max_threads())});
  Scores sc;
  sc.table = table.cview();
  sc.dense = dense.cview();
  auto mask = AttentionMask::causal();
  hseq::ops::attention_forward<double>(ctx, d, mask, 0.5, q.cview(), kv.cview(), out.view(), probs.view(), sc);
  std::fill(dt1.data(), dt1.data() + dt1.numel(), 0.0);
  std::fill(dt2.data(), dt2.data() + dt2.numel(), 1.5);
  std::fill(dd.data(), dd.data() + dd.numel(), std::numeric_limits<double>::quiet_NaN());
  hseq::ops::attention_backward<double>(ctx, d, mask, 0.5, q.cview(), kv.cview(), out.cview(), probs.cview(), r.cview(),
                                        dq.view(), dkv.view(), scratch.view(), sc, ScoreGrads{dt1.view(), dd.view()});
  hseq::ops::attention_backward<double>(ctx, d, mask, 0.5, q.cview(), kv.cview(), out.cview(), probs.cview(), r.cview(),
                                        dq.view(), dkv.view(), scratch.view(), sc, ScoreGrads{dt2.view(), {}});
  for (std::int64_t i = 0; i < dt1.numel(); ++i) CHECK(dt2.data()[i] == doctest::Approx(1.5 + dt1.data()[i]).epsilon(1e-14));
  std::int64_t masked_nonzero = 0;
  for (std::int64_t p = 0; p < d.batch * d.heads; ++p)
    for (std::int64_t i = 0; i < d.tq; ++i)
      for (std::int64_t j = i + 1; j < d.tk; ++j) masked_nonzero += dd.data()[(p * d.tq + i) * d.tk + j] != 0.0;
  CHECK(masked_nonzero == 0);
}

TEST_CASE("attention scores: causality stays exact with the biases on (bit-identical earlier rows)") {
  hseq::cpu::Context ctx;
  AttentionDims d{2, 2, 70, 70, 3, 0};
  auto q = random_tensor<double>(Shape{d.batch, d.tq, d.width()}, 61);
  auto kv = random_tensor<double>(Shape{d.batch, d.tk, 2 * d.width()}, 62);
  auto table = random_tensor<double>(Shape{d.heads, 16}, 63);
  auto dense = random_tensor<double>(Shape{d.batch, d.heads, d.tq, d.tk}, 64);
  Scores sc;
  sc.table = table.cview();
  sc.dense = dense.cview();
  DT out0(q.shape()), out1(q.shape()), probs(Shape{d.batch, d.heads, d.tq, d.tk}), m0(Shape{d.batch, d.heads, d.tk}),
      m1(m0.shape());
  sc.key_mass = m0.view();
  hseq::ops::attention_forward<double>(ctx, d, AttentionMask::causal(), 0.5, q.cview(), kv.cview(), out0.view(),
                                       probs.view(), sc);
  std::int64_t const w = d.width();
  for (std::int64_t t : {1, 40, 64, 69}) {
    INFO("perturbed key/value row ", t);
    DT kv2 = random_tensor<double>(kv.shape(), 65), dense2 = random_tensor<double>(dense.shape(), 66);
    std::copy(kv.data(), kv.data() + kv.numel(), kv2.data());
    std::copy(dense.data(), dense.data() + dense.numel(), dense2.data());
    for (std::int64_t b = 0; b < d.batch; ++b)
      for (std::int64_t e = 0; e < 2 * w; ++e) kv2.data()[(b * d.tk + t) * 2 * w + e] += 5.0 + double(e);
    // Also move the dense bias of every masked (query < key) entry: it must be ignored.
    for (std::int64_t p = 0; p < d.batch * d.heads; ++p)
      for (std::int64_t i = 0; i < d.tq; ++i)
        for (std::int64_t j = i + 1; j < d.tk; ++j) dense2.data()[(p * d.tq + i) * d.tk + j] += 100.0;
    Scores sc2 = sc;
    sc2.dense = dense2.cview();
    sc2.key_mass = m1.view();
    hseq::ops::attention_forward<double>(ctx, d, AttentionMask::causal(), 0.5, q.cview(), kv2.cview(), out1.view(),
                                         probs.view(), sc2);
    std::int64_t changed_before = 0, unchanged_after = 0;
    for (std::int64_t b = 0; b < d.batch; ++b)
      for (std::int64_t i = 0; i < d.tq; ++i) {
        bool moved = false;
        for (std::int64_t e = 0; e < w; ++e) moved = moved || !(out1.data()[(b * d.tq + i) * w + e] == out0.data()[(b * d.tq + i) * w + e]);
        if (i < t) changed_before += moved;
        else unchanged_after += !moved;
      }
    CHECK(changed_before == 0);
    CHECK(unchanged_after == 0);
  }
}

TEST_CASE("attention scores: bad shapes throw naming them") {
  hseq::cpu::Context ctx;
  AttentionDims d{1, 2, 4, 4, 2, 0};
  DT q(Shape{1, 4, 4}), kv(Shape{1, 4, 8}), out(Shape{1, 4, 4}), probs(Shape{1, 2, 4, 4}), bad_table(Shape{3, 4}),
      bad_dense(Shape{1, 2, 4, 5}), bad_mass(Shape{1, 2, 3});
  Scores a;
  a.table = bad_table.cview();
  CHECK(error_of([&] {
          hseq::ops::attention_forward<double>(ctx, d, AttentionMask::causal(), 1.0, q.cview(), kv.cview(), out.view(),
                                               probs.view(), a);
        }).find("score bias table") != std::string::npos);
  Scores b;
  b.dense = bad_dense.cview();
  CHECK(error_of([&] {
          hseq::ops::attention_forward<double>(ctx, d, AttentionMask::causal(), 1.0, q.cview(), kv.cview(), out.view(),
                                               probs.view(), b);
        }).find("dense score bias") != std::string::npos);
  Scores c;
  c.key_mass = bad_mass.view();
  CHECK(error_of([&] {
          hseq::ops::attention_forward<double>(ctx, d, AttentionMask::causal(), 1.0, q.cview(), kv.cview(), out.view(),
                                               probs.view(), c);
        }).find("key mass") != std::string::npos);
}

// ---- Attention dropout (AttentionScores::dropout): inverted dropout on P before P V ----

namespace {
/// The mask rule of the file comment of ops/attention.hpp, straight from Philox: weight (b, h, i, j)
/// is kept iff philox_uniform(key.sub(b), (h Tq + i) Tk + j) >= p.
bool ref_kept(hseq::ops::DropoutKey key, AttentionDims const& d, std::int64_t b, std::int64_t h, std::int64_t i,
              std::int64_t j, double p) {
  auto kb = key.sub(std::uint64_t(b));
  return hseq::philox_uniform(kb.seed, kb.stream, std::uint64_t((h * d.tq + i) * d.tk + j)) >= p;
}
/// out_i = sum_j P[b, h, i, j] keep / (1 - p) v_j from the naive (undropped) reference probabilities.
std::vector<double> dropped_ref_out(AttentionDims const& d, std::vector<double> const& probs, double const* kv,
                                    hseq::ops::DropoutKey key, double p) {
  std::int64_t const w = d.width();
  std::vector<double> out(std::size_t(d.batch * d.tq * w), 0.0);
  for (std::int64_t b = 0; b < d.batch; ++b)
    for (std::int64_t h = 0; h < d.heads; ++h)
      for (std::int64_t i = 0; i < d.tq; ++i)
        for (std::int64_t j = 0; j < d.tk; ++j) {
          if (!ref_kept(key, d, b, h, i, j, p)) continue;
          double pw = probs[std::size_t(((b * d.heads + h) * d.tq + i) * d.tk + j)] / (1.0 - p);
          for (std::int64_t e = 0; e < d.head_dim; ++e)
            out[std::size_t((b * d.tq + i) * w + h * d.head_dim + e)] +=
                pw * kv[(b * d.tk + j) * 2 * w + w + h * d.head_dim + e];
        }
  return out;
}
}  // namespace

TEST_CASE("attention dropout: forward matches a naive reference; the saved probabilities stay undropped") {
  hseq::cpu::Context ctx;
  hseq::ops::DropoutKey const key{7, 11};
  double const p = 0.3;
  for (auto const& c : forward_cases()) {
    INFO("case: ", c.name);
    AttentionDims const& d = c.d;
    auto q = random_tensor<double>(Shape{d.batch, d.tq, d.width()}, 1);
    auto kv = random_tensor<double>(Shape{d.batch, d.tk, 2 * d.width()}, 2);
    DT out(q.shape()), probs(Shape{d.batch, d.heads, d.tq, d.tk}), out0(q.shape()), probs0(probs.shape());
    double const scale = 1.0 / std::sqrt(double(d.head_dim));
    Scores sc;
    sc.dropout = p;
    sc.dropout_key = key;
    hseq::ops::attention_forward<double>(ctx, d, c.mask, scale, q.cview(), kv.cview(), out.view(), probs.view(), sc);
    hseq::ops::attention_forward<double>(ctx, d, c.mask, scale, q.cview(), kv.cview(), out0.view(), probs0.view());
    Ref ref = attention_ref(d, c.mask, scale, q.data(), kv.data());
    std::vector<double> want = dropped_ref_out(d, ref.probs, kv.data(), key, p);
    std::int64_t bad = 0;
    double moved = 0;
    for (std::int64_t i = 0; i < out.numel(); ++i) {
      bad += !(std::abs(out.data()[i] - want[std::size_t(i)]) <= 1e-12);
      moved = std::max(moved, std::abs(out.data()[i] - out0.data()[i]));
    }
    CHECK(bad == 0);
    CHECK(moved > 1e-3);  // dropout changed the output
    CHECK(std::equal(probs.data(), probs.data() + probs.numel(), probs0.data()));  // P itself, bit for bit
  }
}

TEST_CASE("attention dropout: one-hot values expose the dropped weights: the Philox rule, kept fraction 1 - p") {
  // head_dim = Tk and v_j = e_j per head, so out[b, i, h dh + j] = P'[b, h, i, j].
  hseq::cpu::Context ctx;
  AttentionDims d{2, 2, 70, 64, 64, 0};  // two query blocks
  std::int64_t const w = d.width();
  auto q = random_tensor<double>(Shape{d.batch, d.tq, w}, 71, 0.3);
  auto kv = random_tensor<double>(Shape{d.batch, d.tk, 2 * w}, 72);
  for (std::int64_t b = 0; b < d.batch; ++b)
    for (std::int64_t j = 0; j < d.tk; ++j)
      for (std::int64_t e = 0; e < w; ++e)
        kv.data()[(b * d.tk + j) * 2 * w + w + e] = (e % d.head_dim == j) ? 1.0 : 0.0;
  DT out(q.shape()), probs(Shape{d.batch, d.heads, d.tq, d.tk});
  for (double p : {0.1, 0.5}) {
    CAPTURE(p);
    Scores sc;
    sc.dropout = p;
    sc.dropout_key = {2024, 3};
    hseq::ops::attention_forward<double>(ctx, d, AttentionMask::none(), 0.5, q.cview(), kv.cview(), out.view(),
                                         probs.view(), sc);
    std::int64_t kept = 0, wrong_rule = 0, wrong_value = 0, n = 0;
    std::vector<bool> pattern;
    for (std::int64_t b = 0; b < d.batch; ++b)
      for (std::int64_t h = 0; h < d.heads; ++h)
        for (std::int64_t i = 0; i < d.tq; ++i)
          for (std::int64_t j = 0; j < d.tk; ++j) {
            double pd = out.data()[(b * d.tq + i) * w + h * d.head_dim + j];
            double pw = probs.data()[((b * d.heads + h) * d.tq + i) * d.tk + j];
            bool k = pd != 0.0;
            kept += k;
            ++n;
            pattern.push_back(k);
            wrong_rule += k != ref_kept(sc.dropout_key, d, b, h, i, j, p);
            if (k) wrong_value += !(std::abs(pd - pw / (1 - p)) <= 1e-14 * pw / (1 - p));
          }
    CHECK(wrong_rule == 0);
    CHECK(wrong_value == 0);
    double const frac = double(kept) / double(n), sd = std::sqrt(p * (1 - p) / double(n));
    INFO("kept fraction ", frac);
    CHECK(std::abs(frac - (1 - p)) < 5 * sd);
    // (b, h) blocks have independent masks: batch element 0 vs 1, head 0 vs 1.
    std::int64_t const blk = d.tq * d.tk;
    auto differ = [&](std::int64_t a, std::int64_t c) {
      std::int64_t k = 0;
      for (std::int64_t e = 0; e < blk; ++e)
        k += pattern[std::size_t(a * blk + e)] != pattern[std::size_t(c * blk + e)];
      return double(k) / double(blk);
    };
    CHECK(differ(0, 2) > p * (1 - p));  // b 0 vs b 1 (same head): 2 p (1 - p) expected
    CHECK(differ(0, 1) > p * (1 - p));  // h 0 vs h 1
  }
}

TEST_CASE("attention dropout: gradcheck of q and kv with the mask fixed by its key (with and without biases)") {
  struct DCase {
    char const* name;
    AttentionMask mask;
    AttentionDims d;
    bool table, dense;
  };
  DCase cases[] = {
      {"none, Tq != Tk", AttentionMask::none(), {2, 2, 3, 5, 3, 0}, false, false},
      {"causal with prefix", AttentionMask::causal(), {2, 2, 5, 7, 2, 2}, false, false},
      {"upsampling rates(1, 0, 2, 0)", AttentionMask::rates(1, 0, 2, 0), {2, 1, 6, 3, 3, 0}, false, false},
      {"causal, Tq 70 (two query blocks)", AttentionMask::causal(), {1, 2, 70, 72, 2, 2}, false, false},
      {"causal, table + dense", AttentionMask::causal(), {2, 2, 6, 9, 3, 3}, true, true},
  };
  for (auto const& c : cases) {
    INFO("case: ", c.name);
    AttentionDims const& d = c.d;
    auto q = random_tensor<double>(Shape{d.batch, d.tq, d.width()}, 81);
    auto kv = random_tensor<double>(Shape{d.batch, d.tk, 2 * d.width()}, 82);
    auto table = random_tensor<double>(Shape{d.heads, 4}, 83);
    auto dense = random_tensor<double>(Shape{d.batch, d.heads, d.tq, d.tk}, 84);
    auto r = random_tensor<double>(q.shape(), 85);
    DT out(q.shape()), probs(Shape{d.batch, d.heads, d.tq, d.tk}), dq(q.shape()), dkv(kv.shape()),
        dtable(table.shape()), ddense(dense.shape());
    DT scratch(Shape{hseq::ops::attention_backward_scratch(d, hseq::detail::max_threads())});
    hseq::cpu::Context ctx;
    Scores sc;
    if (c.table) sc.table = table.cview();
    if (c.dense) sc.dense = dense.cview();
    sc.dropout = 0.25;
    sc.dropout_key = {5, 6};
    auto loss = [&] {
      hseq::ops::attention_forward<double>(ctx, d, c.mask, 0.8, q.cview(), kv.cview(), out.view(), probs.view(), sc);
      return hseq::test::dot<double>(out.cview(), r.cview());
    };
    auto grads = [&] {
      hseq::ops::attention_forward<double>(ctx, d, c.mask, 0.8, q.cview(), kv.cview(), out.view(), probs.view(), sc);
      std::fill(dtable.data(), dtable.data() + dtable.numel(), 0.0);
      ScoreGrads g;
      if (c.table) g.table = dtable.view();
      if (c.dense) g.dense = ddense.view();
      hseq::ops::attention_backward<double>(ctx, d, c.mask, 0.8, q.cview(), kv.cview(), out.cview(), probs.cview(),
                                            r.cview(), dq.view(), dkv.view(), scratch.view(), sc, g);
    };
    hseq::test::GradCheck gc(hseq::test::GradcheckOptions{1e-6, 1e-6, 1e-9, 96});
    gc.input("q", q.view(), dq.view()).input("kv", kv.view(), dkv.view());
    if (c.table) gc.input("table", table.view(), dtable.view());
    if (c.dense) gc.input("dense", dense.view(), ddense.view());
    gc.run(loss, grads);
  }
}

TEST_CASE("attention dropout: rate 0 with a key is bit-identical to the plain call; bad rates throw") {
  hseq::cpu::Context ctx;
  AttentionDims d{2, 2, 70, 73, 3, 3};
  auto q = random_tensor<double>(Shape{d.batch, d.tq, d.width()}, 91);
  auto kv = random_tensor<double>(Shape{d.batch, d.tk, 2 * d.width()}, 92);
  auto r = random_tensor<double>(q.shape(), 93);
  DT out0(q.shape()), out1(q.shape()), p0(Shape{d.batch, d.heads, d.tq, d.tk}), p1(p0.shape());
  DT dq0(q.shape()), dq1(q.shape()), dkv0(kv.shape()), dkv1(kv.shape());
  DT scratch(Shape{hseq::ops::attention_backward_scratch(d, hseq::detail::max_threads())});
  auto mask = AttentionMask::causal();
  hseq::ops::attention_forward<double>(ctx, d, mask, 0.6, q.cview(), kv.cview(), out0.view(), p0.view());
  hseq::ops::attention_backward<double>(ctx, d, mask, 0.6, q.cview(), kv.cview(), out0.cview(), p0.cview(), r.cview(),
                                        dq0.view(), dkv0.view(), scratch.view());
  Scores sc;
  sc.dropout_key = {1, 2};  // a key, but rate 0
  hseq::ops::attention_forward<double>(ctx, d, mask, 0.6, q.cview(), kv.cview(), out1.view(), p1.view(), sc);
  hseq::ops::attention_backward<double>(ctx, d, mask, 0.6, q.cview(), kv.cview(), out1.cview(), p1.cview(), r.cview(),
                                        dq1.view(), dkv1.view(), scratch.view(), sc);
  CHECK(std::equal(out0.data(), out0.data() + out0.numel(), out1.data()));
  CHECK(std::equal(p0.data(), p0.data() + p0.numel(), p1.data()));
  CHECK(std::equal(dq0.data(), dq0.data() + dq0.numel(), dq1.data()));
  CHECK(std::equal(dkv0.data(), dkv0.data() + dkv0.numel(), dkv1.data()));
  for (double bad : {1.0, -0.5}) {
    sc.dropout = bad;
    CHECK(error_of([&] {
            hseq::ops::attention_forward<double>(ctx, d, mask, 0.6, q.cview(), kv.cview(), out1.view(), p1.view(), sc);
          }).find("attention dropout probability") != std::string::npos);
  }
}

}  // namespace HSEQ_TEST_UNIT
