// SPDX-License-Identifier: MIT
/// @file
/// @brief HRED/HAED (`models::Hierarchical`) as a family of the programs (--model hierarchical):
/// the encoder, backbone and decoder are compile-time policies chosen by --encoder, --backbone and
/// --decoder (HAED, the default: mlp / transformer / rnn; HRED: rnn / rnn / rnn), over fixed
/// segments of 8 bytes (--segment fixed8). Eight model types; docs/hred_haed.md.
#pragma once

#include <string>

#include "hseq/hier/fixed_chunks.hpp"
#include "hseq/hier/mlp_encoder.hpp"
#include "hseq/hier/rnn_backbone.hpp"
#include "hseq/hier/rnn_decoder.hpp"
#include "hseq/hier/rnn_encoder.hpp"
#include "hseq/hier/transformer_backbone.hpp"
#include "hseq/hier/transformer_decoder.hpp"
#include "hseq/models/hierarchical.hpp"
#include "hseq/nn/rnn.hpp"
#include "programs.hpp"

namespace cli {

struct HierarchicalFamily {
  static constexpr char const* kModel = "hierarchical";
  static constexpr char const* kHelp = "HRED/HAED: segment encoder, segment-rate backbone, byte decoder";
  // Each slot's first type is its default: HAED with the recurrent decoder.
  using Policies = cli::Policies<Slot<"segment", "segmentation (fixed K-byte chunks)", hseq::hier::FixedChunks<8>>,
                                 Slot<"encoder", "segment encoder", hseq::hier::MlpEncoder, hseq::hier::RnnEncoder>,
                                 Slot<"backbone", "segment-rate backbone", hseq::hier::TransformerBackbone,
                                      hseq::hier::RnnBackbone>,
                                 Slot<"decoder", "byte decoder", hseq::hier::RnnDecoder, hseq::hier::TransformerDecoder>>;
  template <class... SegmentEncoderBackboneDecoder>
  using Model = hseq::models::Hierarchical<Backend, Real, SegmentEncoderBackboneDecoder...>;

  static void add_flags(Args& a) {
    a.flag("dim", "256", "model width d")
        .flag("heads", "4", "attention heads (must divide --dim)")
        .flag("layers", "4", "layers of the main stack (transformer: blocks; hierarchical: backbone layers)")
        .flag("context", "128", "longest sequence the model sees (learned position table length)")
        .flag("decoder-layers", "2", "hierarchical: decoder layers (Transformer blocks or stacked RNN layers)")
        .flag("cell", "gru", "hierarchical: the recurrent policies' cell, gru or lstm");
  }
  template <class M>
  static void apply_flags(FlagReader const& r, typename M::Config& c) {
    r.integer("dim", c.dim);
    r.integer("heads", c.heads);
    r.integer("layers", c.layers);
    r.integer("context", c.context);
    r.integer("decoder-layers", c.decoder_layers);
    r.parsed("cell", c.cell, [](std::string const& s) { return hseq::nn::rnn_kind_from_name(s, "--cell"); });
  }
};

}  // namespace cli
