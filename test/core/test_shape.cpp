// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <type_traits>

#include "hseq/core/shape.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::Shape;

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

TEST_CASE("shape: rank, extents, numel, rows and cols") {
  Shape s{2, 3, 5};
  CHECK(s.rank() == 3);
  CHECK(s[0] == 2);
  CHECK(s[1] == 3);
  CHECK(s[2] == 5);
  CHECK(s[-1] == 5);
  CHECK(s[-3] == 2);
  CHECK(s.at(-2) == 3);
  CHECK(s.numel() == 30);
  CHECK(s.rows() == 6);
  CHECK(s.cols() == 5);

  Shape v{7};
  CHECK(v.rank() == 1);
  CHECK(v.numel() == 7);
  CHECK(v.rows() == 1);
  CHECK(v.cols() == 7);

  Shape z{4, 0, 3};
  CHECK(z.numel() == 0);
  CHECK(z.rows() == 0);
  CHECK(z.cols() == 3);

  Shape full{1, 2, 3, 4, 5, 6};
  CHECK(full.rank() == Shape::kMaxRank);
  CHECK(full.numel() == 720);
  CHECK(full.rows() == 120);
}

TEST_CASE("shape: rank 0 is a scalar") {
  Shape s;
  CHECK(s.rank() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.rows() == 1);
  CHECK(s.cols() == 1);
  CHECK(s.to_string() == "[]");
  CHECK(s == Shape{});
}

TEST_CASE("shape: is trivially copyable") {
  static_assert(std::is_trivially_copyable_v<Shape>);
  CHECK(std::is_trivially_copyable_v<Shape>);
}

TEST_CASE("shape: with, appended, without_leading") {
  Shape s{2, 3, 5};
  CHECK(s.with(0, 9) == Shape{9, 3, 5});
  CHECK(s.with(-1, 4) == Shape{2, 3, 4});
  CHECK(s.with(1, 0) == Shape{2, 0, 5});
  CHECK(s == Shape{2, 3, 5});  // copies, the original is unchanged
  CHECK(s.appended(7) == Shape{2, 3, 5, 7});
  CHECK(s.appended(7).rank() == 4);
  CHECK(s.without_leading() == Shape{3, 5});
  CHECK(Shape{4}.without_leading() == Shape{});
  CHECK(Shape{}.appended(3) == Shape{3});
  CHECK(s == Shape{2, 3, 5});
}

TEST_CASE("shape: equality compares rank and every extent") {
  CHECK(Shape{2, 3} == Shape{2, 3});
  CHECK_FALSE(Shape{2, 3} == Shape{3, 2});
  CHECK(Shape{2, 3} != Shape{3, 2});
  CHECK(Shape{2, 3} != Shape{2, 3, 1});
  CHECK(Shape{6} != Shape{2, 3});  // same numel, different shape
  CHECK(Shape{1} != Shape{});      // same numel, different rank
  CHECK_FALSE(Shape{2, 3} != Shape{2, 3});
}

TEST_CASE("shape: to_string and operator<<") {
  CHECK(Shape{2, 3, 5}.to_string() == "[2, 3, 5]");
  CHECK(Shape{0}.to_string() == "[0]");
  std::ostringstream os;
  os << Shape{4, 1};
  CHECK(os.str() == "[4, 1]");
}

TEST_CASE("shape: negative extent throws hseq::Error naming it") {
  CHECK_THROWS_AS(Shape({2, -1}), hseq::Error);
  std::string msg = error_of([] { Shape s{3, -4}; (void)s; });
  CHECK(msg.find("-4") != std::string::npos);
}

TEST_CASE("shape: rank beyond the maximum throws") {
  CHECK_THROWS_AS(Shape({1, 2, 3, 4, 5, 6, 7}), hseq::Error);
  Shape full{1, 2, 3, 4, 5, 6};
  std::string msg = error_of([&] { (void)full.appended(1); });
  CHECK(msg.find("[1, 2, 3, 4, 5, 6]") != std::string::npos);
}

TEST_CASE("shape: at() out of range throws naming the shape and the dimension") {
  Shape s{2, 3};
  CHECK_THROWS_AS((void)s.at(2), hseq::Error);
  CHECK_THROWS_AS((void)s.at(-3), hseq::Error);
  std::string msg = error_of([&] { (void)s.at(5); });
  CHECK(msg.find("[2, 3]") != std::string::npos);
  CHECK(msg.find("dimension 5") != std::string::npos);
  CHECK_THROWS_AS((void)Shape{}.at(0), hseq::Error);
}

TEST_CASE("shape: with and appended validate the dimension and the extent") {
  hseq::Shape s{2, 3};
  CHECK_THROWS_AS(s.with(0, -5), hseq::Error);
  CHECK_THROWS_AS(s.with(4, 7), hseq::Error);
  CHECK_THROWS_AS(s.with(-3, 1), hseq::Error);
  CHECK_THROWS_AS(s.appended(-1), hseq::Error);
  CHECK(s.with(-1, 9) == hseq::Shape{2, 9});
}

}  // namespace HSEQ_TEST_UNIT
