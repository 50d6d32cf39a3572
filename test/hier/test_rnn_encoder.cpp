// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hier/segment_part_checks.hpp"
#include "hseq/hier/rnn_encoder.hpp"

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
