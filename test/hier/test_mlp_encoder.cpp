// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "hier/segment_part_checks.hpp"
#include "hseq/hier/mlp_encoder.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using Enc = hier::MlpEncoderModule<cpu, double>;

TEST_CASE("gradcheck: MlpEncoder (bytes, both layers, the LayerNorm)") {
  test::gradcheck_unary<Enc>({.dim = 4, .segment = 3, .mlp_hidden = 6}, Shape{2, 6, 4}, Shape{2, 2, 4});
  test::gradcheck_unary<Enc>({.dim = 3, .segment = 1}, Shape{1, 3, 3}, Shape{1, 3, 3});  // hidden 4 dim
}

TEST_CASE("mlp encoder: a byte reaches its own segment's vector only, wherever it sits in it") {
  hier::MlpEncoderModule<cpu, float> m({.dim = 8, .segment = 4});
  nn::ParamStore<cpu, float> ps(m);
  test::randomize_params(ps, 2, 0.3);
  for (std::int64_t p = 0; p < 12; ++p) {
    CAPTURE(p);
    std::string want = std::string(3, '.');
    want[std::size_t(p / 4)] = 'x';
    CHECK(test::unary_moved(m, Shape{2, 12, 8}, Shape{2, 3, 8}, p) == want);
  }
  CHECK(ps.find("fc1.weight").shape == (Shape{32, 32}));  // hidden 4 dim over 4 concatenated bytes
}

TEST_CASE("mlp encoder: shapes that are not whole segments are refused") {
  cpu::Context ctx;
  hier::MlpEncoderModule<cpu, float> m({.dim = 4, .segment = 3});
  nn::ParamStore<cpu, float> ps(m);
  Tensor<float, cpu> x(Shape{1, 7, 4}), e(Shape{1, 2, 4});
  Workspace<cpu> ws(1 << 16);
  auto a = ws.arena();
  CHECK_THROWS_WITH_AS(m.forward(ctx, x.cview(), e.view(), a), doctest::Contains("is not [B, N 3, 4]"), Error);
  using EncF = hier::MlpEncoderModule<cpu, float>;
  CHECK_THROWS_WITH_AS(EncF({.dim = 4}), doctest::Contains("segment size 0"), Error);
}

TEST_CASE("mlp encoder: variable segments: zero padding rows contribute nothing (the lengths form is the plain one)") {
  cpu::Context ctx;
  hier::MlpEncoderModule<cpu, double> m({.dim = 3, .segment = 4, .mlp_hidden = 5});
  nn::ParamStore<cpu, double> ps(m);
  test::randomize_params(ps, 2, 0.5);
  // Segment 0 holds 2 bytes (rows 2, 3 zero), segment 1 holds 4.
  auto x = test::random_tensor(Shape{1, 8, 3}, 1);
  for (std::int64_t k = 6; k < 12; ++k) x.data()[k] = 0;
  std::vector<std::int32_t> lengths{2, 4};
  Tensor<std::int32_t, cpu> last(Shape{2});
  last.data()[0] = 1;
  last.data()[1] = 7;
  Tensor<double, cpu> e(Shape{1, 2, 3}), e_plain(Shape{1, 2, 3});
  Workspace<cpu> ws(1 << 16);
  auto a = ws.arena();
  m.forward(ctx, x.cview(), hier::SegmentLengths<HostSpace>{lengths, last.cview()}, e.view(), a);
  m.forward(ctx, x.cview(), e_plain.view(), a);
  for (std::int64_t i = 0; i < 6; ++i) CHECK(e.data()[i] == e_plain.data()[i]);
  // The padding's columns of W_1 do not matter: changing them leaves segment 0's vector unchanged.
  auto& w1 = ps.find("fc1.weight");  // [hidden, K d]
  for (std::int64_t h = 0; h < 5; ++h)
    for (std::int64_t c = 6; c < 12; ++c) w1.value[h * 12 + c] += 1.0;
  m.forward(ctx, x.cview(), hier::SegmentLengths<HostSpace>{lengths, last.cview()}, e_plain.view(), a);
  for (std::int64_t i = 0; i < 3; ++i) CHECK(e.data()[i] == e_plain.data()[i]);
  CHECK(e.data()[3] != e_plain.data()[3]);  // segment 1 uses those columns
}

}  // namespace HSEQ_TEST_UNIT
