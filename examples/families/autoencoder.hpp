// SPDX-License-Identifier: MIT
/// @file
/// @brief The attention-based sequence-length reduction autoencoder as a family of the programs
/// (--model autoencoder): windows of --window bytes reduced by --reduce 2|4|8 (compile-time, per
/// step; --reduce-steps steps) with queries from --queries pool|bank|mix, reconstructed by a
/// bidirectional decoder. It trains on random windows with targets = the window itself
/// (models::kReconstructsInput); hseq-eval --accuracy reports the reconstruction accuracy and
/// --export-latents writes the latents; it does not generate.
#pragma once

#include <cstdint>
#include <vector>

#include "hseq/hier/length_resampler.hpp"
#include "hseq/models/seq_autoencoder.hpp"
#include "programs.hpp"

namespace cli {

/// The reduction factor R of one step as a slot choice.
template <std::int64_t R, char... Name>
struct ReduceFactor {
  static constexpr char kText[] = {Name..., '\0'};
  static constexpr char const* kName = kText;
  static constexpr std::int64_t kFactor = R;
};

template <class Query, class Factor>
struct AutoencoderModel {
  using type = hseq::models::SeqAutoencoder<Backend, Real, Factor::kFactor, Query>;
};

struct AutoencoderFamily {
  static constexpr char const* kModel = "autoencoder";
  static constexpr char const* kHelp = "bidirectional autoencoder through an attention-based length reduction";
  // The query tags' own names (pool, bank, mix) are the slot's choices and the checkpoint's.
  using Policies = cli::Policies<
      Slot<"queries", "autoencoder: query source of the length-changing attention", hseq::hier::PooledQueries,
           hseq::hier::QueryBank, hseq::hier::LengthMix>,
      Slot<"reduce", "autoencoder: reduction factor of each step (m = window / reduce^steps, rounded up)", ReduceFactor<2, '2'>,
           ReduceFactor<4, '4'>, ReduceFactor<8, '8'>>>;
  template <class... QueryFactor>
  using Model = typename AutoencoderModel<QueryFactor...>::type;

  static void add_flags(Args& a) {
    a.flag("dim", "256", "model width d")
        .flag("heads", "4", "attention heads (must divide --dim)")
        .flag("decoder-layers", "2", "hierarchical: decoder layers (Transformer blocks or stacked RNN layers)")
        .flag("enc-layers", "2", "autoencoder: encoder layers (bidirectional Transformer blocks)")
        .flag("window", "64", "autoencoder: window length n in bytes (position tables, query bank and mix sizes)")
        .flag("reduce-steps", "1", "autoencoder: reductions of factor --reduce in a row (1: one step)");
  }
  template <class M>
  static void apply_flags(FlagReader const& r, typename M::Config& c) {
    r.integer("dim", c.dim);
    r.integer("heads", c.heads);
    r.integer("enc-layers", c.enc_layers);
    r.integer("decoder-layers", c.dec_layers);
    r.integer("window", c.window);
    r.integer("reduce-steps", c.steps);
  }
  static std::vector<BenchCase> bench_cases() {
    return {{"d256_w256_r4", {"--dim", "256", "--heads", "4", "--window", "256", "--reduce", "4"}, {{16, 256}}},
            {"small", {"--dim", "32", "--heads", "2", "--window", "16", "--enc-layers", "1", "--decoder-layers", "1"},
             {{1, 16}}}};
  }
};

}  // namespace cli
