// SPDX-License-Identifier: MIT
/// @file
/// @brief Transformer-XL as a family of the programs (--model transformer-xl): relative attention
/// over a per-layer memory, trained on consecutive segments so that the memory carries.
#pragma once

#include <vector>

#include "hseq/models/transformer_xl.hpp"
#include "hseq/train/task.hpp"
#include "programs.hpp"

namespace cli {

struct TransformerXlFamily {
  static constexpr char const* kModel = "transformer-xl";
  static constexpr char const* kHelp = "Transformer-XL: relative attention over a memory of earlier segments";
  using Policies = cli::Policies<>;
  template <class...>
  using Model = hseq::models::TransformerXl<Backend, Real>;
  /// Consecutive windows per stream (the memory continues the previous batch's rows).
  using Task = hseq::train::SequentialSegments;

  static void add_flags(Args& a) {
    a.flag("dim", "256", "model width d")
        .flag("heads", "4", "attention heads (must divide --dim)")
        .flag("layers", "4", "layers of the main stack (transformer: blocks; hierarchical: backbone layers)")
        .flag("context", "128", "longest sequence the model sees (transformer-xl: the segment length)")
        .toggle("untied", "transformer: separate output projection instead of the token embedding")
        .flag("mem-len", "256", "transformer-xl: memory rows per layer (earlier layer inputs; 0: none)")
        .flag("clamp-len", "0", "transformer-xl: relative distances past it share one encoding (0: no clamping)");
  }
  template <class M>
  static void apply_flags(FlagReader const& r, typename M::Config& c) {
    r.integer("dim", c.dim);
    r.integer("heads", c.heads);
    r.integer("layers", c.layers);
    r.integer("context", c.context);
    r.integer("mem-len", c.mem_len);
    r.integer("clamp-len", c.clamp_len);
    r.toggle("untied", c.tied, /*when_on=*/false);
  }
  /// Benchmark rows: width 256 with a memory as long as the segment, and a tiny case for ctest's
  /// bench.smoke.
  static std::vector<BenchCase> bench_cases() {
    return {{"d256_L8_mem", {"--dim", "256", "--heads", "4", "--layers", "8", "--mem-len", "512"}, {{4, 512}}},
            {"small", {"--dim", "32", "--heads", "2", "--layers", "2", "--mem-len", "32"}, {{1, 64}}}};
  }
};

}  // namespace cli
