// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/ops/rnn_cell.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::HostSpace;
using hseq::Shape;
using hseq::Tensor;
using hseq::ops::Mat;
using hseq::test::random_tensor;
using DT = Tensor<double, hseq::cpu>;
using CM = Mat<double const, HostSpace>;
using MM = Mat<double, HostSpace>;

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

double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }

CM cmat(DT const& t) { return CM(t.data(), t.shape().rows(), t.shape().cols()); }
MM mat(DT& t) { return MM(t.data(), t.shape().rows(), t.shape().cols()); }
}  // namespace

TEST_CASE("rnn_cell: GRU forward follows the PyTorch equations") {
  hseq::cpu::Context ctx;
  std::int64_t const b = 3, h = 4, steps = 5, t = 2;
  // xp and gh are time step t of [B, T, 3H] buffers (row stride T * 3H); h_prev is contiguous.
  auto xp_seq = random_tensor<double>(Shape{b, steps, 3 * h}, 1, 1.5);
  auto gh_seq = random_tensor<double>(Shape{b, steps, 3 * h}, 2, 1.5);
  auto hp = random_tensor<double>(Shape{b, h}, 3);
  CM xp(xp_seq.data() + t * 3 * h, b, 3 * h, steps * 3 * h), gh(gh_seq.data() + t * 3 * h, b, 3 * h, steps * 3 * h);
  // The output h goes into step t of a [B, T, H] sequence; its other steps must stay untouched.
  DT hs(Shape{b, steps, h}), gates(Shape{b, 4 * h});
  std::fill(hs.data(), hs.data() + hs.numel(), -7.0);
  hseq::ops::gru_cell_forward<double>(ctx, xp, gh, cmat(hp), mat(gates), MM(hs.data() + t * h, b, h, steps * h));
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < b; ++i)
    for (std::int64_t j = 0; j < h; ++j) {
      auto X = [&](std::int64_t g) { return xp.data[i * xp.ld + g * h + j]; };
      auto G = [&](std::int64_t g) { return gh.data[i * gh.ld + g * h + j]; };
      double r = sig(X(0) + G(0)), z = sig(X(1) + G(1)), n = std::tanh(X(2) + r * G(2));
      double want = (1 - z) * n + z * hp.data()[i * h + j];
      bad += !(std::abs(hs.data()[(i * steps + t) * h + j] - want) <= 1e-15);
      bad += !(std::abs(gates.data()[i * 4 * h + j] - r) <= 1e-15);
      bad += !(std::abs(gates.data()[i * 4 * h + h + j] - z) <= 1e-15);
      bad += !(std::abs(gates.data()[i * 4 * h + 2 * h + j] - n) <= 1e-15);
      bad += gates.data()[i * 4 * h + 3 * h + j] != G(2);
    }
  CHECK(bad == 0);
  std::int64_t touched = 0;
  for (std::int64_t i = 0; i < b; ++i)
    for (std::int64_t s = 0; s < steps; ++s)
      for (std::int64_t j = 0; j < h; ++j) touched += s != t && hs.data()[(i * steps + s) * h + j] != -7.0;
  CHECK(touched == 0);
  // Limits: z -> 1 keeps h_prev; z -> 0 with r -> 0 gives tanh(xp_n).
  DT x1(Shape{1, 3}), g1(Shape{1, 3}), h1(Shape{1, 1}), s1(Shape{1, 4}), o1(Shape{1, 1});
  double xv[3] = {0.0, 50.0, 0.3}, gv[3] = {0.0, 0.0, 2.0};
  std::copy(xv, xv + 3, x1.data());
  std::copy(gv, gv + 3, g1.data());
  h1.data()[0] = 0.625;
  hseq::ops::gru_cell_forward<double>(ctx, cmat(x1), cmat(g1), cmat(h1), mat(s1), mat(o1));
  CHECK(o1.data()[0] == doctest::Approx(0.625).epsilon(1e-12));
  x1.data()[0] = -60.0;
  x1.data()[1] = -60.0;
  hseq::ops::gru_cell_forward<double>(ctx, cmat(x1), cmat(g1), cmat(h1), mat(s1), mat(o1));
  CHECK(o1.data()[0] == doctest::Approx(std::tanh(0.3)).epsilon(1e-12));
}

