// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "hseq/ops/embedding.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::Shape;
using hseq::Tensor;
using hseq::test::random_tensor;
using IT = Tensor<std::int32_t, hseq::cpu>;

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
}  // namespace

TEST_CASE_TEMPLATE("embedding: forward gathers table rows", T, float, double) {
  hseq::cpu::Context ctx;
  std::int64_t const v = 6, c = 5;
  auto table = random_tensor<T>(Shape{v, c}, 1);
  IT ids(Shape{2, 4});
  std::int32_t const id_list[] = {3, 0, 5, 3, 1, 1, 2, 4};
  std::copy(id_list, id_list + 8, ids.data());
  Tensor<T, hseq::cpu> out(Shape{2, 4, c});
  hseq::ops::embedding_forward<T>(ctx, table.cview(), ids.cview(), out.view());
  std::int64_t bad = 0;
  for (std::int64_t n = 0; n < 8; ++n)
    for (std::int64_t j = 0; j < c; ++j) bad += out.data()[n * c + j] != table.data()[id_list[n] * c + j];
  CHECK(bad == 0);
}

TEST_CASE_TEMPLATE("embedding: backward scatter-adds, repeated ids accumulate", T, float, double) {
  hseq::cpu::Context ctx;
  struct Dims {
    std::int64_t v, c, n;
  };
  for (Dims d : {Dims{5, 3, 7}, Dims{9, 130, 200}}) {  // 130 columns: three blocks; n * c crosses the OpenMP threshold
    INFO("V ", d.v, " C ", d.c, " N ", d.n);
    IT ids(Shape{d.n});
    for (std::int64_t i = 0; i < d.n; ++i) ids.data()[i] = std::int32_t((i * i + 3) % (d.v - 1));  // id v-1 never used
    auto dout = random_tensor<T>(Shape{d.n, d.c}, 2);
    auto dtable = random_tensor<T>(Shape{d.v, d.c}, 3);  // accumulates into existing values
    std::vector<double> want(dtable.data(), dtable.data() + dtable.numel());
    for (std::int64_t i = 0; i < d.n; ++i)
      for (std::int64_t j = 0; j < d.c; ++j) want[std::size_t(ids.data()[i] * d.c + j)] += double(dout.data()[i * d.c + j]);
    std::vector<T> unused_row(dtable.data() + (d.v - 1) * d.c, dtable.data() + d.v * d.c);
    hseq::ops::embedding_backward<T>(ctx, ids.cview(), dout.cview(), dtable.view());
    std::int64_t bad = 0;
    double const tol = std::is_same_v<T, float> ? 1e-4 : 1e-12;
    for (std::int64_t i = 0; i < dtable.numel(); ++i) bad += !(std::abs(double(dtable.data()[i]) - want[std::size_t(i)]) <= tol);
    CHECK(bad == 0);
    for (std::int64_t j = 0; j < d.c; ++j) CHECK(dtable.data()[(d.v - 1) * d.c + j] == unused_row[std::size_t(j)]);
  }
  // Hand example: ids [1, 1, 1] with dout rows 1, 2, 4 -> row 1 gains 7.
  IT ids(Shape{3});
  std::fill(ids.data(), ids.data() + 3, 1);
  Tensor<T, hseq::cpu> dout(Shape{3, 1}), dtable(Shape{2, 1});
  dout.data()[0] = T(1);
  dout.data()[1] = T(2);
  dout.data()[2] = T(4);
  dtable.data()[0] = T(0.5);
  dtable.data()[1] = T(0.25);
  hseq::ops::embedding_backward<T>(ctx, ids.cview(), dout.cview(), dtable.view());
  CHECK(dtable.data()[0] == T(0.5));
  CHECK(dtable.data()[1] == T(7.25));
}

TEST_CASE("embedding: out-of-range ids throw naming them") {
  hseq::cpu::Context ctx;
  auto table = random_tensor<double>(Shape{4, 2}, 1);
  Tensor<double, hseq::cpu> out(Shape{3, 2}), dtable(Shape{4, 2});
  IT ids(Shape{3});
  std::int32_t const bad_ids[] = {0, 9, 1};
  std::copy(bad_ids, bad_ids + 3, ids.data());
  std::string msg = error_of([&] { hseq::ops::embedding_forward<double>(ctx, table.cview(), ids.cview(), out.view()); });
  CHECK(msg.find("id 9") != std::string::npos);
  CHECK(msg.find("position 1") != std::string::npos);
  msg = error_of([&] { hseq::ops::embedding_backward<double>(ctx, ids.cview(), out.cview(), dtable.view()); });
  CHECK(msg.find("id 9") != std::string::npos);
  ids.data()[1] = -1;
  msg = error_of([&] { hseq::ops::embedding_forward<double>(ctx, table.cview(), ids.cview(), out.view()); });
  CHECK(msg.find("id -1") != std::string::npos);
  CHECK_THROWS_AS(hseq::ops::embedding_backward<double>(ctx, ids.cview(), out.cview(), dtable.view()), hseq::Error);
  ids.data()[1] = 4;  // == V
  CHECK_THROWS_AS(hseq::ops::embedding_forward<double>(ctx, table.cview(), ids.cview(), out.view()), hseq::Error);
  // Shape mismatch names the shapes.
  ids.data()[1] = 2;
  Tensor<double, hseq::cpu> out_bad(Shape{3, 3});
  msg = error_of([&] { hseq::ops::embedding_forward<double>(ctx, table.cview(), ids.cview(), out_bad.view()); });
  CHECK(msg.find("[3, 3]") != std::string::npos);
  CHECK(msg.find("[4, 2]") != std::string::npos);
  CHECK_THROWS_AS(hseq::ops::embedding_backward<double>(ctx, ids.cview(), out_bad.cview(), dtable.view()), hseq::Error);
}

}  // namespace HSEQ_TEST_UNIT
