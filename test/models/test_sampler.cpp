// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "hseq/models/sampler.hpp"

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

TEST_CASE("sampler: top-k and top-p cut the tail") {
  std::vector<double> l{std::log(0.05), std::log(0.5), std::log(0.3), std::log(0.15)};
  Sampler k2({.temperature = 1.0, .top_k = 2, .seed = 1});
  Sampler p07({.temperature = 1.0, .top_p = 0.7, .seed = 2});  // 0.5 + 0.3 reaches 0.7
  for (int i = 0; i < 2000; ++i) {
    int a = k2.sample(l.data(), 4), b = p07.sample(l.data(), 4);
    REQUIRE((a == 1 || a == 2));
    REQUIRE((b == 1 || b == 2));
  }
  CHECK_THROWS_AS(Sampler({.top_p = 0.0}), hseq::Error);
  CHECK_THROWS_AS(Sampler({.temperature = -1}), hseq::Error);
  std::vector<float> bad{0.f, std::numeric_limits<float>::quiet_NaN()};
  Sampler s;
  CHECK_THROWS_WITH_AS(s.sample(bad.data(), 2), doctest::Contains("NaN"), hseq::Error);
}
