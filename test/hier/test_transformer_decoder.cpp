// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hier/segment_part_checks.hpp"
#include "hseq/hier/transformer_decoder.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using Dec = hier::TransformerDecoderModule<cpu, double>;

TEST_CASE("gradcheck: TransformerDecoder (condition and bytes; positions and blocks)") {
  test::gradcheck_decoder<Dec>({.dim = 4, .segment = 3, .heads = 2, .layers = 1, .mlp_hidden = 8}, 2, 2);
  test::gradcheck_decoder<Dec>({.dim = 4, .segment = 2, .heads = 1, .layers = 2, .mlp_hidden = 4}, 1, 3);
}

TEST_CASE("transformer decoder: a byte reaches the rest of its segment only; a condition its whole segment only") {
  hier::PartConfig c{.dim = 8, .segment = 4, .heads = 2, .layers = 2};
  hier::TransformerDecoderModule<cpu, float> m(c);
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
  CHECK(ps.find("pos_emb.weight").shape == (Shape{5, 8}));  // the condition and K bytes
}

TEST_CASE("transformer decoder: cached steps equal the full forward") {
  test::decoder_steps_match<Dec>({.dim = 4, .segment = 3, .heads = 2, .layers = 2, .mlp_hidden = 8}, 2, 3);
  test::decoder_steps_match<Dec>({.dim = 4, .segment = 1, .heads = 1, .layers = 1, .mlp_hidden = 4}, 1, 4);
}

}  // namespace HSEQ_TEST_UNIT
