// SPDX-License-Identifier: MIT
/// @file
/// @brief The Hourglass as a family of the programs (--model hourglass): the hierarchy is a flag
/// (run-time `DynamicHierarchy`), the shortening and upsampling policies are template parameters
/// chosen by --shorten and --upsample (nine model types).
#pragma once

#include "hseq/hier/attention_pool.hpp"
#include "hseq/hier/attention_upsample.hpp"
#include "hseq/hier/avg_pool.hpp"
#include "hseq/hier/hierarchy.hpp"
#include "hseq/hier/linear_pool.hpp"
#include "hseq/hier/linear_upsample.hpp"
#include "hseq/hier/repeat_upsample.hpp"
#include "hseq/models/hourglass.hpp"
#include "programs.hpp"

namespace cli {

struct HourglassFamily {
  static constexpr char const* kModel = "hourglass";
  static constexpr char const* kHelp = "Hourglass: shortened Transformer levels between full-rate ones";
  using Policies = cli::Policies<
      Slot<"shorten", "shortening (pooling)", hseq::hier::AttentionPool, hseq::hier::AvgPool, hseq::hier::LinearPool>,
      Slot<"upsample", "upsampling", hseq::hier::AttentionUp, hseq::hier::Repeat, hseq::hier::LinearUp>>;
  // Model<Shorten, Upsample>, declared with a pack (an alias cannot take a pack into named
  // parameters, and the programs expand the chosen policies as a pack).
  template <class... ShortenUpsample>
  using Model = hseq::models::Hourglass<Backend, Real, hseq::hier::DynamicHierarchy, ShortenUpsample...>;

  static void add_flags(Args& a) {
    a.flag("dim", "256", "model width d")
        .flag("heads", "4", "attention heads (must divide --dim)")
        .flag("context", "128", "longest sequence the model sees (learned position table length)")
        .flag("hierarchy", "2@1 4@4 2@1",
              "hourglass: LAYERS@FACTOR items with cumulative factors, a palindrome (\"2@1 2@2 2@8 2@2 2@1\" nests)");
  }
  template <class M>
  static void apply_flags(FlagReader const& r, typename M::Config& c) {
    r.integer("dim", c.dim);
    r.integer("heads", c.heads);
    r.integer("context", c.context);
    r.parsed("hierarchy", c.hierarchy, &hseq::hier::HierarchySpec::parse);
  }
};

}  // namespace cli
