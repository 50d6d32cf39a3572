// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hier/segment_part_checks.hpp"
#include "hseq/hier/rnn_backbone.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using Bb = hier::RnnBackboneModule<cpu, double>;

TEST_CASE("gradcheck: RnnBackbone (GRU and LSTM, one and two layers)") {
  test::gradcheck_unary<Bb>({.dim = 4, .segment = 1, .layers = 1, .cell = nn::RnnKind::kGru}, Shape{2, 4, 4},
                            Shape{2, 4, 4});
  test::gradcheck_unary<Bb>({.dim = 4, .segment = 1, .layers = 2, .cell = nn::RnnKind::kLstm}, Shape{2, 3, 4},
                            Shape{2, 3, 4});
  test::gradcheck_unary<Bb>({.dim = 3, .segment = 1, .layers = 3, .cell = nn::RnnKind::kGru}, Shape{1, 3, 3},
                            Shape{1, 3, 3});
}

TEST_CASE("rnn backbone: causal over segments (rows before a changed segment are bit-identical)") {
  for (auto cell : {nn::RnnKind::kGru, nn::RnnKind::kLstm}) {
    hier::RnnBackboneModule<cpu, float> m({.dim = 8, .segment = 1, .layers = 2, .cell = cell});
    nn::ParamStore<cpu, float> ps(m);
    test::randomize_params(ps, 2, 0.3);
    for (std::int64_t j = 0; j < 5; ++j) {
      CAPTURE(j);
      CHECK(test::unary_moved(m, Shape{2, 5, 8}, Shape{2, 5, 8}, j) == std::string(std::size_t(j), '.') + std::string(std::size_t(5 - j), 'x'));
    }
  }
}

TEST_CASE("rnn backbone: cached steps equal the full forward") {
  test::backbone_steps_match<Bb>({.dim = 5, .segment = 1, .layers = 1, .cell = nn::RnnKind::kGru}, 2, 5);
  test::backbone_steps_match<Bb>({.dim = 5, .segment = 1, .layers = 3, .cell = nn::RnnKind::kLstm}, 3, 4);
}

}  // namespace HSEQ_TEST_UNIT
