// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <vector>

#include "hseq/models/sampler.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq::models;

TEST_CASE("sampler: greedy picks the argmax, lowest id on ties") {
  Sampler s({.temperature = 0});
  std::vector<float> l{0.1f, 2.0f, -1.0f, 2.0f};
  CHECK(s.sample(l.data(), 4) == 1);
}

TEST_CASE("sampler: temperature sampling follows the softmax, reproducibly per seed") {
  std::vector<double> l{std::log(1.0), std::log(2.0), std::log(7.0)};  // probabilities 0.1, 0.2, 0.7
  Sampler s({.temperature = 1.0, .seed = 5});
  std::map<int, int> counts;
  int const n = 20000;
  std::vector<int> first;
  for (int i = 0; i < n; ++i) {
    int id = s.sample(l.data(), 3);
    counts[id]++;
    if (i < 50) first.push_back(id);
  }
  // Binomial standard deviations: sqrt(n p (1 - p)) <= 65; allow 5 sigma.
  CHECK(std::abs(counts[0] - 0.1 * n) < 325);
  CHECK(std::abs(counts[1] - 0.2 * n) < 325);
  CHECK(std::abs(counts[2] - 0.7 * n) < 325);
  Sampler again({.temperature = 1.0, .seed = 5});
  for (int i = 0; i < 50; ++i) REQUIRE(again.sample(l.data(), 3) == first[std::size_t(i)]);
}

namespace {
/// Draws n ids from `logits` and compares each id's count with n * expected[id]: within 5 binomial
/// standard deviations sqrt(n p (1 - p)) (plus 1 for rounding), and exactly 0 where expected is 0.
/// Seeded, so the outcome is fixed; 5 sigma leaves a correct sampler far from the edge.
void check_frequencies(Sampler& s, std::vector<double> const& logits, std::vector<double> const& expected, int n) {
  REQUIRE(logits.size() == expected.size());
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < n; ++i) {
    int id = s.sample(logits.data(), std::int64_t(logits.size()));
    REQUIRE((id >= 0 && id < int(logits.size())));
    counts[std::size_t(id)]++;
  }
  for (std::size_t i = 0; i < expected.size(); ++i) {
    CAPTURE(i);
    CAPTURE(counts[i]);
    CAPTURE(expected[i]);
    double mean = n * expected[i], sigma = std::sqrt(n * expected[i] * (1 - expected[i]));
    if (expected[i] == 0) CHECK(counts[i] == 0);
    else CHECK(std::abs(counts[i] - mean) <= 5 * sigma + 1);
  }
}
}  // namespace

TEST_CASE("sampler: top-k and top-p sample the renormalised kept probabilities") {
  // Probabilities 0.05, 0.5, 0.3, 0.15 (ids 0..3); descending order: 1, 2, 3, 0.
  std::vector<double> l{std::log(0.05), std::log(0.5), std::log(0.3), std::log(0.15)};
  int const n = 20000;
  SUBCASE("top-k 2 keeps ids 1, 2: 0.5 / 0.8, 0.3 / 0.8") {
    Sampler s({.temperature = 1.0, .top_k = 2, .seed = 1});
    check_frequencies(s, l, {0, 0.625, 0.375, 0}, n);
  }
  SUBCASE("top-k 3 at temperature 0.5 keeps ids 1, 2, 3 with probabilities p^2 renormalised") {
    Sampler s({.temperature = 0.5, .top_k = 3, .seed = 6});
    double z = 0.25 + 0.09 + 0.0225;
    check_frequencies(s, l, {0, 0.25 / z, 0.09 / z, 0.0225 / z}, n);
  }
  SUBCASE("top-p 0.7: 0.5 + 0.3 reaches it, ids 1, 2") {
    Sampler s({.temperature = 1.0, .top_p = 0.7, .seed = 2});
    check_frequencies(s, l, {0, 0.625, 0.375, 0}, n);
  }
  SUBCASE("top-p 0.9: 0.5 + 0.3 + 0.15 reaches it, ids 1, 2, 3") {
    Sampler s({.temperature = 1.0, .top_p = 0.9, .seed = 3});
    check_frequencies(s, l, {0, 0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95}, n);
  }
  SUBCASE("top-k 3 then top-p 0.83 over the renormalised top 3: 0.526 + 0.316 reaches it, ids 1, 2") {
    // Over the full distribution 0.5 + 0.3 = 0.8 would not reach 0.83: top-p applies after top-k.
    Sampler s({.temperature = 1.0, .top_k = 3, .top_p = 0.83, .seed = 4});
    check_frequencies(s, l, {0, 0.625, 0.375, 0}, n);
  }
  SUBCASE("top-k larger than the vocabulary keeps everything") {
    Sampler s({.temperature = 1.0, .top_k = 10, .seed = 5});
    check_frequencies(s, l, {0.05, 0.5, 0.3, 0.15}, n);
  }
}

TEST_CASE("sampler: invalid settings and NaN logits are refused") {
  CHECK_THROWS_AS(Sampler({.top_p = 0.0}), hseq::Error);
  CHECK_THROWS_AS(Sampler({.temperature = -1}), hseq::Error);
  std::vector<float> bad{0.f, std::numeric_limits<float>::quiet_NaN()};
  Sampler s;
  CHECK_THROWS_WITH_AS(s.sample(bad.data(), 2), doctest::Contains("NaN"), hseq::Error);
}

}  // namespace HSEQ_TEST_UNIT
