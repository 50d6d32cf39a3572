// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hseq/hier/hierarchy.hpp"

using namespace hseq;
using hier::HierarchySpec;

TEST_CASE("hierarchy: parses the authors' notation with cumulative factors") {
  auto a = HierarchySpec::parse("2@1 4@4 2@1");
  CHECK(a.pre == 2);
  CHECK(a.post == 2);
  REQUIRE(a.levels.size() == 1);
  CHECK(a.levels[0] == hier::LevelSpec{4, 4});
  CHECK(a.total_factor() == 4);
  CHECK(a.total_layers() == 8);
  CHECK(a.to_string() == "2@1 4@4 2@1");
  auto b = HierarchySpec::parse("  1@1 2@2 3@6 2@2 1@1 ");
  REQUIRE(b.levels.size() == 2);
  CHECK(b.levels[0] == hier::LevelSpec{2, 2});
  CHECK(b.levels[1] == hier::LevelSpec{3, 3});
  CHECK(b.total_factor() == 6);
  CHECK(b.total_layers() == 1 + 1 + 2 * 2 + 3);
  CHECK(b.to_string() == "1@1 2@2 3@6 2@2 1@1");
  auto c = HierarchySpec::parse("1@2 2@6 1@2");  // trax style without vanilla layers
  CHECK(c.pre == 0);
  CHECK(c.levels.size() == 2);
  CHECK(c.to_string() == "1@2 2@6 1@2");
  CHECK(HierarchySpec::parse("3@1 1@3 5@1").post == 5);  // pre and post may differ
}

TEST_CASE("hierarchy: bad strings say what is wrong") {
  CHECK_THROWS_WITH_AS(HierarchySpec::parse("2@1 4@4"), doctest::Contains("odd count"), Error);
  CHECK_THROWS_WITH_AS(HierarchySpec::parse("2@1 4@4 3@4 2@1 2@1"), doctest::Contains("palindrome"), Error);
  CHECK_THROWS_WITH_AS(HierarchySpec::parse("1@1 2@4 1@6 2@4 1@1"), doctest::Contains("multiple of 4"), Error);
  CHECK_THROWS_WITH_AS(HierarchySpec::parse("2@1 x@4 2@1"), doctest::Contains("'x@4'"), Error);
  CHECK_THROWS_WITH_AS(HierarchySpec::parse("2@1 4@4x 2@1"), doctest::Contains("'4@4x'"), Error);
  CHECK_THROWS_WITH_AS(HierarchySpec::parse("2@1 0@4 2@1"), doctest::Contains("at least one"), Error);
  CHECK_THROWS_AS(HierarchySpec::parse(""), Error);
  CHECK_THROWS_AS(HierarchySpec::parse("2@1 4@1 2@1"), Error);  // a level must shorten
}

TEST_CASE("hierarchy: the compile-time form gives the same spec") {
  using H = hier::Hierarchy<2, 2, hier::Level<4, 4>>;
  CHECK(H::spec() == HierarchySpec::parse("2@1 4@4 2@1"));
  using H2 = hier::Hierarchy<1, 1, hier::Level<2, 2>, hier::Level<3, 3>>;
  CHECK(H2::spec() == HierarchySpec::parse("1@1 2@2 3@6 2@2 1@1"));
  static_assert(!H::kDynamic && hier::DynamicHierarchy::kDynamic);
}