TEST_CASE("rnn_cell: GRU backward matches finite differences") {
  hseq::cpu::Context ctx;
  std::int64_t const b = 3, h = 5;
  auto xp = random_tensor<double>(Shape{b, 3 * h}, 4), gh = random_tensor<double>(Shape{b, 3 * h}, 5),
       hp = random_tensor<double>(Shape{b, h}, 6), r = random_tensor<double>(Shape{b, h}, 7);
  DT gates(Shape{b, 4 * h}), out(Shape{b, h}), dxp(xp.shape()), dgh(gh.shape()), dhp(hp.shape());
  auto fwd = [&] { hseq::ops::gru_cell_forward<double>(ctx, cmat(xp), cmat(gh), cmat(hp), mat(gates), mat(out)); };
  hseq::test::GradCheck gc;
  gc.input("xp", xp.view(), dxp.view()).input("gh", gh.view(), dgh.view()).input("h_prev", hp.view(), dhp.view());
  gc.run(
      [&] {
        fwd();
        return hseq::test::dot<double>(out.cview(), r.cview());
      },
      [&] {
        fwd();
        hseq::ops::gru_cell_backward<double>(ctx, cmat(r), cmat(hp), cmat(gates), mat(dxp), mat(dgh), mat(dhp));
      });
  // The r and z gate gradients are shared by xp and gh; the n gate differs by the factor r.
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < b; ++i)
    for (std::int64_t j = 0; j < 2 * h; ++j) bad += dxp.data()[i * 3 * h + j] != dgh.data()[i * 3 * h + j];
  CHECK(bad == 0);
}

TEST_CASE("rnn_cell: LSTM forward follows the PyTorch equations") {
  hseq::cpu::Context ctx;
  std::int64_t const b = 2, h = 3, steps = 4, t = 3;
  auto xp_seq = random_tensor<double>(Shape{b, steps, 4 * h}, 8, 1.5);
  auto gh = random_tensor<double>(Shape{b, 4 * h}, 9, 1.5), cp = random_tensor<double>(Shape{b, h}, 10);
  CM xp(xp_seq.data() + t * 4 * h, b, 4 * h, steps * 4 * h);
  DT acts(Shape{b, 4 * h}), c(Shape{b, h}), hs(Shape{b, steps, h});
  std::fill(hs.data(), hs.data() + hs.numel(), -3.0);
  hseq::ops::lstm_cell_forward<double>(ctx, xp, cmat(gh), cmat(cp), mat(acts), mat(c),
                                       MM(hs.data() + t * h, b, h, steps * h));
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < b; ++i)
    for (std::int64_t j = 0; j < h; ++j) {
      auto P = [&](std::int64_t g) { return xp.data[i * xp.ld + g * h + j] + gh.data()[i * 4 * h + g * h + j]; };
      double ig = sig(P(0)), fg = sig(P(1)), gg = std::tanh(P(2)), og = sig(P(3));
      double cn = fg * cp.data()[i * h + j] + ig * gg, hn = og * std::tanh(cn);
      bad += !(std::abs(c.data()[i * h + j] - cn) <= 1e-15);
      bad += !(std::abs(hs.data()[(i * steps + t) * h + j] - hn) <= 1e-15);
      double want_acts[4] = {ig, fg, gg, og};
      for (int g = 0; g < 4; ++g) bad += !(std::abs(acts.data()[i * 4 * h + g * h + j] - want_acts[g]) <= 1e-15);
    }
  CHECK(bad == 0);
  std::int64_t touched = 0;
  for (std::int64_t i = 0; i < b; ++i)
    for (std::int64_t s = 0; s < t; ++s)
      for (std::int64_t j = 0; j < h; ++j) touched += hs.data()[(i * steps + s) * h + j] != -3.0;
  CHECK(touched == 0);
}

