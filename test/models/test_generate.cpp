// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <string>

#include "hseq/models/generate.hpp"
#include "hseq/models/transformer_lm.hpp"

using namespace hseq;
using Lm = models::TransformerLm<cpu, float>;

TEST_CASE("generate: byte counts, stop strings, seeds, and prompts longer than the context") {
  cpu::Context ctx;
  Lm m({.vocab = 256, .dim = 16, .heads = 2, .layers = 2, .context = 32});
  nn::ParamStore<cpu, float> p(m);
  p.init(ctx, 1);
  models::GenerateConfig g;
  g.max_bytes = 100;  // longer than the context: the cache slides
  g.sampler.seed = 3;
  std::string a = models::generate<cpu, float>(ctx, m, "hello", g);
  std::string b = models::generate<cpu, float>(ctx, m, "hello", g);
  CHECK(a.size() == 100);
  CHECK(a == b);
  g.sampler.seed = 4;
  CHECK(models::generate<cpu, float>(ctx, m, "hello", g) != a);
  // Stop string: generate greedily, then ask to stop at a substring that appears.
  g.sampler.temperature = 0;
  std::string greedy = models::generate<cpu, float>(ctx, m, std::string(50, 'x'), g);
  g.stop = greedy.substr(10, 2);
  std::string stopped = models::generate<cpu, float>(ctx, m, std::string(50, 'x'), g);
  CHECK(stopped.size() <= 12);
  CHECK(stopped.size() >= 2);
  CHECK(stopped.compare(stopped.size() - 2, 2, g.stop) == 0);
  CHECK(greedy.compare(0, stopped.size(), stopped) == 0);
}
