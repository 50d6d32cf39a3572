// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/nn/rnn.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using test::random_tensor;
using RnnD = nn::Rnn<cpu, double>;

TEST_CASE("gradcheck: Rnn (GRU and LSTM: input, initial state, parameters; outputs and final state)") {
  cpu::Context ctx;
  for (auto cell : {nn::RnnKind::kGru, nn::RnnKind::kLstm}) {
    std::string const name = nn::rnn_kind_name(cell);
    CAPTURE(name);
    bool const lstm = cell == nn::RnnKind::kLstm;
    std::int64_t const bsz = 2, t = 3, in = 3, h = 4;
    RnnD m({.cell = cell, .input = in, .hidden = h});
    nn::ParamStore<cpu, double> ps(m);
    test::randomize_params(ps, 4);
    auto x = random_tensor(Shape{bsz, t, in}, 1), dx = random_tensor(Shape{bsz, t, in}, 0);
    auto h0 = random_tensor(Shape{bsz, h}, 3), dh0 = random_tensor(Shape{bsz, h}, 0);
    auto c0 = random_tensor(Shape{bsz, h}, 6), dc0 = random_tensor(Shape{bsz, h}, 0);
    auto r = random_tensor(Shape{bsz, t, h}, 2), rh = random_tensor(Shape{bsz, h}, 5), rc = random_tensor(Shape{bsz, h}, 7);
    Tensor<double, cpu> y(Shape{bsz, t, h}), hf(Shape{bsz, h}), cf(Shape{bsz, h});
    std::size_t plan = m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t);
    Workspace<cpu> ws(plan);
    using CV = View<double const, HostSpace>;
    using MV = View<double, HostSpace>;
    auto cin = lstm ? CV(c0.cview()) : CV{};
    auto cfin = lstm ? MV(cf.view()) : MV{};
    // L = <y, r> + <h_T, rh> (+ <c_T, rc>): every output path.
    auto loss = [&] {
      auto a = ws.arena();
      m.forward(ctx, x.cview(), {h0.cview(), cin}, y.view(), {hf.view(), cfin}, a);
      return test::dot(y.cview(), r.cview()) + test::dot(hf.cview(), rh.cview()) +
             (lstm ? test::dot(cf.cview(), rc.cview()) : 0.0);
    };
    auto grads = [&] {
      auto a = ws.arena();
      auto s = m.forward(ctx, x.cview(), {h0.cview(), cin}, y.view(), {hf.view(), cfin}, a);
      CHECK(a.used() == m.forward_workspace(bsz, t));
      m.backward(ctx, s, r.cview(), {rh.cview(), lstm ? CV(rc.cview()) : CV{}}, dx.view(),
                 {dh0.view(), lstm ? MV(dc0.view()) : MV{}}, a);
      CHECK(a.high_water() == plan);
    };
    test::GradCheck gc(ps);
    gc.input("x", x.view(), dx.view()).input("h0", h0.view(), dh0.view());
    if (lstm) gc.input("c0", c0.view(), dc0.view());
    gc.run(loss, grads);
  }
}

TEST_CASE("rnn: the cell's parameter names and shapes, GRU without cell state, names in JSON") {
  nn::Rnn<cpu, float> gru({.cell = nn::RnnKind::kGru, .input = 3, .hidden = 5});
  nn::Rnn<cpu, float> lstm({.cell = nn::RnnKind::kLstm, .input = 3, .hidden = 5});
  nn::ParamStore<cpu, float> pg(gru), pl(lstm);
  CHECK(pg.find("weight_ih").shape == (Shape{15, 3}));
  CHECK(pl.find("weight_ih").shape == (Shape{20, 3}));
  CHECK(pl.find("bias_hh").shape == (Shape{20}));
  cpu::Context ctx;
  Tensor<float, cpu> x(Shape{1, 2, 3}), y(Shape{1, 2, 5}), c(Shape{1, 5});
  Workspace<cpu> ws(1 << 16);
  auto a = ws.arena();
  CHECK_THROWS_WITH_AS(gru.forward(ctx, x.cview(), {{}, c.cview()}, y.view(), {}, a),
                       doctest::Contains("a GRU has no cell state"), Error);
  CHECK(nlohmann::json(nn::RnnKind::kLstm).dump() == R"("lstm")");
  CHECK(nlohmann::json::parse(R"("gru")").get<nn::RnnKind>() == nn::RnnKind::kGru);
  CHECK_THROWS_WITH_AS(nlohmann::json::parse(R"("rnn")").get<nn::RnnKind>(),
                       doctest::Contains("unknown recurrent cell 'rnn' (known: gru, lstm)"), Error);
  using RnnF = nn::Rnn<cpu, float>;
  CHECK_THROWS_WITH_AS(RnnF({.cell = nn::RnnKind::kLstm, .input = 0, .hidden = 5}),
                       doctest::Contains("sizes must be positive"), Error);
}

}  // namespace HSEQ_TEST_UNIT