TEST_CASE("rnn_cell: LSTM backward matches finite differences") {
  hseq::cpu::Context ctx;
  std::int64_t const b = 3, h = 4;
  auto xp = random_tensor<double>(Shape{b, 4 * h}, 11), gh = random_tensor<double>(Shape{b, 4 * h}, 12),
       cp = random_tensor<double>(Shape{b, h}, 13), rh = random_tensor<double>(Shape{b, h}, 14),
       rc = random_tensor<double>(Shape{b, h}, 15);
  DT acts(xp.shape()), c(Shape{b, h}), out(Shape{b, h}), dgates(xp.shape()), dgh(xp.shape()), dcp(cp.shape());
  auto fwd = [&] { hseq::ops::lstm_cell_forward<double>(ctx, cmat(xp), cmat(gh), cmat(cp), mat(acts), mat(c), mat(out)); };
  // L = <h, rh> + <c, rc>: dh = rh, and rc is the gradient reaching c from the future.
  hseq::test::GradCheck gc;
  gc.input("xp", xp.view(), dgates.view()).input("gh", gh.view(), dgh.view()).input("c_prev", cp.view(), dcp.view());
  gc.run(
      [&] {
        fwd();
        return hseq::test::dot<double>(out.cview(), rh.cview()) + hseq::test::dot<double>(c.cview(), rc.cview());
      },
      [&] {
        fwd();
        hseq::ops::lstm_cell_backward<double>(ctx, cmat(rh), cmat(rc), cmat(cp), cmat(c), cmat(acts), mat(dgates),
                                              mat(dcp));
        std::copy(dgates.data(), dgates.data() + dgates.numel(), dgh.data());  // xp and gh share dgates
      });
}

TEST_CASE("rnn_cell: strided backward equals contiguous backward") {
  hseq::cpu::Context ctx;
  std::int64_t const b = 2, h = 3, steps = 3, t = 1;
  auto dh_seq = random_tensor<double>(Shape{b, steps, h}, 16), hp = random_tensor<double>(Shape{b, h}, 17),
       gates = random_tensor<double>(Shape{b, 4 * h}, 18, 0.3);
  DT dh(Shape{b, h}), dxp1(Shape{b, 3 * h}), dgh1(Shape{b, 3 * h}), dhp1(Shape{b, h});
  for (std::int64_t i = 0; i < b; ++i) std::copy_n(dh_seq.data() + (i * steps + t) * h, h, dh.data() + i * h);
  hseq::ops::gru_cell_backward<double>(ctx, cmat(dh), cmat(hp), cmat(gates), mat(dxp1), mat(dgh1), mat(dhp1));
  DT dxp_seq(Shape{b, steps, 3 * h});
  std::fill(dxp_seq.data(), dxp_seq.data() + dxp_seq.numel(), 9.0);
  DT dgh2(Shape{b, 3 * h}), dhp2(Shape{b, h});
  hseq::ops::gru_cell_backward<double>(ctx, CM(dh_seq.data() + t * h, b, h, steps * h), cmat(hp), cmat(gates),
                                       MM(dxp_seq.data() + t * 3 * h, b, 3 * h, steps * 3 * h), mat(dgh2), mat(dhp2));
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < b; ++i)
    for (std::int64_t s = 0; s < steps; ++s)
      for (std::int64_t j = 0; j < 3 * h; ++j) {
        double v = dxp_seq.data()[(i * steps + s) * 3 * h + j];
        bad += s == t ? v != dxp1.data()[i * 3 * h + j] : v != 9.0;
      }
  for (std::int64_t k = 0; k < dgh1.numel(); ++k) bad += dgh1.data()[k] != dgh2.data()[k];
  for (std::int64_t k = 0; k < dhp1.numel(); ++k) bad += dhp1.data()[k] != dhp2.data()[k];
  CHECK(bad == 0);
}

