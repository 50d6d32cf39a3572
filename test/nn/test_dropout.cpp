// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "hseq/nn/dropout.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::nn::DropoutStream;

TEST_CASE("nn dropout stream: inactive by default; rate() is the configured rate only when active") {
  DropoutStream off;
  CHECK_FALSE(off.active);
  CHECK(off.rate(0.2) == 0.0);
  DropoutStream on{1, 2, true};
  CHECK(on.rate(0.2) == 0.2);
  CHECK(on.rate(0.0) == 0.0);
  // Children inherit the seed and the activity.
  CHECK(on.child(3).active);
  CHECK_FALSE(off.child(3).active);
  CHECK(on.child(3).seed == on.seed);
  CHECK(on.key(0).seed == on.seed);
}

TEST_CASE("nn dropout stream: children and site keys are deterministic and all distinct") {
  DropoutStream const root{42, 7, true};
  CHECK(root.child(5).stream == root.child(5).stream);
  CHECK(root.key(1).stream == DropoutStream{42, 7, false}.key(1).stream);  // activity does not move masks
  // A stack of 64 blocks, each with 2 sub-modules with 2 sites and 2 sites of its own: every key of
  // every level differs (and differs from the children's stream ids), and from the root's own keys.
  std::vector<std::uint64_t> ids;
  for (std::uint64_t l = 0; l < 64; ++l) {
    DropoutStream const blk = root.child(l);
    ids.push_back(blk.stream);
    for (std::uint64_t site = 0; site < 2; ++site) ids.push_back(blk.key(site).stream);
    for (std::uint64_t c = 0; c < 2; ++c) {
      ids.push_back(blk.child(c).stream);
      for (std::uint64_t site = 0; site < 2; ++site) ids.push_back(blk.child(c).key(site).stream);
    }
  }
  for (std::uint64_t site = 0; site < 4; ++site) ids.push_back(root.key(site).stream);
  ids.push_back(root.stream);
  std::size_t const n = ids.size();
  std::sort(ids.begin(), ids.end());
  CHECK(std::unique(ids.begin(), ids.end()) == ids.end());
  CHECK(ids.size() == n);
  // child(i) and key(i) are different derivations.
  CHECK(root.child(0).stream != root.key(0).stream);
  // Another root stream (another step) gives other children.
  CHECK(DropoutStream{42, 8, true}.child(0).stream != root.child(0).stream);
}

TEST_CASE("nn dropout stream: training_dropout is active, pure, and distinct per seed, step and micro-batch") {
  auto a = hseq::nn::training_dropout(1234, 10, 0);
  auto b = hseq::nn::training_dropout(1234, 10, 0);
  CHECK(a.active);
  CHECK(a.seed == b.seed);
  CHECK(a.stream == b.stream);
  std::vector<std::uint64_t> streams;
  for (std::int64_t step = 0; step < 100; ++step)
    for (std::int64_t micro = 0; micro < 4; ++micro)
      streams.push_back(hseq::nn::training_dropout(1234, step, micro).stream);
  std::sort(streams.begin(), streams.end());
  CHECK(std::adjacent_find(streams.begin(), streams.end()) == streams.end());
  CHECK(hseq::nn::training_dropout(1235, 10, 0).seed != a.seed);  // another data seed, another mask family
}

TEST_CASE("nn dropout stream: configured rates outside [0, 1) are refused, naming the field") {
  CHECK(hseq::nn::checked_dropout_rate(0.0, "x") == 0.0);
  CHECK(hseq::nn::checked_dropout_rate(0.999, "x") == 0.999);
  CHECK_THROWS_WITH_AS(hseq::nn::checked_dropout_rate(1.0, "Mlp: dropout"), doctest::Contains("Mlp: dropout 1"),
                       hseq::Error);
  CHECK_THROWS_AS(hseq::nn::checked_dropout_rate(-0.1, "x"), hseq::Error);
  CHECK_THROWS_AS(hseq::nn::checked_dropout_rate(std::numeric_limits<double>::quiet_NaN(), "x"), hseq::Error);
}

}  // namespace HSEQ_TEST_UNIT
