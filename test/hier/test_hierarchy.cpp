// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <array>
#include <cstdint>

#include "hseq/hier/hierarchy.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

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

// The compile-time form's numbers are constants (usable in static_assert and as template
// arguments), equal to what HierarchySpec computes at run time.
using Nested =
    hier::Hierarchy<1, 3, hier::Level<2, 2>, hier::Level<1, 4>, hier::Level<5, 3>>;  // "1@1 2@2 1@8 5@24 1@8 2@2 3@1"
static_assert(Nested::kPre == 1 && Nested::kPost == 3);
static_assert(Nested::kLevels.size() == 3);
static_assert(Nested::kLevels[1] == hier::LevelSpec{1, 4});
static_assert(Nested::kCumulativeFactors == std::array<std::int64_t, 3>{2, 8, 24});
static_assert(Nested::kTotalFactor == 24);
static_assert(Nested::kTotalLayers == 1 + 3 + 2 * 2 + 2 * 1 + 5);
static_assert(hier::Level<3, 5>::kLayers == 3 && hier::Level<3, 5>::kFactor == 5);
static_assert(hier::is_level_v<hier::Level<1, 2>> && !hier::is_level_v<hier::LevelSpec> && !hier::is_level_v<int>);
// The largest factors that fit: 2^31 - 1 twice is below 2^63 - 1.
static_assert(hier::Hierarchy<0, 0, hier::Level<1, 2147483647>, hier::Level<1, 2147483647>>::kTotalFactor ==
              std::int64_t{2147483647} * 2147483647);
static_assert(HierarchySpec::checked_total_factor(std::array<std::int64_t, 3>{2, 3, 4}) == 24);
static_assert(HierarchySpec::checked_total_factor(std::array<std::int64_t, 3>{std::int64_t{1} << 32,
                                                                              std::int64_t{1} << 31, 1}) == 0);
static_assert(HierarchySpec::checked_total_factor(std::array<std::int64_t, 2>{4, 0}) == 0);

TEST_CASE("hierarchy: compile-time constants equal the run-time spec's") {
  auto s = Nested::spec();
  CHECK(s == HierarchySpec::parse("1@1 2@2 1@8 5@24 1@8 2@2 3@1"));
  CHECK(s.total_factor() == Nested::kTotalFactor);
  CHECK(s.total_layers() == Nested::kTotalLayers);
  CHECK_NOTHROW(s.validate());
}

TEST_CASE("hierarchy: validate refuses a total factor that overflows int64, as the compile-time form does") {
  HierarchySpec s{0, 0, {{1, std::int64_t{1} << 32}, {1, std::int64_t{1} << 31}}};
  CHECK_THROWS_WITH_AS(s.validate(), doctest::Contains("overflows int64"), Error);
  s.levels[1].factor = (std::int64_t{1} << 30);  // 2^62 fits
  CHECK_NOTHROW(s.validate());
  CHECK(s.total_factor() == (std::int64_t{1} << 62));
}

TEST_CASE("hierarchy: levels may segment by data-dependent rules (issue 19)") {
  auto a = HierarchySpec::parse("2@1 4@space 2@1");
  CHECK(a.pre == 2);
  CHECK(a.post == 2);
  REQUIRE(a.levels.size() == 1);
  CHECK(a.dynamic());
  CHECK(a.levels[0].layers == 4);
  CHECK(a.levels[0].factor == 1);
  REQUIRE(a.levels[0].rule.has_value());
  CHECK(*a.levels[0].rule == hier::ByteRule::parse("space"));
  CHECK(a.total_factor() == 1);  // rule levels take any length: no padding
  CHECK(a.total_layers() == 8);
  CHECK(a.to_string() == "2@1 4@space 2@1");
  auto b = HierarchySpec::parse("1@1 2@word/32 3@fixed:2 2@word/32 1@1");
  REQUIRE(b.levels.size() == 2);
  CHECK(b.levels[0].rule->to_string() == "word/32");
  CHECK(b.levels[1].rule->to_string() == "fixed:2");
  CHECK(b.to_string() == "1@1 2@word/32 3@fixed:2 2@word/32 1@1");
  CHECK(HierarchySpec::parse(b.to_string()) == b);
  CHECK(HierarchySpec::parse("3@word:2").to_string() == "3@word:2");  // no full-rate layers
  CHECK_FALSE(HierarchySpec::parse("2@1 4@4 2@1").dynamic());
  CHECK(HierarchySpec::parse("2@1 4@4 2@1") != HierarchySpec::parse("2@1 4@fixed:4 2@1"));
  // Learned routers read the level's own hidden states, so they nest (H-Net's two stages).
  auto r = HierarchySpec::parse("1@1 2@router:3 3@router:2.5/8 2@router:3 1@1");
  REQUIRE(r.levels.size() == 2);
  CHECK(r.levels[1].rule->learned());
  CHECK(r.levels[1].rule->ratio == 2.5);
  CHECK(HierarchySpec::parse(r.to_string()) == r);
  auto m = HierarchySpec::parse("1@1 2@mlp:3 3@router:2 2@mlp:3 1@1");  // the two learned kinds mix
  CHECK(m.levels[0].rule->learned());
  CHECK(HierarchySpec::parse(m.to_string()) == m);
}

TEST_CASE("hierarchy: bad rule hierarchies say what is wrong") {
  CHECK_THROWS_WITH_AS(HierarchySpec::parse("2@1 4@spaces 2@1"), doctest::Contains("unknown kind 'spaces'"), Error);
  CHECK_THROWS_WITH_AS(HierarchySpec::parse("2@1 4@space 3@word 4@word 2@1"),
                       doctest::Contains("not a palindrome ('4@space' vs '4@word')"), Error);
  CHECK_THROWS_WITH_AS(HierarchySpec::parse("1@1 2@2 3@space 2@2 1@1"), doctest::Contains("all numeric factors or all rules"),
                       Error);
  CHECK_THROWS_WITH_AS(HierarchySpec::parse("1@1 2@space 3@4 2@space 1@1"),
                       doctest::Contains("all numeric factors or all rules"), Error);
  CHECK_THROWS_WITH_AS(HierarchySpec::parse("2@1 0@space 2@1"), doctest::Contains("at least one"), Error);
  CHECK_THROWS_WITH_AS(HierarchySpec::parse("2@1 4@fixed 2@1"), doctest::Contains("'4@fixed'"), Error);
  HierarchySpec s{0, 0, {{1, 2, hier::ByteRule::parse("space")}}};
  CHECK_THROWS_WITH_AS(s.validate(), doctest::Contains("a rule level's factor is 1"), Error);
}

}  // namespace HSEQ_TEST_UNIT