TEST_CASE("rnn_cell: wrong operand shapes throw naming the operand") {
  hseq::cpu::Context ctx;
  DT xp(Shape{2, 9}), gh(Shape{2, 9}), hp(Shape{2, 3}), gates(Shape{2, 12}), h(Shape{2, 3}), bad(Shape{2, 8});
  std::string msg = error_of(
      [&] { hseq::ops::gru_cell_forward<double>(ctx, cmat(bad), cmat(gh), cmat(hp), mat(gates), mat(h)); });
  CHECK(msg.find("xp") != std::string::npos);
  CHECK(msg.find("[2, 8]") != std::string::npos);
  CHECK(msg.find("[2, 9]") != std::string::npos);
  CHECK_THROWS_AS(hseq::ops::gru_cell_forward<double>(ctx, cmat(xp), cmat(gh), cmat(hp), mat(bad), mat(h)), hseq::Error);
  DT x4(Shape{2, 12}), acts(Shape{2, 12}), c(Shape{2, 3});
  msg = error_of(
      [&] { hseq::ops::lstm_cell_forward<double>(ctx, cmat(x4), cmat(bad), cmat(hp), mat(acts), mat(c), mat(h)); });
  CHECK(msg.find("gh") != std::string::npos);
  CHECK(msg.find("[2, 12]") != std::string::npos);
  CHECK_THROWS_AS(hseq::ops::lstm_cell_backward<double>(ctx, cmat(h), cmat(h), cmat(hp), cmat(c), cmat(acts), mat(bad),
                                                        mat(hp)),
                  hseq::Error);
}

TEST_CASE("rnn_cell: ragged-batch helpers copy / zero exactly the rows of finished sequences") {
  hseq::cpu::Context ctx;
  std::vector<std::int32_t> const lengths{3, 1, 0, 2};
  std::int64_t const bsz = 4, h = 3, ld = 5;  // strided rows (ld > h): the gap must stay untouched
  auto src = random_tensor<double>(Shape{bsz, ld}, 1);
  for (std::int64_t step : {0, 1, 2}) {
    CAPTURE(step);
    auto dst = random_tensor<double>(Shape{bsz, ld}, 2), keep = random_tensor<double>(Shape{bsz, ld}, 2);
    auto z = random_tensor<double>(Shape{bsz, ld}, 3), zkeep = random_tensor<double>(Shape{bsz, ld}, 3);
    CHECK(hseq::ops::any_finished(lengths, step) == (step >= 0));  // length 0 has finished at every step
    hseq::ops::copy_finished_rows<double>(ctx, lengths, step, CM(src.data(), bsz, h, ld), MM(dst.data(), bsz, h, ld));
    hseq::ops::zero_finished_rows<double>(ctx, lengths, step, MM(z.data(), bsz, h, ld));
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t j = 0; j < ld; ++j) {
        bool finished = step >= lengths[std::size_t(b)] && j < h;
        std::int64_t k = b * ld + j;
        CHECK(dst.data()[k] == (finished ? src.data()[k] : keep.data()[k]));
        CHECK(z.data()[k] == (finished ? 0.0 : zkeep.data()[k]));
      }
  }
  CHECK_FALSE(hseq::ops::any_finished(std::vector<std::int32_t>{3, 2}, 1));
  CHECK(error_of([] { hseq::ops::check_lengths(std::vector<std::int32_t>{1, 7}, 2, 6, "X"); })
            .find("X: length 7 of sequence 1 outside [0, T = 6]") != std::string::npos);
  CHECK(error_of([] { hseq::ops::check_lengths(std::vector<std::int32_t>{1}, 2, 6, "X"); })
            .find("X: 1 sequence lengths for a batch of 2") != std::string::npos);
  CHECK(error_of([] { hseq::ops::check_lengths(std::vector<std::int32_t>{0, 6}, 2, 6, "X"); }) == "<no exception>");
}

}  // namespace HSEQ_TEST_UNIT
