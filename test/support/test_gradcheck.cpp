// SPDX-License-Identifier: MIT
// Tests of the gradient checker's own rules (support/gradcheck.hpp): which elements it probes and
// when a tensor's gradient counts as ignored. Every module's gradcheck relies on these.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::test::GradCheck;

TEST_CASE("checker: a tensor of at most max_per_tensor elements is probed everywhere") {
  for (std::int64_t n : {1, 2, 5, 16}) {
    auto s = GradCheck::sample(n, 16, 1, 2);
    REQUIRE(std::int64_t(s.size()) == n);
    for (std::int64_t i = 0; i < n; ++i) CHECK(s[std::size_t(i)] == i);
  }
}

TEST_CASE("checker: a larger tensor is probed at exactly m distinct elements, first and last included") {
  for (std::int64_t n : {17, 100, 1000})
    for (std::int64_t m : {2, 3, 16, 64}) {
      if (n <= m) continue;
      CAPTURE(n);
      CAPTURE(m);
      for (std::uint64_t stream = 0; stream < 20; ++stream) {
        auto s = GradCheck::sample(n, m, 7, stream);
        REQUIRE(std::int64_t(s.size()) == m);
        CHECK(std::is_sorted(s.begin(), s.end()));
        CHECK(std::adjacent_find(s.begin(), s.end()) == s.end());  // sorted and no repeats: distinct
        CHECK(s.front() == 0);
        CHECK(s.back() == n - 1);
        CHECK(s == GradCheck::sample(n, m, 7, stream));  // deterministic
      }
    }
}

TEST_CASE("checker: over many tensors every element is probed about equally often (no fixed columns)") {
  // A [rows, 12] weight probed at 16 of 96 elements: the old stride of 96 / 16 = 6 probed only
  // columns 0 and 6 of every row. Over 3000 streams each interior element must be drawn close to
  // its expected (16 - 2) / 94 share, and every column of every row must come up.
  std::int64_t const n = 96, m = 16, streams = 3000;
  std::vector<int> count(std::size_t(n), 0);
  for (std::uint64_t stream = 0; stream < std::uint64_t(streams); ++stream)
    for (auto i : GradCheck::sample(n, m, 3, stream)) ++count[std::size_t(i)];
  CHECK(count.front() == streams);
  CHECK(count.back() == streams);
  double expect = double(streams) * double(m - 2) / double(n - 2);  // ~447, binomial sd ~19
  for (std::int64_t i = 1; i < n - 1; ++i) {
    CAPTURE(i);
    CHECK(std::abs(count[std::size_t(i)] - expect) < 6 * 19.5);
  }
  // Within one tensor too: the 16 probes of a [8, 12] weight hit more than two columns.
  std::set<std::int64_t> columns;
  for (auto i : GradCheck::sample(n, m, 3, 0)) columns.insert(i % 12);
  CHECK(columns.size() > 2);
}

TEST_CASE("checker: allow_zero patterns match whole names with * as the only wildcard") {
  CHECK(GradCheck::glob_match("param a.b", "param a.b"));
  CHECK_FALSE(GradCheck::glob_match("param a.b", "param a.bc"));
  CHECK_FALSE(GradCheck::glob_match("param a.b", "param xa.b"));
  CHECK(GradCheck::glob_match("param *.k.bias", "param blocks.0.attn.k.bias"));
  CHECK_FALSE(GradCheck::glob_match("param *.k.bias", "param blocks.0.attn.q.bias"));
  CHECK(GradCheck::glob_match("*", ""));
  CHECK(GradCheck::glob_match("param *.*.w", "param a.b.c.w"));
  CHECK_FALSE(GradCheck::glob_match("param *.*.w", "param a.w"));
}

TEST_CASE("checker: every tensor's gradient must be non-zero unless allowlisted, and then zero") {
  using Grads = std::vector<std::pair<std::string, double>>;
  using Allow = std::vector<GradCheck::AllowedZero>;
  double const frac = hseq::test::GradcheckOptions{}.zero_fraction;  // the default every gradcheck uses
  auto problems = [&](Grads const& g, Allow const& a) { return GradCheck::zero_gradient_problems(g, a, frac); };
  auto mentions = [](std::vector<std::string> const& p, std::string const& what) {
    return p.size() == 1 && p[0].find(what) != std::string::npos;
  };

  // All non-zero, the smallest 1e-7 of the largest (as small as real gradients get in the Hourglass
  // gradcheck): passes.
  CHECK(problems({{"input x", 2.0}, {"param w", 2e-7}}, {}).empty());
  // Exactly zero, or rounding noise of a zero (1e-17 of the largest): fails, naming the tensor.
  CHECK(mentions(problems({{"input x", 2.0}, {"param w", 0.0}}, {}), "param w has a zero gradient"));
  CHECK(mentions(problems({{"input x", 2.0}, {"param w", 2e-17}}, {}), "param w has a zero gradient"));
  // Allowlisted and zero (or rounding noise): passes.
  Allow kbias{{"param *.k.bias", "softmax is invariant to a per-query constant"}};
  CHECK(problems({{"param a.q.bias", 1.0}, {"param a.k.bias", 3e-17}}, kbias).empty());
  // Allowlisted but not zero: the reason no longer holds.
  CHECK(mentions(problems({{"param a.q.bias", 1.0}, {"param a.k.bias", 0.1}}, kbias),
                 "param a.k.bias is allowlisted as zero by construction (softmax"));
  // A pattern that matches nothing is stale.
  CHECK(mentions(problems({{"param a.q.bias", 1.0}}, kbias), "allow_zero pattern 'param *.k.bias'"));
  // Nothing at all flows.
  CHECK(mentions(problems({{"param w", 0.0}}, {{"param w", "test"}}), "every gradient is exactly zero"));
}

}  // namespace HSEQ_TEST_UNIT
