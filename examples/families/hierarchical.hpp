// SPDX-License-Identifier: MIT
/// @file
/// @brief HRED/HAED (`models::Hierarchical`) as a family of the programs (--model hierarchical):
/// the encoder, backbone and decoder are compile-time policies chosen by --encoder, --backbone and
/// --decoder (HAED, the default: mlp / transformer / rnn; HRED: rnn / rnn / rnn), over fixed
/// segments of 8 bytes (--segment fixed8, the default) or over lines (--segment line: segments end
/// after "\n") or blank-line separated turns (--segment turn: after "\n\n"), or by the rules the
/// Hourglass's levels use (--segment space: SpaceByte's spacelike rule; --segment word: AU-Net's
/// words), all at most kDelimitedMaxLen bytes (a longer run is split there). line, turn, space and
/// word are one model type, hier::Delimited<kDelimitedMaxLen>, with the delimiter ("@space" for a
/// rule) in its run-time config, so the family instantiates 2 segmenters x 8 = 16 model types, not
/// 40; docs/hred_haed.md.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/hier/delimited.hpp"
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

/// The --segment values of the delimited segmentation: tags that name a delimiter. All map to the
/// one model type hier::Delimited<kDelimitedMaxLen> (HierarchicalModel below); apply_flags sets
/// the delimiter, and the model writes the same name back into its config ("segment": "line").
inline constexpr std::int64_t kDelimitedMaxLen = 64;
struct LineSegments {
  static constexpr char const* kName = "line";
  static constexpr char const* kDelimiter = "\n";
};
struct TurnSegments {
  static constexpr char const* kName = "turn";
  static constexpr char const* kDelimiter = "\n\n";
};
/// The rule segments the Hourglass's levels use too (hier::ByteRule through Delimited's "@RULE").
struct SpaceSegments {
  static constexpr char const* kName = "space";
  static constexpr char const* kDelimiter = "@space";
};
struct WordSegments {
  static constexpr char const* kName = "word";
  static constexpr char const* kDelimiter = "@word";
};
template <class S>
struct SegmenterOf {
  using type = S;
};
template <class S>
  requires requires { S::kDelimiter; }
struct SegmenterOf<S> {  // a delimiter tag: the one Delimited model type
  using type = hseq::hier::Delimited<kDelimitedMaxLen>;
};
/// The delimiter of the tag among Tags named `name` (line when none matches).
template <class... Tags>
char const* delimiter_of(std::string const& name) {
  char const* found = LineSegments::kDelimiter;
  ((found = name == Tags::kName ? Tags::kDelimiter : found), ...);
  return found;
}
template <class Segment, class... EncoderBackboneDecoder>
struct HierarchicalModel {
  using type = hseq::models::Hierarchical<Backend, Real, typename SegmenterOf<Segment>::type, EncoderBackboneDecoder...>;
};

struct HierarchicalFamily {
  static constexpr char const* kModel = "hierarchical";
  static constexpr char const* kHelp = "HRED/HAED: segment encoder, segment-rate backbone, byte decoder";
  // Each slot's first type is its default: HAED with the recurrent decoder.
  using Policies = cli::Policies<Slot<"segment", "segmentation: fixed8 (8-byte chunks), line (ended by a newline), turn "
                                                 "(ended by a blank line), space (a word and the spacelike byte after "
                                                 "it, SpaceByte's rule) or word (a word and its whitespace, AU-Net's), "
                                                 "all but fixed8 at most 64 bytes",
                                      hseq::hier::FixedChunks<8>, LineSegments, TurnSegments, SpaceSegments,
                                      WordSegments>,
                                 Slot<"encoder", "segment encoder", hseq::hier::MlpEncoder, hseq::hier::RnnEncoder>,
                                 Slot<"backbone", "segment-rate backbone", hseq::hier::TransformerBackbone,
                                      hseq::hier::RnnBackbone>,
                                 Slot<"decoder", "byte decoder", hseq::hier::RnnDecoder, hseq::hier::TransformerDecoder>>;
  template <class... SegmentEncoderBackboneDecoder>
  using Model = typename HierarchicalModel<SegmentEncoderBackboneDecoder...>::type;

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
  /// The IEM proposal: the unigram distribution of the training split's segments, counted over its
  /// first kProposalBytes (all of it for corpora up to that size: a corpus larger than memory is
  /// never read whole).
  static constexpr std::int64_t kProposalBytes = std::int64_t{256} << 20;
  template <class M>
  static void prepare(M& model, hseq::io::TextDataset const& data) {
    if (model.config().iem_negatives > 0) {
      auto split = hseq::io::TextDataset::Split::kTrain;
      std::string train = data.text(split, 0, std::min(data.size(split), kProposalBytes));
      if constexpr (M::kVariable)  // line / turn: the unigram of the split's delimited segments
        model.set_iem_proposal(hseq::hier::SegmentProposal(train, model.segmenter()));
      else
        model.set_iem_proposal(hseq::hier::SegmentProposal(train, M::kSegment));
    }
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
    if constexpr (M::kVariable)  // line, turn, space, word: the same model type, told apart by the delimiter
      if (r.applies("segment"))
        c.delimiter = delimiter_of<LineSegments, TurnSegments, SpaceSegments, WordSegments>(r.args().str("segment"));
  }
  /// Benchmark rows: HAED (MLP encoder, Transformer backbone, GRU decoder) and HRED (GRU throughout)
  /// at width 256 with 4 backbone and 2 decoder layers, over segments of 8 bytes, and a tiny HAED
  /// for ctest's bench.smoke. Byte objective only (no IEM).
  static std::vector<BenchCase> bench_cases() {
    std::vector<std::string> d256{"--dim", "256", "--heads", "4", "--layers", "4", "--decoder-layers", "2"};
    auto with = [&](std::vector<std::string> policies) {
      policies.insert(policies.begin(), d256.begin(), d256.end());
      return policies;
    };
    return {{"haed_d256", with({"--encoder", "mlp", "--backbone", "transformer", "--decoder", "rnn"}), {{4, 1024}, {2, 2048}}},
            {"hred_d256", with({"--encoder", "rnn", "--backbone", "rnn", "--decoder", "rnn"}), {{4, 1024}, {2, 2048}}},
            {"haed_small", {"--dim", "32", "--heads", "2", "--layers", "1", "--decoder-layers", "1"}, {{1, 64}}}};
  }
};

}  // namespace cli
