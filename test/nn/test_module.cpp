// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hseq/hseq.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

// Every module satisfies the module concept for both element types.
static_assert(nn::Module<nn::Linear<cpu, float>, float>);
static_assert(nn::Module<nn::LayerNorm<cpu, double>, double>);
static_assert(nn::Module<nn::Embedding<cpu, float>, float>);
static_assert(nn::Module<nn::Mlp<cpu, float>, float>);
static_assert(nn::Module<nn::MultiHeadAttention<cpu, float>, float>);
static_assert(nn::Module<nn::TransformerBlock<cpu, double>, double>);
static_assert(nn::Module<nn::Gru<cpu, float>, float>);
static_assert(nn::Module<nn::Lstm<cpu, float>, float>);
static_assert(nn::Module<nn::PositionEmbedding<cpu, float>, float>);

TEST_CASE("module: measure_workspace counts what a carve takes, aligned") {
  auto bytes = nn::measure_workspace<HostSpace>([](Arena<HostSpace>& a) {
    a.take<float>(Shape{3}, "a");
    a.take<double>(Shape{100}, "b");
  });
  CHECK(bytes == aligned_bytes<float>(3) + aligned_bytes<double>(100));
  CHECK(bytes == 256 + 1024);
}

TEST_CASE("module: plans grow with the batch and forward uses exactly its plan") {
  cpu::Context ctx;
  nn::TransformerBlock<cpu, float> m({.dim = 16, .heads = 4});
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 1);
  CHECK(m.forward_workspace(2, 8) < m.forward_workspace(4, 8));
  CHECK(m.forward_workspace(2, 8) < m.forward_workspace(2, 16));
  Tensor<float, cpu> x(Shape{2, 8, 16}), y(Shape{2, 8, 16});
  ops::fill<float>(ctx, x.view(), 0.5f);
  Workspace<cpu> ws(m.forward_workspace(2, 8));
  auto a = ws.arena();
  m.forward(ctx, x.cview(), y.view(), a);
  CHECK(a.used() == m.forward_workspace(2, 8));
  // One byte short: forward must refuse with a message naming the buffer, not overrun.
  Workspace<cpu> small(m.forward_workspace(2, 8) - 1);
  auto b = small.arena();
  CHECK_THROWS_WITH_AS(m.forward(ctx, x.cview(), y.view(), b), doctest::Contains("workspace exhausted"), Error);
}

}  // namespace HSEQ_TEST_UNIT
