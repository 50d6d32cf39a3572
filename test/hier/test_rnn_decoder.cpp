// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hier/segment_part_checks.hpp"
#include "hseq/hier/rnn_decoder.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using Dec = hier::RnnDecoderModule<cpu, double>;

TEST_CASE("gradcheck: RnnDecoder (condition and bytes; GRU and LSTM, one and two layers)") {
  test::gradcheck_decoder<Dec>({.dim = 4, .segment = 3, .layers = 1, .cell = nn::RnnKind::kGru}, 2, 2);
  test::gradcheck_decoder<Dec>({.dim = 3, .segment = 2, .layers = 2, .cell = nn::RnnKind::kLstm}, 2, 2);
}

TEST_CASE("rnn decoder: a byte reaches the rest of its segment only; a condition its whole segment only") {
  for (auto cell : {nn::RnnKind::kGru, nn::RnnKind::kLstm}) {
    hier::PartConfig c{.dim = 8, .segment = 4, .layers = 2, .cell = cell};
    hier::RnnDecoderModule<cpu, float> m(c);
    nn::ParamStore<cpu, float> ps(m);
    test::randomize_params(ps, 2, 0.3);
    for (std::int64_t p = 0; p < 12; ++p) {
      CAPTURE(p);
      CHECK(test::decoder_moved(m, c, 3, p, false) == test::segment_pattern(12, 4, p, p / 4));
    }
    for (std::int64_t i = 0; i < 3; ++i) {
      CAPTURE(i);
      CHECK(test::decoder_moved(m, c, 3, i, true) == test::segment_pattern(12, 4, 0, i));
    }
  }
}

TEST_CASE("rnn decoder: cached steps equal the full forward") {
  test::decoder_steps_match<Dec>({.dim = 5, .segment = 3, .layers = 1, .cell = nn::RnnKind::kGru}, 2, 3);
  test::decoder_steps_match<Dec>({.dim = 4, .segment = 2, .layers = 2, .cell = nn::RnnKind::kLstm}, 3, 3);
}

}  // namespace HSEQ_TEST_UNIT
