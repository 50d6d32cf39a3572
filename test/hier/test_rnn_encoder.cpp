// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "hier/segment_part_checks.hpp"
#include "hseq/hier/rnn_encoder.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using Enc = hier::RnnEncoderModule<cpu, double>;

TEST_CASE("gradcheck: RnnEncoder (GRU and LSTM; bytes and the cell's parameters)") {
  test::gradcheck_unary<Enc>({.dim = 4, .segment = 3, .cell = nn::RnnKind::kGru}, Shape{2, 6, 4}, Shape{2, 2, 4});
  test::gradcheck_unary<Enc>({.dim = 4, .segment = 2, .cell = nn::RnnKind::kLstm}, Shape{2, 6, 4}, Shape{2, 3, 4});
}

TEST_CASE("rnn encoder: the state restarts at every segment: a byte reaches its own segment's vector only") {
  for (auto cell : {nn::RnnKind::kGru, nn::RnnKind::kLstm}) {
    hier::RnnEncoderModule<cpu, float> m({.dim = 8, .segment = 4, .cell = cell});
    nn::ParamStore<cpu, float> ps(m);
    test::randomize_params(ps, 2, 0.3);
    for (std::int64_t p = 0; p < 12; ++p) {
      CAPTURE(p);
      std::string want = std::string(3, '.');
      want[std::size_t(p / 4)] = 'x';
      CHECK(test::unary_moved(m, Shape{2, 12, 8}, Shape{2, 3, 8}, p) == want);
    }
  }
}

TEST_CASE("rnn encoder: the vector is the cell's state after the segment's last byte") {
  cpu::Context ctx;
  hier::RnnEncoderModule<cpu, double> m({.dim = 3, .segment = 2, .cell = nn::RnnKind::kGru});
  nn::Gru<cpu, double> gru({.input = 3, .hidden = 3});
  nn::ParamStore<cpu, double> ps(m), pg(gru);
  test::randomize_params(ps, 9, 0.5);
  test::randomize_params(pg, 9, 0.5);  // the same draws: the parameters are in the same order
  auto x = test::random_tensor(Shape{1, 4, 3}, 1);
  Tensor<double, cpu> e(Shape{1, 2, 3}), y(Shape{1, 2, 3}), h(Shape{1, 3});
  Workspace<cpu> ws(1 << 16);
  auto a = ws.arena();
  m.forward(ctx, x.cview(), e.view(), a);
  for (std::int64_t i = 0; i < 2; ++i) {  // segment i alone through the GRU from zeros
    gru.forward(ctx, x.cview().reshape(Shape{2, 2, 3})(i).reshape(Shape{1, 2, 3}), {}, y.view(), h.view(), a);
    for (std::int64_t k = 0; k < 3; ++k) CHECK(e.data()[i * 3 + k] == h.data()[k]);
  }
}

namespace {
/// Variable segments: a padded grid of 3 segments of K = 4 rows with lengths 2, 4, 0 (a padding
/// segment), their `SegmentLengths` (host lengths, device last rows).
struct Ragged {
  std::vector<std::int32_t> lengths{2, 4, 0};
  Tensor<std::int32_t, cpu> last{Shape{3}};
  Ragged() {
    for (std::int64_t i = 0; i < 3; ++i) last.data()[i] = std::int32_t(i * 4 + std::max(lengths[std::size_t(i)], 1) - 1);
  }
  hier::SegmentLengths<HostSpace> view() const { return {lengths, last.cview()}; }
};
}  // namespace

TEST_CASE("rnn encoder: variable segments: the vector is the state after the segment's last real byte") {
  for (auto cell : {nn::RnnKind::kGru, nn::RnnKind::kLstm}) {
    cpu::Context ctx;
    hier::RnnEncoderModule<cpu, double> m({.dim = 3, .segment = 4, .cell = cell});
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 9, 0.5);
    Ragged rg;
    auto x = test::random_tensor(Shape{1, 12, 3}, 1);
    Tensor<double, cpu> e(Shape{1, 3, 3}), e1(Shape{1, 1, 3});
    Workspace<cpu> ws(1 << 18);
    auto a = ws.arena();
    m.forward(ctx, x.cview(), rg.view(), e.view(), a);
    for (std::int64_t i = 0; i < 2; ++i) {  // segment i alone, only its real rows, through a fixed encoder of K = len
      std::int64_t len = rg.lengths[std::size_t(i)];
      hier::RnnEncoderModule<cpu, double> alone({.dim = 3, .segment = len, .cell = cell});
      nn::ParamStore<cpu, double> pa(alone);
      test::randomize_params(pa, 9, 0.5);  // the same parameters
      auto sa = a.mark();
      alone.forward(ctx, View<double const, HostSpace>(x.data() + i * 4 * 3, Shape{1, len, 3}), e1.view(), a);
      a.rewind(sa);
      for (std::int64_t k = 0; k < 3; ++k) CHECK(e.data()[i * 3 + k] == e1.data()[k]);
    }
  }
}

TEST_CASE("gradcheck: RnnEncoder over variable segments (GRU and LSTM); padding rows get no gradient") {
  for (auto cell : {nn::RnnKind::kGru, nn::RnnKind::kLstm}) {
    cpu::Context ctx;
    hier::RnnEncoderModule<cpu, double> m({.dim = 3, .segment = 4, .cell = cell});
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 4, 0.4);
    Ragged rg;
    Shape in{1, 12, 3}, out{1, 3, 3};
    auto x = test::random_tensor(in, 1), dx = test::random_tensor(in, 0), r = test::random_tensor(out, 2);
    Tensor<double, cpu> y(out);
    std::size_t plan = m.forward_workspace(1, 12) + m.backward_workspace(1, 12);
    Workspace<cpu> ws(plan);
    auto loss = [&] {
      auto a = ws.arena();
      m.forward(ctx, x.cview(), rg.view(), y.view(), a);
      return test::dot(y.cview(), r.cview());
    };
    auto grads = [&] {
      auto a = ws.arena();
      auto s = m.forward(ctx, x.cview(), rg.view(), y.view(), a);
      CHECK(a.used() == m.forward_workspace(1, 12));
      m.backward(ctx, s, r.cview(), dx.view(), a);
      CHECK(a.high_water() <= plan);
    };
    test::GradcheckOptions opt;
    opt.max_per_tensor = 24;
    test::GradCheck(ps, opt).input("x", x.view(), dx.view()).run(loss, grads);
    // Rows past each segment's length: segment 0 rows 2, 3; the padding segment's rows 1..3 (its row 0
    // is the one a length-0 segment reads).
    for (std::int64_t row : {2, 3, 9, 10, 11})
      for (std::int64_t k = 0; k < 3; ++k) CHECK(dx.data()[row * 3 + k] == 0.0);
  }
}

}  // namespace HSEQ_TEST_UNIT
