// SPDX-License-Identifier: MIT
/// @file
/// @brief HRED/HAED (`models::Hierarchical`) as a family of the programs (--model hierarchical):
/// the encoder, backbone and decoder are compile-time policies chosen by --encoder, --backbone and
/// --decoder (HAED, the default: mlp / transformer / rnn; HRED: rnn / rnn / rnn), over fixed
/// segments of 8 bytes (--segment fixed8). Eight model types; docs/hred_haed.md.
#pragma once

#include <string>
#include <vector>

#include "hseq/hier/fixed_chunks.hpp"
#include "hseq/hier/mlp_encoder.hpp"
#include "hseq/hier/rnn_backbone.hpp"
#include "hseq/hier/rnn_decoder.hpp"
#include "hseq/hier/rnn_encoder.hpp"
#include "hseq/hier/segment_proposal.hpp"
#include "hseq/hier/transformer_backbone.hpp"
#include "hseq/hier/transformer_decoder.hpp"
#include "hseq/io/text_dataset.hpp"
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
        .flag("cell", "gru", "hierarchical: the recurrent policies' cell, gru or lstm")
        .flag("iem-negatives", "0", "hierarchical: IEM negatives drawn per micro-batch; > 0 enables the phases of --phases iem:STEPS,decoder "
              "(iem, decoder, full)")
        .toggle("iem-in-batch", "hierarchical: the batch's other target segments as IEM negatives too")
        .flag("iem-tau", "0.07", "hierarchical: IEM softmax temperature (the initial one unless --iem-fixed-tau)")
        .toggle("iem-fixed-tau", "hierarchical: keep the IEM temperature fixed instead of learning it");
  }
  /// --phases: "iem" trains the encoder, backbone and IEM head (the decoder side frozen: it has no
  /// activations then); "decoder" trains the decoder and the byte table with the encoder, backbone
  /// and IEM head frozen; "full" trains everything end to end (docs/hred_haed.md).
  static std::vector<std::string> phase_frozen(std::string const& phase) {
    if (phase == "iem") return {"decoder.*", "start", "ln_f.*"};
    if (phase == "decoder") return {"encoder.*", "backbone.*", "iem.*"};
    if (phase == "full") return {};
    HSEQ_FAIL("--phases: unknown hierarchical phase '" << phase << "' (known: iem, decoder, full)");
  }
  /// The IEM proposal: the unigram distribution of the training split's segments.
  template <class M>
  static void prepare(M& model, hseq::io::TextDataset const& data) {
    if (model.config().iem_negatives > 0)
      model.set_iem_proposal(hseq::hier::SegmentProposal(data.bytes(hseq::io::TextDataset::Split::kTrain), M::kSegment));
  }
  template <class M>
  static void apply_flags(FlagReader const& r, typename M::Config& c) {
    r.integer("dim", c.dim);
    r.integer("heads", c.heads);
    r.integer("layers", c.layers);
    r.integer("context", c.context);
    r.integer("decoder-layers", c.decoder_layers);
    r.parsed("cell", c.cell, [](std::string const& s) { return hseq::nn::rnn_kind_from_name(s, "--cell"); });
    r.integer("iem-negatives", c.iem_negatives);
    r.toggle("iem-in-batch", c.iem_in_batch);
    r.real("iem-tau", c.iem_tau);
    r.toggle("iem-fixed-tau", c.iem_learn_tau, /*when_on=*/false);
  }
};

}  // namespace cli
