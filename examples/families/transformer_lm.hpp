// SPDX-License-Identifier: MIT
/// @file
/// @brief The Transformer language model as a family of the programs (--model transformer).
#pragma once

#include <vector>

#include "hseq/models/transformer_lm.hpp"
#include "programs.hpp"

namespace cli {

struct TransformerLmFamily {
  static constexpr char const* kModel = "transformer";
  static constexpr char const* kHelp = "decoder-only Transformer (the baseline)";
  using Policies = cli::Policies<>;
  template <class...>
  using Model = hseq::models::TransformerLm<Backend, Real>;

  static void add_flags(Args& a) {
    a.flag("dim", "256", "model width d")
        .flag("heads", "4", "attention heads (must divide --dim)")
        .flag("layers", "4", "layers of the main stack (transformer: blocks; hierarchical: backbone layers)")
        .flag("context", "128", "longest sequence the model sees (learned position table length)")
        .flag("position", "learned", "transformer: position encoding, learned, sinusoidal or none")
        .toggle("untied", "transformer, transformer-xl, hourglass: separate output projection instead of the token embedding");
  }
  template <class M>
  static void apply_flags(FlagReader const& r, typename M::Config& c) {
    r.integer("dim", c.dim);
    r.integer("heads", c.heads);
    r.integer("layers", c.layers);
    r.integer("context", c.context);
    r.parsed("position", c.position, &M::position_from_name);
    r.toggle("untied", c.tied, /*when_on=*/false);
  }
  /// Benchmark rows: the baseline of the Hourglass comparison (8 layers of width 256, as many
  /// layers as "2@1 4@4 2@1"), and a tiny case for ctest's bench.smoke.
  static std::vector<BenchCase> bench_cases() {
    return {{"d256_L8", {"--dim", "256", "--heads", "4", "--layers", "8"}, {{4, 1024}, {2, 2048}}},
            {"small", {"--dim", "32", "--heads", "2", "--layers", "2"}, {{1, 64}}}};
  }
};

}  // namespace cli
