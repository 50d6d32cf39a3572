// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hier/segment_part_checks.hpp"
#include "hseq/hier/transformer_backbone.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using Bb = hier::TransformerBackboneModule<cpu, double>;

TEST_CASE("gradcheck: TransformerBackbone (positions, blocks, final LayerNorm)") {
  test::gradcheck_unary<Bb>({.dim = 4, .segment = 1, .heads = 2, .layers = 1, .mlp_hidden = 8, .max_segments = 4},
                            Shape{2, 3, 4}, Shape{2, 3, 4});
  test::gradcheck_unary<Bb>({.dim = 4, .segment = 1, .heads = 1, .layers = 2, .mlp_hidden = 4, .max_segments = 3},
                            Shape{1, 3, 4}, Shape{1, 3, 4});
}

TEST_CASE("transformer backbone: causal over segments (rows before a changed segment are bit-identical)") {
  hier::TransformerBackboneModule<cpu, float> m({.dim = 8, .segment = 1, .heads = 2, .layers = 2, .max_segments = 6});
  nn::ParamStore<cpu, float> ps(m);
  test::randomize_params(ps, 2, 0.3);
  for (std::int64_t j = 0; j < 6; ++j) {
    CAPTURE(j);
    CHECK(test::unary_moved(m, Shape{2, 6, 8}, Shape{2, 6, 8}, j) == std::string(std::size_t(j), '.') + std::string(std::size_t(6 - j), 'x'));
  }
}

TEST_CASE("transformer backbone: cached steps equal the full forward; too many segments are refused") {
  test::backbone_steps_match<Bb>({.dim = 4, .segment = 1, .heads = 2, .layers = 2, .mlp_hidden = 8, .max_segments = 5},
                                 2, 5);
  cpu::Context ctx;
  Bb m({.dim = 4, .segment = 1, .heads = 2, .layers = 1, .max_segments = 2});
  nn::ParamStore<cpu, double> ps(m);
  Tensor<double, cpu> e(Shape{1, 3, 4}), s(Shape{1, 3, 4});
  Workspace<cpu> ws(1 << 20);
  auto a = ws.arena();
  CHECK_THROWS_WITH_AS(m.forward(ctx, e.cview(), s.view(), a), doctest::Contains("3 segments exceed the 2 positions"),
                       Error);
  CHECK_THROWS_WITH_AS(Bb({.dim = 4, .segment = 1, .heads = 3, .max_segments = 2}), doctest::Contains("heads 3"), Error);
}

}  // namespace HSEQ_TEST_UNIT
